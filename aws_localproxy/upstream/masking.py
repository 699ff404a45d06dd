# -*- test-case-name: tests.upstream.test_masking -*-
"""
Client-frame masking, in place, with Autobahn's NVX code.

Every frame a client sends is XORed with a fresh 4-byte mask (RFC 6455
section 5.3).  Autobahn's masker object copies the payload into a new C
buffer, masks it and copies it out again, and is built anew for each frame;
for the tunnel's large frames those two copies and the object cost as much
as the masking.  Here the frame is built once, as a C{bytearray}, and its
payload is masked where it lies by the same NVX routine.  Where Autobahn was
installed without NVX (or its NVX fails the check of
L{aws_localproxy.adapters.autobahn_private}), its own pure-Python masker
does the work, at about 10 MB/s, and L{masker_in_use} says so: the proxy
logs L{SLOW_MASKING_WARNING} at start-up.

A small frame (an interactive session's keystrokes and echoes, at most
L{SMALL_PAYLOAD} bytes) is masked with one XOR of two Python integers
instead: making, running and freeing an NVX masker is five calls into C
for a few bytes of work, where the integers take three.
"""

from __future__ import annotations

from typing import Any, Optional

from aws_localproxy.adapters.autobahn_private import NVX_MASKER, NvxMasker, python_masker

__all__ = ["mask_in_place", "masker_in_use", "SLOW_MASKING_WARNING", "SMALL_PAYLOAD"]

#: Payloads up to this size are masked as Python integers (see the module
#: docstring); larger ones by the masker.
SMALL_PAYLOAD = 512

#: The masker L{mask_in_place} calls (C{None}: Autobahn's pure-Python one).
_nvx: Optional[NvxMasker] = NVX_MASKER

#: Logged line by line at warning level when the proxy starts with
#: pure-Python masking (L{masker_in_use}), boxed as the C{-k} warning is: nothing else tells an operator
#: why uploads crawl.
SLOW_MASKING_WARNING = (
    "**********************************************************************",
    "* PERFORMANCE WARNING: WebSocket frames are masked in pure Python    *",
    "* (Autobahn's compiled NVX masker is not available): uploads through *",
    "* this proxy will run at about 10 MB/s. To get NVX, install          *",
    "* autobahn>=25.9.1 from a binary wheel, or from source with a C      *",
    "* compiler and AUTOBAHN_USE_NVX unset.                               *",
    "**********************************************************************",
)


def masker_in_use() -> str:
    """
    The masker L{mask_in_place} calls: C{"nvx"} (Autobahn's compiled one) or
    C{"python"} (its pure-Python one); what the proxy checks at start-up.
    """
    return "python" if _nvx is None else "nvx"


def mask_in_place(frame: bytearray, offset: int, mask: bytes) -> None:
    """XOR C{frame[offset:]} with the 4-byte C{mask}, repeated from its first byte."""
    length = len(frame) - offset
    if length <= SMALL_PAYLOAD:
        if length > 0:
            # Byte i of the payload meets byte i of the repeated mask: as
            # little-endian integers, one XOR masks them all.
            keys = mask * ((length >> 2) + 1)
            frame[offset:] = (
                int.from_bytes(frame[offset:], "little") ^ int.from_bytes(keys[:length], "little")
            ).to_bytes(length, "little")
        return
    nvx: Any = _nvx
    if nvx is None:
        frame[offset:] = python_masker(mask, length).process(bytes(frame[offset:]))
        return
    # nvx_xormask_new already picks NVX's best implementation (SSE2 where the
    # CPU has it): the canary in tests/adapters checks it still does.
    masker = nvx.new(nvx.from_buffer("uint8_t[]", mask))
    try:
        nvx.process(masker, nvx.from_buffer("uint8_t[]", frame) + offset, length)
    finally:
        nvx.free(masker)
