"""
Tests for L{aws_localproxy.protocol.wire}: the length-prefixed protobuf record stream.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.wire import (
    DEFAULT_LIMITS,
    Limits,
    MalformedMessage,
    Message,
    MessageDecoder,
    MessageTooLarge,
    PayloadTooLarge,
    WireError,
    control_message,
    decode_all,
    encode_data,
    encode_message,
    join_records,
    type_name,
)

STREAM_START_SSH1 = bytes.fromhex("000c080210012a04737368313801")
SERVICE_IDS_SSH1 = bytes.fromhex("00080805320473736831")


def prefixed(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def reference_data(service_id, stream_id, connection_id, payload) -> bytes:
    """A DATA record the plain protobuf way."""
    return prefixed(
        Message(
            type=Message.DATA,
            serviceId=service_id,
            streamId=stream_id,
            connectionId=connection_id,
            payload=payload,
        ).SerializeToString()
    )


class ExampleTests(SynchronousTestCase):
    """Byte examples of real records, as the reference encodes them."""

    def test_stream_start_encode(self) -> None:
        """A V3 StreamStart for ssh1, stream 1, connection 1."""
        self.assertEqual(
            control_message(Message.STREAM_START, stream_id=1, service_id="ssh1", connection_id=1),
            STREAM_START_SSH1,
        )

    def test_service_ids_encode(self) -> None:
        """SERVICE_IDS ["ssh1"]."""
        self.assertEqual(
            control_message(Message.SERVICE_IDS, available_service_ids=["ssh1"]), SERVICE_IDS_SSH1
        )

    def test_examples_decode(self) -> None:
        """Both examples decode to the fields they encode."""
        start, ids = decode_all(STREAM_START_SSH1 + SERVICE_IDS_SSH1)
        self.assertEqual(
            (start.type, start.streamId, start.serviceId, start.connectionId),
            (Message.STREAM_START, 1, "ssh1", 1),
        )
        self.assertEqual(ids.type, Message.SERVICE_IDS)
        self.assertEqual(list(ids.availableServiceIds), ["ssh1"])

    def test_defaults_omitted(self) -> None:
        """Default values are not on the wire; ignorable=False never is."""
        self.assertEqual(
            control_message(Message.STREAM_RESET, stream_id=2), b"\x00\x04\x08\x03\x10\x02"
        )

    def test_type_name(self) -> None:
        """Known types by name, others by number."""
        self.assertEqual(type_name(Message.CONNECTION_RESET), "CONNECTION_RESET")
        self.assertEqual(type_name(42), "TYPE_42")


class DecoderTests(SynchronousTestCase):
    """MessageDecoder framing, limits and errors."""

    def test_several_in_one_payload(self) -> None:
        """Every message of a payload is returned, in order."""
        records = [control_message(Message.STREAM_RESET, stream_id=i) for i in range(1, 6)]
        decoded = MessageDecoder().feed(b"".join(records))
        self.assertEqual([m.streamId for m in decoded], [1, 2, 3, 4, 5])

    def test_split_at_every_position(self) -> None:
        """Two records cut in two at any byte decode the same, nothing early."""
        stream = STREAM_START_SSH1 + reference_data("ssh1", 1, 1, b"x" * 300)
        for cut in range(len(stream) + 1):
            decoder = MessageDecoder()
            first = decoder.feed(stream[:cut])
            second = decoder.feed(stream[cut:])
            expected_first = 0 if cut < len(STREAM_START_SSH1) else 1
            if cut == len(stream):
                expected_first = 2
            self.assertEqual(len(first), expected_first, cut)
            self.assertEqual(len(first) + len(second), 2)
            self.assertEqual(decoder.pending_bytes, 0)
            self.assertEqual((first + second)[1].payload, b"x" * 300)

    def test_byte_by_byte(self) -> None:
        """Fed one byte at a time, a record is returned with its last byte."""
        decoder = MessageDecoder()
        out = []
        for i in range(len(STREAM_START_SSH1)):
            out.append(decoder.feed(STREAM_START_SSH1[i : i + 1]))
            self.assertEqual(decoder.pending_bytes, 0 if out[-1] else i + 1)
        self.assertEqual([len(o) for o in out], [0] * 13 + [1])

    def test_input_types(self) -> None:
        """bytes, bytearray and memoryview are all accepted."""
        decoder = MessageDecoder()
        self.assertEqual(len(decoder.feed(bytearray(STREAM_START_SSH1[:5]))), 0)
        self.assertEqual(len(decoder.feed(memoryview(STREAM_START_SSH1[5:]))), 1)

    def test_zero_length_is_unknown(self) -> None:
        """A zero-length record is a message of type UNKNOWN."""
        (message,) = MessageDecoder().feed(b"\x00\x00")
        self.assertEqual(message.type, Message.UNKNOWN)
        self.assertFalse(message.ignorable)

    def test_unknown_type_kept(self) -> None:
        """A type newer than the schema is kept as its number."""
        (message,) = MessageDecoder().feed(prefixed(b"\x08\x2a\x18\x01"))
        self.assertEqual(message.type, 42)
        self.assertTrue(message.ignorable)

    def test_message_too_large(self) -> None:
        """A length prefix over max_message_size fails at once, before the body arrives."""
        decoder = MessageDecoder(Limits(max_message_size=100, max_payload_size=50))
        self.assertRaises(MessageTooLarge, decoder.feed, b"\x00\x65")
        self.assertEqual(decoder.pending_bytes, 0)

    def test_payload_too_large(self) -> None:
        """A DATA payload over max_payload_size is refused."""
        decoder = MessageDecoder(Limits(max_message_size=1000, max_payload_size=10))
        self.assertEqual(len(decoder.feed(reference_data("a", 1, 1, b"x" * 10))), 1)
        self.assertRaises(PayloadTooLarge, decoder.feed, reference_data("a", 1, 1, b"x" * 11))

    def test_default_limits_accept_largest(self) -> None:
        """A full 64512-byte DATA record fits the default limits."""
        record = reference_data("service", 2**31 - 1, 2**32 - 1, b"\xff" * 64512)
        (message,) = MessageDecoder().feed(record)
        self.assertEqual(len(message.payload), 64512)

    def test_malformed(self) -> None:
        """Records that are not a Message raise MalformedMessage."""
        for body in (b"\xff\xff", b"\x08", b"\x22\x05ab", b"\x2a\x02\xff\xfe", b"\x0f"):
            decoder = MessageDecoder()
            self.assertRaises(MalformedMessage, decoder.feed, prefixed(body))

    def test_malformed_after_buffered(self) -> None:
        """A malformed record completing a buffered one raises cleanly too."""
        decoder = MessageDecoder()
        record = STREAM_START_SSH1 + prefixed(b"\xff\xff")
        decoder.feed(record[:15])
        self.assertRaises(MalformedMessage, decoder.feed, record[15:])

    def test_refuses_after_error(self) -> None:
        """After an error the decoder raises the same error for any further input."""
        decoder = MessageDecoder()
        error = self.assertRaises(MalformedMessage, decoder.feed, prefixed(b"\xff\xff"))
        again = self.assertRaises(MalformedMessage, decoder.feed, STREAM_START_SSH1)
        self.assertIs(again, error)
        self.assertEqual(decoder.pending_bytes, 0)

    def test_no_message_from_bad_record_on(self) -> None:
        """Messages before a bad record in the same payload are lost with it (session over)."""
        decoder = MessageDecoder()
        self.assertRaises(WireError, decoder.feed, STREAM_START_SSH1 + prefixed(b"\xff\xff"))

    def test_decode_all_incomplete(self) -> None:
        """decode_all refuses a truncated record."""
        self.assertRaises(WireError, decode_all, STREAM_START_SSH1[:-1])

    def test_errors_are_wire_errors(self) -> None:
        """Every codec error is a WireError."""
        for cls in (MessageTooLarge, PayloadTooLarge, MalformedMessage):
            self.assertTrue(issubclass(cls, WireError))


class EncoderTests(SynchronousTestCase):
    """encode_message and encode_data."""

    def test_encode_message(self) -> None:
        """encode_message is the length prefix plus protobuf serialization."""
        message = Message(type=Message.CONNECTION_RESET, streamId=3, serviceId="x", connectionId=9)
        self.assertEqual(encode_message(message), prefixed(message.SerializeToString()))

    def test_encode_message_payload_too_large(self) -> None:
        """encode_message refuses a payload over max_payload_size."""
        message = Message(type=Message.DATA, streamId=1, payload=b"x" * 64513)
        self.assertRaises(PayloadTooLarge, encode_message, message)

    def test_encode_message_too_large(self) -> None:
        """encode_message refuses a record over max_message_size."""
        message = Message(type=Message.SERVICE_IDS, availableServiceIds=["x" * 200])
        self.assertRaises(MessageTooLarge, encode_message, message, Limits(100, 50))

    def test_encode_data_identical(self) -> None:
        """encode_data is byte-identical to protobuf for all field shapes."""
        cases = [
            ("", 0, 0, b"a"),
            ("ssh", 1, 1, b"hello"),
            ("ssh1", 1, 0, b"x" * 200),
            ("é-service", 2**31 - 1, 2**32 - 1, b"\x00" * 64512),
            ("s", -5, 300, b"neg"),
            ("", 128, 16384, b"y" * 127),
        ]
        for case in cases:
            (record,) = encode_data(*case)
            self.assertEqual(record, reference_data(*case), case[:3])

    def test_encode_data_split(self) -> None:
        """encode_data splits at 64512 bytes, one record per chunk."""
        payload = bytes(range(256)) * 600  # 153600 bytes
        records = encode_data("ssh", 3, 2, payload)
        self.assertEqual(len(records), 3)
        chunks = [payload[:64512], payload[64512:129024], payload[129024:]]
        for record, chunk in zip(records, chunks, strict=True):
            self.assertEqual(record, reference_data("ssh", 3, 2, chunk))
        self.assertEqual(b"".join(m.payload for m in decode_all(join_records(records))), payload)

    def test_encode_data_exact_multiple(self) -> None:
        """A payload of exactly two chunks gives two records."""
        self.assertEqual(len(encode_data("a", 1, 1, b"z" * 129024)), 2)

    def test_encode_data_empty(self) -> None:
        """No bytes, no record."""
        self.assertEqual(encode_data("a", 1, 1, b""), [])

    def test_encode_data_limits(self) -> None:
        """Smaller limits split smaller; a record over max_message_size is refused."""
        records = encode_data("a", 1, 1, b"q" * 25, Limits(1000, 10))
        self.assertEqual([len(m.payload) for m in decode_all(b"".join(records))], [10, 10, 5])
        self.assertRaises(MessageTooLarge, encode_data, "x" * 50, 1, 1, b"q" * 40, Limits(60, 40))

    def test_encode_data_inputs(self) -> None:
        """bytearray and memoryview payloads (also non-byte formats) encode the same."""
        expected = encode_data("a", 1, 1, b"abcd")
        self.assertEqual(encode_data("a", 1, 1, bytearray(b"abcd")), expected)
        self.assertEqual(encode_data("a", 1, 1, memoryview(b"abcd")), expected)
        self.assertEqual(encode_data("a", 1, 1, memoryview(b"abcd").cast("H")), expected)


# -- property tests ----------------------------------------------------------------

_service_id = st.text(max_size=20)
_message = st.builds(
    Message,
    type=st.integers(min_value=0, max_value=12),
    streamId=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    ignorable=st.booleans(),
    payload=st.binary(max_size=300),
    serviceId=_service_id,
    availableServiceIds=st.lists(_service_id, max_size=3),
    connectionId=st.integers(min_value=0, max_value=2**32 - 1),
)


class PropertyTests(SynchronousTestCase):
    """Round trips and robustness over generated input."""

    @settings(max_examples=200, deadline=None)
    @given(st.lists(_message, max_size=8), st.lists(st.integers(min_value=0), max_size=10))
    def test_round_trip_any_cuts(self, messages, cuts) -> None:
        """Any valid messages, encoded and cut anywhere, decode to the same messages."""
        stream = b"".join(encode_message(m) for m in messages)
        points = sorted({c % (len(stream) + 1) for c in cuts})
        decoder = MessageDecoder()
        decoded = []
        start = 0
        for point in points + [len(stream)]:
            decoded.extend(decoder.feed(stream[start:point]))
            start = point
        self.assertEqual(decoded, messages)
        self.assertEqual(decoder.pending_bytes, 0)

    @settings(max_examples=100, deadline=None)
    @given(
        _service_id,
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
        st.integers(min_value=0, max_value=2**32 - 1),
        st.binary(max_size=3000),
        st.integers(min_value=1, max_value=1000),
    )
    def test_encode_data_round_trip(self, service_id, stream_id, connection_id, payload, step):
        """encode_data matches protobuf per chunk and carries the payload whole."""
        limits = Limits(max_message_size=DEFAULT_LIMITS.max_message_size, max_payload_size=step)
        records = encode_data(service_id, stream_id, connection_id, payload, limits)
        chunks = [payload[i : i + step] for i in range(0, len(payload), step)]
        self.assertEqual(
            records, [reference_data(service_id, stream_id, connection_id, c) for c in chunks]
        )

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=6))
    def test_random_bytes(self, payloads) -> None:
        """Arbitrary bytes never raise anything but WireError."""
        decoder = MessageDecoder(Limits(max_message_size=150, max_payload_size=100))
        for payload in payloads:
            try:
                decoder.feed(payload)
            except WireError:
                pass

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(min_size=0, max_size=60), max_size=6))
    def test_random_records(self, bodies) -> None:
        """Well-framed random bodies either decode or raise MalformedMessage."""
        stream = b"".join(prefixed(b) for b in bodies)
        try:
            MessageDecoder().feed(stream)
        except MalformedMessage:
            pass
