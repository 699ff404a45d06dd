"""
What the unit tests of the two web-proxy endpoints (HTTP CONNECT and SOCKS5)
share: the caller's protocol that records what it was given, and the tests of everything around the negotiation (lost connections,
timeouts, cancellation, connect and factory errors, closing), run against
each endpoint by mixing L{EndpointFailureTests} into its test case.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional
from typing import Protocol as TypingProtocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectingCancelledError, ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IHostnameResolver, IPushProducer, IResolutionReceiver
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from aws_localproxy.upstream.webproxy.errors import (
    ProxyConnectionLost,
    ProxyTimeoutError,
    ProxyUnreachableError,
)
from tests.fakes.transport import TCPLikeTransport

#: The host every proxy endpoint test asks its proxy for (port 443).
SERVICE = "data.tunneling.iot.us-east-1.amazonaws.com"


class ProxyHarness:
    """
    One proxy endpoint to C{SERVICE}:443 over a memory reactor, and the
    proxy's side of its connection.  A subclass says where the proxy is
    (C{proxy_host}, C{proxy_port}) and builds its endpoint
    (L{make_endpoint}); keyword arguments go to the endpoint (C{host} and
    C{port} replace the target).
    """

    proxy_host: str
    proxy_port: int

    def __init__(self, **kwargs: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.proxy_endpoint = TCP4ClientEndpoint(self.reactor, self.proxy_host, self.proxy_port)
        host = kwargs.pop("host", SERVICE)
        port = kwargs.pop("port", 443)
        self.endpoint = self.make_endpoint(
            host,
            port,
            clock=self.reactor,
            proxy_name=f"{self.proxy_host}:{self.proxy_port}",
            **kwargs,
        )
        self.factory = RecorderFactory()
        self.transport = TCPLikeTransport()
        self.negotiator: Optional[Protocol] = None

    def make_endpoint(self, host: str, port: int, **options: Any) -> Any:
        raise NotImplementedError

    def connect(self, factory: Optional[Factory] = None) -> Deferred[Any]:
        return self.endpoint.connect(factory or self.factory)

    def accept(self, index: int = -1) -> Protocol:
        """The proxy accepts a TCP connection (the latest): returns the negotiating protocol."""
        factory = self.reactor.tcpClients[index][2]
        self.negotiator = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", self.proxy_port))
        self.negotiator.makeConnection(self.transport)
        return self.negotiator

    def sent(self) -> bytes:
        """What the endpoint wrote to the proxy since the last call."""
        return taken(self.transport)


def taken(transport: StringTransport) -> bytes:
    """What was written to C{transport} since the last call, cleared."""
    value = transport.value()
    transport.clear()
    return value


class Harness(TypingProtocol):
    """What each endpoint's test harness offers the shared tests."""

    reactor: MemoryReactorClock
    transport: StringTransport
    factory: Any  # records the addresses it built protocols for in .addresses
    endpoint: Any

    def connect(self, factory: Optional[Factory] = None) -> Deferred[Any]: ...

    def accept(self) -> Protocol: ...


class Recorder(Protocol):
    """The caller's protocol: remembers what it was given, what arrived and how it ended."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: list[Failure] = []
        self.made_with: object = None

    def makeConnection(self, transport: object) -> None:
        self.made_with = transport
        Protocol.makeConnection(self, transport)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost.append(reason)


class RecorderFactory(Factory):
    """Builds L{Recorder}s and keeps the address of each."""

    protocol = Recorder

    def __init__(self) -> None:
        self.addresses: list[object] = []

    def buildProtocol(self, addr: object) -> Protocol | None:  # type: ignore[override]
        self.addresses.append(addr)
        return Factory.buildProtocol(self, addr)  # type: ignore[arg-type]


@implementer(IHostnameResolver)
class RecordingResolver:
    """
    Records each name lookup as (name, port).  With C{addresses} (name ->
    IP text) it answers at once from them (no address for another name);
    without, the lookup waits until the test calls L{complete}.
    """

    def __init__(self, addresses: Optional[Mapping[str, str]] = None) -> None:
        self.lookups: list[tuple[str, int]] = []
        self._addresses = addresses
        self._receivers: list[IResolutionReceiver] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: object = None,
        transportSemantics: str = "TCP",
    ) -> IResolutionReceiver:
        self.lookups.append((hostName, portNumber))
        self._receivers.append(resolutionReceiver)
        if self._addresses is not None:
            address = self._addresses.get(hostName)
            kind = IPv6Address if address is not None and ":" in address else IPv4Address
            self.complete(*([kind("TCP", address, portNumber)] if address is not None else []))
        return resolutionReceiver

    def complete(self, *addresses: object) -> None:
        """The latest lookup resolves to C{addresses} (none: the name has no address)."""
        receiver = self._receivers[-1]
        receiver.resolutionBegan(None)  # type: ignore[arg-type]
        for address in addresses:
            receiver.addressResolved(address)  # type: ignore[arg-type]
        receiver.resolutionComplete()


@implementer(IPushProducer)
class PausedProducer:
    """A streaming producer that the caller's protocol registered and paused."""

    def __init__(self) -> None:
        self.paused = True

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


class ProducingRecorder(Protocol):
    """
    A caller's protocol without half-close that registers a streaming
    producer on its transport and pauses it, as a relay does when its peer
    is slow.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.producer = PausedProducer()
        self.transport.registerProducer(self.producer, True)  # type: ignore[attr-defined]


class EndpointFailureTests:
    """
    Everything around the negotiation, the same for both endpoints. A test
    case mixes this in (before L{SynchronousTestCase}) and says how its
    endpoint talks.
    """

    #: What the messages call the proxy ("web proxy", "SOCKS5 proxy").
    kind: str
    #: The proxy's name in messages, as the harness gives it.
    proxy_name: str
    #: What the proxy says before its final answer (nothing for HTTP CONNECT).
    greeting: bytes
    #: The proxy's final answer: the tunnel is up.
    final_answer: bytes

    def harness(self, **kwargs: Any) -> Harness:
        raise NotImplementedError

    def negotiating(self, h: Harness) -> Protocol:
        """Accept the proxy connection and get to waiting for the final answer."""
        negotiator = h.accept()
        if self.greeting:
            negotiator.dataReceived(self.greeting)
        return negotiator

    # The tests use SynchronousTestCase's assertions.
    def _case(self) -> SynchronousTestCase:
        assert isinstance(self, SynchronousTestCase)
        return self

    def test_repr_names_the_target_and_proxy_only(self) -> None:
        """The endpoint's repr (it reaches logs) has no credentials."""
        endpoint = self.harness(credentials=("user", "hunter2")).endpoint
        text = repr(endpoint)
        self._case().assertTrue(text.startswith(f"<{type(endpoint).__name__} "), text)
        self._case().assertIn(":443 via ", text)
        self._case().assertNotIn("hunter2", text)

    def test_closed_before_answer(self) -> None:
        """The proxy closing before its final answer gives ProxyConnectionLost."""
        t, h = self._case(), self.harness()
        d = h.connect()
        self.negotiating(h).connectionLost(Failure(ConnectionDone()))
        failure = t.failureResultOf(d, ProxyConnectionLost)
        t.assertIn(
            f"The {self.kind} closed the connection before the tunnel was set up",
            str(failure.value),
        )

    def test_timeout_waiting_for_answer(self) -> None:
        """
        A proxy that never answers gives ProxyTimeoutError after the timeout
        and is dropped; a late answer is ignored.
        """
        t, h = self._case(), self.harness(timeout=10)
        d = h.connect()
        negotiator = self.negotiating(h)
        h.reactor.advance(9.9)
        t.assertNoResult(d)
        h.reactor.advance(0.1)
        failure = t.failureResultOf(d, ProxyTimeoutError)
        t.assertEqual(str(failure.value), f"No tunnel through the {self.kind} after 10 seconds")
        t.assertTrue(h.transport.disconnecting)
        negotiator.dataReceived(self.final_answer)
        negotiator.connectionLost(Failure(ConnectionDone()))
        t.assertEqual(h.factory.addresses, [])
        t.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_timeout_while_connecting(self) -> None:
        """The timeout also covers connecting to the proxy: the connect attempt is stopped."""
        t, h = self._case(), self.harness(timeout=5)
        d = h.connect()
        connector = h.reactor.connectors[0]
        h.reactor.advance(5)
        t.failureResultOf(d, ProxyTimeoutError)
        t.assertTrue(connector.stoppedConnecting)  # type: ignore[attr-defined]

    def test_no_timer_left_after_success(self) -> None:
        t, h = self._case(), self.harness(timeout=5)
        d = h.connect()
        self.negotiating(h).dataReceived(self.final_answer)
        t.successResultOf(d)
        t.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_no_timeout(self) -> None:
        """timeout=None sets no timer."""
        t, h = self._case(), self.harness(timeout=None)
        h.connect()
        t.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_cancel_while_connecting(self) -> None:
        """Cancelling before the proxy accepts stops the connect attempt."""
        t, h = self._case(), self.harness()
        d = h.connect()
        connector = h.reactor.connectors[0]
        d.cancel()
        t.failureResultOf(d, ConnectingCancelledError)
        t.assertTrue(connector.stoppedConnecting)  # type: ignore[attr-defined]
        t.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_cancel_while_negotiating(self) -> None:
        """Cancelling mid-exchange aborts the proxy connection; a late answer is ignored."""
        t, h = self._case(), self.harness()
        d = h.connect()
        negotiator = self.negotiating(h)
        d.cancel()
        t.failureResultOf(d, CancelledError)
        t.assertTrue(h.transport.disconnecting)
        negotiator.dataReceived(self.final_answer)
        negotiator.connectionLost(Failure(ConnectionDone()))
        t.assertEqual(h.factory.addresses, [])
        t.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_cancel_after_success_does_nothing(self) -> None:
        """Once handed over, cancelling the (fired) Deferred does not touch the connection."""
        t, h = self._case(), self.harness()
        d = h.connect()
        self.negotiating(h).dataReceived(self.final_answer)
        t.successResultOf(d)
        d.cancel()
        t.assertFalse(h.transport.disconnecting)

    def test_connect_failure_names_proxy(self) -> None:
        """A failed TCP connect to the proxy is a ProxyUnreachableError naming the proxy."""
        t, h = self._case(), self.harness()
        d = h.connect()
        factory = h.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError("refused")))
        failure = t.failureResultOf(d, ProxyUnreachableError)
        t.assertIn(f"Could not connect to the {self.kind} {self.proxy_name}", str(failure.value))
        t.assertTrue(failure.value.reason.check(ConnectionRefusedError))
        t.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_factory_returns_none(self) -> None:
        """A factory that builds no protocol fails the connect and drops the connection."""
        t, h = self._case(), self.harness()
        factory = Factory()
        factory.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        d = h.connect(factory)
        self.negotiating(h).dataReceived(self.final_answer)
        t.failureResultOf(d)
        t.assertTrue(h.transport.disconnecting)

    def test_factory_raises(self) -> None:
        """A factory that raises fails the connect with its error."""
        t, h = self._case(), self.harness()
        factory = Factory()

        def broken(addr: object) -> Protocol:
            raise ZeroDivisionError()

        factory.buildProtocol = broken  # type: ignore[method-assign]
        d = h.connect(factory)
        self.negotiating(h).dataReceived(self.final_answer)
        t.failureResultOf(d, ZeroDivisionError)
        t.assertTrue(h.transport.disconnecting)

    def test_end_of_stream_before_answer_closes(self) -> None:
        """The proxy ending its stream before answering closes, then fails the connect."""
        t, h = self._case(), self.harness()
        d = h.connect()
        negotiator = self.negotiating(h)
        negotiator.readConnectionLost()  # type: ignore[attr-defined]
        t.assertTrue(h.transport.disconnecting)
        negotiator.connectionLost(Failure(ConnectionDone()))
        t.failureResultOf(d, ProxyConnectionLost)

    def test_end_of_stream_with_paused_producer_closes(self) -> None:
        """
        The end of the proxy's stream closes the connection of a protocol
        without half-close even if that protocol registered a streaming
        producer and paused it: the producer is unregistered before
        C{loseConnection}, which would otherwise never disconnect a TCP
        transport (it resumes the producer instead) or a TLS one (it waits
        for the producer to go).
        """
        t, h = self._case(), self.harness()
        d = h.connect(Factory.forProtocol(ProducingRecorder))
        negotiator = self.negotiating(h)
        negotiator.dataReceived(self.final_answer)
        t.successResultOf(d)
        t.assertIsNotNone(h.transport.producer)
        negotiator.readConnectionLost()  # type: ignore[attr-defined]
        t.assertIsNone(h.transport.producer)
        t.assertTrue(h.transport.disconnecting)
