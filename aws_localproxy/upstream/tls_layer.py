# -*- test-case-name: tests.upstream.test_tls_layer -*-
"""
TLS for the tunnel's WebSocket: Twisted's memory-BIO TLS, with a write and
a read each costing one pass through Python instead of one per TLS record.

Twisted's C{TLSMemoryBIOProtocol} (through C{wrapClientTLS}) handles every
16 KiB TLS record on its own: a write of one 128 KiB WebSocket frame is
eight slices, eight encryptions, eight reads of the BIO and eight writes to
the TCP transport, and it is sent on a later reactor turn (Twisted's
C{BufferingTLSTransport} holds small writes for a C{callLater(0)}, then the
TCP transport waits for the next poll).  A read of 64 KiB becomes four calls
into Autobahn.  On a tunnel, where the frames are large and already batched
by the scheduler, that per-record and per-turn Python is most of what the
proxy spends per byte, and the extra turns are a large part of an
interactive round trip.

L{BatchingTLSTransport} keeps Twisted's TLS state machine (handshake,
verification, shutdown, producers) and changes the places where bytes
move:

  - a write encrypts every record of the data and takes all the ciphertext
    out of the BIO in one read, then hands it to the TCP transport once;
  - the ciphertext goes to the socket at once when nothing is waiting before
    it (L{write_now}), so a write reaches the kernel in the same turn; what
    the socket does not take stays in Twisted's buffer, sent when it is
    writable, as before;
  - once the handshake is done, a read's ciphertext goes into the receive
    BIO in one call to OpenSSL;
  - a read decrypts every complete record and delivers them in one call.

The calls that run once per record or per read (C{SSL_write}, C{SSL_read},
C{BIO_read}, C{BIO_write}) call OpenSSL through pyOpenSSL's own bindings
rather than through its C{send}/C{recv}/C{bio_read}/C{bio_write}, whose
argument checks, buffer pointers and error translation cost more than a
small record; the ciphertext and decrypted bytes pass through two buffers of
the process, each with one C pointer made once (see L{_DECRYPTED}).  The
public methods still handle every case the direct calls stop at (a
renegotiation, the peer's close, an error), and are the whole path for a
connection whose handles are not what the direct calls take
(L{openssl_private.direct_handles}).

It subclasses Twisted's class and overrides the private methods where
those bytes move (and C{dataReceived}), using Twisted's private state of the
TLS connection.  Both
dependencies' private parts are named, checked and resolved once in their
adapters, L{aws_localproxy.adapters.twisted_private} and
L{aws_localproxy.adapters.openssl_private}: where Twisted's internals are
gone, L{wrap_client_tls} builds Twisted's own TLS protocol instead, and
where pyOpenSSL's are, the public methods carry every record.  Their canary
tests (tests/adapters/) and C{tests/upstream/test_tls_layer.py} (handshakes,
both directions, back-pressure, close, failed verification) fail when a
release changes them.
"""

from __future__ import annotations

from typing import Any, Callable, cast

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from aws_localproxy.adapters.openssl_private import (
    WANT_READ,
    BIO_read,
    BIO_write,
    SSL_get_error,
    SSL_read,
    SSL_write,
    direct_handles,
    from_buffer,
)
from aws_localproxy.adapters.twisted_private import (
    batching_tls,
    direct_tls_receive,
    sends_now,
    tls_buffered_write,
    tls_shutdown,
    tls_shutdown_finished,
    write_now,
)

__all__ = [
    "BatchingTLSTransport",
    "BatchingTLSFactory",
    "BatchingTLSEndpoint",
    "wrap_client_tls",
]

#: The most plaintext one TLS record carries.
RECORD_SIZE = 16384

#: How much ciphertext one read of the send BIO takes; more than the largest
#: frame the scheduler builds (131,076 bytes of records and a header), so one
#: read normally empties it.
SEND_BIO_READ = 1 << 18

#: Where a read's records are decrypted before one copy hands them on, and
#: where the send BIO's ciphertext is read before one copy hands it on: one
#: of each for the process, each with its C pointer made once (C{None}
#: without pyOpenSSL's bindings, whose connections never take the direct
#: calls).
#:
#: No two connections, nor two calls of one, can use a buffer at once: every
#: TLS transport runs in the reactor's thread, one callback at a time, and
#: each buffer has one user, which fills it and copies the bytes out before
#: it returns (L{_decrypt_all} for L{_DECRYPTED}, L{_drain_bio} for
#: L{_CIPHERTEXT}).  While one fills its buffer, only OpenSSL runs: a memory
#: BIO's C{BIO_read} calls back into nothing, and the only Python that
#: C{SSL_read} can call back is pyOpenSSL's info and verification callbacks
#: (a handshake's, or a TLS 1.3 ticket's), which may write -- reach
#: L{_drain_bio}, the other buffer -- but never decrypt.  The pointers stay
#: valid while the buffers live (for the process); while a pointer exists
#: its C{bytearray} cannot be resized.
_DECRYPTED = bytearray(1 << 18)
_CIPHERTEXT = bytearray(SEND_BIO_READ)
_DECRYPTED_AT: Any = from_buffer(_DECRYPTED) if from_buffer is not None else None
_CIPHERTEXT_AT: Any = from_buffer(_CIPHERTEXT) if from_buffer is not None else None
_DECRYPTED_VIEW = memoryview(_DECRYPTED)
_DECRYPTED_SIZE = len(_DECRYPTED)
_CIPHERTEXT_VIEW = memoryview(_CIPHERTEXT)


#: The exception being handled, as a Failure (Twisted's constructor is untyped).
_current_failure: Callable[[], Failure] = Failure


class BatchingTLSTransport(TLSMemoryBIOProtocol):
    """
    A TLS transport whose writes and reads cross into Python once each,
    whatever the number of TLS records (see the module docstring).
    """

    #: The connection's C{SSL *} when the direct calls are used, else C{None};
    #: whether the TCP transport takes L{write_now}.  Both are known once
    #: connected; until then (the handshake's first bytes) the public path.
    _direct_ssl: Any = None
    #: The connection's send BIO (C{BIO *}, where OpenSSL puts ciphertext), with
    #: the direct calls.
    _send_bio: Any = None
    #: The connection's receive BIO (C{BIO *}, where a read's ciphertext goes),
    #: with the direct calls and Twisted's receiving as L{dataReceived} assumes.
    _receive_bio: Any = None
    _sends_now = False

    def makeConnection(self, transport: Any) -> None:
        twisted_tls: Any = TLSMemoryBIOProtocol  # untyped
        twisted_tls.makeConnection(self, transport)
        # Once per connection: the handles, if they are what the direct calls take.
        handles = direct_handles(self._tlsConnection)
        if handles is not None:
            self._direct_ssl, self._send_bio = handles.ssl, handles.send_bio
            if direct_tls_receive():
                self._receive_bio = handles.receive_bio
        self._sends_now = sends_now(transport)

    def dataReceived(self, data: bytes) -> None:
        # Twisted's writes the read into the receive BIO through pyOpenSSL's
        # bio_write (argument checks, a buffer pointer), then, once the
        # handshake is done and no write waits for it, only decrypts: that
        # common case in one call to OpenSSL, everything else Twisted's.
        bio = self._receive_bio
        if bio is None or not self._handshakeDone or self._appSendBuffer or type(data) is not bytes:
            twisted_tls: Any = TLSMemoryBIOProtocol  # untyped
            twisted_tls.dataReceived(self, data)
            return
        size = len(data)
        written = BIO_write(bio, data, size)
        if written != size:
            # A memory BIO takes all or fails (out of memory): pyOpenSSL's
            # bio_write, through Twisted's, takes the rest or raises what it means.
            twisted_tls = TLSMemoryBIOProtocol
            twisted_tls.dataReceived(self, data[max(written, 0) :])
            return
        self._flushReceiveBIO()

    def _write(self, data: bytes) -> None:
        if self._lostTLSConnection:
            return
        connection = self._tlsConnection
        view = memoryview(data)
        total, done = len(view), 0
        ssl = self._direct_ssl
        if ssl is not None:
            # OpenSSL writes one record per call (pyOpenSSL turns on partial
            # writes): the loop that runs once per record is this one.
            with from_buffer(view) as pointer:
                while done < total:
                    written = SSL_write(ssl, pointer + done, total - done)
                    if written <= 0:
                        break
                    done += written
        try:
            # The rest (all of it without the direct calls), and the reason a
            # direct write stopped: pyOpenSSL repeats the write, as OpenSSL
            # asks, and raises what it means.  A memoryview slice is no copy.
            while done < total:
                done += connection.send(view[done:])
        except WantReadError:
            # Only during a renegotiation: Twisted's buffer takes the rest and
            # writes it when the handshake needs no more bytes.
            tls_buffered_write(self, bytes(view[done:]))
        except Error:
            tls_shutdown_finished(self, _current_failure())
            return
        self._flushSendBIO()

    def _flushSendBIO(self) -> None:
        if self._direct_ssl is not None:
            pieces = _drain_bio(self._send_bio)
        else:
            pieces = _read_send_bio(self._tlsConnection)
        if not pieces:
            return
        transport = self.transport
        assert transport is not None
        ciphertext = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if self._sends_now:
            write_now(transport, ciphertext)
        else:
            transport.write(ciphertext)

    def _flushReceiveBIO(self) -> None:
        connection = self._tlsConnection
        pieces: list[bytes] = []
        ended: Any = None
        ssl = self._direct_ssl
        wants_more = False
        if ssl is not None and not self._lostTLSConnection:
            wants_more = _decrypt_all(ssl, pieces)
        # What is left (everything without the direct calls) and the reason
        # the direct reads stopped, unless it was "want more bytes" (the usual
        # one, which needs nothing done).
        while not wants_more and not self._lostTLSConnection:
            try:
                pieces.append(connection.recv(RECORD_SIZE))
            except WantReadError:
                break
            except ZeroReturnError:
                ended = True
                break
            except Error:
                ended = _current_failure()
                break
        if pieces and not self._aborted:
            # (What Twisted's C{ProtocolWrapper.dataReceived} does, without the call.)
            self.wrappedProtocol.dataReceived(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        # Twisted's handling of the end, after the bytes before it.
        if ended is True:
            tls_shutdown(self)
            tls_shutdown_finished(self, None)
        elif ended is not None:
            tls_shutdown_finished(self, ended)
        self._flushSendBIO()


def _decrypt_all(ssl: Any, pieces: list[bytes]) -> bool:
    """
    Every complete record OpenSSL holds for C{ssl}, decrypted into
    L{_DECRYPTED} and copied out onto C{pieces}.  Returns whether the reads
    stopped only for want of more bytes (anything else: the caller asks
    pyOpenSSL, which says what it is).
    """
    pointer, size, filled = _DECRYPTED_AT, _DECRYPTED_SIZE, 0
    while True:
        count = SSL_read(ssl, pointer + filled, size - filled)
        if count <= 0:
            break
        filled += count
        if filled == size:
            pieces.append(bytes(_DECRYPTED))
            filled = 0
    wants_more: bool = SSL_get_error(ssl, count) == WANT_READ
    if filled:
        pieces.append(bytes(_DECRYPTED_VIEW[:filled]))
    return wants_more


def _read_send_bio(connection: Any) -> list[bytes]:
    """The send BIO's ciphertext through pyOpenSSL (L{_drain_bio} without the direct calls)."""
    pieces = []
    while True:
        try:
            piece = connection.bio_read(SEND_BIO_READ)
        except WantReadError:  # pyOpenSSL's way of saying "empty"
            break
        pieces.append(piece)
        if len(piece) < SEND_BIO_READ:
            break
    return pieces


def _drain_bio(bio: Any) -> list[bytes]:
    """The ciphertext in the memory BIO C{bio}, read into L{_CIPHERTEXT} and copied out."""
    pieces = []
    while True:
        count = BIO_read(bio, _CIPHERTEXT_AT, SEND_BIO_READ)
        if count <= 0:  # empty: a memory BIO has no other way to fail a read
            break
        pieces.append(bytes(_CIPHERTEXT_VIEW[:count]))
        if count < SEND_BIO_READ:
            break
    return pieces


class BatchingTLSFactory(TLSMemoryBIOFactory):
    """Twisted's TLS factory, building L{BatchingTLSTransport}s."""

    protocol = BatchingTLSTransport


@implementer(IStreamClientEndpoint)
class BatchingTLSEndpoint:
    """C{wrapClientTLS}'s endpoint, with L{BatchingTLSFactory}."""

    def __init__(self, creator: Any, wrapped: IStreamClientEndpoint) -> None:
        #: The client TLS options (an C{IOpenSSLClientConnectionCreator}).
        self.creator = creator
        #: The endpoint TLS runs over (TCP, or a web proxy's tunnel).
        self.wrapped = wrapped

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        # Twisted's own TLS where its internals moved (warned once).
        tls_class = BatchingTLSFactory if batching_tls() else TLSMemoryBIOFactory
        tls_factory = tls_class(self.creator, True, factory)
        return self.wrapped.connect(tls_factory).addCallback(_application_protocol)


def _application_protocol(tls: IProtocol) -> IProtocol:
    wrapped: IProtocol = cast(TLSMemoryBIOProtocol, tls).wrappedProtocol
    return wrapped


def wrap_client_tls(creator: Any, wrapped: IStreamClientEndpoint) -> IStreamClientEndpoint:
    """
    Like Twisted's C{wrapClientTLS(creator, wrapped)}, with
    L{BatchingTLSTransport} as the TLS layer.
    """
    return BatchingTLSEndpoint(creator, wrapped)
