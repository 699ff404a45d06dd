"""
What a hostile or broken peer sends: records the protobuf encoder would
never produce, and the two lists the rules sort them into: those that end
the session with an error line (L{ENDS_SESSION}) and those a proxy may
ignore (L{IGNORED}), each for a V3 destination in transfer with services
C{ssh} and C{web}.
"""

from __future__ import annotations

import struct
from typing import List

from aws_localproxy.protocol.wire import Message, control_message
from tests.fakes.peer import ctl, data


def raw(message: Message) -> bytes:
    """A record for C{message} without the encoder's checks (so it can break the limits)."""
    body = message.SerializeToString()
    return struct.pack(">H", len(body)) + body


def raw_body(body: bytes) -> bytes:
    """A record for a message body given as bytes, whatever they hold."""
    return struct.pack(">H", len(body)) + body


def field_key(number: int, wire_type: int) -> bytes:
    """The key byte of protobuf field C{number} with C{wire_type} (fields under 16)."""
    return bytes(((number << 3) | wire_type,))


# Hand-made records the protobuf encoder would never produce.
_INVALID_UTF8_SERVICE_ID = raw_body(
    b"\x08\x01"  # type DATA
    + b"\x10\x01"  # streamId 1
    + b"\x22\x01x"  # payload "x"
    + field_key(5, 2)
    + b"\x02\xff\xfe"  # serviceId: not UTF-8
    + b"\x38\x01"  # connectionId 1
)
_TRUNCATED_VARINT = raw_body(b"\x08\x01\x10\xff\xff")
_FIELD_NUMBER_ZERO = raw_body(b"\x00\x01")
_LENGTH_PAST_RECORD = raw_body(b"\x08\x01\x22\x10abc")
DATA_WITH_EXTRA_FIELD = raw_body(
    Message(
        type=Message.DATA, streamId=1, serviceId="ssh", connectionId=1, payload=b"extra"
    ).SerializeToString()
    + field_key(15, 0)
    + b"\x01"
)
_HUGE_TYPE = raw_body(b"\x08\xff\xff\xff\xff\x07" + b"\x10\x01" + b"\x2a\x03ssh" + b"\x38\x01")

PARSE = "Could not parse web socket binary frame into message: "

#: (name, record, error text it ends the session with) for a destination in transfer.
ENDS_SESSION: List[tuple[str, bytes, str]] = [
    ("not protobuf", b"\x00\x03\xff\xff\xff", PARSE),
    ("truncated varint", _TRUNCATED_VARINT, PARSE),
    ("field number 0", _FIELD_NUMBER_ZERO, PARSE),
    ("length past the record", _LENGTH_PAST_RECORD, PARSE),
    ("service ID not UTF-8", _INVALID_UTF8_SERVICE_ID, PARSE),
    (
        "payload one byte over 63 KiB",
        raw(
            Message(
                type=Message.DATA,
                streamId=1,
                serviceId="ssh",
                connectionId=1,
                payload=b"x" * 64513,
            )
        ),
        PARSE + "payload of 64513 bytes exceeds the maximum of 64512",
    ),
    (
        "unknown type, not ignorable",
        ctl(42, "ssh", 1, 1),
        "Unrecognized message type received during control message handling "
        "during data transfer: 42",
    ),
    (
        "largest enum value, not ignorable",
        _HUGE_TYPE,
        "Unrecognized message type received during control message handling "
        "during data transfer: 2147483647",
    ),
    (
        "type UNKNOWN (0), not ignorable",
        ctl(Message.UNKNOWN, "ssh", 1, 1),
        "Unexpected message type received during control message handling during data transfer: 0",
    ),
    (
        "StreamStart with stream ID 0",
        ctl(Message.STREAM_START, "ssh", 0, 9),
        "No stream ID set for stream start message!",
    ),
    (
        "ConnectionStart with stream ID 0",
        ctl(Message.CONNECTION_START, "ssh", 0, 9),
        "No stream ID set for connection start message!",
    ),
]

#: (name, record) that the rules say may be ignored: a destination in transfer goes on.
IGNORED: List[tuple[str, bytes]] = [
    ("unknown type, ignorable", ctl(42, "ssh", 1, 1, ignorable=True)),
    ("type UNKNOWN, ignorable", ctl(Message.UNKNOWN, "ssh", 1, 1, ignorable=True)),
    ("DATA with stream ID 0", data("ssh", 0, 1, b"zero")),
    ("DATA of a stale stream", data("ssh", 7, 1, b"stale")),
    ("DATA of an unknown connection", data("ssh", 1, 99, b"nobody")),
    ("DATA of an unknown connection, one live", data("web", 1, 99, b"nobody")),
    ("DATA of an unknown service", data("rdp", 1, 1, b"nobody")),
    ("StreamReset with stream ID 0", ctl(Message.STREAM_RESET, "ssh", 0)),
    ("StreamReset of a stale stream", ctl(Message.STREAM_RESET, "ssh", 7)),
    ("ConnectionReset with stream ID 0", ctl(Message.CONNECTION_RESET, "ssh", 0, 1)),
    ("ConnectionReset of an unknown connection", ctl(Message.CONNECTION_RESET, "ssh", 1, 99)),
    ("ConnectionReset of an unknown service", ctl(Message.CONNECTION_RESET, "rdp", 1, 1)),
    ("ConnectionStart of a stale stream", ctl(Message.CONNECTION_START, "ssh", 7, 5)),
    ("an empty record", b"\x00\x00"),
    (
        "a second SERVICE_IDS naming a service",
        control_message(
            Message.SERVICE_IDS, service_id="ssh", available_service_ids=["x", "y", "z"]
        ),
    ),
]
