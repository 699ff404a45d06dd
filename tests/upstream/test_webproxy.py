"""
Tests for aws_localproxy.upstream.webproxy's entry points: service_endpoint,
proxied_endpoint and proxy_tls_options.

Most run on a MemoryReactorClock whose name resolver maps names to fixed
addresses, so a test sees which host was looked up (the proxy's or the
service's) and what went over the proxy connection. The TLS checks of an
https:// proxy run over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from aws_localproxy.tunnelservice.certs import ensure_certificates, server_tls_options
from aws_localproxy.upstream.tls_options import trust_root
from aws_localproxy.upstream.webproxy import (
    HTTPConnectEndpoint,
    ProxyUnreachableError,
    ProxyURLError,
    SOCKS5Endpoint,
    parse_proxy_url,
    proxied_endpoint,
    proxy_tls_options,
    service_endpoint,
)
from tests.fakes.resolver import RecordingResolver
from tests.support.webproxy import taken

SERVICE = "data.tunneling.iot.eu-west-1.amazonaws.com"
ADDRESSES = {
    SERVICE: "192.0.2.44",
    "proxy.example": "198.51.100.7",
    "::1": "::1",
}


class Harness:
    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.resolver = RecordingResolver(ADDRESSES)
        self.reactor.installNameResolver(self.resolver)
        self.transport = StringTransport()
        self.negotiator: Protocol | None = None

    def connect(self, endpoint: IStreamClientEndpoint) -> Any:
        d = endpoint.connect(Factory.forProtocol(Protocol))
        self.reactor.advance(0)
        return d

    def accept(self) -> Protocol:
        """The first TCP connection attempt succeeds."""
        host, port, factory = self.reactor.tcpClients[0][:3]
        self.negotiator = factory.buildProtocol(IPv4Address("TCP", host, port))
        self.negotiator.makeConnection(self.transport)
        return self.negotiator

    def sent(self) -> bytes:
        return taken(self.transport)

    def first_target(self) -> tuple[str, int]:
        return self.reactor.tcpClients[0][0], self.reactor.tcpClients[0][1]


def connect_request(credentials: bytes | None = None) -> bytes:
    auth = b""
    if credentials is not None:
        auth = b"Proxy-Authorization: Basic " + base64.b64encode(credentials) + b"\r\n"
    authority = f"{SERVICE}:443".encode()
    return b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n" + auth + b"\r\n"


class ServiceEndpointTests(SynchronousTestCase):
    """service_endpoint: direct or through the proxy, from the raw configuration."""

    def endpoint(self, h: Harness, web_proxy: str | None, no_proxy: str | None = None) -> Any:
        return service_endpoint(h.reactor, web_proxy, no_proxy, SERVICE, 443, timeout=10)

    def test_direct_without_proxy(self) -> None:
        h = Harness()
        endpoint = self.endpoint(h, None)
        verifyObject(IStreamClientEndpoint, endpoint)
        h.connect(endpoint)
        self.assertEqual(h.resolver.lookups, [(SERVICE, 443)])
        self.assertEqual(h.first_target(), ("192.0.2.44", 443))

    def test_http_proxy(self) -> None:
        """The proxy is resolved and connected, and asked to CONNECT to the service."""
        h = Harness()
        endpoint = self.endpoint(h, "http://proxy.example:8080")
        self.assertIsInstance(endpoint, HTTPConnectEndpoint)
        d = h.connect(endpoint)
        self.assertEqual(h.resolver.lookups, [("proxy.example", 8080)])
        self.assertEqual(h.first_target(), ("198.51.100.7", 8080))
        h.accept()
        self.assertEqual(h.sent(), connect_request())
        h.negotiator.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")  # type: ignore[union-attr]
        self.assertIs(self.successResultOf(d).transport, h.transport)

    def test_percent_decoded_credentials(self) -> None:
        """user:password@ is percent-decoded before it is sent as Basic credentials."""
        h = Harness()
        h.connect(self.endpoint(h, "http://us%40er:p%3Ass+w%25rd@proxy.example:8080"))
        h.accept()
        self.assertEqual(h.sent(), connect_request("us@er:p:ss w%rd".encode()))

    def test_scheme_less_url(self) -> None:
        """proxy.example:8080 without a scheme is an HTTP proxy, host intact (U1 fixed)."""
        h = Harness()
        h.connect(self.endpoint(h, "proxy.example:8080"))
        self.assertEqual(h.resolver.lookups, [("proxy.example", 8080)])

    def test_ipv6_proxy(self) -> None:
        h = Harness()
        h.connect(self.endpoint(h, "http://[::1]:3129"))
        self.assertEqual(h.first_target(), ("::1", 3129))

    def test_default_ports_warned(self) -> None:
        """No port: the scheme's default, with the reference's warning (typo and all)."""
        for url, port in [
            ("http://proxy.example", 3128),
            ("https://proxy.example/", 3128),
            ("socks5://proxy.example", 1080),
            ("socks5h://proxy.example:0", 1080),
        ]:
            h = Harness()
            with capturedLogs() as events:
                h.connect(self.endpoint(h, url))
            self.assertIn(("proxy.example", port), h.resolver.lookups, url)
            self.assertIn(
                f"No port was was provided for the web proxy, using default: {port}",
                [formatEvent(e) for e in events],
            )

    def test_no_proxy_bypass(self) -> None:
        """A service host in NO_PROXY is reached directly, and that is logged."""
        h = Harness()
        with capturedLogs() as events:
            endpoint = self.endpoint(h, "http://proxy.example:8080", "localhost,.amazonaws.com")
        h.connect(endpoint)
        self.assertEqual(h.resolver.lookups, [(SERVICE, 443)])
        self.assertIn(
            f"{SERVICE} is in NO_PROXY: connecting directly", [formatEvent(e) for e in events]
        )

    def test_no_proxy_other_hosts(self) -> None:
        """NO_PROXY entries for other hosts or ports keep the proxy."""
        for no_proxy in ["localhost,example.com", f"{SERVICE}:8443", "192.0.2.0/24"]:
            h = Harness()
            h.connect(self.endpoint(h, "http://proxy.example:8080", no_proxy))
            self.assertEqual(h.resolver.lookups, [("proxy.example", 8080)], no_proxy)

    def test_no_proxy_port_match(self) -> None:
        h = Harness()
        h.connect(self.endpoint(h, "http://proxy.example:8080", f"{SERVICE}:443"))
        self.assertEqual(h.resolver.lookups, [(SERVICE, 443)])

    def test_https_proxy_speaks_tls_first(self) -> None:
        """An https:// proxy gets a TLS ClientHello (SNI: its name) before the CONNECT."""
        h = Harness()
        d = h.connect(self.endpoint(h, "https://proxy.example:8443"))
        h.accept()
        hello = h.sent()
        self.assertEqual(hello[:1], b"\x16")
        self.assertIn(b"proxy.example", hello)
        self.assertNotIn(b"CONNECT", hello)
        self.assertNoResult(d)

    def test_socks5_resolves_service_here(self) -> None:
        """socks5://: the reactor's resolver turns the service name into an address."""
        h = Harness()
        endpoint = self.endpoint(h, "socks5://proxy.example:1080")
        self.assertIsInstance(endpoint, SOCKS5Endpoint)
        h.connect(endpoint)
        self.assertEqual(h.resolver.lookups, [(SERVICE, 443), ("proxy.example", 1080)])
        h.accept()
        h.negotiator.dataReceived(b"\x05\x00")  # type: ignore[union-attr]
        self.assertEqual(h.sent(), b"\x05\x01\x00" + b"\x05\x01\x00\x01\xc0\x00\x02\x2c\x01\xbb")

    def test_socks5h_sends_name(self) -> None:
        h = Harness()
        h.connect(self.endpoint(h, "socks5h://u:p@proxy.example:1080"))
        self.assertEqual(h.resolver.lookups, [("proxy.example", 1080)])
        h.accept()
        self.assertEqual(h.sent(), b"\x05\x02\x02\x00")
        h.negotiator.dataReceived(b"\x05\x02\x01\x00")  # type: ignore[union-attr]
        name = SERVICE.encode()
        self.assertEqual(
            h.sent(),
            b"\x01\x01u\x01p" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x01\xbb",
        )

    def test_invalid_url(self) -> None:
        h = Harness()
        with self.assertRaises(ProxyURLError) as caught:
            self.endpoint(h, "ftp://proxy.example")
        self.assertIn("Unsupported protocol", str(caught.exception))

    def test_credentials_never_logged(self) -> None:
        """Building and using the endpoint logs the proxy without its credentials."""
        h = Harness()
        secret = "Sup3rS3cret"
        with capturedLogs() as events:
            d = h.connect(self.endpoint(h, f"http://someone:{secret}@proxy.example"))
            h.accept()
            h.negotiator.dataReceived(  # type: ignore[union-attr]
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"
            )
        self.failureResultOf(d)
        texts = [formatEvent(e) or "" for e in events]
        self.assertIn(
            f"Connecting to {SERVICE}:443 through the web proxy http://***:***@proxy.example:3128",
            texts,
        )
        token = base64.b64encode(f"someone:{secret}".encode()).decode()
        for event, text in zip(events, texts, strict=True):
            for needle in (secret, token, "someone"):
                self.assertNotIn(needle, text)
                self.assertNotIn(needle, repr(event))

    def test_proxy_unreachable(self) -> None:
        """A proxy host that does not resolve gives a ProxyUnreachableError naming it."""
        h = Harness()
        d = h.connect(self.endpoint(h, "http://nowhere.example:3128"))
        failure = self.failureResultOf(d, ProxyUnreachableError)
        self.assertIn("Could not connect to the web proxy nowhere.example:3128", str(failure.value))

    def test_tls_handshake_failure_with_proxy(self) -> None:
        """A failed TLS handshake with an https:// proxy says so."""
        h = Harness()
        d = h.connect(self.endpoint(h, "https://proxy.example:8443"))
        tls = h.accept()
        # A plain HTTP proxy answering the ClientHello: the handshake fails.
        tls.dataReceived(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(h.transport.disconnecting)
        tls.connectionLost(Failure(ConnectionLost()))
        failure = self.failureResultOf(d, ProxyUnreachableError)
        self.assertIn(
            "Could not perform the TLS handshake with the web proxy proxy.example:8443: ",
            str(failure.value),
        )


class ProxiedEndpointTests(SynchronousTestCase):
    """proxied_endpoint: the layering for each scheme."""

    def test_layers(self) -> None:
        h = Harness()
        for url, kind in [
            ("http://p.example:1", HTTPConnectEndpoint),
            ("https://p.example:1", HTTPConnectEndpoint),
            ("socks5://p.example:1", SOCKS5Endpoint),
            ("socks5h://p.example:1", SOCKS5Endpoint),
        ]:
            endpoint = proxied_endpoint(h.reactor, parse_proxy_url(url), SERVICE, 443)
            self.assertIsInstance(endpoint, kind)
            verifyObject(IStreamClientEndpoint, endpoint)

    def test_timeout_covers_negotiation(self) -> None:
        h = Harness()
        endpoint = proxied_endpoint(
            h.reactor, parse_proxy_url("http://proxy.example:1"), SERVICE, 443, timeout=3
        )
        d = h.connect(endpoint)
        h.accept()
        h.reactor.advance(3)
        self.assertIn(
            "No tunnel through the web proxy after 3 seconds", str(self.failureResultOf(d).value)
        )


class _Hello(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello over TLS")


class _Collect(Protocol):
    def __init__(self) -> None:
        from twisted.internet.defer import Deferred

        self.got: Deferred[bytes] = Deferred()
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.got.called and len(self.buffer) >= 14:
            self.got.callback(self.buffer)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if not self.got.called:
            self.got.errback(reason)


class ProxyTLSOptionsTests(TestCase):
    """proxy_tls_options against a real TLS server on 127.0.0.1."""

    @inlineCallbacks
    def setUp(self) -> Any:
        self.files = ensure_certificates(self.mktemp())
        port = yield SSL4ServerEndpoint(
            reactor, 0, server_tls_options(self.files), interface="127.0.0.1"
        ).listen(Factory.forProtocol(_Hello))
        self.addCleanup(port.stopListening)
        self.port = port.getHost().port

    @inlineCallbacks
    def exchange(self, url: str, **kwargs: Any) -> Any:
        options = proxy_tls_options(parse_proxy_url(url % self.port), **kwargs)
        collect = _Collect()
        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", self.port))
        protocol = yield endpoint.connect(Factory.forProtocol(lambda: collect))
        self.addCleanup(protocol.transport.abortConnection)
        result = yield collect.got
        return result

    @inlineCallbacks
    def test_verified_with_trust_root(self) -> Any:
        """The proxy's certificate is checked against -c's CAs and the proxy's host name."""
        got = yield self.exchange("https://localhost:%d", trust_root=trust_root(self.files.capath))
        self.assertEqual(got, b"hello over TLS")
        got = yield self.exchange("https://127.0.0.1:%d", trust_root=trust_root(self.files.capath))
        self.assertEqual(got, b"hello over TLS")

    @inlineCallbacks
    def test_untrusted_certificate_rejected(self) -> Any:
        """Without the CA (platform trust only) the handshake fails."""
        from OpenSSL import SSL

        yield self.assertFailure(self.exchange("https://localhost:%d"), SSL.Error)

    @inlineCallbacks
    def test_wrong_name_rejected(self) -> Any:
        """A certificate for another name fails even with the right CA."""
        from service_identity import VerificationError

        d = self.exchange(
            "https://localhost.localdomain:%d", trust_root=trust_root(self.files.capath)
        )
        yield self.assertFailure(d, VerificationError)

    @inlineCallbacks
    def test_unverified(self) -> Any:
        """verify=False (-k) accepts any certificate, with the security warning."""
        with capturedLogs() as events:
            got = yield self.exchange("https://localhost.localdomain:%d", verify=False)
        self.assertEqual(got, b"hello over TLS")
        self.assertTrue(any("SECURITY WARNING" in (formatEvent(e) or "") for e in events))
