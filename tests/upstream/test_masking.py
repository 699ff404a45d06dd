"""Tests of aws_localproxy.upstream.masking: in-place client-frame masking."""

from __future__ import annotations

import os
from typing import Any, List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters.autobahn_private import python_masker
from aws_localproxy.upstream import masking


def reference_mask(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 section 5.3, byte by byte."""
    return bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


SIZES = (0, 1, 3, 4, 5, 15, 16, 17, 31, 33, 125, 126, 511, 512, 513, 1000, 65536, 131076)


class MaskInPlaceTests(SynchronousTestCase):
    def check(self) -> None:
        for size in SIZES:
            for header in (b"\x82\x85", b"\x82\xfe\x00\x7e", b"\x82\xff" + bytes(8)):
                payload, mask = os.urandom(size), os.urandom(4)
                frame = bytearray(header + mask + payload)
                masking.mask_in_place(frame, len(header) + 4, mask)
                self.assertEqual(bytes(frame[: len(header) + 4]), header + mask)
                self.assertEqual(bytes(frame[len(header) + 4 :]), reference_mask(payload, mask))

    def test_nvx(self) -> None:
        """With Autobahn's NVX code (what CI installs): the RFC's masking, the header untouched."""
        self.assertEqual(masking.masker_in_use(), "nvx", "Autobahn was installed without NVX")
        self.check()

    def test_without_nvx(self) -> None:
        """Autobahn's pure-Python masker gives the same bytes, and says it is the one in use."""
        self.patch(masking, "_nvx", None)
        self.assertEqual(masking.masker_in_use(), "python")
        self.check()

    def test_warning_is_boxed(self) -> None:
        """The start-up warning is a box of equal lines, as the C{-k} warning is."""
        lines = masking.SLOW_MASKING_WARNING
        self.assertEqual({len(line) for line in lines}, {len(lines[0])})
        self.assertEqual(lines[0], lines[-1])
        self.assertIn("10 MB/s", " ".join(lines))

    def test_masking_twice_restores(self) -> None:
        payload, mask = os.urandom(70000), os.urandom(4)
        frame = bytearray(b"\x82\xff" + bytes(8) + mask + payload)
        masking.mask_in_place(frame, 14, mask)
        self.assertNotEqual(bytes(frame[14:]), payload)
        masking.mask_in_place(frame, 14, mask)
        self.assertEqual(bytes(frame[14:]), payload)


class SmallPayloadTests(SynchronousTestCase):
    """
    Payloads of up to C{SMALL_PAYLOAD} bytes are masked as Python integers:
    the bytes RFC 6455 asks for, at every length and with any key, and
    without the NVX masker; larger ones by the masker.
    """

    def masked(self, header: bytes, payload: bytes, mask: bytes) -> bytes:
        frame = bytearray(header + mask + payload)
        masking.mask_in_place(frame, len(header) + 4, mask)
        self.assertEqual(bytes(frame[: len(header) + 4]), header + mask)
        return bytes(frame[len(header) + 4 :])

    def test_every_length(self) -> None:
        """Each length 0..512 (and past it), with random keys and an edge key each."""
        self.assertEqual(masking.SMALL_PAYLOAD, 512)
        for length in range(masking.SMALL_PAYLOAD + 9):
            for mask in (os.urandom(4), os.urandom(4), b"\xff\x00\x80\x01"):
                payload = os.urandom(length)
                self.assertEqual(
                    self.masked(b"\x82\x85", payload, mask),
                    reference_mask(payload, mask),
                    (length, mask),
                )

    @settings(max_examples=500, deadline=None)
    @given(
        payload=st.binary(max_size=masking.SMALL_PAYLOAD),
        mask=st.binary(min_size=4, max_size=4),
        header=st.sampled_from([b"", b"\x82\x85", b"\x82\xfe\x01\x00"]),
    )
    def test_same_as_autobahns_masker(self, payload: bytes, mask: bytes, header: bytes) -> None:
        """The same bytes as Autobahn's own masker (and as the RFC's loop) for any payload and key."""
        expected = python_masker(mask, len(payload)).process(payload) if payload else b""
        self.assertEqual(self.masked(header, payload, mask), expected)
        self.assertEqual(expected, reference_mask(payload, mask))

    def test_masker_only_past_the_bound(self) -> None:
        """The NVX masker is made only for a payload larger than C{SMALL_PAYLOAD}."""
        made: List[Any] = []
        nvx = masking._nvx
        assert nvx is not None, "Autobahn was installed without NVX"

        def new(mask: Any) -> Any:
            made.append(mask)
            return nvx.new(mask)

        self.patch(masking, "_nvx", nvx._replace(new=new))
        for length in (0, 1, masking.SMALL_PAYLOAD):
            self.masked(b"\x82\x85", bytes(length), b"abcd")
        self.assertEqual(made, [])
        payload = os.urandom(masking.SMALL_PAYLOAD + 1)
        self.assertEqual(
            self.masked(b"\x82\xfe\x02\x01", payload, b"abcd"), reference_mask(payload, b"abcd")
        )
        self.assertEqual(len(made), 1)
