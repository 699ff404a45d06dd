# -*- test-case-name: tests.adapters.test_twisted_private -*-
"""
Every private part of Twisted the project uses, in one place.

What it reaches into, who uses it and why, and what happens when a Twisted
release moves it (tests/adapters/test_twisted_private.py is the canary for
each; setup.py's ceiling on Twisted is the newest release it passed on):

  1. C{TLSMemoryBIOProtocol} (C{twisted.protocols.tls}), for
     L{aws_localproxy.upstream.tls_layer.BatchingTLSTransport}: it overrides
     the three methods where bytes move (L{TLS_HOOKS}: C{_write},
     C{_flushSendBIO}, C{_flushReceiveBIO}), reads the TLS state
     (L{TLS_STATE}: the pyOpenSSL connection C{_tlsConnection}, the flags
     C{_lostTLSConnection} and C{_aborted}) and calls Twisted's own steps
     (L{tls_buffered_write}, L{tls_shutdown}, L{tls_shutdown_finished}), so
     that one WebSocket frame is one encryption pass and one socket write
     rather than one per 16 KiB record.  Gone (L{TLS_SEAM} false): Twisted's
     own public TLS protocol, what C{wrapClientTLS} builds, carries the
     WebSocket (slower per byte, never wrong); a warning, once.  Its
     C{dataReceived} is overridden too, once the handshake is done, to put
     a read's ciphertext into the receive BIO itself
     (L{TLS_RECEIVE_STATE}: C{_handshakeDone}, C{_appSendBuffer}, the
     conditions of Twisted's own on which it only writes to the BIO and
     decrypts).  Gone (L{TLS_RECEIVE_SEAM} false): Twisted's
     C{dataReceived} takes every read; a warning, once.
  2. C{FileDescriptor}'s write buffer (C{twisted.internet.abstract}), for
     L{write_now} (the TLS layer's ciphertext, the local connections'
     writes): C{_tempDataLen} (bytes written and not yet joined into
     C{dataBuffer}) and C{_writeDisconnected}, to know that nothing is waiting
     before a write, so that it can go to the socket in this reactor turn.
     Gone (L{SENDS_NOW} false): L{sends_now} says no and C{transport.write}
     sends on the next turn, as Twisted always does; a warning, once.
  3. C{HTTPChannel._receivedHeaderSize} (C{twisted.web.http}), for the local
     tunnel service's front door: the size of the request head so far, to
     answer an over-long head with 431 rather than twisted.web's bare 400.
     Gone: L{received_header_size} says C{None} and twisted.web's own limit
     answers (400); a warning, once.
  4. The built-in endpoint parsers of C{twisted.internet.endpoints}
     (C{_serverParsers}, C{_clientParsers}), for
     L{aws_localproxy.config.local_endpoints}: which names start an endpoint
     description (C{tcp:...}) rather than a C{host:port}.  Gone: the three
     types Twisted has always had (tcp, unix, ssl); a warning, once.
  5. C{IOpenSSLTrustRoot}, the interface of a TLS trust root, which Twisted
     defines in its private C{twisted.internet._sslverify} and exports under
     no public name, and its one method, C{_addCACertsToContext}, which
     Twisted's C{CertificateOptions} calls on the trust root for each new
     context: L{TrustRoot} implements it for the trust roots of
     L{aws_localproxy.upstream.tls_options} (the system CAs plus C{-c}), and
     the web proxies' options take an C{IOpenSSLTrustRoot}.  Gone: no public
     path (Twisted's own roots cannot add a directory of CAs): importing this
     module fails with an C{ImportError} naming it.

The checks run once (at import, or once per connection) and the names are
resolved once: the hot path calls exactly what it called before, with no
layer in between.
"""

from __future__ import annotations

from typing import Any, FrozenSet, Optional

from OpenSSL import SSL
from twisted.internet import endpoints as _endpoints
from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from aws_localproxy.adapters.seams import code_uses, warn_once

try:
    from twisted.internet._sslverify import IOpenSSLTrustRoot
except ImportError as _error:  # pragma: no cover - only with a Twisted we do not support
    raise ImportError(
        "aws-localproxy needs Twisted's twisted.internet._sslverify.IOpenSSLTrustRoot "
        "(the interface of a TLS trust root), which this Twisted no longer has: install "
        "the Twisted versions setup.py allows"
    ) from _error

__all__ = [
    "TLS_HOOKS",
    "TLS_STATE",
    "TLS_SEAM",
    "batching_tls",
    "TLS_RECEIVE_STATE",
    "TLS_RECEIVE_SEAM",
    "direct_tls_receive",
    "tls_buffered_write",
    "tls_shutdown",
    "tls_shutdown_finished",
    "SENDS_NOW",
    "sends_now",
    "write_now",
    "received_header_size",
    "builtin_endpoint_types",
    "IOpenSSLTrustRoot",
    "TrustRoot",
]

# --- 1. Twisted's memory-BIO TLS protocol ------------------------------------------

_TLS: Any = TLSMemoryBIOProtocol

#: The methods of C{TLSMemoryBIOProtocol} the batching TLS transport
#: overrides, each with the method of Twisted's that must still call it.
TLS_HOOKS = {"_write": "write", "_flushReceiveBIO": "dataReceived", "_flushSendBIO": "_write"}

#: The state of C{TLSMemoryBIOProtocol} the batching TLS transport reads.
TLS_STATE = ("_tlsConnection", "_lostTLSConnection", "_aborted")

#: C{TLSMemoryBIOProtocol._bufferedWrite(protocol, data)}: keeps what a
#: renegotiation stopped, to be written once it is done.
tls_buffered_write: Any = getattr(_TLS, "_bufferedWrite", None)
#: C{TLSMemoryBIOProtocol._shutdownTLS(protocol)}: answers the peer's close_notify.
tls_shutdown: Any = getattr(_TLS, "_shutdownTLS", None)
#: C{TLSMemoryBIOProtocol._tlsShutdownFinished(protocol, reason)}: the end
#: of the TLS connection (C{None}: clean), which closes the transport.
tls_shutdown_finished: Any = getattr(_TLS, "_tlsShutdownFinished", None)

#: Whether Twisted's TLS protocol still has every part the batching TLS
#: transport overrides, reads and calls (as far as can be seen without a
#: connection: the hooks are still called by the methods that called them,
#: C{makeConnection} still sets C{_tlsConnection}, the flags are still
#: class attributes).
TLS_SEAM: bool = (
    all(code_uses(_TLS, caller, hook) for hook, caller in TLS_HOOKS.items())
    and code_uses(_TLS, "makeConnection", "_tlsConnection")
    and all(isinstance(getattr(_TLS, name, None), bool) for name in TLS_STATE[1:])
    and all(callable(f) for f in (tls_buffered_write, tls_shutdown, tls_shutdown_finished))
)


def batching_tls() -> bool:
    """
    Whether the batching TLS transport can be used (L{TLS_SEAM}); warns
    once when it cannot.  Asked once per connection attempt.
    """
    if TLS_SEAM:
        return True
    warn_once(
        "twisted-tls",
        "This Twisted's TLS protocol no longer has the internals the batching TLS layer "
        f"overrides ({', '.join((*TLS_HOOKS, *TLS_STATE))}): the WebSocket runs over "
        "Twisted's own TLS instead (the same bytes, more time per byte)",
    )
    return False


#: The state Twisted's C{TLSMemoryBIOProtocol.dataReceived} reads to decide
#: whether a read only goes into the receive BIO and is decrypted (the
#: handshake is done, no write waits for it) -- what the batching TLS
#: transport's C{dataReceived} reads to do that itself.
TLS_RECEIVE_STATE = ("_handshakeDone", "_appSendBuffer")

#: Whether Twisted's C{dataReceived} still writes the read to the receive BIO
#: (C{bio_write}) and decrypts it (C{_flushReceiveBIO}) once the state above
#: says so, the handshake flag still a class attribute.
TLS_RECEIVE_SEAM: bool = (
    TLS_SEAM
    and code_uses(_TLS, "dataReceived", "bio_write", "_flushReceiveBIO", *TLS_RECEIVE_STATE)
    and isinstance(getattr(_TLS, "_handshakeDone", None), bool)
)


def direct_tls_receive() -> bool:
    """
    Whether the batching TLS transport may write a read into the receive
    BIO itself (L{TLS_RECEIVE_SEAM}); warns once when it may not.  Asked
    once per connection.
    """
    if TLS_RECEIVE_SEAM:
        return True
    warn_once(
        "twisted-tls-receive",
        "This Twisted's TLS protocol no longer receives as the batching TLS layer's reads "
        f"assume (dataReceived: bio_write, _flushReceiveBIO, {', '.join(TLS_RECEIVE_STATE)}): "
        "every read goes through Twisted's dataReceived (more time per read)",
    )
    return False


# --- 2. FileDescriptor's write buffer ------------------------------------------------

#: Whether a socket transport's write buffer is still what L{write_now}
#: reads: C{write} queues into C{_tempDataLen} unless C{_writeDisconnected},
#: and C{doWrite} empties it.
SENDS_NOW: bool = (
    code_uses(FileDescriptor, "write", "_tempDataLen", "_writeDisconnected")
    and code_uses(FileDescriptor, "doWrite", "_tempDataLen")
    and code_uses(FileDescriptor, "__init__", "_tempDataLen")
    and isinstance(getattr(FileDescriptor, "_writeDisconnected", None), bool)
)


def sends_now(transport: object) -> bool:
    """
    Whether L{write_now} can send for C{transport}: a socket transport of
    the reactor's, whose write buffer is still the one L{write_now} reads.
    Asked once per connection.
    """
    if not isinstance(transport, FileDescriptor):
        return False
    if SENDS_NOW:
        return True
    warn_once(
        "twisted-write-buffer",
        "This Twisted's socket transports no longer keep their write buffer in "
        "_tempDataLen/_writeDisconnected: WebSocket bytes are sent on the reactor's next "
        "turn (one more turn per round trip)",
    )
    return False


def write_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport} (a L{sends_now} one), sending what the
    socket takes now rather than on the next poll.

    Twisted's socket transports only buffer in C{write} and send when the
    reactor next finds the socket writable: one more turn of the reactor (a
    poll, a registration and an unregistration) between a relay reading a
    message and the message leaving, on every hop.  When nothing is waiting
    in the transport's buffer, the bytes go straight to the socket through
    the transport's own C{writeSomeData}; what the socket does not take, and
    everything while bytes are waiting (their order), goes through C{write}
    as usual, and so does everything on a transport that is closing or that
    runs TLS itself.  An error from the socket is left to C{write}: the
    bytes are buffered, and the reactor finds the error and disconnects.
    """
    if (
        not transport.dataBuffer
        and not transport._tempDataLen
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not getattr(transport, "TLS", False)
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int):
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


# --- 3. twisted.web's count of a request head's bytes --------------------------------


def received_header_size(channel: object) -> Optional[int]:
    """
    The bytes of the request head C{channel} (a C{twisted.web.http.HTTPChannel})
    has received so far, or C{None} when this Twisted no longer counts them
    there (then twisted.web's own limit applies).
    """
    size = getattr(channel, "_receivedHeaderSize", None)
    if isinstance(size, int):
        return size
    warn_once(
        "twisted-web-header-size",
        "This Twisted's HTTPChannel no longer has _receivedHeaderSize: an over-long request "
        "head is answered by twisted.web's own 400, not 431",
    )
    return None


# --- 4. The built-in endpoint types ---------------------------------------------------

#: The built-in endpoint types every Twisted release has had, on both sides.
_ALWAYS_BUILT_IN = frozenset({"tcp", "unix", "ssl"})


def builtin_endpoint_types(side: str) -> FrozenSet[str]:
    """
    The lower-cased names of the endpoint types C{serverFromString}
    (C{side="server"}) or C{clientFromString} (C{"client"}) knows without
    plugins.
    """
    parsers = getattr(_endpoints, f"_{side}Parsers", None)
    if not isinstance(parsers, dict):
        warn_once(
            "twisted-endpoint-parsers",
            f"This Twisted's twisted.internet.endpoints no longer has _{side}Parsers: "
            "endpoint descriptions are recognised by the built-in types tcp, unix and ssl "
            "and the installed plugins",
        )
        return _ALWAYS_BUILT_IN
    return frozenset(str(name).lower() for name in parsers)


# --- 5. Trust roots -------------------------------------------------------------------


@implementer(IOpenSSLTrustRoot)
class TrustRoot:
    """
    A TLS trust root for Twisted's C{optionsForClientTLS(trustRoot=...)}:
    a subclass says which CAs to trust in L{add_cas_to}.

    Twisted asks a trust root for its CAs through the interface's private
    method C{_addCACertsToContext}, once per new TLS context; this class is
    the one place that method is written.
    """

    def add_cas_to(self, context: SSL.Context) -> None:
        """Make C{context} trust this root's CAs."""
        raise NotImplementedError

    def _addCACertsToContext(self, context: SSL.Context) -> None:
        self.add_cas_to(context)
