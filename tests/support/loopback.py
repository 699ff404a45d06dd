"""
A whole local proxy's data path in memory: a source's tunnel, its WebSocket
over the batching TLS layer, and a stand-in tunneling service (Autobahn's
server over Twisted's TLS), joined by C{twisted.test.iosim}; a local
connection on a recording transport.

Everything between the bytes read and the bytes written is the project's
real code, so a test can look at what one record costs on its way: the
project's frames on the stack when it is written (L{Recorder}) and the
Python calls it takes (L{count_calls}).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Optional

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE, SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import Wait
from aws_localproxy.protocol.scheduler import OutboundSettings
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.protocol.wire import Message, control_message, decode_all, encode_message
from aws_localproxy.tunnelservice.certs import server_tls_options
from aws_localproxy.upstream.connector import RetryPolicy, TunnelConnector
from aws_localproxy.upstream.tls_layer import wrap_client_tls
from aws_localproxy.upstream.tls_options import service_tls_options
from aws_localproxy.upstream.websocket import TunnelClientFactory
from tests.support.helpers import private_ca

__all__ = ["Loopback", "Recorder", "count_calls", "project_frames"]

#: The project's own modules, as frames name them.
PROJECT = "aws_localproxy."
#: ...and the tests' (their calls are not the data path's).
TESTS = "tests."


def project_frames(frame: Any) -> List[str]:
    """The project's functions on the stack from C{frame} outwards, innermost first."""
    names = []
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(PROJECT):
            names.append(f"{module[len(PROJECT) :]}.{frame.f_code.co_qualname}")
        frame = frame.f_back
    return names


class Recorder:
    """Wraps a transport's C{write}: keeps the bytes and the project frames of each call."""

    def __init__(self, transport: Any) -> None:
        self.writes: List[bytes] = []
        self.stacks: List[List[str]] = []
        write = transport.write

        def recording(data: bytes) -> None:
            self.writes.append(bytes(data))
            self.stacks.append(project_frames(sys._getframe(1)))
            write(data)

        transport.write = recording

    def clear(self) -> None:
        self.writes.clear()
        self.stacks.clear()


def count_calls(action: Callable[[], object]) -> tuple[int, int]:
    """
    Run C{action}; return how many Python calls it took in all (functions,
    and builtins and methods written in C, as cProfile counts them) and how
    many of them were the project's own functions.  What the tests' own code
    calls (C{action} itself, a L{Recorder}) is not counted.
    """
    counts = [0, 0]

    def profile(frame: Any, event: str, arg: object) -> None:
        if event not in ("call", "c_call"):
            return
        module = frame.f_globals.get("__name__", "")
        if module.startswith(TESTS):
            return
        counts[0] += 1
        if event == "call" and module.startswith(PROJECT):
            counts[1] += 1

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return counts[0], counts[1]


class FakeService(WebSocketServerProtocol):
    """The tunneling service's side of one WebSocket: picks V3, sends SERVICE_IDS, keeps what arrives."""

    def onConnect(self, request: ConnectionRequest) -> str:
        return SUBPROTOCOL_V3

    def onOpen(self) -> None:
        self.factory.opened.append(self)
        self.sendMessage(
            control_message(Message.SERVICE_IDS, available_service_ids=["ssh"]), isBinary=True
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.received.extend(decode_all(payload))


class _MemoryEndpoint:
    """An endpoint whose connections are iosim pumps to a new server protocol."""

    def __init__(self, server: IProtocolFactory, clock: Clock) -> None:
        self._server = server
        self._clock = clock
        self.pump: Optional[iosim.IOPump] = None
        self.client_transport: Optional[iosim.FakeTransport] = None

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        client = factory.buildProtocol(None)
        server = self._server.buildProtocol(None)
        assert client is not None and server is not None
        self.client_transport = iosim.FakeTransport(client, False)
        self.pump = iosim.connect(
            server,
            iosim.FakeTransport(server, True),
            client,
            self.client_transport,
            greet=False,
            clock=self._clock,
        )
        return succeed(client)


class Loopback:
    """
    A source local proxy connected to a stand-in service, with one local
    connection of service ID C{ssh} open, in memory.

    @ivar tls_writes: what the source's TLS layer writes towards the service.
    @ivar local_writes: what the tunnel writes to the local connection.
    """

    def __init__(self, test: SynchronousTestCase) -> None:
        self.clock = Clock()
        config = txaio.config  # type: ignore[attr-defined]
        previous = config.loop
        config.loop = self.clock
        test.addCleanup(setattr, config, "loop", previous)
        files = private_ca(test)
        service = WebSocketServerFactory("wss://localhost:443")
        service.protocol = FakeService
        service.setProtocolOptions(autoPingInterval=0, perMessageCompressionAccept=lambda _: None)
        service.opened = []
        service.received = []
        self.service = service
        self.endpoint = _MemoryEndpoint(
            TLSMemoryBIOFactory(server_tls_options(files), False, service, clock=self.clock),
            self.clock,
        )
        self.inbound = InboundFlow(self.clock.seconds)
        # Built as the proxy's wiring builds it (aws_localproxy.proxy.service).
        self.tunnel = Tunnel(
            Mode.SOURCE,
            _NoListeners(),
            service_map={"ssh": "0"},
            outbound=OutboundSettings(clock=self.clock, frame_limit=MAX_WEBSOCKET_FRAME_SIZE),
            inbound=self.inbound,
        )
        tls = service_tls_options("localhost", files.capath)

        def factory(connector: TunnelConnector) -> TunnelClientFactory:
            return TunnelClientFactory(
                self.clock,
                url="wss://localhost:443/tunnel?local-proxy-mode=source",
                display_url="wss://localhost:443",
                events=connector,
                access_token="access-token",
                client_token=None,
                subprotocol=SUBPROTOCOL_V3,
                ping_period=0,
                pong_timeout=0,
                open_handshake_timeout=30,
            )

        self.connector = TunnelConnector(
            self.clock,
            wrap_client_tls(tls, self.endpoint),  # type: ignore[arg-type]
            factory,
            self.tunnel,
            display_url="wss://localhost:443",
            retries=RetryPolicy(0, 1.0, reconnect_on_data_error=False),
        )
        self.connector.start()
        self.flush()
        assert self.tunnel.ready, "the session did not get its service IDs"
        assert self.endpoint.client_transport is not None
        self.tls_writes = Recorder(self.endpoint.client_transport)
        self.local = LocalStreamProtocol(self.inbound)
        self.local_transport = StringTransport()
        self.local_writes = Recorder(self.local_transport)
        self.local.makeConnection(self.local_transport)
        connection = self.tunnel.local_connection_offered("ssh", self.local)
        assert connection is not None and not isinstance(connection, Wait)
        self.local.tunnel_connection = connection
        self.connection = connection
        self.flush()
        self.tls_writes.clear()

    def flush(self) -> None:
        """Move every byte both ways until nothing moves."""
        assert self.endpoint.pump is not None
        self.endpoint.pump.flush()

    def received_by_service(self) -> List[Message]:
        """The messages the stand-in service has received so far."""
        return list(self.service.received)

    def service_sends(self, payload: bytes) -> bytes:
        """The TLS bytes of one binary frame of C{payload} from the service (not delivered yet)."""
        (server,) = self.service.opened
        server.sendMessage(payload, isBinary=True)
        self.clock.advance(0)  # Twisted's TLS sends small writes on the next turn
        assert self.endpoint.pump is not None
        server_side = self.endpoint.pump.serverIO
        ciphertext = b"".join(server_side.stream)
        server_side.stream.clear()
        return ciphertext

    def deliver_to_source(self, ciphertext: bytes) -> None:
        """Hand the source's TLS layer C{ciphertext} as one read, as the reactor would."""
        assert self.endpoint.client_transport is not None
        self.endpoint.client_transport.protocol.dataReceived(ciphertext)

    def data_from_peer(self, payload: bytes) -> bytes:
        """A DATA record of the local connection's stream and connection, with C{payload}."""
        connection: Any = self.connection
        return encode_message(
            Message(
                type=Message.DATA,
                serviceId="ssh",
                streamId=connection.stream_id,
                connectionId=connection.connection_id,
                payload=payload,
            )
        )


class _NoListeners:
    """A source's local side that listens nowhere: the test hands its connection over itself."""

    def services_ready(self, endpoints: Any) -> None:
        pass

    def connect(self, connection: Any) -> Any:  # pragma: no cover - a source does not connect
        raise AssertionError("a source does not connect")
