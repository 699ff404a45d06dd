# -*- test-case-name: tests.tunnelservice.test_rules -*-
"""
The protocol rules the service enforces on what a client sends.

The V3 protocol guide lists what a tunnel client may not send; the real
service closes the WebSocket of a client that does.  This module only
decides (a reason, or C{None}); the data plane does the closing.
"""

from __future__ import annotations

from typing import Collection, Optional

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.wire import Message, type_name

#: Message types tied to a stream: they need a non-zero stream ID.
_STREAM_TYPES = frozenset(
    (
        Message.DATA,
        Message.STREAM_START,
        Message.STREAM_RESET,
        Message.CONNECTION_START,
        Message.CONNECTION_RESET,
    )
)

#: Only the service sends these.
_SERVICE_ONLY = frozenset((Message.SERVICE_IDS, Message.SESSION_RESET))


def violation(mode: Mode, message: Message, services: Collection[str]) -> Optional[str]:
    """
    Why C{message}, sent by a client of C{mode} on a tunnel with
    C{services}, breaks the protocol; C{None} if it does not.

    An empty service ID is the V1 format and always allowed; a V1 client
    has no other way to address the tunnel's single service.
    """
    kind = message.type
    if kind == Message.UNKNOWN:
        return "Message type must be set"
    if kind in _SERVICE_ONLY:
        return "%s may only be sent by the service" % (type_name(kind),)
    if kind == Message.STREAM_START and mode is Mode.DESTINATION:
        return "STREAM_START may not be sent by a destination"
    if kind in _STREAM_TYPES and message.streamId == 0:
        return "%s needs a stream ID" % (type_name(kind),)
    service_id = message.serviceId
    if service_id and service_id not in services:
        return "Service ID %r is not in the tunnel" % (service_id[:40],)
    return None
