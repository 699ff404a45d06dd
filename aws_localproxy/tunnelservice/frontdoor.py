# -*- test-case-name: tests.tunnelservice.test_frontdoor -*-
# mypy: disallow-untyped-calls=False
# (this module subclasses or calls Twisted/Autobahn APIs that have no annotations)
"""
The HTTP side of the service's one port, with the limits that keep it up.

Every connection starts as an HTTP channel: the management API's requests
stay one, a data-plane upgrade hands the connection to the WebSocket.  A
local service should hold up against misbehaving clients as the AWS one
does, so (docs/tunnelservice.md lists the limits):

 - at most C{max_connections} connections at once (HTTP and WebSocket);
   one over it is accepted and closed at once, logged once per burst;
 - from accept, the TLS handshake plus the first HTTP request head (or the
   WebSocket upgrade) must be done within C{handshake_deadline} seconds, a
   total a client sending one byte now and then cannot extend;
 - a request line or head over L{MAX_HEAD} bytes is answered 431, a
   request body over L{MAX_BODY} 413 (promptly: from its Content-Length),
   garbage 400 (twisted.web), and the connection is closed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, cast

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

from aws_localproxy.adapters.twisted_private import received_header_size

#: The longest request line, and request head, accepted.
MAX_HEAD = 16 * 1024
#: The largest management API request body accepted.
MAX_BODY = 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HANDSHAKE_DEADLINE = 10.0
#: Idle seconds after which a kept-alive API connection is closed.
IDLE_TIMEOUT = 60

_REASONS = {
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
}


class _LimitedRequest(Request):
    """A request whose body may not exceed L{MAX_BODY}."""

    channel: "LimitedChannel"
    _body_size = 0

    def gotLength(self, length: Optional[int]) -> None:
        if length is not None and length > MAX_BODY:
            self.channel.refuse(413)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel.refused:
            return
        self._body_size += len(data)
        if self._body_size > MAX_BODY:
            # A chunked body without a length.
            self.channel.refuse(413)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.channel.refused:
            return
        self.channel.handshake_done()
        super().requestReceived(command, path, version)


class LimitedChannel(HTTPChannel):
    """An HTTP channel with the service's limits that tells its site when it goes."""

    site: "LimitedSite"
    MAX_LENGTH = MAX_HEAD
    totalHeadersSize = MAX_HEAD
    refused = False
    _deadline: Optional[IDelayedCall] = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._deadline = self.site.reactor.callLater(
            self.site.handshake_deadline, self._deadline_passed
        )

    def handshake_done(self) -> None:
        """The first request arrived whole, or the WebSocket took over: no deadline now."""
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        self.site._log.info(
            "Closing a connection that did not finish its handshake in {seconds} s",
            seconds=self.site.handshake_deadline,
        )
        if self.transport is not None:
            cast(ITCPTransport, self.transport).abortConnection()

    def lineReceived(self, line: bytes) -> None:
        if self.refused:
            return
        # twisted.web answers an over-long head with a bare 400 (and still
        # does where its count of the head is gone: then None here).
        received = received_header_size(self)
        if received is not None and received + len(line) > self.totalHeadersSize:
            self.refuse(431)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(431)

    def refuse(self, status: int) -> None:
        """Answer C{status} at once and close (what was received is not read further)."""
        if self.refused or self.transport is None:
            return
        self.refused = True
        self.site._log.info("Refused an HTTP request: {status}", status=status)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            % (status, _REASONS[status])
        )
        self.setRawMode()
        self.loseConnection()

    def rawDataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        super().rawDataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.handshake_done()
        try:
            super().connectionLost(reason)
        finally:
            self.site.channel_gone(self)


class _Refused(HTTPChannel):
    """Over the connection cap: closed as soon as it is accepted."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        cast(ITCPTransport, self.transport).abortConnection()

    def dataReceived(self, data: bytes) -> None:
        pass


class LimitedSite(Site):
    """
    A site with the service's limits that can drop its open HTTP
    connections (keep-alive clients keep them).

    @ivar count_others: returns how many connections the site no longer
        tracks are open (the data plane's WebSockets).
    """

    protocol = LimitedChannel  # type: ignore[assignment]
    requestFactory = _LimitedRequest
    _log = Logger()

    def __init__(
        self,
        resource: Any,
        reactor: Any,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        handshake_deadline: float = DEFAULT_HANDSHAKE_DEADLINE,
    ) -> None:
        super().__init__(resource, reactor=reactor, timeout=IDLE_TIMEOUT)
        self.max_connections = max_connections
        self.handshake_deadline = handshake_deadline
        self.count_others = lambda: 0
        self.refused_count = 0
        self._channels: Set[LimitedChannel] = set()
        self._waiting: Dict[LimitedChannel, List[Deferred[None]]] = {}

    def buildProtocol(self, addr: Any) -> Any:
        if len(self._channels) + self.count_others() >= self.max_connections:
            if not self.refused_count:
                self._log.warn(
                    "Refusing connections: {limit} are open (--max-connections)",
                    limit=self.max_connections,
                )
            self.refused_count += 1
            refused = _Refused()
            refused.factory = self
            return refused
        if self.refused_count:
            self._log.info("Refused {count} connections over the limit", count=self.refused_count)
            self.refused_count = 0
        channel = super().buildProtocol(addr)
        self._channels.add(channel)
        return channel

    def taken_over(self, channel: LimitedChannel) -> None:
        """C{channel}'s connection is a WebSocket now (the data plane tracks it)."""
        channel.handshake_done()
        self._channels.discard(channel)

    def channel_gone(self, channel: LimitedChannel) -> None:
        self._channels.discard(channel)
        for waiting in self._waiting.pop(channel, []):
            waiting.callback(None)

    def stop_all(self) -> Deferred[None]:
        waits = []
        for channel in list(self._channels):
            if channel.transport is None:
                self._channels.discard(channel)
                continue
            d: Deferred[None] = Deferred()
            self._waiting.setdefault(channel, []).append(d)
            waits.append(d)
            cast(ITCPTransport, channel.transport).abortConnection()
        return gatherResults(waits).addCallback(lambda _: None)
