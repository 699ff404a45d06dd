# -*- test-case-name: tests.protocol.test_service_ids -*-
"""
From a SERVICE_IDS message to the service ID -> endpoint mapping of a session.

The service sends the service IDs of the tunnel (the ``services`` of the
OpenTunnel call) right after the WebSocket handshake.  They are the source of
truth: the configured mapping (``-s``/``-d``, or the config files) must match
them, or the proxy cannot work and says so before any data flows.

This module only decides; the tunnel applies the result.  Failures are
L{FatalTunnelError}s, because a reconnect would receive the same IDs again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Mapping, Sequence

from twisted.logger import Logger

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.errors import FatalTunnelError

__all__ = [
    "ServiceMapping",
    "LookupEndpoints",
    "build_mapping",
    "deduplicate",
    "WRONG_CONFIGURATION",
    "NOT_ENOUGH_SERVICE_IDS",
    "NO_PORT_MAPPING",
    "UNNAMED_SERVICE",
]

log = Logger()

#: The reference's fatal messages, kept word for word (typos included).
WRONG_CONFIGURATION = (
    "Wrong configurations detected in local proxy. "
    "Please starts local proxy with right sets of service ids."
)
NOT_ENOUGH_SERVICE_IDS = (
    "Not enough the service ids are found in the configuration files. Fail to start."
)
NO_PORT_MAPPING = "No port mapping exists. Fail to start local proxy in destination mode."

#: The one service of a tunnel opened without service IDs (and of a V1
#: session, where the service sends no SERVICE_IDS at all).
UNNAMED_SERVICE = ""

#: Logged before NOT_ENOUGH_SERVICE_IDS when the tunnel has no service IDs:
#: config files map service IDs, and the unnamed service has none.
NO_SERVICE_IDS_TO_LOOK_UP = (
    "The tunnel has no service ids, so the configuration files cannot name its endpoint: "
    "give it with -d PORT (or -d HOST:PORT)"
)

#: A source's endpoint for "pick any free port".
ANY_PORT = "0"

LookupEndpoints = Callable[[Sequence[str]], Mapping[str, str]]


@dataclass(frozen=True)
class ServiceMapping:
    """The services of one session, in the order the service sent them, and their endpoints."""

    service_ids: tuple[str, ...]
    endpoints: Mapping[str, str] = field(default_factory=dict)


def deduplicate(received: Iterable[str]) -> List[str]:
    """The received IDs without repeats, first occurrence first, warning about each repeat."""
    seen: List[str] = []
    for service_id in received:
        if service_id in seen:
            log.warn("Duplicate service Id received, ignore: {service_id}", service_id=service_id)
        else:
            seen.append(service_id)
    return seen


def is_v1_format(configured: Mapping[str, str]) -> bool:
    """A single endpoint given without a service ID (``-s 5555``): the V1 way."""
    return len(configured) == 1 and "" in configured


def build_mapping(
    mode: Mode,
    configured: Mapping[str, str],
    received: Sequence[str],
    lookup_endpoints: LookupEndpoints | None = None,
) -> ServiceMapping:
    """
    Validate the received service IDs against the configuration and map them.

    @param configured: the ``-s``/``-d`` mapping: empty when none was given,
        C{{"": endpoint}} for the V1 format.
    @param received: the de-duplicated C{availableServiceIds}.  None at all
        (a tunnel opened without services: the service sends an empty
        list, which protobuf cannot tell from a missing one) means one
        service without an ID, L{UNNAMED_SERVICE}, exactly as in a V1
        session: the local side listens or connects for it like for any
        other.
    @param lookup_endpoints: looks IDs up in the config files; C{None} when
        there are no config files.
    @raise FatalTunnelError: the configuration does not fit this tunnel.
    """
    ids = list(received) or [UNNAMED_SERVICE]
    if configured and not is_v1_format(configured):
        if len(configured) != len(ids) or any(sid not in configured for sid in ids):
            raise FatalTunnelError(WRONG_CONFIGURATION)
        return ServiceMapping(tuple(ids), {sid: configured[sid] for sid in ids})

    if is_v1_format(configured):
        endpoint = configured[""]
        if len(ids) != 1:
            # Nothing to rename to: the service keeps the empty ID.
            return ServiceMapping(("",), {"": endpoint})
        (service_id,) = ids
        log.info("Updated port mapping for v1 format: ")
        log.info("{service_id} = {endpoint}", service_id=service_id, endpoint=endpoint)
        return ServiceMapping((service_id,), {service_id: endpoint})

    endpoints: dict[str, str] = {}
    if lookup_endpoints is not None:
        log.info("Scan configuration files to find the service ids")
        found = lookup_endpoints(ids)
        for service_id in ids:
            if service_id in found:
                endpoints[service_id] = found[service_id]
            elif mode is Mode.DESTINATION:
                if service_id == UNNAMED_SERVICE:
                    log.error(NO_SERVICE_IDS_TO_LOOK_UP)
                raise FatalTunnelError(NOT_ENOUGH_SERVICE_IDS)
            else:
                endpoints[service_id] = ANY_PORT
    elif mode is Mode.DESTINATION:
        raise FatalTunnelError(NO_PORT_MAPPING)
    else:
        endpoints = {service_id: ANY_PORT for service_id in ids}

    log.info("Use port mapping:")
    log.info("---------------------------------")
    for service_id, endpoint in endpoints.items():
        log.info("{service_id} = {endpoint}", service_id=service_id, endpoint=endpoint)
    log.info("---------------------------------")
    return ServiceMapping(tuple(ids), endpoints)
