"""
What the unit tests of the two web-proxy endpoints (HTTP CONNECT and SOCKS5)
share: a harness that plays the proxy (L{ProxyHarness}), and the tests of
everything around the negotiation (lost connections, timeouts,
cancellation, connect and factory errors, closing), run against each
endpoint by mixing L{EndpointFailureTests} into its test case.  The
caller's protocols and the resolver are in L{tests.fakes}.
"""

from __future__ import annotations

from typing import Any, Optional
from typing import Protocol as TypingProtocol

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectingCancelledError, ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.upstream.webproxy.errors import (
    ProxyConnectionLost,
    ProxyTimeoutError,
    ProxyUnreachableError,
)
from tests.fakes.caller import ProducingRecorder, RecorderFactory
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
