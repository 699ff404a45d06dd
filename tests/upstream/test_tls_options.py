"""
Unit tests of aws_localproxy.upstream.tls_options: what ``-c`` and ``-k`` mean for the TLS
connection to the tunneling service.

Each test runs a real TLS handshake in memory (iosim, no sockets) between the
client options under test and a server with a certificate from a private CA
made for the test (the local tunnel service's own certificate code).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from aws_localproxy.tunnelservice.certs import (
    CertificateFiles,
    server_tls_options,
)
from aws_localproxy.upstream.tls_options import (
    NO_VERIFY_WARNING,
    CAPathTrustRoot,
    UnverifiedClientTLS,
    service_tls_options,
    trust_root,
)
from tests.support.helpers import private_ca


class Greeter(Protocol):
    """The server side: says hello once TLS is up."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"hello")


class Recorder(Protocol):
    """The client side: what arrived, and why the connection ended."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


@implementer(IOpenSSLServerConnectionCreator)
class SNIRecordingOptions:
    """Server TLS that remembers the server name each client asked for."""

    def __init__(self, base: CertificateOptions, names: List[Optional[bytes]]) -> None:
        self._context = base.getContext()
        self._context.set_tlsext_servername_callback(
            lambda connection: names.append(connection.get_servername())
        )

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)


class HandshakeTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = private_ca(self)
        self.other = private_ca(self)

    def handshake(
        self,
        client_options: IOpenSSLClientConnectionCreator,
        server: Optional[CertificateFiles] = None,
    ) -> Tuple[Recorder, List[Optional[bytes]]]:
        """Connect in memory; the client protocol once everything is delivered, and the SNI seen."""
        names: List[Optional[bytes]] = []
        server_options = SNIRecordingOptions(server_tls_options(server or self.service), names)
        # TLS batches small writes with callLater(0): on this clock, which the pump advances.
        clock = Clock()
        server_factory = TLSMemoryBIOFactory(
            server_options, False, Factory.forProtocol(Greeter), clock=clock
        )
        recorder = Recorder()
        client_factory = TLSMemoryBIOFactory(
            client_options, True, Factory.forProtocol(lambda: recorder), clock=clock
        )
        client, server_protocol, pump = connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            clock=clock,
        )
        pump.flush()
        return recorder, names

    def assertVerified(self, recorder: Recorder) -> None:
        self.assertEqual(recorder.received, b"hello")
        self.assertIsNone(recorder.lost)

    def assertRejected(self, recorder: Recorder) -> None:
        self.assertEqual(recorder.received, b"")
        self.assertIsNotNone(recorder.lost)


class VerifiedTests(HandshakeTestCase):
    def test_capath_is_trusted(self) -> None:
        """C{-c} names a hashed directory holding the service's CA: the handshake succeeds."""
        recorder, names = self.handshake(service_tls_options("localhost", self.service.capath))
        self.assertVerified(recorder)
        self.assertEqual(names, [b"localhost"])

    def test_system_cas_only(self) -> None:
        """Without C{-c} a private CA is not trusted (the system store is)."""
        recorder, _ = self.handshake(service_tls_options("localhost"))
        self.assertRejected(recorder)
        self.assertTrue(recorder.lost and recorder.lost.check(SSL.Error))

    def test_other_ca(self) -> None:
        """A CA directory that does not hold the service's CA is not enough."""
        recorder, _ = self.handshake(service_tls_options("localhost", self.other.capath))
        self.assertRejected(recorder)

    def test_host_name_is_checked(self) -> None:
        """A trusted certificate for another name is refused (RFC 2818 check)."""
        recorder, _ = self.handshake(
            service_tls_options("data.tunneling.iot.us-east-1.amazonaws.com", self.service.capath)
        )
        self.assertRejected(recorder)

    def test_ip_address_endpoint(self) -> None:
        """An IP-literal endpoint is checked against the certificate's IP addresses."""
        recorder, names = self.handshake(service_tls_options("127.0.0.1", self.service.capath))
        self.assertVerified(recorder)
        self.assertEqual(names, [None])

    def test_trust_root_adds_the_directory(self) -> None:
        """The trust root keeps the system CAs and adds the C{-c} directory."""
        root, none = trust_root(self.service.capath), trust_root(None)
        assert isinstance(root, CAPathTrustRoot) and isinstance(none, CAPathTrustRoot)
        self.assertEqual((root.capath, none.capath), (self.service.capath, None))


class UnverifiedTests(HandshakeTestCase):
    def test_no_verify_accepts_anything(self) -> None:
        """C{-k}: an untrusted certificate for another name is accepted."""
        recorder, names = self.handshake(UnverifiedClientTLS("tunnel.example"))
        self.assertVerified(recorder)
        self.assertEqual(names, [b"tunnel.example"])

    def test_no_sni_for_ip_literals(self) -> None:
        """SNI carries host names only: none for an IPv4 or IPv6 literal, or no name."""
        for host in ("127.0.0.1", "::1", None):
            recorder, names = self.handshake(UnverifiedClientTLS(host))
            self.assertVerified(recorder)
            self.assertEqual(names, [None], host)

    def test_no_verify_warns(self) -> None:
        """C{-k} through L{service_tls_options} logs the loud warning, once."""
        with capturedLogs() as events:
            options = service_tls_options("localhost", verify=False)
        self.assertIsInstance(options, UnverifiedClientTLS)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual([e["log_format"] for e in warnings], [NO_VERIFY_WARNING])

    def test_verify_does_not_warn(self) -> None:
        with capturedLogs() as events:
            service_tls_options("localhost", self.service.capath)
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.warn], [])


class SharedContextTests(SynchronousTestCase):
    """Many tunnels to one service share one OpenSSL context (it holds the system CA store)."""

    def test_same_service_same_creator(self) -> None:
        first = service_tls_options("tunnel.example", None)
        self.assertIs(service_tls_options("tunnel.example", None), first)
        self.assertIsNot(service_tls_options("other.example", None), first)
