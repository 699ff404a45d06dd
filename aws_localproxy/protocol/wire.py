# -*- test-case-name: tests.protocol.test_wire -*-
"""
The tunnel's wire format: length-prefixed protobuf ``Message`` records.

A WebSocket payload is not a message: the service may put several tunnel
messages in one WebSocket frame or split one message across frames, so the
receiving side treats the binary payloads as one continuous byte stream of
``[2-byte big-endian length][serialized Message]`` records.

This module turns that stream into ``Message`` objects and back, enforces the
size limits of the settings, and raises only its own errors (``WireError``
and subclasses), so a caller can tell a peer's bad bytes from its own bugs.

It is the hot path of the proxy: incoming records are parsed in place
through a ``memoryview`` of the input, and only a record that straddles two
inputs is copied (once, into a small buffer); outgoing DATA records
are assembled with a single join instead of building and re-copying a
protobuf object.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, List, Sequence

from google.protobuf.message import DecodeError

from aws_localproxy._proto.Message_pb2 import Message

__all__ = [
    "Message",
    "Limits",
    "DEFAULT_LIMITS",
    "WireError",
    "MessageTooLarge",
    "PayloadTooLarge",
    "MalformedMessage",
    "MessageDecoder",
    "encode_message",
    "encode_data",
    "DataFields",
    "control_message",
    "type_name",
]

#: The only length-prefix size the protocol defines (``message.data_length_size``).
LENGTH_PREFIX_SIZE = 2
_PREFIX = struct.Struct(">H")


@dataclass(frozen=True)
class Limits:
    """
    Size limits of the wire format, from the settings' ``message.*`` keys.

    ``max_message_size`` bounds one serialized ``Message`` (the 2-byte prefix
    cannot express more than 65535 anyway); ``max_payload_size`` bounds the
    payload of one DATA message, the protocol's 63 KiB.
    """

    max_message_size: int = 65536
    max_payload_size: int = 64512

    def __post_init__(self) -> None:
        if self.max_payload_size < 1:
            raise ValueError("max_payload_size must be at least 1")
        if self.max_message_size < self.max_payload_size:
            raise ValueError("max_message_size must not be smaller than max_payload_size")


DEFAULT_LIMITS = Limits()


class WireError(Exception):
    """The bytes from the peer are not a valid tunnel message stream."""


class MessageTooLarge(WireError):
    """A length prefix, or an outgoing message, exceeds ``max_message_size``."""


class PayloadTooLarge(WireError):
    """A DATA payload exceeds ``max_payload_size``."""


class MalformedMessage(WireError):
    """A length-delimited record does not parse as a ``Message``."""


def type_name(message_type: int) -> str:
    """The protocol's name for a message type, or ``TYPE_<n>`` when unknown."""
    try:
        return str(Message.Type.Name(message_type))
    except ValueError:
        return "TYPE_%d" % (message_type,)


class MessageDecoder:
    """
    Incremental decoder: feed it WebSocket payloads, get complete messages.

    A record split across feeds is kept until its last byte arrives.  After a
    ``WireError`` the stream cannot be resynchronised (the length prefixes no
    longer line up), so the decoder refuses further input: the session it
    belongs to is over.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._max_message = limits.max_message_size
        self._max_payload = limits.max_payload_size
        self._buffer = bytearray()
        self._failed: WireError | None = None
        #: Bytes fed and messages decoded so far (over every L{reset}), for metrics.
        self.bytes_fed = 0
        self.messages_decoded = 0

    @property
    def pending_bytes(self) -> int:
        """How many bytes of an incomplete record are waiting for more input."""
        return len(self._buffer)

    def reset(self) -> None:
        """A new stream starts (a new session): nothing pending, nothing failed; the counts go on."""
        self._buffer = bytearray()
        self._failed = None

    def feed(self, data: bytes | bytearray | memoryview) -> List[Message]:
        """
        Add bytes from the peer and return the messages they complete, in order.

        @raise WireError: the stream is invalid; no message from the invalid
            record on is returned.
        """
        if self._failed is not None:
            raise self._failed
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        end = view.nbytes
        self.bytes_fed += end
        messages: List[Message] = []
        count = offset = 0
        try:
            if self._buffer:
                offset = self._complete_pending(view, messages)
                if offset < 0:
                    return messages
                count = 1
            # The records that lie whole in this input, parsed where they lie
            # (the decoder's hot loop: no call but the parse per record).
            max_message, max_payload = self._max_message, self._max_payload
            while end - offset >= LENGTH_PREFIX_SIZE:
                length = view[offset] << 8 | view[offset + 1]
                if length > max_message:
                    raise self._too_large(length)
                start = offset + LENGTH_PREFIX_SIZE
                stop = start + length
                if stop > end:
                    break
                message = Message()
                try:
                    message.ParseFromString(view[start:stop])
                except DecodeError as error:
                    raise _malformed(length, error) from None
                if length > max_payload:  # (else the payload cannot be over it)
                    self._check_payload(message)
                messages.append(message)
                count += 1
                offset = stop
        except WireError as error:
            self._failed = error
            self._buffer = bytearray()
            view.release()
            raise
        if offset < end:
            # Only the start of one record is left: copy that, not the input.
            self._buffer = bytearray(view[offset:])
        view.release()
        self.messages_decoded += count
        return messages

    def _complete_pending(self, view: memoryview, messages: List[Message]) -> int:
        """
        Finish the record left over from earlier input with the first bytes of
        C{view}.  Return the offset in C{view} after it, or -1 if C{view} did
        not complete it (then everything is buffered).
        """
        buffer = self._buffer
        offset = 0
        if len(buffer) < LENGTH_PREFIX_SIZE:
            offset = LENGTH_PREFIX_SIZE - len(buffer)
            buffer += view[:offset]
            if len(buffer) < LENGTH_PREFIX_SIZE:
                return -1
        length: int = _PREFIX.unpack_from(buffer)[0]
        if length > self._max_message:
            raise self._too_large(length)
        needed = LENGTH_PREFIX_SIZE + length - len(buffer)
        buffer += view[offset : offset + needed]
        if len(buffer) < LENGTH_PREFIX_SIZE + length:
            return -1
        record = memoryview(buffer)
        try:
            message = _parse(record[LENGTH_PREFIX_SIZE:])
        finally:
            record.release()
        self._check_payload(message)
        messages.append(message)
        self._buffer = bytearray()
        return offset + needed

    def _too_large(self, length: int) -> MessageTooLarge:
        return MessageTooLarge(
            "message length %d exceeds the maximum of %d" % (length, self._max_message)
        )

    def _check_payload(self, message: Message) -> None:
        if len(message.payload) > self._max_payload:
            raise PayloadTooLarge(
                "payload of %d bytes exceeds the maximum of %d"
                % (len(message.payload), self._max_payload)
            )


def _malformed(length: int, error: DecodeError) -> MalformedMessage:
    return MalformedMessage(
        "could not parse a %d-byte record as a tunnel message: %s" % (length, error)
    )


def _parse(record: memoryview) -> Message:
    message = Message()
    try:
        message.ParseFromString(record)
    except DecodeError as error:
        raise _malformed(len(record), error) from None
    return message


def encode_message(message: Message, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """
    Serialize one message with its length prefix.

    @raise PayloadTooLarge: a DATA payload over ``max_payload_size``; DATA
        should be split with L{encode_data} instead.
    @raise MessageTooLarge: the record would not fit the limits.
    """
    if len(message.payload) > limits.max_payload_size:
        raise PayloadTooLarge(
            "payload of %d bytes exceeds the maximum of %d"
            % (len(message.payload), limits.max_payload_size)
        )
    body: bytes = message.SerializeToString()
    if len(body) > min(limits.max_message_size, 0xFFFF):
        raise MessageTooLarge(
            "message of %d bytes exceeds the maximum of %d" % (len(body), limits.max_message_size)
        )
    return _PREFIX.pack(len(body)) + body


def control_message(
    message_type: int,
    stream_id: int = 0,
    service_id: str = "",
    connection_id: int = 0,
    available_service_ids: Sequence[str] = (),
    ignorable: bool = False,
) -> bytes:
    """
    Encode a control (non-DATA) message with its length prefix.

    @raise MessageTooLarge: the record would not fit the default limits
        (only a long list of service IDs could do that).
    """
    message = Message(
        type=message_type,  # type: ignore[arg-type]
        streamId=stream_id,
        serviceId=service_id,
        connectionId=connection_id,
    )
    # Only set what is there: each keyword costs time, and control messages
    # are sent per connection.
    if available_service_ids:
        message.availableServiceIds.extend(available_service_ids)
    if ignorable:
        message.ignorable = True
    body: bytes = message.SerializeToString()
    if len(body) > _CONTROL_MAX:
        raise MessageTooLarge(
            "message of %d bytes exceeds the maximum of %d" % (len(body), _CONTROL_MAX)
        )
    return _PREFIX.pack(len(body)) + body


_CONTROL_MAX = min(DEFAULT_LIMITS.max_message_size, 0xFFFF)


# Field keys (field number << 3 | wire type) of the fields a DATA record uses.
_TYPE_DATA = b"\x08\x01"  # field 1, varint, DATA (1)
_KEY_STREAM_ID = 0x10  # field 2, varint
_KEY_PAYLOAD = 0x22  # field 4, length-delimited
_KEY_SERVICE_ID = 0x2A  # field 5, length-delimited
_KEY_CONNECTION_ID = 0x38  # field 7, varint


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int32_varint(value: int) -> bytes:
    # Protobuf encodes negative int32 as a 10-byte two's-complement varint.
    return _varint(value & 0xFFFFFFFFFFFFFFFF if value < 0 else value)


class DataFields:
    """
    The fields every DATA record of one connection repeats, encoded once.

    A connection sends many DATA records with the same stream, service and
    connection IDs; only the payload changes.  Encoding the fixed part once
    makes each record one C{join}: prefix, head, payload (from one or more
    chunks, copied once) and tail.  The bytes are identical to what protobuf
    serializes for the same fields.
    """

    __slots__ = ("_head", "_tail", "_fixed", "_last_length", "_last_header", "_last_size")

    def __init__(self, service_id: str, stream_id: int, connection_id: int) -> None:
        head = _TYPE_DATA
        if stream_id:
            head += bytes((_KEY_STREAM_ID,)) + _int32_varint(stream_id)
        tail = b""
        if service_id:
            encoded_sid = service_id.encode("utf-8")
            tail += bytes((_KEY_SERVICE_ID,)) + _varint(len(encoded_sid)) + encoded_sid
        if connection_id:
            tail += bytes((_KEY_CONNECTION_ID,)) + _varint(connection_id)
        self._head = head + bytes((_KEY_PAYLOAD,))
        self._tail = tail
        self._fixed = len(self._head) + len(tail)
        #: The header of the last record made, by payload length: a connection's
        #: records often repeat a length (full quanta of a transfer, an echo's
        #: replies), and then the header is not made again.
        self._last_length = -1
        self._last_header = b""
        self._last_size = 0

    def record(self, *chunks: bytes | memoryview) -> bytes:
        """One DATA record whose payload is C{chunks} joined (the caller keeps it within limits)."""
        return b"".join(self.parts(chunks))

    def parts(self, chunks: Sequence[bytes | memoryview]) -> List[bytes | memoryview]:
        """L{record}'s pieces, unjoined, for a caller that joins several records at once."""
        length = 0
        for chunk in chunks:
            length += len(chunk)
        return self.record_parts(chunks, length)[0]

    def record_parts(
        self, chunks: Sequence[bytes | memoryview], length: int
    ) -> tuple[List[bytes | memoryview], int]:
        """
        The pieces of one record whose payload is C{chunks} (C{length} bytes in
        all), unjoined -- its header (length prefix, fixed fields, payload
        length), the chunks, its fixed tail -- and the record's size, prefix
        included.  Called once per DATA record sent: the payload's length is
        encoded here without a call for any payload the limits allow.
        """
        if length != self._last_length:
            if length < 0x80:
                size_field, width = bytes((length,)), 1
            elif length < 0x4000:
                size_field, width = bytes(((length & 0x7F) | 0x80, length >> 7)), 2
            elif length < 0x200000:
                high = ((length >> 7) & 0x7F) | 0x80
                size_field, width = bytes(((length & 0x7F) | 0x80, high, length >> 14)), 3
            else:
                size_field = _varint(length)
                width = len(size_field)
            size = self._fixed + width + length
            self._last_length = length
            self._last_header = _PREFIX.pack(size) + self._head + size_field
            self._last_size = LENGTH_PREFIX_SIZE + size
        return [self._last_header, *chunks, self._tail], self._last_size

    def overhead(self, payload_length: int) -> int:
        """Bytes a record adds around a payload of C{payload_length}, prefix included."""
        return LENGTH_PREFIX_SIZE + self._fixed + len(_varint(payload_length))


def encode_data(
    service_id: str,
    stream_id: int,
    connection_id: int,
    payload: bytes | bytearray | memoryview,
    limits: Limits = DEFAULT_LIMITS,
) -> List[bytes]:
    """
    Encode local bytes as DATA records, one per ``max_payload_size`` chunk.

    Each returned item is one complete record (prefix included) and is sent as
    one WebSocket message.  An empty payload gives no records: DATA without
    bytes carries nothing.
    """
    view = memoryview(payload)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    total = len(view)
    if not total:
        return []
    fields = DataFields(service_id, stream_id, connection_id)
    step = limits.max_payload_size
    records: List[bytes] = []
    for start in range(0, total, step):
        chunk = view[start : start + step]
        size = fields.overhead(len(chunk)) - LENGTH_PREFIX_SIZE + len(chunk)
        if size > min(limits.max_message_size, 0xFFFF):
            raise MessageTooLarge(
                "DATA record of %d bytes exceeds the maximum of %d"
                % (size, limits.max_message_size)
            )
        records.append(fields.record(chunk))
    return records


def decode_all(data: bytes, limits: Limits = DEFAULT_LIMITS) -> List[Message]:
    """
    Decode a byte string that holds only complete records.

    @raise WireError: invalid, or a record is cut short.
    """
    decoder = MessageDecoder(limits)
    messages = decoder.feed(data)
    if decoder.pending_bytes:
        raise WireError("%d bytes of an incomplete record remain" % (decoder.pending_bytes,))
    return messages


def join_records(records: Iterable[bytes]) -> bytes:
    """Concatenate encoded records, e.g. to batch them into one WebSocket message."""
    return b"".join(records)
