# -*- test-case-name: tests.agent.test_notification -*-
"""
The AWS tunneling service's notification to a device: its topic, its JSON, its rules.

When a tunnel is opened with a C{destinationConfig} naming a thing, the
service publishes one message on ``$aws/things/<thingName>/tunnels/notify``::

    {"clientAccessToken": "...", "clientMode": "destination",
     "region": "us-east-1", "services": ["SSH"]}

The agent (L{aws_localproxy.agent.service}) parses what arrives there with
L{parse_notification}; the local tunnel service
(L{aws_localproxy.tunnelservice.notify}) builds what it publishes with
L{encode_notification}, so both sides share one definition of the message.
Anything that breaks a rule is a L{NotificationError} whose message never
contains the token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence, Tuple

from aws_localproxy.config.port_mapping import is_service_id
from aws_localproxy.config.validation import MAX_TOKEN, is_region

__all__ = [
    "TunnelNotification",
    "NotificationError",
    "WrongClientMode",
    "notify_topic",
    "parse_notification",
    "encode_notification",
    "check_thing_name",
    "MAX_NOTIFICATION_BYTES",
]

#: A notification is a few hundred bytes; anything much larger is not one.
MAX_NOTIFICATION_BYTES = 64 * 1024
#: AWS IoT thing names: 1 to 128 of these characters.
_THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
#: The tunneling service allows at most three services per tunnel.
MAX_SERVICES = 3


class NotificationError(ValueError):
    """A message on the notify topic that is not a usable notification (the token is never in the text)."""


class WrongClientMode(NotificationError):
    """A well-formed notification for another client mode (only ``destination`` runs on a device)."""


def check_thing_name(thing_name: str) -> str:
    """A thing name as AWS IoT accepts it; raises C{ValueError} otherwise."""
    if not _THING_NAME.fullmatch(thing_name):
        raise ValueError(
            "a thing name is 1 to 128 letters, digits, colons, hyphens and underscores"
        )
    return thing_name


def notify_topic(thing_name: str) -> str:
    """The topic the tunneling service notifies C{thing_name} on."""
    return f"$aws/things/{check_thing_name(thing_name)}/tunnels/notify"


@dataclass(frozen=True)
class TunnelNotification:
    """
    One valid notification.

    @ivar client_access_token: the destination's access token (kept out of C{repr}).
    @ivar region: where the tunnel is (the proxy endpoint unless ``-e`` overrides it).
    @ivar services: the tunnel's service IDs, in the service's order (may be empty
        for a tunnel opened without services).
    """

    client_access_token: str = field(repr=False)
    region: str
    services: Tuple[str, ...]
    client_mode: str = "destination"


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise NotificationError(f"the notification has no {name}")
    if not isinstance(value, str):
        raise NotificationError(f"the notification's {name} is not a string")
    return value


def parse_notification(payload: bytes) -> TunnelNotification:
    """
    The notification in C{payload}.

    @raise WrongClientMode: a notification for a source (or another mode).
    @raise NotificationError: not JSON, not an object, a field missing or of
        the wrong type, or a value the tunneling service would never send.
    """
    if len(payload) > MAX_NOTIFICATION_BYTES:
        raise NotificationError(f"the notification is too long ({len(payload)} bytes)")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotificationError("the notification is not JSON") from None
    if not isinstance(body, dict):
        raise NotificationError("the notification is not a JSON object")
    mode = _text(body, "clientMode")
    if mode != "destination":
        raise WrongClientMode(f"the notification is for client mode {mode[:32]!r}, not destination")
    token = _text(body, "clientAccessToken")
    if not token:
        raise NotificationError("the notification's clientAccessToken is empty")
    if len(token) > MAX_TOKEN or not token.isascii() or not token.isprintable():
        raise NotificationError("the notification's clientAccessToken is not a valid token")
    region = _text(body, "region")
    if not is_region(region):
        raise NotificationError(f"the notification's region is not a region: {region[:64]!r}")
    raw_services = body.get("services", [])
    if not isinstance(raw_services, list) or not all(isinstance(s, str) for s in raw_services):
        raise NotificationError("the notification's services is not a list of strings")
    if len(raw_services) > MAX_SERVICES:
        raise NotificationError(
            f"the notification names {len(raw_services)} services (at most {MAX_SERVICES})"
        )
    for service_id in raw_services:
        if not is_service_id(service_id):
            raise NotificationError(
                f"the notification names an invalid service ID: {service_id[:128]!r}"
            )
    if len(set(raw_services)) != len(raw_services):
        raise NotificationError("the notification names a service ID twice")
    return TunnelNotification(token, region, tuple(raw_services), mode)


def encode_notification(access_token: str, region: str, services: Sequence[str]) -> bytes:
    """The notification the tunneling service publishes for a destination's access token."""
    return json.dumps(
        {
            "clientAccessToken": access_token,
            "clientMode": "destination",
            "region": region,
            "services": list(services),
        }
    ).encode("utf-8")
