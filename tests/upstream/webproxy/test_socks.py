"""
Tests for aws_localproxy.upstream.webproxy.socks: the SOCKS5 endpoint, without sockets.

The proxy connection is a TCP4ClientEndpoint on a MemoryReactorClock; the test
plays the SOCKS5 proxy by connecting the recorded factory to a StringTransport
and feeding the negotiator the proxy's bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.address import HostnameAddress, IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
)
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from aws_localproxy.upstream.webproxy.errors import (
    ProxyProtocolError,
    SOCKSAuthenticationError,
    SOCKSError,
    WebProxyError,
)
from aws_localproxy.upstream.webproxy.socks import REPLY_MESSAGES, SOCKS5Endpoint
from tests.fakes.resolver import RecordingResolver
from tests.fakes.transport import TCPLikeTransport
from tests.support.webproxy import SERVICE, EndpointFailureTests, ProxyHarness

SUCCESS_V4 = b"\x05\x00\x00\x01\x0a\x00\x00\x01\x1f\x90"  # bound to 10.0.0.1:8080


class Harness(ProxyHarness):
    """One SOCKS5Endpoint over a memory reactor, and the proxy side of it."""

    proxy_host = "socks.example"
    proxy_port = 1080

    def __init__(self, **kwargs: Any) -> None:
        self.resolver = RecordingResolver()
        kwargs.setdefault("resolver", self.resolver)
        super().__init__(**kwargs)

    def make_endpoint(self, host: str, port: int, **options: Any) -> SOCKS5Endpoint:
        return SOCKS5Endpoint(self.proxy_endpoint, host, port, **options)

    def proxy_says(self, data: bytes) -> None:
        assert self.negotiator is not None
        self.negotiator.dataReceived(data)


def request(atyp_and_address: bytes, port: int = 443) -> bytes:
    return b"\x05\x01\x00" + atyp_and_address + struct.pack("!H", port)


DOMAIN_REQUEST = request(bytes([3, len(SERVICE)]) + SERVICE.encode())


class MethodNegotiationTests(SynchronousTestCase):
    """The greeting, the method choice and username/password (RFC 1929)."""

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IStreamClientEndpoint, Harness().endpoint))

    def test_no_auth(self) -> None:
        """Without credentials only 'no authentication' is offered, then the request follows."""
        h = Harness()
        d = h.connect()
        self.assertEqual(h.sent(), b"")
        h.accept()
        self.assertEqual(h.sent(), b"\x05\x01\x00")
        h.proxy_says(b"\x05\x00")
        self.assertEqual(h.sent(), DOMAIN_REQUEST)
        self.assertNoResult(d)
        h.proxy_says(SUCCESS_V4)
        protocol = self.successResultOf(d)
        self.assertIs(protocol.made_with, h.transport)
        self.assertEqual(h.factory.addresses, [HostnameAddress(SERVICE.encode(), 443)])

    def test_username_password(self) -> None:
        """With credentials both methods are offered; RFC 1929 sub-negotiation in UTF-8."""
        h = Harness(credentials=("user", "pässword"))
        d = h.connect()
        h.accept()
        self.assertEqual(h.sent(), b"\x05\x02\x02\x00")
        h.proxy_says(b"\x05\x02")
        password = "pässword".encode()
        self.assertEqual(h.sent(), b"\x01\x04user" + bytes([len(password)]) + password)
        h.proxy_says(b"\x01\x00")
        self.assertEqual(h.sent(), DOMAIN_REQUEST)
        h.proxy_says(SUCCESS_V4)
        self.successResultOf(d)

    def test_credentials_but_proxy_wants_none(self) -> None:
        """A proxy that picks 'no authentication' gets the request directly."""
        h = Harness(credentials=("user", "pw"))
        d = h.connect()
        h.accept()
        h.sent()
        h.proxy_says(b"\x05\x00")
        self.assertEqual(h.sent(), DOMAIN_REQUEST)
        h.proxy_says(SUCCESS_V4)
        self.successResultOf(d)

    def test_auth_failure(self) -> None:
        """Rejected credentials: a clear error without them, and the connection dropped."""
        h = Harness(credentials=("alice", "hunter2"))
        d = h.connect()
        h.accept()
        with capturedLogs() as events:
            h.proxy_says(b"\x05\x02")
            h.proxy_says(b"\x01\x01")
        failure = self.failureResultOf(d, SOCKSAuthenticationError)
        self.assertEqual(
            str(failure.value),
            "The SOCKS5 proxy rejected the credentials: check the user name and password"
            " in the proxy URL",
        )
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.factory.addresses, [])
        for event in events:
            self.assertNotIn("hunter2", repr(event))

    def test_auth_required_without_credentials(self) -> None:
        """'No acceptable methods' (or a pick of user/password) without credentials asks for them."""
        for answer in (b"\x05\xff", b"\x05\x02"):
            h = Harness()
            d = h.connect()
            h.accept()
            h.proxy_says(answer)
            failure = self.failureResultOf(d, SOCKSAuthenticationError)
            self.assertIn("The SOCKS5 proxy requires authentication", str(failure.value))
            self.assertIn("socks5://user:password@host:port", str(failure.value))
            self.assertTrue(h.transport.disconnecting)

    def test_no_acceptable_method_with_credentials(self) -> None:
        """A proxy that accepts none of our methods, credentials given."""
        h = Harness(credentials=("u", "p"))
        d = h.connect()
        h.accept()
        h.proxy_says(b"\x05\xff")
        failure = self.failureResultOf(d, SOCKSAuthenticationError)
        self.assertIn("accepts none of the offered authentication methods", str(failure.value))

    def test_not_socks5(self) -> None:
        """An answer that is not SOCKS version 5 (here an HTTP proxy) is a protocol error."""
        h = Harness()
        d = h.connect()
        h.accept()
        h.proxy_says(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        failure = self.failureResultOf(d, ProxyProtocolError)
        self.assertIn("not a SOCKS5 proxy", str(failure.value))

    def test_too_long_names_rejected_early(self) -> None:
        """A host name or credentials SOCKS5 cannot carry fail when the endpoint is built."""
        with self.assertRaises(ValueError):
            Harness(host="a" * 256)
        with self.assertRaises(ValueError):
            Harness(credentials=("u" * 256, "p"))
        with self.assertRaises(ValueError):
            Harness(credentials=("u", ""))


class ConnectReplyTests(SynchronousTestCase):
    """The CONNECT request's address types and the proxy's replies."""

    def negotiate(self, h: Harness) -> Deferred:
        d = h.connect()
        h.accept()
        h.proxy_says(b"\x05\x00")
        return d

    def test_request_address_types(self) -> None:
        """IPv4 and IPv6 literals are sent as addresses, names as names (socks5h)."""
        for host, field in [
            ("192.0.2.7", b"\x01\xc0\x00\x02\x07"),
            ("2001:db8::1", b"\x04" + bytes.fromhex("20010db8000000000000000000000001")),
            ("[2001:db8::1]", b"\x04" + bytes.fromhex("20010db8000000000000000000000001")),
            ("bücher.example", bytes([3, 21]) + b"xn--bcher-kva.example"),
        ]:
            h = Harness(host=host, port=8443)
            self.negotiate(h)
            self.assertEqual(h.sent(), b"\x05\x01\x00" + request(field, 8443), host)

    def test_reply_failure_codes(self) -> None:
        """Each RFC 1928 failure reply gives a SOCKSError that names it and the target."""
        for code in range(1, 10):
            h = Harness()
            d = self.negotiate(h)
            h.sent()
            with capturedLogs() as events:
                h.proxy_says(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
            failure = self.failureResultOf(d, SOCKSError)
            self.assertIsInstance(failure.value, ConnectError)
            self.assertEqual(failure.value.reply, code)
            message = REPLY_MESSAGES.get(code, "unknown error")
            self.assertEqual(
                str(failure.value),
                f"The SOCKS5 proxy could not connect to {SERVICE}:443: {message}"
                f" (reply 0x{code:02x})",
            )
            self.assertTrue(h.transport.disconnecting)
            self.assertIn(
                "SOCKS5 CONNECT to {target} failed: {message}",
                [e.get("log_format") for e in events],
            )

    def test_failure_told_from_two_bytes(self) -> None:
        """A refusal is reported even when the proxy closes after the first two bytes."""
        h = Harness()
        d = self.negotiate(h)
        h.proxy_says(b"\x05\x05")
        failure = self.failureResultOf(d, SOCKSError)
        self.assertEqual(failure.value.reply, 5)
        self.assertIn("connection refused", str(failure.value))

    def test_reply_bound_address_types(self) -> None:
        """Success replies with an IPv4, IPv6 or name bound address are all consumed exactly."""
        for bound in [
            b"\x01\x0a\x00\x00\x01",
            b"\x04" + b"\x00" * 15 + b"\x01",
            b"\x03\x0bproxy.local",
        ]:
            h = Harness()
            d = self.negotiate(h)
            h.proxy_says(b"\x05\x00\x00" + bound + b"\x04\x38" + b"first tunnel bytes")
            self.assertEqual(self.successResultOf(d).received, [b"first tunnel bytes"])

    def test_reply_split_byte_by_byte(self) -> None:
        """Any segmentation of the method answer and the reply works."""
        h = Harness()
        d = h.connect()
        h.accept()
        for byte in b"\x05\x00" + b"\x05\x00\x00\x03\x05proxy\x00\x50":
            self.assertNoResult(d)
            h.proxy_says(bytes([byte]))
        protocol = self.successResultOf(d)
        self.assertEqual(protocol.received, [])
        h.proxy_says(b"ab")
        self.assertEqual(protocol.received, [b"ab"])

    def test_everything_in_one_segment(self) -> None:
        """Method answer, reply and tunnel bytes in one read: the request is still sent first."""
        h = Harness()
        d = h.connect()
        h.accept()
        h.sent()
        h.proxy_says(b"\x05\x00" + SUCCESS_V4 + b"\x16\x03\x03")
        self.assertEqual(h.sent(), DOMAIN_REQUEST)
        self.assertEqual(self.successResultOf(d).received, [b"\x16\x03\x03"])

    def test_malformed_reply(self) -> None:
        """A reply with another version or an unknown address type is a protocol error."""
        for reply in (b"\x04\x00\x00\x01", b"\x05\x00\x00\x07\x00"):
            h = Harness()
            d = self.negotiate(h)
            h.proxy_says(reply)
            self.failureResultOf(d, ProxyProtocolError)
            self.assertTrue(h.transport.disconnecting)

    def test_tls_on_top(self) -> None:
        """wrapClientTLS over the endpoint: the ClientHello follows the SOCKS5 exchange."""
        h = Harness()
        d = wrapClientTLS(optionsForClientTLS(SERVICE), h.endpoint).connect(h.factory)
        h.accept()
        h.proxy_says(b"\x05\x00")
        h.sent()
        h.proxy_says(SUCCESS_V4)
        protocol = self.successResultOf(d)
        self.assertIsInstance(protocol.transport, TLSMemoryBIOProtocol)
        self.assertIs(protocol.transport.transport, h.transport)
        self.assertEqual(h.sent()[:1], b"\x16")


class NameResolutionTests(SynchronousTestCase):
    """socks5:// resolves the service's name here; socks5h:// lets the proxy do it."""

    def test_socks5h_sends_the_name(self) -> None:
        h = Harness(remote_dns=True)
        h.connect()
        h.accept()
        h.proxy_says(b"\x05\x00")
        self.assertEqual(h.resolver.lookups, [])
        self.assertEqual(h.sent(), b"\x05\x01\x00" + DOMAIN_REQUEST)

    def test_socks5_resolves_locally_ipv4(self) -> None:
        """The first resolved address is sent; the proxy connection waits for it."""
        h = Harness(remote_dns=False)
        d = h.connect()
        self.assertEqual(h.resolver.lookups, [(SERVICE, 443)])
        self.assertEqual(h.reactor.tcpClients, [])
        h.resolver.complete(
            IPv4Address("TCP", "192.0.2.9", 443), IPv4Address("TCP", "192.0.2.10", 443)
        )
        h.accept()
        h.proxy_says(b"\x05\x00")
        self.assertEqual(h.sent(), b"\x05\x01\x00" + request(b"\x01\xc0\x00\x02\x09"))
        h.proxy_says(SUCCESS_V4)
        self.successResultOf(d)
        # The caller's protocol is still told the name it asked for.
        self.assertEqual(h.factory.addresses, [HostnameAddress(SERVICE.encode(), 443)])

    def test_socks5_resolves_locally_ipv6(self) -> None:
        h = Harness(remote_dns=False)
        h.connect()
        h.resolver.complete(IPv6Address("TCP", "2001:db8::2", 443))
        h.accept()
        h.proxy_says(b"\x05\x00")
        self.assertEqual(
            h.sent(),
            b"\x05\x01\x00" + request(b"\x04" + bytes.fromhex("20010db8000000000000000000000002")),
        )

    def test_socks5_ip_literal_not_resolved(self) -> None:
        h = Harness(remote_dns=False, host="192.0.2.1")
        h.connect()
        self.assertEqual(h.resolver.lookups, [])
        self.assertEqual(len(h.reactor.tcpClients), 1)

    def test_socks5_name_not_found(self) -> None:
        """A name that does not resolve fails with a message that suggests socks5h://."""
        h = Harness(remote_dns=False)
        d = h.connect()
        h.resolver.complete()
        failure = self.failureResultOf(d, WebProxyError)
        self.assertIn(f"Could not resolve {SERVICE} for the SOCKS5 proxy", str(failure.value))
        self.assertEqual(h.reactor.tcpClients, [])

    def test_cancel_during_resolution(self) -> None:
        """Cancelling while the name resolves: no proxy connection is made afterwards."""
        h = Harness(remote_dns=False)
        d = h.connect()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        h.resolver.complete(IPv4Address("TCP", "192.0.2.9", 443))
        self.assertEqual(h.reactor.tcpClients, [])


class ConnectionFailureTests(EndpointFailureTests, SynchronousTestCase):
    """Lost connections, timeouts, cancellation, connect errors and factory errors."""

    kind = "SOCKS5 proxy"
    proxy_name = "socks.example:1080"
    greeting = b"\x05\x00"
    final_answer = SUCCESS_V4

    def harness(self, **kwargs: object) -> Harness:
        return Harness(**kwargs)

    def test_endpoint_reusable(self) -> None:
        """Each connect() is independent."""
        h = Harness()
        first = h.connect()
        h.accept()
        h.proxy_says(b"\x05\x00\x05\x04")
        self.failureResultOf(first, SOCKSError)
        h.transport = TCPLikeTransport()
        second = h.connect()
        h.accept()
        h.proxy_says(b"\x05\x00" + SUCCESS_V4)
        self.successResultOf(second)
