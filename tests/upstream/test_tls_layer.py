"""
Tests of aws_localproxy.upstream.tls_layer: the WebSocket's TLS layer, which
encrypts a write and decrypts a read in one pass and sends in the same turn.

It overrides private methods of Twisted's C{TLSMemoryBIOProtocol} and calls
OpenSSL through pyOpenSSL's private bindings, so these tests are also a
guard (with the canaries of tests/adapters/) against a release that changes
them: the handshake, bytes both ways in memory and over real sockets on
127.0.0.1, back-pressure, the close after data, and a failed verification;
and the same again where those private parts are gone or not what they were
(pyOpenSSL's bindings missing, a connection whose C{_ssl} is not an
C{SSL *}, Twisted's TLS internals moved).
"""

from __future__ import annotations

import hashlib
from typing import Any, List, Optional, cast

from OpenSSL import SSL
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from aws_localproxy.adapters import openssl_private, twisted_private
from aws_localproxy.tunnelservice.certs import (
    server_tls_options,
)
from aws_localproxy.upstream import tls_layer
from aws_localproxy.upstream.tls_layer import (
    BatchingTLSFactory,
    BatchingTLSTransport,
    wrap_client_tls,
)
from aws_localproxy.upstream.tls_options import service_tls_options
from tests.support.helpers import fail_if_still_running, private_ca, readable_bytes, sleep
from tests.support.payloads import assert_same_bytes, digest, unique_payload
from tests.support.seams import adapter_warnings
from tests.support.tls import connect_in_memory

reactor: Any = _reactor
MIB = 1 << 20
#: The most plaintext one TLS record carries, and what one read of the send BIO takes.
RECORD = tls_layer.RECORD_SIZE
READ = tls_layer.SEND_BIO_READ
#: What the client sends and what the server sends: no block repeats, so a
#: TLS record duplicated, dropped or reordered changes what arrives.
UP = unique_payload(16 * MIB, seed=1)
DOWN = unique_payload(8 * MIB, seed=2)


class Collector(Protocol):
    """Keeps what arrives (and how many calls it took) and why the connection ended."""

    def __init__(self, send_on_connect: bytes = b"", close_after_send: bool = False) -> None:
        self.chunks: List[bytes] = []
        self.lost: Optional[Failure] = None
        self.ended: Deferred[None] = Deferred()
        self._send_on_connect = send_on_connect
        self._close_after_send = close_after_send

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self._send_on_connect:
            self.transport.write(self._send_on_connect)
        if self._close_after_send:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lost = reason
        self.ended.callback(None)


class DirectHandlesTests(SynchronousTestCase):
    def test_the_connection_handles_are_used(self) -> None:
        """Once connected, the transport calls OpenSSL with its connection's own handles."""
        client = Collector()
        connect_in_memory(self, client, Collector(), client_factory=BatchingTLSFactory)
        protocol: Any = client.transport
        self.assertIsInstance(protocol, BatchingTLSTransport)
        self.assertIs(protocol._direct_ssl, protocol._tlsConnection._ssl)
        self.assertIs(protocol._send_bio, protocol._tlsConnection._from_ssl)
        self.assertIs(protocol._receive_bio, protocol._tlsConnection._into_ssl)


class InMemoryTests(SynchronousTestCase):
    """Through iosim: no socket, so no sending in the same turn, but the same TLS."""

    def connect(self, client: Collector, server: Collector, hostname: str = "localhost") -> Any:
        fail_if_still_running(self)
        return connect_in_memory(
            self, client, server, client_factory=BatchingTLSFactory, hostname=hostname
        )

    def test_bytes_both_ways(self) -> None:
        """A megabyte each way arrives whole and in order; a close is clean on both sides."""
        up, down = UP[:MIB], DOWN[:MIB]
        client, server = Collector(send_on_connect=up), Collector(send_on_connect=down)
        pump = self.connect(client, server)
        assert_same_bytes(self, server.received, up)
        assert_same_bytes(self, client.received, down)
        assert client.transport is not None
        client.transport.loseConnection()
        pump.flush()
        self.assertTrue(client.lost and client.lost.check(ConnectionDone))
        self.assertTrue(server.lost and server.lost.check(ConnectionDone))

    def test_one_delivery_per_read(self) -> None:
        """
        Four TLS records that arrive together reach the protocol in one call
        (Twisted's own layer makes one call per record).
        """
        client, server = Collector(), Collector()
        pump = self.connect(client, server)
        assert server.transport is not None
        server.transport.write(DOWN[: 4 * 16384])
        pump.flush()
        self.assertEqual([len(chunk) for chunk in client.chunks], [4 * 16384])
        assert_same_bytes(self, client.received, DOWN[: 4 * 16384])

    def test_no_public_calls_on_the_direct_path(self) -> None:
        """
        Once connected, the direct path takes ciphertext out and records in
        without pyOpenSSL's C{bio_read} and C{recv}, each of which raises an
        exception every time there is nothing more (one per read and write),
        and puts a read's ciphertext in without its C{bio_write}.  Without
        the direct calls those are the path.
        """
        client, server = Collector(), Collector()
        pump = self.connect(client, server)
        assert client.transport is not None and server.transport is not None
        connection = cast(Any, client.transport)._tlsConnection
        calls = {"recv": 0, "bio_read": 0, "bio_write": 0}

        def counted(name: str) -> Any:
            method = getattr(connection, name)

            def call(*args: Any) -> Any:
                calls[name] += 1
                return method(*args)

            return call

        for name in calls:
            setattr(connection, name, counted(name))
        client.transport.write(UP[:65536])
        server.transport.write(DOWN[:65536])
        pump.flush()
        assert_same_bytes(self, server.received, UP[:65536])
        assert_same_bytes(self, client.received, DOWN[:65536])
        if cast(Any, client.transport)._direct_ssl is not None:
            self.assertEqual(calls, {"recv": 0, "bio_read": 0, "bio_write": 0})
        else:
            self.assertGreater(min(calls.values()), 0)

    def test_close_after_data(self) -> None:
        """
        The peer writes and closes at once: every byte arrives before the
        clean end, and the peer's close_notify is answered with ours, so the
        peer sees a clean end too (not a connection cut without one).
        """
        data = DOWN[:MIB]
        client, server = Collector(), Collector(send_on_connect=data, close_after_send=True)
        self.connect(client, server)
        assert_same_bytes(self, client.received, data)
        self.assertTrue(client.lost and client.lost.check(ConnectionDone), client.lost)
        self.assertTrue(server.lost and server.lost.check(ConnectionDone), server.lost)

    def test_writes_around_the_send_bio_read(self) -> None:
        """
        Writes whose ciphertext is one byte short of, exactly, or one byte
        over what one read of the send BIO takes (and twice that): every
        byte arrives, in order, whatever number of reads it took.
        """
        client, server = Collector(), Collector()
        pump = self.connect(client, server)
        assert client.transport is not None
        # What one full record costs in ciphertext on this connection.
        client.transport.write(UP[:RECORD])
        record = len(b"".join(pump.clientIO.stream))
        overhead = record - RECORD
        pump.flush()
        sent = UP[:RECORD]
        tried = 0
        for target in (READ - 1, READ, READ + 1, 2 * READ, 2 * READ + 1):
            full, rest = divmod(target, record)
            if 0 < rest <= overhead:
                continue  # no write has exactly that much ciphertext
            tried += 1
            size = full * RECORD + (rest - overhead if rest else 0)
            data = UP[len(sent) : len(sent) + size]
            client.transport.write(data)
            self.assertEqual(len(b"".join(pump.clientIO.stream)), target)
            pump.flush()
            sent += data
            assert_same_bytes(self, server.received, sent)
        self.assertGreaterEqual(tried, 4)

    def test_records_of_every_small_size(self) -> None:
        """
        Records of 1 to 40 bytes, then records of 1,000 bytes past the end of
        the buffer a read is decrypted into, all arriving in one read: every
        byte arrives, in order.
        """
        client, server = Collector(), Collector()
        pump = self.connect(client, server)
        assert server.transport is not None
        sizes = list(range(1, 41)) + [1000] * 300
        position = 0
        for size in sizes:
            server.transport.write(DOWN[position : position + size])
            pump.clock.advance(0)  # (Twisted's TLS sends a turn's writes as one record)
            position += size
        pump.flush()
        assert_same_bytes(self, client.received, DOWN[:position])

    def test_bad_record_after_data(self) -> None:
        """
        A read holding records and then a record that does not decrypt: the
        records before it are delivered, then the connection ends with
        OpenSSL's error (not as a clean close, and not silently going on).
        """
        client, server = Collector(), Collector()
        pump = self.connect(client, server)
        assert server.transport is not None
        server.transport.write(DOWN[:5000])
        pump.clock.advance(0)
        server.transport.write(DOWN[5000:6000])
        pump.clock.advance(0)
        ciphertext = bytearray(pump.serverIO.getOutBuffer())
        ciphertext[-1] ^= 0xFF  # the last record's authentication tag
        pump.client.dataReceived(bytes(ciphertext))
        pump.flush()
        assert_same_bytes(self, client.received, DOWN[:5000])
        self.assertIsNotNone(client.lost)
        self.assertTrue(client.lost and client.lost.check(SSL.Error), client.lost)

    def test_failed_verification(self) -> None:
        """A certificate for another name: nothing is delivered and the connection fails."""
        client, server = Collector(), Collector(send_on_connect=b"secret")
        self.connect(client, server, hostname="other.example")
        self.assertEqual(client.received, b"")
        self.assertIsNotNone(client.lost)
        self.assertFalse(client.lost and client.lost.check(ConnectionDone))


@implementer(IPushProducer)
class Pusher:
    """Writes the first C{total} bytes of L{UP} as fast as it is allowed to."""

    def __init__(self, transport: Any, total: int) -> None:
        self.transport = transport
        self.left = total
        self.sent = 0
        self.digest = hashlib.sha256()
        self.paused = 0
        self._running = False

    def start(self) -> None:
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self._running = False
        self.paused += 1

    def resumeProducing(self) -> None:
        if self._running:
            return
        self._running = True
        while self._running and self.left:
            piece = UP[self.sent : self.sent + min(self.left, 100_000)]
            self.left -= len(piece)
            self.sent += len(piece)
            self.digest.update(piece)
            self.transport.write(piece)
        if not self.left:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def stopProducing(self) -> None:
        self._running = False


class SlowReader(Collector):
    """Reads nothing for the first C{delay} seconds, then everything."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.digest = hashlib.sha256()
        self.size = 0
        self._delay = delay

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.pauseProducing()
        reactor.callLater(self._delay, self.transport.resumeProducing)

    def dataReceived(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)


class RealSocketTests(TestCase):
    """A Twisted TLS server on 127.0.0.1 and the batching client."""

    #: A connection that never ends fails the test in seconds, not in trial's two minutes.
    timeout = 20

    def serve(self, protocol: Protocol) -> int:
        # A read that loops forever in the reactor never lets trial's timeout fire.
        fail_if_still_running(self, 25.0)
        files = private_ca(self)
        self.capath = files.capath
        factory = TLSMemoryBIOFactory(
            server_tls_options(files), False, Factory.forProtocol(lambda: protocol)
        )
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    async def connect(self, port: int, client: Protocol) -> Any:
        endpoint = wrap_client_tls(
            service_tls_options("localhost", self.capath),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
        )
        connected = await endpoint.connect(Factory.forProtocol(lambda: client))
        self.assertIs(connected, client)
        return client

    async def test_write_reaches_the_socket_in_the_same_turn(self) -> None:
        """
        Once the handshake is done, a write is on the socket when C{write}
        returns: the TCP transport is not left waiting for the next poll.
        """
        server = Collector()
        port = self.serve(server)
        client = await self.connect(port, Collector())
        assert client.transport is not None
        client.transport.write(b"ping")  # may still ride with the handshake's end
        await sleep(0.05)
        tcp = client.transport.transport
        assert server.transport is not None
        server_socket = server.transport.transport.getHandle()  # type: ignore[attr-defined]
        self.assertEqual(readable_bytes(server_socket), 0)
        client.transport.write(b"hello")
        # On loopback a send() is in the peer's receive queue when it returns.
        self.assertGreater(readable_bytes(server_socket), 0)
        self.assertNotIn(tcp, reactor.getWriters())
        await sleep(0.05)
        self.assertEqual(server.received, b"pinghello")
        client.transport.loseConnection()
        await server.ended

    async def test_push_into_a_stalled_reader(self) -> None:
        """
        16 MiB into a server that does not read for 0.3 s: the producer is
        paused and resumed, and every byte arrives in order before the close.
        """
        server = SlowReader(0.3)
        port = self.serve(server)
        client = await self.connect(port, Collector())
        pusher = Pusher(client.transport, 16 * MIB)
        pusher.start()
        await server.ended
        self.assertEqual(server.size, 16 * MIB)
        self.assertEqual(server.digest.hexdigest(), pusher.digest.hexdigest())
        self.assertEqual(server.digest.hexdigest(), digest(UP[: 16 * MIB]))
        self.assertGreater(pusher.paused, 0)

    async def test_download_then_close(self) -> None:
        """
        The server sends 8 MiB and closes: all of it arrives, then a clean
        end; the client answers the server's close_notify, so the server's
        end is clean too.
        """
        data = DOWN[: 8 * MIB]
        server = Collector(send_on_connect=data, close_after_send=True)
        port = self.serve(server)
        client = await self.connect(port, Collector())
        await client.ended
        await server.ended
        assert_same_bytes(self, client.received, data)
        self.assertTrue(client.lost and client.lost.check(ConnectionDone), client.lost)
        self.assertTrue(server.lost and server.lost.check(ConnectionDone), server.lost)

    async def test_own_close_after_a_silent_handshake(self) -> None:
        """
        The server speaks first and the client has written nothing when the
        handshake ends: the client's close is still a clean TLS close, not
        an abort (as for a connection whose handshake never finished).
        """
        server = Collector(send_on_connect=b"hello")
        port = self.serve(server)
        client = await self.connect(port, Collector())
        while client.received != b"hello":
            await sleep(0.01)
        assert client.transport is not None
        client.transport.loseConnection()
        await client.ended
        await server.ended
        self.assertTrue(client.lost and client.lost.check(ConnectionDone), client.lost)
        self.assertTrue(server.lost and server.lost.check(ConnectionDone), server.lost)

    async def test_own_close_is_clean(self) -> None:
        """
        The client closes after the handshake: a TLS close (close_notify,
        then the TCP close), clean on both ends -- not an abort.
        """
        server = Collector()
        port = self.serve(server)
        client = await self.connect(port, Collector())
        assert client.transport is not None
        client.transport.write(b"bye")
        client.transport.loseConnection()
        await client.ended
        await server.ended
        self.assertEqual(server.received, b"bye")
        self.assertTrue(client.lost and client.lost.check(ConnectionDone), client.lost)
        self.assertTrue(server.lost and server.lost.check(ConnectionDone), server.lost)


class DirectCallsTests(SynchronousTestCase):
    def test_direct_calls_are_used(self) -> None:
        """With the pyOpenSSL CI installs, records go through the direct calls."""
        self.assertTrue(openssl_private.DIRECT)


class InMemoryWithoutDirectCallsTests(InMemoryTests):
    """The same, through pyOpenSSL's public C{send}/C{recv} only (its internals gone)."""

    def setUp(self) -> None:
        self.patch(openssl_private, "DIRECT", False)


class RealSocketWithoutDirectCallsTests(RealSocketTests):
    def setUp(self) -> None:
        self.patch(openssl_private, "DIRECT", False)


class InMemoryWithoutDirectReceiveTests(InMemoryTests):
    """
    The same where Twisted's C{dataReceived} no longer receives as the
    direct reads assume (C{TLS_RECEIVE_SEAM} false): every read goes through
    it, the rest stays direct, and the proxy says so once.
    """

    def setUp(self) -> None:
        self.warnings = adapter_warnings(self)
        self.patch(twisted_private, "TLS_RECEIVE_SEAM", False)

    def connect(self, client: Collector, server: Collector, hostname: str = "localhost") -> Any:
        pump = super().connect(client, server, hostname)
        protocol: Any = client.transport
        if protocol is not None:
            self.assertIsNone(protocol._receive_bio)
            self.assertIsNotNone(protocol._direct_ssl)
            self.assertEqual(len(self.warnings), 1)
            self.assertIn("dataReceived", self.warnings[0])
        return pump

    def test_no_public_calls_on_the_direct_path(self) -> None:
        """Only C{bio_write} is pyOpenSSL's: C{recv} and C{bio_read} stay direct."""
        client, server = Collector(), Collector()
        pump = self.connect(client, server)
        assert client.transport is not None and server.transport is not None
        connection = cast(Any, client.transport)._tlsConnection
        calls: List[str] = []
        for name in ("recv", "bio_read", "bio_write"):
            method = getattr(connection, name)
            setattr(connection, name, lambda *args, m=method, n=name: calls.append(n) or m(*args))
        client.transport.write(UP[:65536])
        server.transport.write(DOWN[:65536])
        pump.flush()
        assert_same_bytes(self, server.received, UP[:65536])
        assert_same_bytes(self, client.received, DOWN[:65536])
        self.assertEqual(set(calls), {"bio_write"})


class DirectReceiveTests(SynchronousTestCase):
    """
    A read's ciphertext goes into the receive BIO in one direct call once
    the handshake is done; what that call does not take, and a read that is
    not C{bytes}, go through Twisted's C{dataReceived} (pyOpenSSL's
    C{bio_write}), and every byte arrives, in order.
    """

    def connect(self) -> tuple[Collector, Collector, Any, List[str]]:
        fail_if_still_running(self)
        client, server = Collector(), Collector()
        pump = connect_in_memory(self, client, server, client_factory=BatchingTLSFactory)
        protocol: Any = client.transport
        self.assertIsNotNone(protocol._receive_bio)
        connection = protocol._tlsConnection
        public: List[str] = []
        method = connection.bio_write
        connection.bio_write = lambda data: public.append(bytes(data)) or method(data)
        return client, server, pump, public

    def test_direct(self) -> None:
        client, server, pump, public = self.connect()
        assert server.transport is not None
        server.transport.write(DOWN[:1000])
        pump.flush()
        self.assertEqual((client.received, public), (DOWN[:1000], []))

    def test_direct_after_a_write_that_waited_for_the_handshake(self) -> None:
        """
        A write made during the handshake waits for it (Twisted's
        C{dataReceived} takes the handshake's reads); once it is done, reads
        go direct again.
        """
        client, server = Collector(send_on_connect=b"early"), Collector()
        pump = connect_in_memory(self, client, server, client_factory=BatchingTLSFactory)
        self.assertEqual(server.received, b"early")
        connection = cast(Any, client.transport)._tlsConnection
        public: List[bytes] = []
        method = connection.bio_write
        connection.bio_write = lambda data: public.append(bytes(data)) or method(data)
        assert server.transport is not None
        server.transport.write(DOWN[:1000])
        pump.flush()
        self.assertEqual((client.received, public), (DOWN[:1000], []))

    def test_failed_write_takes_the_public_path(self) -> None:
        """A BIO write that fails (never, for a memory BIO, short of memory) is pyOpenSSL's to judge."""
        attempts: List[int] = []

        def failing(bio: Any, data: bytes, size: int) -> int:
            attempts.append(size)
            return -1

        client, server, pump, public = self.connect()
        self.patch(tls_layer, "BIO_write", failing)
        assert server.transport is not None
        server.transport.write(DOWN[:1000])
        pump.flush()
        self.assertEqual(client.received, DOWN[:1000])
        self.assertTrue(attempts)
        self.assertEqual([len(data) for data in public], attempts)

    def test_partial_write(self) -> None:
        """What a direct write did not take follows through the public path, after it."""
        real = tls_layer.BIO_write

        def partial(bio: Any, data: bytes, size: int) -> int:
            half = size // 2
            return int(real(bio, data[:half], half))

        client, server, pump, public = self.connect()
        self.patch(tls_layer, "BIO_write", partial)
        assert server.transport is not None
        message = DOWN[:10240]
        server.transport.write(message)
        pump.flush()
        assert_same_bytes(self, client.received, message)
        self.assertTrue(public)

    def test_one_pointer_per_buffer(self) -> None:
        """
        The buffers reads are decrypted into and ciphertext is read into
        have their C pointers made once for the process: a read, and a
        write's ciphertext, make none; a write makes one, into its own data.
        """
        client, server, pump, public = self.connect()
        made: List[object] = []
        real = tls_layer.from_buffer

        def counted(buffer: Any) -> Any:
            made.append(buffer)
            return real(buffer)

        self.patch(tls_layer, "from_buffer", counted)
        assert client.transport is not None and server.transport is not None
        server.transport.write(DOWN[:70000])
        pump.flush()
        self.assertEqual(made, [])
        assert_same_bytes(self, client.received, DOWN[:70000])
        client.transport.write(UP[:100])
        pump.flush()
        self.assertEqual(server.received, UP[:100])
        self.assertEqual(len(made), 1)

    def test_not_bytes(self) -> None:
        """A read handed over as something else than C{bytes} is Twisted's."""
        client, server, pump, public = self.connect()
        protocol: Any = client.transport
        read = protocol.dataReceived
        protocol.dataReceived = lambda data: read(memoryview(data))
        assert server.transport is not None
        server.transport.write(DOWN[:100])
        pump.flush()
        self.assertEqual(client.received, DOWN[:100])
        self.assertTrue(public)


class DirectWriteTests(SynchronousTestCase):
    """
    A write goes through OpenSSL's C{SSL_write} directly; where that stops
    (OpenSSL refuses, or wants something done first), pyOpenSSL's C{send}
    takes the rest and says what it means: the same bytes arrive, or the
    connection ends with OpenSSL's error, as through Twisted's own TLS.
    """

    def connect(self) -> tuple[Collector, Collector, Any]:
        fail_if_still_running(self)
        client, server = Collector(), Collector()
        pump = connect_in_memory(self, client, server, client_factory=BatchingTLSFactory)
        self.assertIsNotNone(cast(Any, client.transport)._direct_ssl)
        return client, server, pump

    def test_refused_direct_write(self) -> None:
        """C{SSL_write} returning 0 (refused): the public path writes it all, once."""
        calls: List[int] = []

        def refusing(ssl: Any, pointer: Any, size: int) -> int:
            calls.append(size)
            if len(calls) > 100:
                raise AssertionError("SSL_write called again and again after it refused")
            return 0

        client, server, pump = self.connect()
        self.patch(tls_layer, "SSL_write", refusing)
        assert client.transport is not None
        client.transport.write(UP[:50000])
        pump.flush()
        assert_same_bytes(self, server.received, UP[:50000])
        self.assertEqual(calls, [50000])

    def test_failed_write_ends_the_connection(self) -> None:
        """
        A write OpenSSL fails: the connection ends with that error, which
        the application sees (as Twisted's own TLS reports it), not as a
        clean close.
        """
        error = SSL.Error([("SSL routines", "", "a write that cannot be done")])

        def failing(data: Any) -> int:
            raise error

        client, server, pump = self.connect()
        self.patch(tls_layer, "SSL_write", lambda ssl, pointer, size: -1)
        protocol: Any = client.transport
        protocol._tlsConnection.send = failing
        protocol.write(b"never")
        pump.flush()
        self.assertTrue(client.lost and client.lost.value is error, client.lost)
        self.assertIsNotNone(server.lost)
        self.assertEqual(server.received, b"")


class _ForeignHandles:
    """
    A pyOpenSSL connection as a later pyOpenSSL might keep it: every public
    method works, but C{_ssl} is not an C{SSL *} (here a plain object).
    """

    def __init__(self, connection: SSL.Connection) -> None:
        self._connection = connection
        self._ssl = object()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


@implementer(IOpenSSLClientConnectionCreator)
class _ForeignHandlesCreator:
    """Client TLS options whose connections have L{_ForeignHandles}."""

    def __init__(self, creator: Any) -> None:
        self._creator = creator

    def clientConnectionForTLS(self, tls_protocol: Any) -> Any:
        return _ForeignHandles(self._creator.clientConnectionForTLS(tls_protocol))


class InMemoryWithForeignHandlesTests(InMemoryTests):
    """
    The same, with connections whose C{_ssl} is not an C{SSL *}: each
    connection takes pyOpenSSL's public methods (the direct calls would
    raise on every write), and the proxy says so once.
    """

    def setUp(self) -> None:
        self.warnings = adapter_warnings(self)

    def connect(self, client: Collector, server: Collector, hostname: str = "localhost") -> Any:
        fail_if_still_running(self)
        pump = connect_in_memory(
            self,
            client,
            server,
            client_factory=BatchingTLSFactory,
            hostname=hostname,
            wrap_creator=_ForeignHandlesCreator,
        )
        protocol: Any = client.transport
        if protocol is not None:
            self.assertIsNone(protocol._direct_ssl)
            self.assertEqual(len(self.warnings), 1)
            self.assertIn("not an SSL *", self.warnings[0])
        return pump


class RealSocketWithForeignHandlesTests(RealSocketTests):
    """The real-socket tests with connections whose C{_ssl} is not an C{SSL *}."""

    async def connect(self, port: int, client: Protocol) -> Any:
        endpoint = wrap_client_tls(
            _ForeignHandlesCreator(service_tls_options("localhost", self.capath)),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
        )
        connected = await endpoint.connect(Factory.forProtocol(lambda: client))
        self.assertIs(connected, client)
        protocol: Any = client.transport
        self.assertIsInstance(protocol, BatchingTLSTransport)
        self.assertIsNone(protocol._direct_ssl)
        return client


class RealSocketWithTwistedTLSTests(RealSocketTests):
    """
    Where Twisted's TLS internals moved (C{TLS_SEAM} false), the endpoint
    builds Twisted's own TLS protocol: the same bytes arrive, the proxy says
    why once.
    """

    def setUp(self) -> None:
        self.warnings = adapter_warnings(self)
        self.patch(twisted_private, "TLS_SEAM", False)

    async def connect(self, port: int, client: Protocol) -> Any:
        await super().connect(port, client)
        self.assertIsInstance(client.transport, TLSMemoryBIOProtocol)
        self.assertNotIsInstance(client.transport, BatchingTLSTransport)
        self.assertEqual(len(self.warnings), 1)
        self.assertIn("Twisted's own TLS", self.warnings[0])
        return client

    async def test_write_reaches_the_socket_in_the_same_turn(self) -> None:
        """Twisted's own TLS sends on a later turn: here only that the bytes arrive."""
        server = Collector()
        port = self.serve(server)
        client = await self.connect(port, Collector())
        assert client.transport is not None
        client.transport.write(b"ping")
        client.transport.write(b"hello")
        client.transport.loseConnection()
        await server.ended
        self.assertEqual(server.received, b"pinghello")
