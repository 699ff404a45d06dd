# -*- test-case-name: tests.upstream.webproxy.test_httpconnect -*-
"""
Why a connection through a web proxy failed.

Every error is a ``twisted.internet.error.ConnectError``: to the code that
connects the WebSocket, a proxy that refuses the tunnel is a connect attempt
that failed, retried after the usual delay like a network error, as the
reference does. ``str(error)`` is one clear sentence; none of them contains the proxy
credentials.
"""

from __future__ import annotations

from typing import Callable, Sequence

from twisted.internet.error import ConnectError

__all__ = [
    "WebProxyError",
    "ProxyUnreachableError",
    "ProxyTimeoutError",
    "ProxyConnectionLost",
    "ProxyProtocolError",
    "HTTPConnectError",
    "ProxyRedirectionError",
    "ProxyClientError",
    "ProxyAuthenticationError",
    "ProxyServerError",
    "ProxyUnexpectedStatusError",
    "SOCKSError",
    "SOCKSAuthenticationError",
]


# Twisted's ConnectError.__init__ has no annotations; this is its signature.
_connect_error_init: Callable[..., None] = ConnectError.__init__


class WebProxyError(ConnectError):
    """The web proxy did not give us a tunnel to the service."""

    def __init__(self, message: str) -> None:
        _connect_error_init(self, string=message)

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __str__(self) -> str:
        return self.message


class ProxyUnreachableError(WebProxyError):
    """Connecting to the proxy itself failed (DNS, TCP or TLS); ``reason`` is the Failure."""

    def __init__(self, message: str, reason: object = None) -> None:
        self.reason = reason
        WebProxyError.__init__(self, message)


class ProxyTimeoutError(WebProxyError):
    """The tunnel was not set up in time (connect, TLS and negotiation together)."""


class ProxyConnectionLost(WebProxyError):
    """The proxy closed the connection before the tunnel was set up."""


class ProxyProtocolError(WebProxyError):
    """The proxy's answer cannot be understood (malformed, or too large)."""


class HTTPConnectError(WebProxyError):
    """
    The proxy answered the CONNECT request with a status other than 2xx.

    ``category`` is the reference's category message for the status class;
    subclasses tell the classes apart.
    """

    category = "The Web proxy didn't respond with 200 response code."

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Sequence[tuple[str, str]] = (),
        message: str | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)
        if message is None:
            message = f"{self.category.rstrip('.')}: {status} {reason}".rstrip()
        WebProxyError.__init__(self, message)


class ProxyRedirectionError(HTTPConnectError):
    """3xx: probably not the proxy's address."""

    category = "The Web proxy server responded with 3xx to the HTTP CONNECT request"


class ProxyClientError(HTTPConnectError):
    """4xx: the proxy refuses this request (e.g. the service's port is not allowed)."""

    category = "The Web proxy server responded with 4xx to the HTTP CONNECT request"


class ProxyAuthenticationError(ProxyClientError):
    """407: credentials missing (``credentials_sent`` False) or rejected (True)."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Sequence[tuple[str, str]] = (),
        credentials_sent: bool = False,
    ) -> None:
        self.credentials_sent = credentials_sent
        offered = sorted(
            {
                value.split(None, 1)[0]
                for name, value in headers
                if name.lower() == "proxy-authenticate" and value.strip()
            }
        )
        schemes = f" (it asks for {', '.join(offered)})" if offered else ""
        if credentials_sent:
            message = (
                f"The web proxy rejected the credentials: {status} {reason}{schemes}; "
                "check the user name and password in the proxy URL"
            )
        else:
            message = (
                f"The web proxy requires authentication: {status} {reason}{schemes}; "
                "give them in the proxy URL as http://user:password@host:port"
            )
        HTTPConnectError.__init__(self, status, reason, headers, message)


class ProxyServerError(HTTPConnectError):
    """5xx: the proxy could not reach the service, or is broken."""

    category = "The Web proxy server responded with 5xx to the HTTP CONNECT request"


class ProxyUnexpectedStatusError(HTTPConnectError):
    """1xx or a status outside 100-599."""


class SOCKSError(WebProxyError):
    """The SOCKS5 proxy refused the request; ``reply`` is its reply code, if any."""

    def __init__(self, message: str, reply: int | None = None) -> None:
        self.reply = reply
        WebProxyError.__init__(self, message)


class SOCKSAuthenticationError(SOCKSError):
    """The SOCKS5 proxy wants credentials we do not have, or rejected ours."""
