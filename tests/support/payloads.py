"""
Payloads that cannot hide corruption, and a comparison that says where a
stream went wrong.

A payload that repeats (C{bytes(range(256)) * n}, C{b"x" * n}) looks the same
after a record is duplicated, dropped or swapped with another: a TLS layer
that re-sent its first 16 KiB record in place of later ones passed every test
that used one.  L{unique_payload} gives bytes in which no block repeats, so
any such fault changes what arrives; L{assert_same_bytes} compares by sha256
(a failure does not print megabytes) and names the first offset that differs
and what the bytes there look like: a repeat of earlier bytes, a jump past
some, or bytes that were never sent.
"""

from __future__ import annotations

import hashlib
import random
from typing import Optional

#: How many bytes at the first difference are looked up in the expected
#: stream to say where they came from: long enough to be unique in a
#: L{unique_payload}, short enough to fit before the end of a short one.
_PROBE = 16


def unique_payload(size: int, seed: int = 0) -> bytes:
    """
    C{size} seeded random bytes: the same for the same C{seed}, different
    for another, so two streams in one test (up and down, two connections)
    differ from each other too.  Two given 8-byte blocks are equal with a
    chance of 2**-64: no record, frame or chunk of a test repeats another.
    """
    return random.Random(seed).randbytes(size)


#: The block size of L{unique_stream}: each block is seeded by its index.
STREAM_BLOCK = 65536


def unique_stream(offset: int, length: int, seed: int = 0) -> bytes:
    """
    The C{length} bytes at C{offset} of an endless stream in which no block
    repeats: 64 KiB blocks of L{unique_payload}, each seeded by its index
    (and C{seed}), so a sender and a checker can each cut any part of a
    stream of gigabytes without holding it, and get the same bytes.
    """
    out = bytearray()
    while len(out) < length:
        block, start = divmod(offset + len(out), STREAM_BLOCK)
        data = unique_payload(STREAM_BLOCK, seed=seed * (1 << 40) + block)
        out += data[start : start + length - len(out)]
    return bytes(out)


def digest(data: bytes) -> str:
    """The sha256 of C{data} in hex: what a test compares instead of the bytes."""
    return hashlib.sha256(data).hexdigest()


def describe_difference(actual: bytes, expected: bytes) -> Optional[str]:
    """
    C{None} if C{actual} and C{expected} have the same sha256; otherwise
    one line saying at which offset they first differ and what C{actual}
    holds there.
    """
    if digest(actual) == digest(expected):
        return None
    sizes = (
        f"got {len(actual)} bytes (sha256 {digest(actual)[:16]}),"
        f" expected {len(expected)} (sha256 {digest(expected)[:16]})"
    )
    common = min(len(actual), len(expected))
    offset = next((i for i in range(common) if actual[i] != expected[i]), common)
    if offset == len(actual):
        missing = len(expected) - offset
        return f"{sizes}: truncated, the {missing} bytes from offset {offset} are missing"
    if offset == len(expected):
        return f"{sizes}: {len(actual) - offset} extra bytes from offset {offset}"
    probe = actual[offset : offset + _PROBE]
    source = expected.find(probe)
    if source == -1:
        what = "bytes that are not in the expected stream (altered)"
    elif source < offset:
        what = f"the expected bytes from offset {source} again (duplicated, or reordered)"
    else:
        skipped = source - offset
        what = f"the expected bytes from offset {source}: {skipped} skipped (dropped, or reordered)"
    return f"{sizes}: first difference at offset {offset}, which holds {what}"


def assert_same_bytes(case: object, actual: bytes, expected: bytes) -> None:
    """
    Fail C{case} (a trial test case) with L{describe_difference}'s line
    unless C{actual} and C{expected} have the same sha256.
    """
    difference = describe_difference(actual, expected)
    if difference is not None:
        failure = getattr(case, "failureException", AssertionError)
        raise failure(difference)
