"""
Canary tests of aws_localproxy.adapters.twisted_private: the private parts
of Twisted the project uses (the TLS protocol's internals, the socket
transports' write buffer, twisted.web's count of a request head, the
built-in endpoint parsers, the trust-root interface).  Each fails with a
message naming the part when a Twisted release moves it or changes what it
means; run them on a new release before raising setup.py's ceiling on
Twisted.  L{write_now} itself is tested here too, on real sockets.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any, List

from OpenSSL import SSL
from twisted.internet import endpoints as twisted_endpoints
from twisted.internet import reactor as _reactor
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, platformTrust
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel
from zope.interface import implementer

from aws_localproxy.adapters import twisted_private
from aws_localproxy.adapters.seams import code_uses
from aws_localproxy.adapters.twisted_private import (
    TLS_HOOKS,
    TLS_RECEIVE_STATE,
    IOpenSSLTrustRoot,
    TrustRoot,
    batching_tls,
    builtin_endpoint_types,
    direct_tls_receive,
    received_header_size,
    sends_now,
    tls_buffered_write,
    tls_shutdown,
    tls_shutdown_finished,
    write_now,
)
from aws_localproxy.tunnelservice.certs import server_tls_options
from aws_localproxy.upstream.tls_options import service_tls_options
from tests.support.helpers import private_ca, readable_bytes
from tests.support.payloads import assert_same_bytes, unique_payload
from tests.support.seams import adapter_warnings
from tests.support.tls import connect_in_memory

reactor: Any = _reactor


class Collector(Protocol):
    """Keeps what arrives and why the connection ended."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lost = reason


@implementer(IPushProducer)
class _Producer:
    """Records what it is asked."""

    def __init__(self) -> None:
        self.calls: List[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class TLSProtocolCanaryTests(SynchronousTestCase):
    """C{twisted.protocols.tls.TLSMemoryBIOProtocol}, which the batching TLS transport subclasses."""

    def connected(self) -> tuple[Any, Collector, Collector, Any]:
        """Twisted's own TLS client joined in memory to a TLS server: (client TLS, client, server, pump)."""
        client, server = Collector(), Collector()
        pump = connect_in_memory(self, client, server)
        assert client.transport is not None
        tls = client.transport
        self.assertIsInstance(tls, TLSMemoryBIOProtocol)
        return tls, client, server, pump

    def test_hooks_are_still_called(self) -> None:
        for hook, caller in TLS_HOOKS.items():
            self.assertTrue(
                code_uses(TLSMemoryBIOProtocol, caller, hook),
                f"Twisted's TLSMemoryBIOProtocol.{caller} no longer calls {hook}, "
                "which the batching TLS transport overrides",
            )
        self.assertTrue(
            twisted_private.TLS_SEAM, "twisted_private.TLS_SEAM is false: see the other canaries"
        )

    def test_steps_are_still_there(self) -> None:
        for name, step in (
            ("_bufferedWrite", tls_buffered_write),
            ("_shutdownTLS", tls_shutdown),
            ("_tlsShutdownFinished", tls_shutdown_finished),
        ):
            self.assertTrue(callable(step), f"Twisted's TLSMemoryBIOProtocol.{name} is gone")

    def test_state(self) -> None:
        """C{_tlsConnection} is the pyOpenSSL connection; the two flags mean lost and aborted."""
        tls, client, _, pump = self.connected()
        self.assertIsInstance(
            getattr(tls, "_tlsConnection", None),
            SSL.Connection,
            "Twisted's TLSMemoryBIOProtocol._tlsConnection is no longer the pyOpenSSL connection",
        )
        self.assertIs(getattr(tls, "_lostTLSConnection", None), False)
        self.assertIs(getattr(tls, "_aborted", None), False)
        tls.loseConnection()
        pump.flush()
        self.assertIs(
            tls._lostTLSConnection,
            True,
            "Twisted's TLSMemoryBIOProtocol._lostTLSConnection no longer says the TLS connection is gone",
        )
        tls, _, _, _ = self.connected()
        tls.abortConnection()
        self.assertIs(
            tls._aborted,
            True,
            "Twisted's TLSMemoryBIOProtocol._aborted no longer says the connection was aborted",
        )

    def test_buffered_write(self) -> None:
        """
        C{_bufferedWrite} keeps bytes, and pauses the producer, until the
        next bytes arrive: then they are written and the producer resumed.
        """
        tls, _, server, pump = self.connected()
        producer = _Producer()
        tls.registerProducer(producer, True)
        tls_buffered_write(tls, b"kept")
        pump.flush()
        self.assertEqual(server.received, b"")
        self.assertEqual(
            producer.calls,
            ["pause"],
            "Twisted's TLSMemoryBIOProtocol._bufferedWrite no longer pauses the producer",
        )
        assert server.transport is not None
        server.transport.write(b"wake up")
        pump.flush()
        self.assertEqual(
            server.received,
            b"kept",
            "Twisted's TLSMemoryBIOProtocol no longer writes what _bufferedWrite kept",
        )
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_shutdown(self) -> None:
        """C{_shutdownTLS} then C{_tlsShutdownFinished(None)}: a clean end on both sides."""
        tls, client, server, pump = self.connected()
        tls_shutdown(tls)
        tls_shutdown_finished(tls, None)
        pump.flush()
        self.assertTrue(client.lost and client.lost.check(ConnectionDone), client.lost)
        self.assertTrue(server.lost and server.lost.check(ConnectionDone), server.lost)

    def test_shutdown_with_an_error(self) -> None:
        """C{_tlsShutdownFinished(failure)}: the application sees that failure."""
        tls, client, _, pump = self.connected()
        error = SSL.Error([("SSL routines", "", "bad record mac")])
        tls_shutdown_finished(tls, Failure(error))
        pump.flush()
        self.assertTrue(client.lost and client.lost.value is error, client.lost)

    def test_fallback_warns_once(self) -> None:
        warnings = adapter_warnings(self)
        self.assertTrue(batching_tls())
        self.assertEqual(warnings, [])
        self.patch(twisted_private, "TLS_SEAM", False)
        self.assertFalse(batching_tls())
        self.assertFalse(batching_tls())
        self.assertEqual(
            warnings,
            [
                "This Twisted's TLS protocol no longer has the internals the batching TLS "
                "layer overrides (_write, _flushReceiveBIO, _flushSendBIO, _tlsConnection, "
                "_lostTLSConnection, _aborted): the WebSocket runs over Twisted's own TLS "
                "instead (the same bytes, more time per byte)"
            ],
        )


class _EarlyWriter(Collector):
    """
    Has a write wait for the TLS handshake as soon as it is connected (as a
    renegotiation makes one wait), and notes the TLS state then.
    """

    def connectionMade(self) -> None:
        tls: Any = self.transport
        tls_buffered_write(tls, b"early")
        self.state_then = (
            getattr(tls, "_handshakeDone", None),
            list(getattr(tls, "_appSendBuffer", None) or ()),
        )


class TLSReceiveCanaryTests(SynchronousTestCase):
    """
    What the batching TLS transport's C{dataReceived} assumes of Twisted's:
    it only writes a read into the receive BIO and decrypts it once
    C{_handshakeDone} is true and C{_appSendBuffer} (writes waiting for the
    handshake) is empty.
    """

    def test_code(self) -> None:
        self.assertTrue(
            code_uses(
                TLSMemoryBIOProtocol,
                "dataReceived",
                "bio_write",
                "_flushReceiveBIO",
                *TLS_RECEIVE_STATE,
            ),
            "Twisted's TLSMemoryBIOProtocol.dataReceived no longer reads "
            f"{', '.join(TLS_RECEIVE_STATE)} nor calls bio_write and _flushReceiveBIO",
        )
        self.assertIs(getattr(TLSMemoryBIOProtocol, "_handshakeDone", None), False)
        self.assertTrue(
            twisted_private.TLS_RECEIVE_SEAM, "twisted_private.TLS_RECEIVE_SEAM is false"
        )

    def test_state(self) -> None:
        """
        Before the handshake: not done, a waiting write in C{_appSendBuffer};
        after it (the reads of the handshake through C{dataReceived}): done,
        the write sent, nothing waits.
        """
        client, server = _EarlyWriter(), Collector()
        connect_in_memory(self, client, server)
        self.assertEqual(
            client.state_then,
            (False, [b"early"]),
            "Twisted's TLSMemoryBIOProtocol no longer keeps a waiting write in "
            "_appSendBuffer, with _handshakeDone false before the handshake",
        )
        tls: Any = client.transport
        self.assertEqual((tls._handshakeDone, tls._appSendBuffer), (True, []))
        self.assertEqual(server.received, b"early")

    def test_fallback_warns_once(self) -> None:
        warnings = adapter_warnings(self)
        self.assertTrue(direct_tls_receive())
        self.assertEqual(warnings, [])
        self.patch(twisted_private, "TLS_RECEIVE_SEAM", False)
        self.assertFalse(direct_tls_receive())
        self.assertFalse(direct_tls_receive())
        self.assertEqual(
            warnings,
            [
                "This Twisted's TLS protocol no longer receives as the batching TLS layer's "
                "reads assume (dataReceived: bio_write, _flushReceiveBIO, _handshakeDone, "
                "_appSendBuffer): every read goes through Twisted's dataReceived (more time "
                "per read)"
            ],
        )


class _RecordingDescriptor(FileDescriptor):
    """A socket transport whose socket takes everything and records it."""

    def __init__(self) -> None:
        super().__init__(reactor=MemoryReactor())
        self.connected = 1
        self.sent: List[bytes] = []

    def writeSomeData(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)


def _read_available(sock: socket.socket) -> bytes:
    """Whatever C{sock} has received so far, without waiting."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _writable(sock: socket.socket) -> bool:
    return bool(select.select([], [sock], [], 0)[1])


class _TLSOnConnect(Protocol):
    """Starts TLS on its transport as soon as it is connected; keeps what arrives."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.made: Deferred[Any] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.received = b""
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.startTLS(self.options)
        self.made.callback(transport)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lost = reason
        self.ended.callback(None)


class WriteBufferCanaryTests(SynchronousTestCase):
    """C{twisted.internet.abstract.FileDescriptor}'s write buffer, which L{write_now} reads."""

    def test_code(self) -> None:
        self.assertTrue(
            twisted_private.SENDS_NOW,
            "Twisted's FileDescriptor.write/doWrite no longer keep waiting bytes in "
            "_tempDataLen, or _writeDisconnected is gone",
        )

    def test_write_waits_for_do_write(self) -> None:
        """C{write} counts its bytes in C{_tempDataLen}; C{doWrite} sends them and empties it."""
        descriptor = _RecordingDescriptor()
        descriptor.write(b"abc")
        self.assertEqual(descriptor.sent, [])
        self.assertEqual(
            (descriptor.dataBuffer, descriptor._tempDataLen),
            (b"", 3),
            "Twisted's FileDescriptor.write no longer counts waiting bytes in _tempDataLen",
        )
        descriptor.doWrite()
        self.assertEqual(b"".join(descriptor.sent), b"abc")
        self.assertEqual(
            descriptor._tempDataLen,
            0,
            "Twisted's FileDescriptor.doWrite no longer empties _tempDataLen",
        )

    def test_write_disconnected(self) -> None:
        """Once C{_writeDisconnected}, a write is dropped: L{write_now} must not send it either."""
        descriptor = _RecordingDescriptor()
        descriptor._writeDisconnected = True
        descriptor.write(b"late")
        self.assertEqual(
            descriptor._tempDataLen,
            0,
            "Twisted's FileDescriptor.write no longer drops writes after _writeDisconnected",
        )

    def test_fallback_warns_once(self) -> None:
        warnings = adapter_warnings(self)
        descriptor = _RecordingDescriptor()
        self.assertTrue(sends_now(descriptor))
        self.assertFalse(sends_now(StringTransport()))
        self.assertEqual(warnings, [])
        self.patch(twisted_private, "SENDS_NOW", False)
        self.assertFalse(sends_now(descriptor))
        self.assertFalse(sends_now(descriptor))
        self.assertEqual(
            warnings,
            [
                "This Twisted's socket transports no longer keep their write buffer in "
                "_tempDataLen/_writeDisconnected: WebSocket bytes are sent on the reactor's "
                "next turn (one more turn per round trip)"
            ],
        )

    def test_any_file_descriptor(self) -> None:
        """
        L{write_now} sends at once on any transport L{sends_now} accepts (a
        C{FileDescriptor}), whether or not its class says anything about TLS.
        """
        descriptor = _RecordingDescriptor()
        self.assertTrue(sends_now(descriptor))
        write_now(descriptor, b"at once")
        self.assertEqual(descriptor.sent, [b"at once"])


class WriteNowTests(TestCase):
    """L{write_now} on a real TCP transport on 127.0.0.1."""

    #: A connection that never ends fails the test in seconds, not in trial's two minutes.
    timeout = 20

    def test_twisted_state_it_reads(self) -> None:
        """The buffer state L{write_now} checks is still Twisted's."""
        from twisted.internet.tcp import Connection

        descriptor = FileDescriptor()
        for name in (
            "dataBuffer",
            "_tempDataLen",
            "_writeDisconnected",
            "connected",
            "disconnecting",
        ):
            self.assertTrue(hasattr(descriptor, name), name)
        self.assertTrue(callable(Connection.writeSomeData))
        self.assertTrue(hasattr(Connection, "TLS"))

    async def connected(self, buffers: int = 0) -> Any:
        """
        A reactor TCP transport and the plain socket at its other end;
        C{buffers}: the kernel buffers of both sides, if not the default.
        """
        made: Deferred[Protocol] = Deferred()

        class Made(Protocol):
            def connectionMade(self) -> None:
                made.callback(self)

        port = reactor.listenTCP(0, Factory.forProtocol(Made), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        peer = socket.socket()
        self.addCleanup(peer.close)
        if buffers:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffers)
        peer.connect(("127.0.0.1", port.getHost().port))
        protocol = await made
        self.addCleanup(protocol.transport.loseConnection)
        if buffers:
            protocol.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffers)
        return protocol.transport, peer

    async def test_straight_to_the_socket(self) -> None:
        """Nothing waiting: the bytes are in the peer's queue when it returns, no writer registered."""
        transport, peer = await self.connected()
        self.assertTrue(sends_now(transport))
        write_now(transport, b"hello")
        self.assertEqual(readable_bytes(peer), 5)
        self.assertNotIn(transport, reactor.getWriters())

    async def test_behind_waiting_bytes(self) -> None:
        """Bytes already buffered go first: the new ones join the buffer, in order."""
        transport, peer = await self.connected()
        transport.write(b"first ")
        write_now(transport, b"second")
        self.assertEqual(readable_bytes(peer), 0)
        self.assertIn(transport, reactor.getWriters())
        peer.settimeout(5)
        received = b""
        while len(received) < 12:
            await deferLater(reactor, 0.01, lambda: None)
            if readable_bytes(peer):
                received += peer.recv(100)
        self.assertEqual(received, b"first second")

    async def test_behind_the_rest_of_a_partial_write(self) -> None:
        """
        The transport is still sending the rest of an earlier write (the
        reactor sent part of it, the rest waits in its buffer) when the
        socket has room again: a new write goes after that rest, not
        straight to the socket ahead of it.
        """
        transport, peer = await self.connected(buffers=64 * 1024)
        first = unique_payload(8 << 20, seed=31)
        second = unique_payload(64 * 1024, seed=32)
        received = bytearray()
        write_now(transport, first)
        # The peer reads a little, so that the socket is writable once: the
        # reactor sends part of what waits, the rest stays in the transport.
        received += _read_available(peer)
        await deferLater(reactor, 0.05, lambda: None)
        received += _read_available(peer)
        time.sleep(0.05)  # (no reactor turn: the transport has sent nothing more)
        self.assertTrue(_writable(transport.getHandle()), "the socket has room again")
        self.assertLess(len(received), len(first) // 2, "the first write is mostly unsent")
        write_now(transport, second)
        while len(received) < len(first) + len(second):
            await deferLater(reactor, 0.001, lambda: None)
            received += _read_available(peer)
        assert_same_bytes(self, bytes(received), first + second)

    async def test_through_tls_started_on_the_transport(self) -> None:
        """
        A transport that runs TLS itself (C{startTLS}) encrypts what it is
        given: L{write_now} leaves it to its C{write}, never puts the
        plaintext on the socket.
        """
        files = private_ca(self)
        server = _TLSOnConnect(server_tls_options(files))
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = _TLSOnConnect(service_tls_options("localhost", files.capath))
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        transport = await client.made
        self.assertTrue(sends_now(transport))
        # Once the handshake is done and its bytes are sent, nothing waits
        # in the transport: the case where L{write_now} would send at once.
        transport.write(b"hello ")
        while server.received != b"hello " and server.lost is None:
            await deferLater(reactor, 0.01, lambda: None)
        secret = unique_payload(1000, seed=33)
        write_now(transport, secret)
        while len(server.received) < 6 + len(secret) and server.lost is None:
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(server.received, b"hello " + secret)
        transport.loseConnection()
        await client.ended
        await server.ended

    async def test_more_than_the_socket_takes(self) -> None:
        """A write larger than the socket's buffer: what is left is buffered and sent later, whole."""
        transport, peer = await self.connected()
        data = bytes(range(256)) * 40000  # 10 MB
        write_now(transport, data)
        self.assertIn(transport, reactor.getWriters())
        peer.setblocking(False)
        received = bytearray()
        while len(received) < len(data):
            await deferLater(reactor, 0.001, lambda: None)
            try:
                received += peer.recv(1 << 20)
            except BlockingIOError:
                pass
        self.assertEqual(bytes(received), data)


class HeaderSizeCanaryTests(SynchronousTestCase):
    """C{twisted.web.http.HTTPChannel._receivedHeaderSize}, which the tunnel service's front door reads."""

    def test_code(self) -> None:
        self.assertTrue(
            code_uses(HTTPChannel, "lineReceived", "_receivedHeaderSize", "totalHeadersSize"),
            "Twisted's HTTPChannel.lineReceived no longer checks _receivedHeaderSize "
            "against totalHeadersSize",
        )

    def test_counts_the_head(self) -> None:
        """The count grows by each line of the head and starts again with the next request."""
        channel = HTTPChannel()
        channel.makeConnection(StringTransport())
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        lines = [b"GET / HTTP/1.1", b"Host: example", b"X-Long: " + b"x" * 100]
        for line in lines:
            channel.dataReceived(line + b"\r\n")
        self.assertEqual(
            received_header_size(channel),
            sum(map(len, lines)),
            "Twisted's HTTPChannel._receivedHeaderSize no longer counts the head's bytes",
        )
        channel.dataReceived(b"\r\n")
        self.assertEqual(received_header_size(channel), 0)

    def test_fallback_warns_once(self) -> None:
        warnings = adapter_warnings(self)
        self.assertIsNone(received_header_size(object()))
        self.assertIsNone(received_header_size(object()))
        self.assertEqual(
            warnings,
            [
                "This Twisted's HTTPChannel no longer has _receivedHeaderSize: an over-long "
                "request head is answered by twisted.web's own 400, not 431"
            ],
        )


class EndpointParsersCanaryTests(SynchronousTestCase):
    """C{twisted.internet.endpoints._serverParsers} and C{_clientParsers}."""

    def test_builtin_types(self) -> None:
        warnings = adapter_warnings(self)
        for side in ("server", "client"):
            parsers = getattr(twisted_endpoints, f"_{side}Parsers", None)
            self.assertIsInstance(
                parsers, dict, f"twisted.internet.endpoints._{side}Parsers is gone"
            )
            self.assertTrue({"tcp", "unix", "ssl"} <= builtin_endpoint_types(side), side)
            self.assertEqual(builtin_endpoint_types(side), {str(name).lower() for name in parsers})
        self.assertEqual(warnings, [], "a fallback warning while Twisted's parsers are there")

    def test_fallback_warns_once(self) -> None:
        warnings = adapter_warnings(self)
        self.patch(twisted_endpoints, "_serverParsers", None)
        self.assertEqual(builtin_endpoint_types("server"), {"tcp", "unix", "ssl"})
        self.assertEqual(builtin_endpoint_types("server"), {"tcp", "unix", "ssl"})
        self.assertEqual(
            warnings,
            [
                "This Twisted's twisted.internet.endpoints no longer has _serverParsers: "
                "endpoint descriptions are recognised by the built-in types tcp, unix and ssl "
                "and the installed plugins"
            ],
        )

    def test_parsers_gone(self) -> None:
        """A release without the attribute at all: the built-in types, and the warning."""
        warnings = adapter_warnings(self)
        parsers = twisted_endpoints._clientParsers  # type: ignore[attr-defined]
        del twisted_endpoints._clientParsers  # type: ignore[attr-defined]
        self.addCleanup(setattr, twisted_endpoints, "_clientParsers", parsers)
        self.assertEqual(builtin_endpoint_types("client"), {"tcp", "unix", "ssl"})
        self.assertEqual(len(warnings), 1)
        self.assertIn("no longer has _clientParsers", warnings[0])


class TrustRootCanaryTests(SynchronousTestCase):
    """C{twisted.internet._sslverify.IOpenSSLTrustRoot} and its method C{_addCACertsToContext}."""

    def test_twisted_asks_the_root(self) -> None:
        """Each new TLS context asks the trust root for its CAs."""
        contexts: List[SSL.Context] = []

        class Recording(TrustRoot):
            def add_cas_to(self, context: SSL.Context) -> None:
                contexts.append(context)

        self.assertTrue(
            code_uses(CertificateOptions, "_makeContext", "trustRoot", "_addCACertsToContext"),
            "Twisted's CertificateOptions._makeContext no longer calls "
            "trustRoot._addCACertsToContext",
        )
        CertificateOptions(trustRoot=Recording()).getContext()
        self.assertEqual(len(contexts), 1, "Twisted no longer asks a trust root for its CAs")
        self.assertIsInstance(contexts[0], SSL.Context)

    def test_the_interface_is_twisteds(self) -> None:
        """The interface our roots declare is the one Twisted's own roots provide."""
        self.assertTrue(
            IOpenSSLTrustRoot.providedBy(platformTrust()),
            "Twisted's trust roots no longer provide twisted.internet._sslverify.IOpenSSLTrustRoot",
        )
        self.assertTrue(IOpenSSLTrustRoot.providedBy(TrustRoot()))
