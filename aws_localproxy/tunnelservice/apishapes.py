# -*- test-case-name: tests.tunnelservice.test_api -*-
"""
The management API's JSON shapes: what requests may hold, what responses say.

Shapes and limits follow botocore's service model of ``iotsecuretunneling``
(``botocore/data/iotsecuretunneling/2018-10-05/service-2.json``).  A request
that breaks them is an L{ApiError} named as the real API names it
(C{ValidationException}, C{SerializationException}); values are never
echoed whole in an error message.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.model import ManagedTunnel, Slot

#: A service ID or a thing name (botocore: ``Service``, ``ThingName``).
SERVICE_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
#: botocore: ``TunnelId``, ``AmazonResourceName``.
TUNNEL_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MAX_ARN = 1011
NEXT_TOKEN_RE = re.compile(r"^[a-zA-Z0-9_=-]{1,4096}$")

#: At most this many services per tunnel (botocore: ``ServiceList``).
MAX_SERVICES = 3
MAX_TAGS = 200
#: No request shape nests deeper than 4; a body deeper than this is refused.
MAX_JSON_DEPTH = 10


class ApiError(Exception):
    """A management API error: C{error_type} becomes the JSON C{__type}."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(error_type, message)
        self.error_type = error_type
        self.message = message


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def shown(value: Any, limit: int = 40) -> str:
    """C{value} for an error message: repr'd and cut at C{limit} characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_depth(value: Any) -> int:
    """How deep C{value} nests (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _is_kind(value: Any, kind: type) -> bool:
    # JSON true/false are Python bools, and bool is an int: not an integer here.
    if kind is int and isinstance(value, bool):
        return False
    return isinstance(value, kind)


def required(body: Dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        raise validation("%s is required" % (name,))
    if not _is_kind(value, kind):
        raise validation("%s has the wrong type" % (name,))
    return value


def optional(body: Dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is not None and not _is_kind(value, kind):
        raise validation("%s has the wrong type" % (name,))
    return value


def tunnel_id_of(body: Dict[str, Any]) -> str:
    """The request's C{tunnelId}: 1-128 of a-zA-Z0-9_-."""
    value: str = required(body, "tunnelId", str)
    if not TUNNEL_ID_RE.match(value):
        raise validation("invalid tunnelId %s (1-128 of a-zA-Z0-9_-)" % (shown(value),))
    return value


def resource_arn_of(body: Dict[str, Any]) -> str:
    value: str = required(body, "resourceArn", str)
    if not 1 <= len(value) <= MAX_ARN:
        raise validation("invalid resourceArn %s (1-%d characters)" % (shown(value), MAX_ARN))
    return value


def thing_name_of(body: Dict[str, Any]) -> Optional[str]:
    value: Optional[str] = optional(body, "thingName", str)
    if value is not None and not SERVICE_RE.match(value):
        raise validation("invalid thingName %s (1-128 of a-zA-Z0-9:_-)" % (shown(value),))
    return value


def tags(value: Any, name: str = "tags") -> List[Dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise validation("%s must be a list of at most %d tags" % (name, MAX_TAGS))
    result = []
    for tag in value:
        if (
            not isinstance(tag, dict)
            or not isinstance(tag.get("key"), str)
            or not isinstance(tag.get("value"), str)
            or not 1 <= len(tag["key"]) <= 128
            or len(tag["value"]) > 256
        ):
            raise validation("each of %s needs a key (1-128) and a value (0-256)" % (name,))
        result.append({"key": tag["key"], "value": tag["value"]})
    return result


def destination_config(value: Any) -> Tuple[Optional[str], List[str]]:
    """(thing name, services) of a C{DestinationConfig}."""
    if not isinstance(value, dict):
        raise validation("destinationConfig must be a structure")
    services = required(value, "services", list)
    if not services:
        raise validation("destinationConfig.services needs at least one service")
    if len(services) > MAX_SERVICES:
        raise validation(
            "destinationConfig.services has %d services; at most %d are allowed"
            % (len(services), MAX_SERVICES)
        )
    for service in services:
        if not isinstance(service, str) or not SERVICE_RE.match(service):
            raise validation(
                "invalid service %s in destinationConfig.services (1-128 of a-zA-Z0-9:_-)"
                % (shown(service),)
            )
    if len(set(services)) != len(services):
        raise validation("destinationConfig.services has duplicates")
    thing_name = optional(value, "thingName", str)
    if thing_name is not None and not SERVICE_RE.match(thing_name):
        raise validation(
            "invalid destinationConfig.thingName %s (1-128 of a-zA-Z0-9:_-)" % (shown(thing_name),)
        )
    return thing_name, list(services)


def rotation_modes(client_mode: str) -> List[Mode]:
    modes = {
        "SOURCE": [Mode.SOURCE],
        "DESTINATION": [Mode.DESTINATION],
        "ALL": [Mode.SOURCE, Mode.DESTINATION],
    }.get(client_mode)
    if modes is None:
        raise validation("clientMode must be SOURCE, DESTINATION or ALL")
    return modes


def _connection_state(slot: Slot) -> Dict[str, Any]:
    return {"status": slot.state, "lastUpdatedAt": slot.last_updated_at}


def tunnel_shape(tunnel: ManagedTunnel) -> Dict[str, Any]:
    """The C{Tunnel} shape of DescribeTunnel."""
    result: Dict[str, Any] = {
        "tunnelId": tunnel.tunnel_id,
        "tunnelArn": tunnel.tunnel_arn,
        "status": tunnel.status,
        "sourceConnectionState": _connection_state(tunnel.slots[Mode.SOURCE]),
        "destinationConnectionState": _connection_state(tunnel.slots[Mode.DESTINATION]),
        "timeoutConfig": {"maxLifetimeTimeoutMinutes": tunnel.max_lifetime_minutes},
        "tags": [dict(tag) for tag in tunnel.tags],
        "createdAt": tunnel.created_at,
        "lastUpdatedAt": tunnel.last_updated_at,
    }
    if tunnel.description is not None:
        result["description"] = tunnel.description
    if tunnel.has_destination_config:
        config: Dict[str, Any] = {"services": list(tunnel.services)}
        if tunnel.thing_name is not None:
            config["thingName"] = tunnel.thing_name
        result["destinationConfig"] = config
    return result


def summary_shape(tunnel: ManagedTunnel) -> Dict[str, Any]:
    """The C{TunnelSummary} shape of ListTunnels."""
    result: Dict[str, Any] = {
        "tunnelId": tunnel.tunnel_id,
        "tunnelArn": tunnel.tunnel_arn,
        "status": tunnel.status,
        "createdAt": tunnel.created_at,
        "lastUpdatedAt": tunnel.last_updated_at,
    }
    if tunnel.description is not None:
        result["description"] = tunnel.description
    return result
