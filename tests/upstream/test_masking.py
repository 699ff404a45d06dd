"""Tests of aws_localproxy.upstream.masking: in-place client-frame masking."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.upstream import masking


def reference_mask(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 section 5.3, byte by byte."""
    return bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


SIZES = (0, 1, 3, 4, 5, 15, 16, 17, 31, 33, 125, 126, 1000, 65536, 131076)


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
