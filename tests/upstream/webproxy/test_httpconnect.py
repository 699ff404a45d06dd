"""
Tests for aws_localproxy.upstream.webproxy.httpconnect: the HTTP CONNECT endpoint, without sockets.

The proxy connection is a TCP4ClientEndpoint on a MemoryReactorClock; the test
plays the proxy by connecting the recorded factory to a StringTransport.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.address import HostnameAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.error import ConnectError, ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from aws_localproxy.upstream.webproxy.errors import (
    ProxyAuthenticationError,
    ProxyClientError,
    ProxyConnectionLost,
    ProxyProtocolError,
    ProxyRedirectionError,
    ProxyServerError,
    ProxyUnexpectedStatusError,
    WebProxyError,
)
from aws_localproxy.upstream.webproxy.httpconnect import (
    MAX_HEADER_SIZE,
    HTTPConnectEndpoint,
    connect_request,
)
from tests.fakes.caller import Recorder
from tests.support.webproxy import SERVICE, EndpointFailureTests, ProxyHarness

PASSWORD = "s3cr3t:p@ss"


@implementer(IHalfCloseableProtocol)
class HalfCloseRecorder(Recorder):
    """A caller's protocol that handles half-close."""

    def __init__(self) -> None:
        super().__init__()
        self.half: list[str] = []

    def readConnectionLost(self) -> None:
        self.half.append("read")

    def writeConnectionLost(self) -> None:
        self.half.append("write")


class Harness(ProxyHarness):
    """One HTTPConnectEndpoint over a memory reactor, and the proxy side of it."""

    proxy_host = "proxy.example"
    proxy_port = 3128

    def make_endpoint(self, host: str, port: int, **options: Any) -> HTTPConnectEndpoint:
        return HTTPConnectEndpoint(self.proxy_endpoint, host, port, **options)

    def request(self) -> bytes:
        return self.transport.value()


def result_of(d: Deferred) -> list:
    out: list = []
    d.addBoth(out.append)
    return out


class RequestTests(SynchronousTestCase):
    """What the endpoint sends to the proxy."""

    def test_interface(self) -> None:
        """HTTPConnectEndpoint provides IStreamClientEndpoint."""
        self.assertTrue(verifyObject(IStreamClientEndpoint, Harness().endpoint))

    def test_request_without_credentials(self) -> None:
        """CONNECT host:port HTTP/1.1 with Host, always (U2 fixed), and nothing else."""
        h = Harness()
        h.connect()
        self.assertEqual(h.request(), b"")
        h.accept()
        self.assertEqual(
            h.request(),
            f"CONNECT {SERVICE}:443 HTTP/1.1\r\nHost: {SERVICE}:443\r\n\r\n".encode(),
        )

    def test_request_with_credentials(self) -> None:
        """Credentials go as 'Proxy-Authorization: Basic' (capital B) of user:password in UTF-8."""
        h = Harness(credentials=("user", "pässword"))
        h.connect()
        h.accept()
        token = base64.b64encode("user:pässword".encode()).decode()
        self.assertEqual(
            h.request(),
            (
                f"CONNECT {SERVICE}:443 HTTP/1.1\r\nHost: {SERVICE}:443\r\n"
                f"Proxy-Authorization: Basic {token}\r\n\r\n"
            ).encode(),
        )

    def test_ipv6_authority(self) -> None:
        """An IPv6 service address is put in brackets."""
        self.assertEqual(
            connect_request("2001:db8::1", 8443),
            b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n",
        )

    def test_idna_host(self) -> None:
        """An internationalized host name is sent in its IDNA form."""
        self.assertIn(b"CONNECT xn--bcher-kva.example:443 ", connect_request("bücher.example", 443))

    def test_proxy_connection_is_not_connected_to_service_address(self) -> None:
        """The endpoint connects to the proxy endpoint it was given."""
        h = Harness()
        h.connect()
        self.assertEqual(h.reactor.tcpClients[0][:2], ("proxy.example", 3128))


class SuccessTests(SynchronousTestCase):
    """A 2xx hands the connection over."""

    def test_200_hands_over_real_transport(self) -> None:
        """After 200 the caller's protocol is connected to the proxy connection's own transport."""
        h = Harness()
        d = h.connect()
        negotiator = h.accept()
        self.assertNoResult(d)
        with capturedLogs() as events:
            negotiator.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\n")
        protocol = self.successResultOf(d)
        self.assertIsInstance(protocol, Recorder)
        self.assertIs(protocol.made_with, h.transport)
        self.assertIs(protocol.transport, h.transport)
        self.assertEqual(protocol.received, [])
        self.assertIn("TCP tunnel established successfully", [e.get("log_format") for e in events])
        self.assertEqual(h.factory.addresses, [HostnameAddress(SERVICE.encode(), 443)])

    def test_data_and_close_forwarded(self) -> None:
        """After the hand-over, data and connection loss reach the caller's protocol."""
        h = Harness()
        d = h.connect()
        negotiator = h.accept()
        negotiator.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        protocol = self.successResultOf(d)
        negotiator.dataReceived(b"tunnel bytes")
        negotiator.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(protocol.received, [b"tunnel bytes"])
        self.assertEqual(len(protocol.lost), 1)
        self.assertFalse(h.transport.disconnecting)

    def test_200_with_first_tunnel_bytes(self) -> None:
        """Bytes that arrive with the 200 response belong to the tunnel and are delivered."""
        h = Harness()
        d = h.connect()
        negotiator = h.accept()
        negotiator.dataReceived(
            b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n\x16\x03\x03hello"
        )
        protocol = self.successResultOf(d)
        self.assertEqual(protocol.received, [b"\x16\x03\x03hello"])

    def test_response_split_byte_by_byte(self) -> None:
        """The response is read until its end, whatever the segmentation (U2 fixed)."""
        h = Harness()
        d = h.connect()
        negotiator = h.accept()
        response = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n"
        for i in range(len(response)):
            self.assertNoResult(d)
            negotiator.dataReceived(response[i : i + 1])
        protocol = self.successResultOf(d)
        self.assertEqual(protocol.received, [])
        negotiator.dataReceived(b"ab")
        self.assertEqual(protocol.received, [b"ab"])

    def test_http_10_and_bare_newlines(self) -> None:
        """HTTP/1.0 answers and bare LF line ends are accepted."""
        h = Harness()
        d = h.connect()
        h.accept().dataReceived(b"HTTP/1.0 200\nServer: old\n\nrest")
        self.assertEqual(self.successResultOf(d).received, [b"rest"])

    def test_other_2xx_warns(self) -> None:
        """Another 2xx works, with the reference's warning."""
        h = Harness()
        d = h.connect()
        with capturedLogs() as events:
            h.accept().dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.successResultOf(d)
        self.assertIn(
            "TCP tunnel established but with unexpected response code from the Web proxy",
            [e.get("log_format") for e in events],
        )

    def test_half_close_forwarded(self) -> None:
        """Half-close reaches a caller's protocol that supports it."""
        h = Harness()
        factory = Factory.forProtocol(HalfCloseRecorder)
        d = h.connect(factory)
        negotiator = h.accept()
        # What HostnameEndpoint's wrapper below us claims is fixed from the start.
        self.assertTrue(IHalfCloseableProtocol.providedBy(negotiator))
        negotiator.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        protocol = self.successResultOf(d)
        negotiator.readConnectionLost()
        negotiator.writeConnectionLost()
        self.assertEqual(protocol.half, ["read", "write"])
        self.assertFalse(h.transport.disconnecting)

    def test_half_close_without_support_closes(self) -> None:
        """For a protocol without half-close, the end of the proxy's stream closes the connection."""
        h = Harness()
        d = h.connect()
        negotiator = h.accept()
        negotiator.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        protocol = self.successResultOf(d)
        negotiator.writeConnectionLost()
        self.assertFalse(h.transport.disconnecting)
        negotiator.readConnectionLost()
        self.assertTrue(h.transport.disconnecting)
        negotiator.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(len(protocol.lost), 1)

    def test_tls_on_top(self) -> None:
        """wrapClientTLS over the endpoint: TLS starts only after 200, on the proxy transport."""
        h = Harness()
        tls_endpoint = wrapClientTLS(optionsForClientTLS(SERVICE), h.endpoint)
        d = tls_endpoint.connect(h.factory)
        negotiator = h.accept()
        request = h.request()
        negotiator.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        protocol = self.successResultOf(d)
        self.assertIsInstance(protocol, Recorder)
        self.assertIsInstance(protocol.transport, TLSMemoryBIOProtocol)
        self.assertIs(protocol.transport.transport, h.transport)
        hello = h.request()[len(request) :]
        self.assertEqual(hello[:1], b"\x16")  # a TLS handshake record: the ClientHello

    def test_endpoint_reusable(self) -> None:
        """Each connect() is independent: the endpoint can serve a reconnecting service."""
        h = Harness()
        first = h.connect()
        second = h.connect()
        n1 = h.accept(0)
        t1 = h.transport
        h.transport = StringTransport()
        n2 = h.accept(1)
        n2.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        n1.dataReceived(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        self.assertIs(self.successResultOf(second).transport, h.transport)
        self.failureResultOf(first, ProxyServerError)
        self.assertTrue(t1.disconnecting)


class RefusalTests(SynchronousTestCase):
    """Every non-2xx status gives one clear error and drops the proxy connection."""

    def refuse(self, response: bytes, **kwargs: object) -> tuple[Failure, Harness, list]:
        h = Harness(**kwargs)
        d = h.connect()
        with capturedLogs() as events:
            h.accept().dataReceived(response)
        failure = self.failureResultOf(d, WebProxyError)
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.factory.addresses, [])
        return failure, h, list(events)

    def test_407_without_credentials(self) -> None:
        """407 without credentials sent says the proxy requires authentication."""
        failure, _, _ = self.refuse(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="squid"\r\n\r\n'
        )
        error = failure.value
        self.assertIsInstance(error, ProxyAuthenticationError)
        self.assertIsInstance(error, ProxyClientError)
        self.assertIsInstance(error, ConnectError)
        self.assertEqual(
            (error.status, error.reason, error.credentials_sent),
            (407, "Proxy Authentication Required", False),
        )
        self.assertEqual(
            str(error),
            "The web proxy requires authentication: 407 Proxy Authentication Required"
            " (it asks for Basic); give them in the proxy URL as"
            " http://user:password@host:port",
        )

    def test_407_with_credentials(self) -> None:
        """407 after sending credentials says they were rejected, without showing them."""
        failure, _, events = self.refuse(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            credentials=("alice", PASSWORD),
        )
        error = failure.value
        self.assertTrue(error.credentials_sent)
        self.assertIn("The web proxy rejected the credentials", str(error))
        self.assertNotIn(PASSWORD, str(error))
        self.assertNotIn("alice", str(error))
        token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        for event in events:
            text = repr(event)
            self.assertNotIn(PASSWORD, text)
            self.assertNotIn(token, text)

    def test_status_classes(self) -> None:
        """3xx, 4xx, 5xx, 1xx each give their class's error and log lines."""
        for response, kind, line in [
            (
                b"HTTP/1.1 308 Permanent Redirect",
                ProxyRedirectionError,
                "Make sure you're using the correct Web proxy address",
            ),
            (
                b"HTTP/1.1 403 Forbidden",
                ProxyClientError,
                "Make sure the Web proxy is configured properly",
            ),
            (
                b"HTTP/1.1 500 Internal Server Error",
                ProxyServerError,
                "Web proxy error, make sure to check your server's logs",
            ),
            (b"HTTP/1.1 102 Processing", ProxyUnexpectedStatusError, "Unexpected response code"),
        ]:
            failure, _, events = self.refuse(response + b"\r\n\r\n")
            self.assertIsInstance(failure.value, kind)
            formats = [e.get("log_format") for e in events]
            self.assertIn(line, formats)
            self.assertIn(
                "HTTP CONNECT request failed with response code: {code}({reason})", formats
            )
            status = int(response.split()[1])
            self.assertEqual(failure.value.status, status)
            self.assertIn(str(status), str(failure.value))

    def test_category_messages(self) -> None:
        """The messages start with the reference's category messages."""
        failure, _, _ = self.refuse(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        self.assertEqual(
            str(failure.value),
            "The Web proxy server responded with 5xx to the HTTP CONNECT request: 502 Bad Gateway",
        )
        failure, _, _ = self.refuse(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        self.assertEqual(
            str(failure.value),
            "The Web proxy server responded with 4xx to the HTTP CONNECT request: 403 Forbidden",
        )

    def test_refused_then_more_data_ignored(self) -> None:
        """After a refusal, further bytes from the proxy are ignored."""
        h = Harness()
        d = h.connect()
        negotiator = h.accept()
        negotiator.dataReceived(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\n")
        negotiator.dataReceived(b"body!")
        negotiator.connectionLost(Failure(ConnectionRefusedError()))
        self.failureResultOf(d, ProxyClientError)

    def test_malformed_status_line(self) -> None:
        """An answer that is not HTTP/1.x is a ProxyProtocolError that quotes it."""
        failure, _, _ = self.refuse(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        self.assertIsInstance(failure.value, ProxyProtocolError)
        self.assertIn("not an HTTP/1.x response: 'SSH-2.0-OpenSSH_9.6'", str(failure.value))
        failure, _, _ = self.refuse(b"HTTP/1.1 abc Nope\r\n\r\n")
        self.assertIsInstance(failure.value, ProxyProtocolError)

    def test_headers_too_large(self) -> None:
        """A header block over the cap is an error, with or without its end in sight."""
        h = Harness()
        d = h.connect()
        negotiator = h.accept()
        negotiator.dataReceived(b"HTTP/1.1 200 OK\r\n")
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        while not d.called:
            negotiator.dataReceived(filler)
        failure = self.failureResultOf(d, ProxyProtocolError)
        self.assertEqual(
            str(failure.value),
            f"The web proxy's response headers are longer than {MAX_HEADER_SIZE} bytes",
        )
        self.assertTrue(h.transport.disconnecting)
        failure, _, _ = self.refuse(
            b"HTTP/1.1 200 OK\r\n" + b"X: " + b"b" * 200 + b"\r\n\r\n", max_header_size=100
        )
        self.assertIsInstance(failure.value, ProxyProtocolError)


class ConnectionFailureTests(EndpointFailureTests, SynchronousTestCase):
    """Lost connections, timeouts, cancellation, connect errors and factory errors."""

    kind = "web proxy"
    proxy_name = "proxy.example:3128"
    greeting = b""
    final_answer = b"HTTP/1.1 200 OK\r\n\r\n"

    def harness(self, **kwargs: object) -> Harness:
        return Harness(**kwargs)

    def test_closed_in_headers(self) -> None:
        """The proxy closing in the middle of its headers gives ProxyConnectionLost too."""
        h = Harness()
        d = h.connect()
        negotiator = h.accept()
        negotiator.dataReceived(b"HTTP/1.1 200 OK\r\nServer")
        negotiator.connectionLost(Failure(ConnectionRefusedError()))
        self.failureResultOf(d, ProxyConnectionLost)
