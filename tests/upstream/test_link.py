"""Tests for aws_localproxy.upstream.link: the endpoint and WebSocket factory a proxy reaches the service with."""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connect, makeFakeClient, makeFakeServer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings import Settings
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.certs import server_tls_options
from aws_localproxy.upstream.link import display_url, tunnel_client_factory, websocket_endpoint
from aws_localproxy.upstream.tls_layer import BatchingTLSEndpoint
from tests.fakes.resolver import RecordingResolver
from tests.support.helpers import private_ca

SERVICE = "data.tunneling.iot.us-east-1.amazonaws.com"
ADDRESSES = {SERVICE: "192.0.2.44", "proxy.example": "198.51.100.7", "localhost": "127.0.0.1"}


def config(**changes: Any) -> ProxyConfig:
    values: dict[str, Any] = dict(
        mode=Mode.SOURCE,
        access_token="secret-access-token",
        endpoint_host="data.tunneling.iot.us-east-1.amazonaws.com",
        service_map={"SSH": "5555"},
    )
    values.update(changes)
    return ProxyConfig(**values)


class DisplayURLTests(SynchronousTestCase):
    def test_scheme_host_port(self) -> None:
        self.assertEqual(
            display_url(config()), "wss://data.tunneling.iot.us-east-1.amazonaws.com:443"
        )
        self.assertEqual(
            display_url(config(endpoint_host="127.0.0.1", endpoint_port=8080, use_tls=False)),
            "ws://127.0.0.1:8080",
        )


class EndpointTests(SynchronousTestCase):
    def test_plain_websocket_is_direct_tcp(self) -> None:
        endpoint = websocket_endpoint(
            MemoryReactorClock(), config(endpoint_host="127.0.0.1", use_tls=False)
        )
        self.assertIsInstance(endpoint, HostnameEndpoint)

    def test_tls_wraps_the_connection(self) -> None:
        endpoint = websocket_endpoint(MemoryReactorClock(), config())
        self.assertIsInstance(endpoint, BatchingTLSEndpoint)
        assert isinstance(endpoint, BatchingTLSEndpoint)
        self.assertIsInstance(endpoint.wrapped, HostnameEndpoint)

    def test_web_proxy_is_logged(self) -> None:
        with capturedLogs() as events:
            websocket_endpoint(MemoryReactorClock(), config(web_proxy="http://127.0.0.1:3128"))
        self.assertEqual(
            [formatEvent(e) for e in events][0],
            "Found Web proxy information in the environment variables, "
            "will use it to connect via the proxy.",
        )


class Dialer:
    """A memory reactor with names that resolve; what one connect attempt dials."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.resolver = RecordingResolver(ADDRESSES)
        self.reactor.installNameResolver(self.resolver)
        #: The certificates L{join}'s server has (from L{private_ca}).
        self.files: Any = None

    def dial(self, proxy_config: ProxyConfig, protocol: Protocol) -> Any:
        """One attempt of the endpoint C{proxy_config} gives; (host, port, timeout) dialed."""
        endpoint = websocket_endpoint(self.reactor, proxy_config)
        #: What the attempt ended with (a protocol, or a failure), once it did.
        self.outcome: List[Any] = []
        endpoint.connect(Factory.forProtocol(lambda: protocol)).addBoth(self.outcome.append)
        self.reactor.advance(0)
        host, port, _, timeout, _ = self.reactor.tcpClients[0]
        return host, port, timeout

    def join(self, server: Protocol) -> Any:
        """
        The dialed TCP connection reaches C{server} behind TLS with the
        certificate of L{files} (for localhost), in memory; returns the pump.
        """
        host, port, factory = self.reactor.tcpClients[0][:3]
        client = factory.buildProtocol(IPv4Address("TCP", host, port))
        tls = TLSMemoryBIOFactory(
            server_tls_options(self.files),
            False,
            Factory.forProtocol(lambda: server),
            clock=self.reactor,
        ).buildProtocol(None)
        pump = connect(tls, makeFakeServer(tls), client, makeFakeClient(client), greet=False)
        for _ in range(3):
            pump.flush()
            self.reactor.advance(0)
        return pump


class Hello(Protocol):
    """Says hello as it connects."""

    def connectionMade(self) -> None:
        self.transport.write(b"hello over TLS")


class Collect(Protocol):
    """Keeps what it receives, and how it was lost."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


class DialTests(SynchronousTestCase):
    """Where one connect attempt goes, and within what time."""

    def test_direct(self) -> None:
        dialed = Dialer().dial(config(endpoint_port=8443), Collect())
        self.assertEqual(dialed, ("192.0.2.44", 8443, 30.0))

    def test_open_handshake_timeout_bounds_the_connect(self) -> None:
        """The TCP connect (and a proxy's negotiation) gets the handshake's time, at least 1 s."""
        for milliseconds, seconds in [(5000, 5.0), (200, 1.0)]:
            settings = dataclasses.replace(Settings(), ws_open_handshake_timeout_ms=milliseconds)
            dialed = Dialer().dial(config(settings=settings), Collect())
            self.assertEqual(dialed, ("192.0.2.44", 443, seconds))

    def test_through_the_web_proxy(self) -> None:
        dialer = Dialer()
        dialed = dialer.dial(config(web_proxy="http://proxy.example:3128"), Collect())
        self.assertEqual(dialed, ("198.51.100.7", 3128, 30.0))
        self.assertEqual(dialer.resolver.lookups, [("proxy.example", 3128)])

    def test_no_proxy_bypasses_the_web_proxy(self) -> None:
        dialed = Dialer().dial(
            config(web_proxy="http://proxy.example:3128", no_proxy=".amazonaws.com"), Collect()
        )
        self.assertEqual(dialed[:2], ("192.0.2.44", 443))


class ServiceTLSTests(SynchronousTestCase):
    """The service's certificate is checked against -c's CAs, or not at all with -k."""

    def exchange(self, **changes: Any) -> Collect:
        dialer = Dialer()
        dialer.files = private_ca(self)
        if changes.pop("capath", False):
            changes["capath"] = dialer.files.capath
        collect = Collect()
        dialer.dial(config(endpoint_host="localhost", **changes), collect)
        dialer.join(Hello())
        return collect

    def test_verified_with_the_ca_directory(self) -> None:
        collect = self.exchange(capath=True)
        self.assertEqual((collect.received, collect.lost), (b"hello over TLS", None))

    def test_unknown_ca_rejected(self) -> None:
        from OpenSSL import SSL

        collect = self.exchange()
        self.assertEqual(collect.received, b"")
        assert collect.lost is not None
        self.assertIsInstance(collect.lost.value, SSL.Error)

    def test_not_verified_with_k(self) -> None:
        collect = self.exchange(verify_tls=False)
        self.assertEqual((collect.received, collect.lost), (b"hello over TLS", None))


class ProxyTLSTests(TestCase):
    """
    An https:// web proxy's certificate is checked like the service's (-c,
    -k).  (Twisted's TLS towards the proxy holds its first write for a turn
    of the global reactor: the test lets it turn; no socket is opened.)
    """

    @inlineCallbacks
    def connect_request(self, **changes: Any) -> Any:
        """What the https:// proxy at localhost receives over TLS (the CONNECT, if verified)."""
        dialer = self.dialer = Dialer()
        dialer.files = private_ca(self)
        if changes.pop("capath", False):
            changes["capath"] = dialer.files.capath
        dialer.dial(config(web_proxy="https://localhost:3129", **changes), Collect())
        proxy = Collect()
        pump = dialer.join(proxy)
        for _ in range(3):
            yield deferLater(reactor, 0, lambda: None)
            pump.flush()
        return proxy.received

    @inlineCallbacks
    def test_verified_with_the_ca_directory(self) -> Any:
        received = yield self.connect_request(capath=True)
        self.assertTrue(received.startswith(b"CONNECT " + SERVICE.encode() + b":443 "), received)

    @inlineCallbacks
    def test_unknown_ca_rejected(self) -> Any:
        from aws_localproxy.upstream.webproxy.errors import ProxyUnreachableError

        received = yield self.connect_request()
        self.assertEqual(received, b"")
        (failure,) = self.dialer.outcome
        self.assertIsInstance(failure.value, ProxyUnreachableError)

    @inlineCallbacks
    def test_not_verified_with_k(self) -> Any:
        received = yield self.connect_request(verify_tls=False)
        self.assertTrue(received.startswith(b"CONNECT " + SERVICE.encode() + b":443 "), received)


class FactoryTests(SynchronousTestCase):
    def test_upgrade_request(self) -> None:
        """
        The upgrade request of every attempt: the data-plane URL with the
        mode, the access and client tokens, the configured subprotocol.
        """
        settings = dataclasses.replace(Settings(), ws_subprotocol="aws.iot.securetunneling-2.0")
        factory = tunnel_client_factory(
            MemoryReactorClock(),
            config(mode=Mode.DESTINATION, endpoint_port=8443, settings=settings),
            events=None,
            client_token="c" * 32,
        )
        # (Autobahn arms the handshake's timer on the global reactor: not here.)
        factory.setProtocolOptions(openHandshakeTimeout=0)
        transport = StringTransport()
        factory.buildProtocol(IPv4Address("TCP", "192.0.2.44", 8443)).makeConnection(transport)
        request = transport.value().decode().split("\r\n")
        self.assertEqual(request[0], "GET /tunnel?local-proxy-mode=destination HTTP/1.1")
        for header in [
            f"Host: {SERVICE}:8443",
            "access-token: secret-access-token",
            "client-token: " + "c" * 32,
            "Sec-WebSocket-Protocol: aws.iot.securetunneling-2.0",
        ]:
            self.assertIn(header, request)

    def test_timeouts_and_buffers(self) -> None:
        """The websocket.* extensions reach Autobahn's options, in seconds."""
        settings = dataclasses.replace(
            Settings(),
            ws_pong_timeout_ms=4000,
            ws_open_handshake_timeout_ms=7000,
            ws_max_frame_size=262144,
        )
        events = object()
        factory = tunnel_client_factory(
            MemoryReactorClock(), config(settings=settings), events=events, client_token=None
        )  # type: ignore[arg-type]
        self.assertEqual((factory.autoPingTimeout, factory.openHandshakeTimeout), (4.0, 7.0))
        self.assertEqual(factory.socket_buffer_size, 262144)
        self.assertIs(factory.events, events)

    def test_settings_reach_the_factory(self) -> None:
        settings = dataclasses.replace(Settings(), ws_ping_period_ms=5000)
        factory = tunnel_client_factory(
            MemoryReactorClock(), config(settings=settings), events=None, client_token="c" * 32
        )
        self.assertEqual(factory.autoPingInterval, 5.0)
        self.assertEqual(factory.request_headers["client-token"], "c" * 32)
        self.assertEqual(
            factory.display_url, "wss://data.tunneling.iot.us-east-1.amazonaws.com:443"
        )
        self.assertIsNone(factory.read_buffer_size)  # the default: Autobahn's own
        factory = tunnel_client_factory(
            MemoryReactorClock(),
            config(settings=dataclasses.replace(Settings(), ws_read_buffer_size=4096)),
            events=None,
            client_token=None,
        )
        self.assertEqual(factory.read_buffer_size, 4096)
        self.assertNotIn("client-token", factory.request_headers)
