"""
The WebSocket on real sockets of 127.0.0.1, over plain TCP and over the
batching TLS layer: the socket options it sets, read back from the socket
(C{getsockopt}), the size of its reads, and the session's scheduler as its
producer -- paused when the transport's buffer fills, resumed when it
drains, every frame arriving whole and in order.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from typing import Any, Callable, List, Optional

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from aws_localproxy.adapters.sockets import TCP_NOTSENT_LOWAT
from aws_localproxy.protocol.constants import SUBPROTOCOL_V3
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.tunnelservice.certs import server_tls_options
from aws_localproxy.upstream.tls_layer import wrap_client_tls
from aws_localproxy.upstream.tls_options import service_tls_options
from aws_localproxy.upstream.websocket import (
    NOTSENT_LOWAT,
    CloseOutcome,
    TunnelClientFactory,
    TunnelClientProtocol,
)
from tests.fakes.websocket import NoPacer, RecordingEvents
from tests.support.helpers import fail_if_still_running, private_ca, sleep
from tests.support.payloads import digest, unique_payload
from tests.support.websocket import ACCESS_TOKEN, client_frames, server_frame, upgrade_response

reactor: Any = _reactor
RECORD = 65_536
RECORDS = unique_payload(RECORD * 512, seed=61)


async def until(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    """Let the reactor run until C{predicate} holds; fail naming C{what} after C{timeout}."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await sleep(0.005)


class UpgradeServer(Protocol):
    """
    The tunneling service's end, as far as these tests need it: answers the
    upgrade, keeps every byte after it, sends what it is told.
    """

    def __init__(self) -> None:
        self.head = b""
        self.after = bytearray()
        self.upgraded = False
        self.ended: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self.upgraded:
            self.after += data
            return
        self.head += data
        if b"\r\n\r\n" in self.head:
            head, rest = self.head.split(b"\r\n\r\n", 1)
            found = re.search(rb"Sec-WebSocket-Key: (\S+)", head)
            assert found is not None
            assert self.transport is not None
            self.transport.write(upgrade_response(found.group(1), SUBPROTOCOL_V3))
            self.upgraded = True
            self.after += rest

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.ended.callback(None)


class RecordingOutbound(NoPacer):
    """The session's scheduler as far as the WebSocket's transport sees it: paused and resumed."""

    def __init__(self) -> None:
        self.calls: List[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")


class Events(RecordingEvents):
    """Starts the session with a L{RecordingOutbound}; says when it opened and closed."""

    def __init__(self) -> None:
        super().__init__()
        self.outbound = RecordingOutbound()
        self.open: Deferred[TunnelClientProtocol] = Deferred()
        self.over: Deferred[CloseOutcome] = Deferred()

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        protocol.start_session(self.receive, self.outbound, InboundFlow())  # type: ignore[arg-type]
        self.open.callback(protocol)

    def session_closed(self, protocol: TunnelClientProtocol, outcome: CloseOutcome) -> None:
        super().session_closed(protocol, outcome)
        self.over.callback(outcome)


class RealSocketTests(TestCase):
    """A WebSocket session over plain TCP to an L{UpgradeServer} on 127.0.0.1."""

    #: A connection that never ends fails the test in seconds, not in trial's two minutes.
    timeout = 20

    scheme = "ws"

    def serve(self, server: UpgradeServer) -> int:
        factory: Any = Factory.forProtocol(lambda: server)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    def endpoint(self, port: int) -> Any:
        return TCP4ClientEndpoint(reactor, "127.0.0.1", port)

    async def open(
        self,
        read_buffer_size: Optional[int] = None,
        socket_buffer_size: Optional[int] = None,
    ) -> tuple[TunnelClientProtocol, UpgradeServer, Events]:
        # A read that loops forever in the reactor never lets trial's timeout fire.
        fail_if_still_running(self, 25.0)
        server, events = UpgradeServer(), Events()
        port = self.serve(server)
        url = f"{self.scheme}://localhost:{port}/tunnel?local-proxy-mode=source"
        factory = TunnelClientFactory(
            reactor,
            url=url,
            display_url=url,
            events=events,
            access_token=ACCESS_TOKEN,
            client_token=None,
            subprotocol=SUBPROTOCOL_V3,
            ping_period=600.0,
            pong_timeout=600.0,
            open_handshake_timeout=20.0,
            read_buffer_size=read_buffer_size,
            socket_buffer_size=socket_buffer_size,
        )
        failed: List[Failure] = []
        self.endpoint(port).connect(factory).addErrback(failed.append)
        await until(
            lambda: events.open.called or events.over.called or failed,
            "an open session",
            timeout=10.0,
        )
        self.assertTrue(events.open.called, f"no session: {failed or events.closed}")
        protocol = await events.open

        async def close() -> None:
            protocol.dropConnection(abort=True)
            await events.over
            if server.transport is not None:
                server.transport.resumeProducing()  # (a paused server would not see the end)
            await server.ended

        self.addCleanup(close)
        return protocol, server, events

    def tcp_socket(self, protocol: TunnelClientProtocol) -> socket.socket:
        """The WebSocket's TCP socket (under TLS, the TLS transport's)."""
        transport: Any = protocol.transport
        while not isinstance(transport.getHandle(), socket.socket):
            transport = transport.transport
        handle: socket.socket = transport.getHandle()
        return handle

    def tcp_transport(self, protocol: TunnelClientProtocol) -> Any:
        transport: Any = protocol.transport
        while not isinstance(transport.getHandle(), socket.socket):
            transport = transport.transport
        return transport

    async def test_no_delay_and_unsent_limit(self) -> None:
        """
        Nagle's algorithm is off, and the kernel keeps at most 128 KiB of the
        WebSocket's bytes unsent (TCP_NOTSENT_LOWAT), read back from the socket.
        """
        protocol, _, _ = await self.open()
        sock = self.tcp_socket(protocol)
        self.assertTrue(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        if TCP_NOTSENT_LOWAT is None:
            raise self.skipTest("no TCP_NOTSENT_LOWAT on this system")
        self.assertEqual(NOTSENT_LOWAT, 128 * 1024)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT), NOTSENT_LOWAT)

    async def test_socket_buffer_size(self) -> None:
        """C{websocket.max_frame_size} sets both kernel buffers of the WebSocket's socket."""
        protocol, _, _ = await self.open(socket_buffer_size=200_000)
        sock = self.tcp_socket(protocol)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            size = sock.getsockopt(socket.SOL_SOCKET, option)
            if sys.platform.startswith("linux"):
                self.assertEqual(size, 400_000, option)  # Linux doubles what it is given
            else:
                self.assertGreaterEqual(size, 200_000, option)

    async def test_read_buffer_size(self) -> None:
        """
        C{websocket.read_buffer_size} is the TCP transport's read size: no
        read is larger, and a message of many reads arrives whole.
        """
        protocol, server, events = await self.open(read_buffer_size=1000)
        reads: List[int] = []
        tcp = self.tcp_transport(protocol)
        under = tcp.protocol
        read = under.dataReceived

        def counted(data: bytes) -> None:
            reads.append(len(data))
            read(data)

        under.dataReceived = counted
        message = RECORDS[:50_000]
        assert server.transport is not None
        server.transport.write(server_frame(0x2, message))
        await until(lambda: events.messages, "the message")
        self.assertEqual([digest(m) for m in events.messages], [digest(message)])
        self.assertLessEqual(max(reads), 1000)

    async def test_scheduler_paused_and_resumed(self) -> None:
        """
        The peer stops reading: once the transport's buffer fills, the
        session's scheduler is paused (it stops making frames); once the
        peer reads again and the buffer drains, it is resumed -- and every
        frame written meanwhile arrives whole and in order.
        """
        protocol, server, events = await self.open()
        assert server.transport is not None
        server.transport.pauseProducing()  # the peer reads nothing
        outbound = events.outbound
        calls = outbound.calls
        sent: List[bytes] = []
        # Produce as the scheduler does, frames while not paused, until the
        # kernel's buffers are full too and the pause lasts.
        while len(sent) < len(RECORDS) // RECORD:
            while (not calls or calls[-1] == "resume") and len(sent) < len(RECORDS) // RECORD:
                record = RECORDS[len(sent) * RECORD : (len(sent) + 1) * RECORD]
                protocol.send_record(record)
                sent.append(record)
            await sleep(0.1)
            if calls and calls[-1] == "pause":
                break
        self.assertTrue(calls and calls[-1] == "pause", f"never paused: {calls}")
        await sleep(0.1)
        self.assertEqual(calls[-1], "pause", "still paused: the peer reads nothing")
        paused = len(calls)
        server.transport.resumeProducing()
        await until(lambda: len(calls) > paused, "resumed once the buffer drained")
        self.assertEqual(calls[-1], "resume")
        size = sum(len(record) + 14 for record in sent)
        await until(lambda: len(server.after) >= size, "every frame at the peer")
        frames = client_frames(bytes(server.after))
        self.assertEqual(
            [(opcode, digest(payload)) for opcode, payload in frames],
            [(0x2, digest(record)) for record in sent],
        )


class RealSocketTLSTests(RealSocketTests):
    """The same over the batching TLS layer, to a Twisted TLS server."""

    scheme = "wss"

    def serve(self, server: UpgradeServer) -> int:
        files = private_ca(self)
        self.capath = files.capath
        factory = TLSMemoryBIOFactory(
            server_tls_options(files), False, Factory.forProtocol(lambda: server)
        )
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    def endpoint(self, port: int) -> Any:
        return wrap_client_tls(
            service_tls_options("localhost", self.capath),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
        )
