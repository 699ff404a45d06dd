# -*- test-case-name: tests.upstream.webproxy.test_socks -*-
"""
An ``IStreamClientEndpoint`` that tunnels through a SOCKS5 proxy (RFC 1928).

txtorcon's ``TorSocksEndpoint`` was the first choice, but it does not fit a
general SOCKS5 proxy: it offers only "no authentication" (a proxy that picks
username/password, RFC 1929, trips an ``assert``), its endpoint keeps
per-connection state on the instance, and its failures are generic. So this
is a small client of our own, on the same negotiation machinery as the HTTP
CONNECT endpoint (one hand-over of the real transport, leftover bytes kept,
timeout, cancellation):

  - methods: "no authentication", and username/password when the URL has
    credentials;
  - ``CONNECT`` only, to an IPv4 or IPv6 address, or to a host name that the
    proxy resolves (``socks5h://``, ``remote_dns=True``); for ``socks5://`` the
    name is resolved here first, as curl does.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import cast

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer

from aws_localproxy.adapters.sockets import ip_address_of
from aws_localproxy.config.proxy_url import format_authority
from aws_localproxy.upstream.webproxy._negotiation import ProxyClientEndpoint
from aws_localproxy.upstream.webproxy.errors import (
    ProxyProtocolError,
    SOCKSAuthenticationError,
    SOCKSError,
    WebProxyError,
)

__all__ = ["SOCKS5Endpoint", "SOCKS5Negotiation", "REPLY_MESSAGES"]

_NO_AUTH = 0x00
_USERNAME_PASSWORD = 0x02
_NO_ACCEPTABLE = 0xFF

#: RFC 1928 §6 reply codes.
REPLY_MESSAGES = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}


def _address_field(host: str) -> bytes:
    """ATYP and DST.ADDR for ``host``: an IP literal, or a name for the proxy to resolve."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.encode("ascii") if host.isascii() else host.encode("idna")
        if not 0 < len(name) < 256:
            raise ValueError(f"host name too long for SOCKS5: {host!r}") from None
        return bytes([0x03, len(name)]) + name
    return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed


class SOCKS5Negotiation:
    """One SOCKS5 CONNECT exchange, as bytes in and bytes out (no I/O)."""

    kind = "SOCKS5 proxy"
    log = Logger()

    def __init__(self, host: str, port: int, credentials: tuple[str, str] | None = None) -> None:
        self._target = format_authority(host, port)
        self._request = b"\x05\x01\x00" + _address_field(host) + struct.pack("!H", port)
        self._auth: bytes | None = None
        if credentials is not None:
            user, password = (part.encode("utf-8") for part in credentials)
            if not (0 < len(user) < 256 and 0 < len(password) < 256):
                raise ValueError("SOCKS5 user name and password must be 1 to 255 bytes")
            self._auth = bytes([1, len(user)]) + user + bytes([len(password)]) + password
        self._buffer = b""
        self._state = "method"

    def start(self) -> bytes:
        methods = [_NO_AUTH] if self._auth is None else [_USERNAME_PASSWORD, _NO_AUTH]
        return bytes([5, len(methods), *methods])

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        self._buffer += data
        out = b""
        while True:
            step = getattr(self, "_on_" + self._state)()
            if step is None:
                return out, None
            reply, done = step
            out += reply
            if done:
                rest, self._buffer = self._buffer, b""
                return out, rest

    def _take(self, size: int) -> bytes | None:
        if len(self._buffer) < size:
            return None
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        return chunk

    def _on_method(self) -> tuple[bytes, bool] | None:
        answer = self._take(2)
        if answer is None:
            return None
        version, method = answer
        if version != 5:
            raise ProxyProtocolError(
                f"The SOCKS5 proxy answered with version {version}: not a SOCKS5 proxy"
            )
        if method == _NO_AUTH:
            self._state = "reply"
            return self._request, False
        if method == _USERNAME_PASSWORD and self._auth is not None:
            self._state = "auth"
            return self._auth, False
        if method in (_USERNAME_PASSWORD, _NO_ACCEPTABLE) and self._auth is None:
            raise SOCKSAuthenticationError(
                "The SOCKS5 proxy requires authentication: give it in the proxy URL"
                " as socks5://user:password@host:port"
            )
        raise SOCKSAuthenticationError(
            f"The SOCKS5 proxy accepts none of the offered authentication methods"
            f" (it chose 0x{method:02x})"
        )

    def _on_auth(self) -> tuple[bytes, bool] | None:
        answer = self._take(2)
        if answer is None:
            return None
        if answer[1] != 0:
            raise SOCKSAuthenticationError(
                "The SOCKS5 proxy rejected the credentials: check the user name and"
                " password in the proxy URL"
            )
        self._state = "reply"
        return self._request, False

    def _on_reply(self) -> tuple[bytes, bool] | None:
        # A refusal is told by its first two bytes: some proxies close right
        # after them instead of sending the whole reply.
        if len(self._buffer) < 2:
            return None
        version, reply = self._buffer[:2]
        if version != 5:
            raise ProxyProtocolError(f"Malformed SOCKS5 reply (version {version})")
        if reply != 0:
            message = REPLY_MESSAGES.get(reply, "unknown error")
            self.log.error(
                "SOCKS5 CONNECT to {target} failed: {message}",
                target=self._target,
                message=message,
            )
            raise SOCKSError(
                f"The SOCKS5 proxy could not connect to {self._target}: {message}"
                f" (reply 0x{reply:02x})",
                reply,
            )
        if len(self._buffer) < 5:
            return None
        address_type, first = self._buffer[3:5]
        sizes = {0x01: 4, 0x04: 16, 0x03: 1 + first}
        if address_type not in sizes:
            raise ProxyProtocolError(f"Malformed SOCKS5 reply (address type {address_type})")
        if self._take(4 + sizes[address_type] + 2) is None:
            return None
        self.log.info("TCP tunnel established successfully")
        return b"", True


@implementer(IResolutionReceiver)
class _FirstAddress:
    def __init__(self, host: str) -> None:
        self._host = host
        self._address: str | None = None
        self.result: Deferred[str] = Deferred()

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        pass

    def addressResolved(self, address: object) -> None:
        if self._address is None and isinstance(address, (IPv4Address, IPv6Address)):
            self._address = address.host

    def resolutionComplete(self) -> None:
        if self._address is None:
            self.result.errback(
                WebProxyError(
                    f"Could not resolve {self._host} for the SOCKS5 proxy"
                    " (socks5:// resolves names here; socks5h:// lets the proxy do it)"
                )
            )
        else:
            self.result.callback(self._address)


@implementer(IStreamClientEndpoint)
@attrs.define(eq=False, repr=False)
class SOCKS5Endpoint(ProxyClientEndpoint):
    """
    A stream to ``host:port`` through the SOCKS5 proxy that ``proxy_endpoint`` reaches.

    ``remote_dns`` (``socks5h://``) sends host names to the proxy; otherwise
    ``resolver`` (an ``IHostnameResolver``, usually ``reactor.nameResolver``)
    resolves them here first. The other arguments are those of every
    L{ProxyClientEndpoint}.
    """

    _remote_dns: bool = attrs.field(kw_only=True, default=True)
    _resolver: IHostnameResolver | None = attrs.field(kw_only=True, default=None)

    def __attrs_post_init__(self) -> None:
        if not self._remote_dns and self._resolver is None:
            self._resolver = cast(IReactorPluggableNameResolver, self._clock).nameResolver
        # Fail on a too long name or credentials now, not at connect time.
        SOCKS5Negotiation(self._host, self._port, self._credentials)

    def _negotiation(self, target: str) -> SOCKS5Negotiation:
        return SOCKS5Negotiation(target, self._port, self._credentials)

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        if self._remote_dns or ip_address_of(self._host) is not None:
            return self._connect_to(self._host, protocolFactory)
        assert self._resolver is not None  # set whenever remote_dns is off
        receiver = _FirstAddress(self._host)
        self._resolver.resolveHostName(receiver, self._host, self._port)
        return receiver.result.addCallback(self._connect_to, protocolFactory)
