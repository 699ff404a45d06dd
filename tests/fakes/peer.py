"""
The peer proxy at the other end of the tunnel, as our L{Tunnel}'s session
sees it: L{FakePeer} records every record the session sends, and the record
builders (L{ctl}, L{service_ids}, L{data}) write what the peer sends.
"""

from __future__ import annotations

from typing import List

from aws_localproxy.protocol.wire import (
    Message,
    control_message,
    decode_all,
    encode_message,
)


class FakePeer:
    """The peer: records every record a session sends (through an unpaced scheduler)."""

    def __init__(self) -> None:
        self.records: List[bytes] = []

    def send_record(self, record: bytes) -> None:
        self.records.append(record)

    def messages(self) -> List[Message]:
        """Every record decoded; each must hold exactly one message."""
        out = []
        for record in self.records:
            decoded = decode_all(record)
            assert len(decoded) == 1, "a record holds %d messages" % (len(decoded),)
            out.append(decoded[0])
        return out

    def take(self) -> List[tuple]:
        """The messages sent since the last call, as L{summary} tuples."""
        result = [summary(m) for m in self.messages()]
        self.records.clear()
        return result


def summary(message: Message) -> tuple:
    """A message as (type name, serviceId, streamId, connectionId[, payload]) for comparisons."""
    name = Message.Type.Name(message.type) if message.type <= 7 else message.type
    if message.type == Message.DATA:
        return (name, message.serviceId, message.streamId, message.connectionId, message.payload)
    return (name, message.serviceId, message.streamId, message.connectionId)


def ctl(
    message_type: int,
    service_id: str = "",
    stream_id: int = 0,
    connection_id: int = 0,
    ignorable: bool = False,
) -> bytes:
    return control_message(
        message_type,
        stream_id=stream_id,
        service_id=service_id,
        connection_id=connection_id,
        ignorable=ignorable,
    )


def service_ids(*ids: str) -> bytes:
    return control_message(Message.SERVICE_IDS, available_service_ids=ids)


def data(service_id: str, stream_id: int, connection_id: int, payload: bytes) -> bytes:
    return encode_message(
        Message(
            type=Message.DATA,
            serviceId=service_id,
            streamId=stream_id,
            connectionId=connection_id,
            payload=payload,
        )
    )
