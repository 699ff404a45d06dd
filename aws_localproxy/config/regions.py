# -*- test-case-name: tests.config.test_regions -*-
"""
Where the tunnelling service is: ``-r region`` or ``-e host[:port]`` to a host and port.

The reference lower-cases the text and splits it at the first ``:``, so IPv6
literals never worked and port 0 was accepted; here ``[v6]:port``
works and the port must be 1..65535.  A test-only extension accepts a
``ws://`` or ``wss://`` prefix on ``-e``: ``ws://`` means plain WebSocket
without TLS, for a local service emulator (the reference needed a compile-time
switch for this).  Default port: 443 (80 for ``ws://`` without a port).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aws_localproxy.config.settings import Settings

__all__ = [
    "ServiceEndpoint",
    "EndpointError",
    "endpoint_for_region",
    "parse_endpoint",
    "strip_scheme",
]

DEFAULT_PORT = 443


class EndpointError(ValueError):
    """The endpoint text cannot be turned into a host and port."""


@dataclass(frozen=True)
class ServiceEndpoint:
    """The tunnelling service's address; C{host} is an IPv6 literal without brackets if it is one."""

    host: str
    port: int = DEFAULT_PORT
    use_tls: bool = True


def strip_scheme(text: str) -> tuple[str, bool | None]:
    """
    C{text} without a ``ws://``/``wss://`` prefix, and whether it asked for TLS
    (C{None} when there was no prefix).
    """
    lowered = text.lower()
    for prefix, tls in (("wss://", True), ("ws://", False)):
        if lowered.startswith(prefix):
            return text[len(prefix) :].rstrip("/"), tls
    return text, None


def _invalid(text: str) -> EndpointError:
    return EndpointError(f"Invalid endpoint specified: {text}")


def _port(text: str, original: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _invalid(original)
    port = int(text)
    if not 0 < port < 65536:
        raise _invalid(original)
    return port


def parse_endpoint(text: str) -> ServiceEndpoint:
    """
    ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` (lower-cased), optionally
    behind ``ws://``/``wss://``.

    @raise EndpointError: ``Invalid endpoint specified: <endpoint>``, the
        reference's message, for an empty host, an empty or bad port, or an
        unbracketed IPv6 literal.
    """
    lowered = text.lower()
    rest, tls = strip_scheme(lowered)
    use_tls = tls is not False
    default_port = DEFAULT_PORT if use_tls or tls is None else 80
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket or not host:
            raise _invalid(lowered)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid(lowered) from None
        if not after:
            return ServiceEndpoint(host, default_port, use_tls)
        if not after.startswith(":"):
            raise _invalid(lowered)
        return ServiceEndpoint(host, _port(after[1:], lowered), use_tls)
    host, colon, port_text = rest.partition(":")
    if not host or ":" in port_text:
        # Several colons without brackets: an IPv6 literal needs [brackets].
        raise _invalid(lowered)
    if not colon:
        return ServiceEndpoint(host, default_port, use_tls)
    return ServiceEndpoint(host, _port(port_text, lowered), use_tls)


def endpoint_for_region(region: str, settings: Settings | None = None) -> ServiceEndpoint:
    """
    The service endpoint of a region: C{region_endpoint_overrides[region]} if
    set (it may carry ``:port``), else C{endpoint_format} with the region in it.
    """
    settings = settings or Settings()
    override = settings.region_endpoint_overrides.get(region)
    text = override if override is not None else settings.endpoint_format.replace("%s", region)
    return parse_endpoint(text)
