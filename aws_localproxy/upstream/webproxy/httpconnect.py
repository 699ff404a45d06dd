# -*- test-case-name: tests.upstream.webproxy.test_httpconnect -*-
"""
An ``IStreamClientEndpoint`` that tunnels through an HTTP proxy with CONNECT.

Twisted has no such endpoint (twisted/twisted #8982). This one wraps any
endpoint that reaches the proxy (``HostnameEndpoint``, or ``wrapClientTLS``
of it for an ``https://`` proxy), asks for ``CONNECT host:port``, and gives
the caller's protocol the proxy connection once the proxy answers 2xx. The
caller puts the service's TLS on top with ``wrapClientTLS``.

Differences from the reference local proxy, on purpose:

  - ``Host`` is always sent (RFC 9110 requires it), not only with credentials;
  - the auth scheme is written ``Basic``;
  - the answer is read until the end of its header block, however it is split
    across reads, up to ``max_header_size`` bytes; a response without a
    complete header block is an error, not a 200;
  - a 407 says whether credentials were missing or rejected.
"""

from __future__ import annotations

import base64
import re

import attrs
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer

from aws_localproxy.config.proxy_url import format_authority
from aws_localproxy.upstream.webproxy._negotiation import (
    ProxyClientEndpoint,
    host_bytes,
)
from aws_localproxy.upstream.webproxy.errors import (
    HTTPConnectError,
    ProxyAuthenticationError,
    ProxyClientError,
    ProxyProtocolError,
    ProxyRedirectionError,
    ProxyServerError,
    ProxyUnexpectedStatusError,
)

__all__ = [
    "HTTPConnectEndpoint",
    "HTTPConnectNegotiation",
    "MAX_HEADER_SIZE",
    "connect_request",
]

#: Upper bound of the proxy's response header block, in bytes.
MAX_HEADER_SIZE = 16 * 1024

_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(r"HTTP/1\.[01] +(\d{3})(?: +(.*))?")
_MAX_REASON = 200


def connect_request(host: str, port: int, credentials: tuple[str, str] | None = None) -> bytes:
    """The CONNECT request for ``host:port`` (IPv6 literals in brackets)."""
    authority = (
        format_authority(host, port).encode("ascii")
        if host.isascii()
        else (format_authority(host_bytes(host).decode("ascii"), port).encode("ascii"))
    )
    lines = [b"CONNECT " + authority + b" HTTP/1.1", b"Host: " + authority]
    if credentials is not None:
        user, password = credentials
        token = base64.b64encode(f"{user}:{password}".encode())
        lines.append(b"Proxy-Authorization: Basic " + token)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _printable(text: str, limit: int = _MAX_REASON) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").splitlines()
    match = _STATUS_LINE.fullmatch(lines[0].rstrip()) if lines else None
    if match is None:
        first = _printable(lines[0] if lines else "", 80)
        raise ProxyProtocolError(
            f"The web proxy's answer to CONNECT is not an HTTP/1.x response: {first!r}"
        )
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and name and name == name.strip():
            headers.append((name, value.strip()))
    return int(match.group(1)), _printable(match.group(2) or ""), headers


class HTTPConnectNegotiation:
    """
    One CONNECT exchange, as bytes in and bytes out (no I/O).

    ``feed`` buffers the answer until the end of its headers; a 2xx ends the
    exchange with the bytes that followed the headers (the first bytes of
    the tunnel); anything else raises the ``HTTPConnectError`` of its status
    class, after logging the reference's lines.
    """

    kind = "web proxy"
    log = Logger()

    def __init__(
        self,
        host: str,
        port: int,
        credentials: tuple[str, str] | None = None,
        max_header_size: int = MAX_HEADER_SIZE,
    ) -> None:
        self._request = connect_request(host, port, credentials)
        self._credentials_sent = credentials is not None
        self._max = max_header_size
        self._buffer = b""

    def start(self) -> bytes:
        return self._request

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        self._buffer += data
        end = _END_OF_HEADERS.search(self._buffer)
        if (end is None and len(self._buffer) > self._max) or (
            end is not None and end.start() > self._max
        ):
            raise ProxyProtocolError(
                f"The web proxy's response headers are longer than {self._max} bytes"
            )
        if end is None:
            return b"", None
        head, rest = self._buffer[: end.start()], self._buffer[end.end() :]
        self._buffer = b""
        status, reason, headers = _parse_head(head)
        self.log.debug(
            "Full response from the Web proxy:\n{response}",
            response=head.decode("latin-1"),
        )
        if 200 <= status < 300:
            if status == 200:
                self.log.info("TCP tunnel established successfully")
            else:
                self.log.warn(
                    "TCP tunnel established but with unexpected response code from the Web proxy"
                )
            return b"", rest
        raise self._refused(status, reason, headers)

    def _refused(
        self, status: int, reason: str, headers: list[tuple[str, str]]
    ) -> HTTPConnectError:
        self.log.error(
            "HTTP CONNECT request failed with response code: {code}({reason})",
            code=status,
            reason=reason,
        )
        kind: type[HTTPConnectError]
        if 300 <= status < 400:
            self.log.error("Make sure you're using the correct Web proxy address")
            kind = ProxyRedirectionError
        elif 400 <= status < 500:
            self.log.error("Make sure the Web proxy is configured properly")
            if status == 407:
                return ProxyAuthenticationError(
                    status, reason, headers, credentials_sent=self._credentials_sent
                )
            kind = ProxyClientError
        elif 500 <= status < 600:
            self.log.error("Web proxy error, make sure to check your server's logs")
            kind = ProxyServerError
        else:
            self.log.error("Unexpected response code")
            kind = ProxyUnexpectedStatusError
        return kind(status, reason, headers)


@implementer(IStreamClientEndpoint)
@attrs.define(eq=False, repr=False)
class HTTPConnectEndpoint(ProxyClientEndpoint):
    """
    A stream to ``host:port`` through the HTTP proxy that ``proxy_endpoint`` reaches.

    ``credentials`` (user, password) are sent as ``Proxy-Authorization:
    Basic``; ``max_header_size`` bounds the proxy's answer. The other
    arguments are those of every L{ProxyClientEndpoint}.
    """

    _max_header_size: int = attrs.field(kw_only=True, default=MAX_HEADER_SIZE)

    def _negotiation(self, target: str) -> HTTPConnectNegotiation:
        return HTTPConnectNegotiation(target, self._port, self._credentials, self._max_header_size)
