"""
A small data-plane client for tests of the local tunnel service.

It does what a local proxy does on the wire and nothing more: the upgrade
request (path, mode, tokens, subprotocols), then binary messages of tunnel
records, decoded with L{aws_localproxy.protocol.wire}.  Tests use it to play source
and destination against a real service over TLS on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.internet import ssl
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3
from aws_localproxy.protocol.wire import Message, MessageDecoder
from aws_localproxy.tunnelservice.dataplane import cancel_close_timer
from tests.support.deadlines import EVENT, branch, deadline

txaio.use_twisted()


class TunnelClient(WebSocketClientProtocol):
    """
    One side of a tunnel.

    @ivar handshake: fires with C{self} when the handshake succeeded or failed
        (check C{opened} / C{status}).
    @ivar close_info: (wasClean, code, reason) once the connection ended;
        L{when_closed} waits for it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.handshake: Deferred[TunnelClient] = Deferred()
        self.close_info: Optional[Tuple[bool, Optional[int], Optional[str]]] = None
        self._close_waiters: List[Deferred[Tuple[bool, Optional[int], Optional[str]]]] = []
        self.opened = False
        self.subprotocol: Optional[str] = None
        self.response_headers: Dict[str, str] = {}
        self.messages: List[Message] = []
        self.frames: List[bytes] = []
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self._decoder = MessageDecoder()
        self._waiting: List[Tuple[int, Deferred[List[Message]]]] = []
        self._pong_waiters: List[Deferred[bytes]] = []

    @property
    def status(self) -> Optional[int]:
        """The HTTP status of the upgrade response (101 when it succeeded)."""
        line = getattr(self, "http_status_line", None)
        if not line:
            return None
        parts = line.split(" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def status_reason(self) -> str:
        line = getattr(self, "http_status_line", None) or ""
        parts = line.split(" ", 2)
        return parts[2] if len(parts) > 2 else ""

    def onConnect(self, response: ConnectionResponse) -> None:
        self.subprotocol = response.protocol
        self.response_headers = dict(response.headers)

    def onOpen(self) -> None:
        self.opened = True
        self.handshake.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.append(payload)
        self.messages.extend(self._decoder.feed(payload))
        self._notify()

    def ping(self, payload: bytes = b"") -> Deferred[bytes]:
        """Send a WebSocket ping; fires with the pong's payload."""
        d: Deferred[bytes] = Deferred()
        self._pong_waiters.append(d)
        self.sendPing(payload)
        return d

    def onPong(self, payload: bytes) -> None:
        if self._pong_waiters:
            self._pong_waiters.pop(0).callback(payload)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.close_code, self.close_reason = code, reason
        if not self.handshake.called:
            self.handshake.callback(self)
        for _, waiting in self._waiting:
            waiting.errback(ConnectionError("closed: %s %s" % (code, reason)))
        self._waiting = []
        pongs, self._pong_waiters = self._pong_waiters, []
        for pong in pongs:
            pong.errback(ConnectionError("closed: %s %s" % (code, reason)))
        self.close_info = (wasClean, code, reason)
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(self.close_info)

    def when_closed(self) -> Deferred[Tuple[bool, Optional[int], Optional[str]]]:
        """Fires with (wasClean, code, reason) once the connection has ended."""
        if self.close_info is not None:
            return succeed(self.close_info)
        d: Deferred[Tuple[bool, Optional[int], Optional[str]]] = Deferred()
        self._close_waiters.append(d)
        return d

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        cancel_close_timer(self)

    def send_records(self, *records: bytes) -> None:
        """Send records joined into one binary WebSocket message."""
        self.sendMessage(b"".join(records), isBinary=True)

    def wait_messages(self, count: int, within: float = EVENT) -> Deferred[List[Message]]:
        """
        Fires with the first C{count} messages received, once they are all
        here; fails if they are not within C{within} seconds, or if the
        connection closes first.
        """

        def forget(d: Deferred[List[Message]]) -> None:
            self._waiting = [waiting for waiting in self._waiting if waiting[1] is not d]

        d: Deferred[List[Message]] = Deferred(forget)
        self._waiting.append((count, d))
        self._notify()
        return deadline(
            d,
            within,
            f"the tunnel client did not receive {count} message(s)",
            lambda: (
                f"{len(self.messages)} received: "
                + ", ".join(Message.Type.Name(m.type) for m in self.messages[-10:])
            ),
        )

    def _notify(self) -> None:
        ready = [(n, d) for n, d in self._waiting if len(self.messages) >= n]
        self._waiting = [(n, d) for n, d in self._waiting if len(self.messages) < n]
        for n, d in ready:
            d.callback(self.messages[:n])


def client_tls(ca_file: str, hostname: str = "localhost") -> Any:
    with open(ca_file, "rb") as f:
        ca = ssl.Certificate.loadPEM(f.read())
    return ssl.optionsForClientTLS(hostname, trustRoot=ca)


@inlineCallbacks
def connect(
    reactor: Any,
    running: Any,
    mode: str = "source",
    token: Optional[str] = None,
    client_token: Optional[str] = None,
    protocols: Sequence[str] = (SUBPROTOCOL_V3,),
    resource: Optional[str] = None,
    headers: Optional[Dict[str, str]] = None,
    options: Optional[Dict[str, Any]] = None,
) -> Any:
    """
    Connect to C{running} (a L{RunningTunnelService}) and fire with the
    L{TunnelClient} once its handshake succeeded or failed.
    """
    all_headers: Dict[str, str] = {}
    if token is not None:
        all_headers["access-token"] = token
    if client_token is not None:
        all_headers["client-token"] = client_token
    all_headers.update(headers or {})
    scheme = "wss" if running.use_tls else "ws"
    path = resource if resource is not None else "/tunnel?local-proxy-mode=%s" % (mode,)
    factory = WebSocketClientFactory(
        "%s://localhost:%d%s" % (scheme, running.port, path),
        protocols=list(protocols),
        headers=all_headers,
        reactor=reactor,
    )
    factory.protocol = TunnelClient
    factory.setProtocolOptions(
        **{"openHandshakeTimeout": 10, "closeHandshakeTimeout": 2, **(options or {})}
    )
    endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", running.port, timeout=5)
    if running.use_tls:
        endpoint = wrapClientTLS(client_tls(running.ca_file), endpoint)
    client = yield deadline(
        endpoint.connect(factory),
        EVENT,
        f"the tunnel client did not connect to port {running.port}",
    )
    yield deadline(
        branch(client.handshake),
        EVENT,
        "the tunnel client's WebSocket handshake did not end",
    )
    return client


def close_client(client: TunnelClient) -> Deferred[Any]:
    """A cleanup: close C{client} if it is still connected, fire when it is gone."""
    if client.close_info is None:
        if client.state == WebSocketClientProtocol.STATE_OPEN:
            client.sendClose()
        elif client.state != WebSocketClientProtocol.STATE_CLOSING and client.transport:
            client.transport.abortConnection()
    return client.when_closed()


def within(reactor: Any, d: Deferred[Any], seconds: float) -> Deferred[Any]:
    """C{d}, failing with a timeout if it has not fired after C{seconds}."""
    return d.addTimeout(seconds, reactor)
