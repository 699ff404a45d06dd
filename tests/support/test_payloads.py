"""
The payload helpers of L{tests.support.payloads}: payloads in which no block
repeats, and a failure that says where and how a stream was corrupted.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.support.payloads import (
    STREAM_BLOCK,
    assert_same_bytes,
    describe_difference,
    unique_payload,
    unique_stream,
)

RECORD = 16384


class UniquePayloadTests(SynchronousTestCase):
    def test_size_and_seed(self) -> None:
        """The same seed gives the same bytes; another seed other bytes."""
        self.assertEqual(len(unique_payload(12345)), 12345)
        self.assertEqual(unique_payload(1000, seed=3), unique_payload(1000, seed=3))
        self.assertNotEqual(unique_payload(1000, seed=3), unique_payload(1000, seed=4))

    def test_no_block_repeats(self) -> None:
        """No 8-byte block of a megabyte repeats, so no record can stand in for another."""
        data = unique_payload(1 << 20)
        blocks = [data[i : i + 8] for i in range(0, len(data), 8)]
        self.assertEqual(len(set(blocks)), len(blocks))


class DescribeDifferenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sent = unique_payload(4 * RECORD)
        self.records = [self.sent[i : i + RECORD] for i in range(0, len(self.sent), RECORD)]

    def test_same(self) -> None:
        """Equal bytes: nothing to say, and the assertion passes."""
        self.assertIsNone(describe_difference(self.sent, bytes(self.sent)))
        assert_same_bytes(self, self.sent, bytes(self.sent))

    def test_duplicated(self) -> None:
        """The first record re-sent in place of the third: a repeat of offset 0 at its offset."""
        r = self.records
        message = describe_difference(r[0] + r[1] + r[0] + r[3], self.sent)
        assert message is not None
        self.assertIn(f"first difference at offset {2 * RECORD}", message)
        self.assertIn("from offset 0 again (duplicated", message)

    def test_dropped(self) -> None:
        """The second record lost: a skip of one record at its offset."""
        r = self.records
        message = describe_difference(r[0] + r[2] + r[3], self.sent)
        assert message is not None
        self.assertIn(f"first difference at offset {RECORD}", message)
        self.assertIn(f"from offset {2 * RECORD}: {RECORD} skipped (dropped", message)

    def test_reordered(self) -> None:
        """Two records swapped: the first difference is a skip ahead."""
        r = self.records
        message = describe_difference(r[0] + r[2] + r[1] + r[3], self.sent)
        assert message is not None
        self.assertIn(f"first difference at offset {RECORD}", message)
        self.assertIn("reordered", message)

    def test_altered(self) -> None:
        """A flipped byte: bytes that were never sent, at that byte's offset."""
        altered = bytearray(self.sent)
        altered[1000] ^= 0xFF
        message = describe_difference(bytes(altered), self.sent)
        assert message is not None
        self.assertIn("first difference at offset 1000", message)
        self.assertIn("not in the expected stream (altered)", message)

    def test_truncated_and_extra(self) -> None:
        """A short stream says how much is missing; a long one how much is extra."""
        short = describe_difference(self.sent[:100], self.sent)
        long = describe_difference(self.sent + b"!!", self.sent)
        assert short is not None and long is not None
        self.assertIn(f"truncated, the {len(self.sent) - 100} bytes from offset 100", short)
        self.assertIn(f"2 extra bytes from offset {len(self.sent)}", long)

    def test_assertion_fails_with_the_description(self) -> None:
        """The assertion raises the test case's failure with the same line."""
        r = self.records
        corrupted = r[0] + r[1] + r[0] + r[3]
        error = self.assertRaises(
            self.failureException, assert_same_bytes, self, corrupted, self.sent
        )
        self.assertEqual(str(error), describe_difference(corrupted, self.sent))


class UniqueStreamTests(SynchronousTestCase):
    def test_any_cut_is_the_same_stream(self) -> None:
        """Cuts at any offsets, across blocks, put together are the stream cut whole."""
        whole = unique_stream(0, 3 * STREAM_BLOCK + 100)
        cuts = [0, 1, 1000, STREAM_BLOCK - 1, STREAM_BLOCK + 7, 2 * STREAM_BLOCK, len(whole)]
        pieces = [unique_stream(a, b - a) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        assert_same_bytes(self, b"".join(pieces), whole)

    def test_blocks_differ(self) -> None:
        """No block repeats another, nor the stream of another seed."""
        whole = unique_stream(0, 4 * STREAM_BLOCK)
        blocks = {whole[i : i + 8] for i in range(0, len(whole), 8)}
        self.assertEqual(len(blocks), len(whole) // 8)
        self.assertNotEqual(unique_stream(0, 64, seed=1), whole[:64])
