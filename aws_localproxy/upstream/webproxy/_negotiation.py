# -*- test-case-name: tests.upstream.webproxy.test_httpconnect -*-
"""
The part HTTP CONNECT and SOCKS5 share: talk to a proxy, then hand the stream over.

Both endpoints are a L{ProxyClientEndpoint}: the proxy endpoint, the target
host and port, credentials, a timeout and a clock, and a C{connect} that runs
one negotiation. A *negotiation* is a small object without I/O (``start()`` gives the first
bytes to send; ``feed(data)`` gives more bytes to send, and the leftover
bytes once the tunnel is up). An endpoint's C{connect} runs one over a
connection made by any ``IStreamClientEndpoint`` (plain TCP to the proxy, or
TLS to it) and, once the tunnel is up, builds the caller's protocol and
connects it to the *real* transport: nothing sits between a TLS layer on top
and the proxy connection below except this protocol forwarding
``dataReceived`` (a C{ProtocolWrapper} there breaks the TLS handshake of the
layer above). Bytes that came with the end of the proxy's answer belong to
the tunnel and are delivered first.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol
from typing import cast

import attrs
from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.address import HostnameAddress
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aws_localproxy.config.proxy_url import format_authority
from aws_localproxy.upstream.webproxy.errors import (
    ProxyConnectionLost,
    ProxyTimeoutError,
    ProxyUnreachableError,
    WebProxyError,
)

__all__ = ["Negotiation", "ProxyClientEndpoint", "host_bytes"]


def host_bytes(host: str) -> bytes:
    """The host as sent on the wire: ASCII, IDNA for an internationalized name."""
    return host.encode("ascii") if host.isascii() else host.encode("idna")


class Negotiation(TypingProtocol):
    """One proxy handshake, as bytes in and bytes out."""

    #: What to call the proxy in messages ("web proxy", "SOCKS5 proxy").
    kind: str

    def start(self) -> bytes:
        """The bytes to send once connected to the proxy."""

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """
        Take bytes from the proxy.

        Returns the bytes to send next, and ``None`` while the handshake goes
        on or the bytes that followed the proxy's final answer once the
        tunnel is up. Raises ``WebProxyError`` when the proxy refuses.
        """


class _Attempt:
    """One ``connect()``: the result Deferred, the timer and the proxy connection."""

    log = Logger()

    def __init__(
        self,
        proxy_endpoint: IStreamClientEndpoint,
        negotiation: Negotiation,
        factory: IProtocolFactory,
        address: IAddress,
        timeout: float | None,
        clock: IReactorTime,
        proxy_name: str,
    ) -> None:
        self.negotiation = negotiation
        self.proxy_name = proxy_name
        self.factory = factory
        self.address = address
        self.negotiator: _Negotiator | None = None
        self.result: Deferred[IProtocol] = Deferred(self._cancel)
        self._timer: IDelayedCall | None = None
        if timeout:
            self._timer = clock.callLater(timeout, self._timed_out, timeout)
        self._inner: Deferred[IProtocol] | None = None
        inner = proxy_endpoint.connect(_NegotiatorFactory(self))
        if not inner.called:
            self._inner = inner
        inner.addCallbacks(self._connected, self._connect_failed)

    @property
    def done(self) -> bool:
        return self.result.called

    def _connected(self, _proto: IProtocol) -> None:
        self._inner = None

    def _connect_failed(self, failure: Failure) -> None:
        self._inner = None
        if self.result.called:
            return
        if isinstance(
            failure.value, (error.ConnectingCancelledError, CancelledError, WebProxyError)
        ):
            self.fail(failure)
            return
        self.fail(
            ProxyUnreachableError(
                f"Could not connect to the {self.negotiation.kind} {self.proxy_name}:"
                f" {failure.getErrorMessage()}",
                failure,
            )
        )

    def fail(self, reason: Failure | BaseException) -> None:
        """Fire the result with ``reason`` (once) and drop the proxy connection."""
        if self.result.called:
            return
        self._stop_timer()
        self.result.errback(reason)
        self._abort()

    def succeed(self, protocol: IProtocol) -> None:
        self._stop_timer()
        self.result.callback(protocol)

    def _abort(self) -> None:
        if self._inner is not None:
            inner, self._inner = self._inner, None
            inner.cancel()
        elif self.negotiator is not None and self.negotiator.transport is not None:
            if self.negotiator.wrapped is None and not self.negotiator.lost:
                cast(ITCPTransport, self.negotiator.transport).abortConnection()

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        self.fail(
            ProxyTimeoutError(
                f"No tunnel through the {self.negotiation.kind} after {timeout:g} seconds"
            )
        )

    def _cancel(self, _result: Deferred[IProtocol]) -> None:
        self._stop_timer()
        if self._inner is not None:
            # The inner endpoint's own cancellation error (usually
            # ConnectingCancelledError) fires the result through _connect_failed.
            inner, self._inner = self._inner, None
            inner.cancel()
        else:
            self._abort()


@implementer(IHalfCloseableProtocol)
class _Negotiator(Protocol):
    """
    Runs the negotiation, then relays to the caller's protocol.

    After the hand-over the caller's protocol has the proxy connection's own
    transport; this object only forwards what that transport reports.

    It is half-closeable from the start, because endpoint wrappers below it
    (``HostnameEndpoint``'s) decide once, when it is built, whether to pass
    half-close on; for a caller's protocol that is not half-closeable, the
    end of the peer's stream closes the connection, as the transport itself
    would.
    """

    log = Logger()

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt
        self.wrapped: IProtocol | None = None
        self.lost = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._attempt.negotiator = self
        if self._attempt.done:
            cast(ITCPTransport, self.transport).abortConnection()
            return
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except Exception:  # not a TCP socket underneath: nothing to tune
                pass
        self.transport.write(self._attempt.negotiation.start())

    def dataReceived(self, data: bytes) -> None:
        if self.wrapped is not None:
            self.wrapped.dataReceived(data)
            return
        if self._attempt.done:
            return
        try:
            reply, leftover = self._attempt.negotiation.feed(data)
        except WebProxyError as e:
            self._attempt.fail(e)
            return
        if reply:
            assert self.transport is not None
            self.transport.write(reply)
        if leftover is not None:
            self._hand_over(leftover)

    def _hand_over(self, leftover: bytes) -> None:
        attempt = self._attempt
        try:
            protocol = attempt.factory.buildProtocol(attempt.address)
        except BaseException as e:
            attempt.fail(e)
            return
        if protocol is None:
            attempt.fail(error.NoProtocol())
            return
        assert self.transport is not None
        self.wrapped = protocol
        protocol.makeConnection(self.transport)
        attempt.succeed(protocol)
        if leftover:
            protocol.dataReceived(leftover)

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        if self.wrapped is None:
            # The proxy will send nothing more: there will be no tunnel.
            _close(self.transport)
        elif IHalfCloseableProtocol.providedBy(self.wrapped):
            self.wrapped.readConnectionLost()
        else:
            _close(self.transport)

    def writeConnectionLost(self) -> None:
        if self.wrapped is not None and IHalfCloseableProtocol.providedBy(self.wrapped):
            self.wrapped.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        if self.wrapped is not None:
            self.wrapped.connectionLost(reason)
            return
        kind = self._attempt.negotiation.kind
        if isinstance(reason.value, SSL.Error):
            # Only an https:// proxy puts TLS under us: its handshake failed.
            self._attempt.fail(
                ProxyUnreachableError(
                    f"Could not perform the TLS handshake with the {kind}"
                    f" {self._attempt.proxy_name}: {reason.getErrorMessage()}",
                    reason,
                )
            )
            return
        self._attempt.fail(
            ProxyConnectionLost(
                f"The {kind} closed the connection before the tunnel was set up"
                f" ({reason.getErrorMessage()})"
            )
        )


def _close(transport: ITransport) -> None:
    """
    Close C{transport} once its buffered bytes are written, even if the
    caller's protocol registered a streaming producer and paused it.

    With a paused producer registered, C{loseConnection} alone never
    disconnects: a TCP transport resumes the producer instead of closing when
    its write buffer drains, and a TLS transport waits for the producer to be
    unregistered. The stream has ended, so nothing more will be produced for
    this connection: the producer is unregistered first (TCP and TLS
    transports accept this when none is registered).
    """
    cast(IConsumer, transport).unregisterProducer()
    transport.loseConnection()


class _NegotiatorFactory(Factory):
    """Builds the single negotiator of one attempt."""

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt

    def buildProtocol(self, addr: IAddress | None) -> _Negotiator:
        negotiator = _Negotiator(self._attempt)
        negotiator.factory = self
        return negotiator


def _reactor_if_none(clock: IReactorTime | None) -> IReactorTime:
    """The clock given, or the global reactor (imported only then)."""
    if clock is None:
        from twisted.internet import reactor

        clock = cast(IReactorTime, reactor)
    return clock


@attrs.define(eq=False, repr=False)  # its own repr: never the credentials
class ProxyClientEndpoint:
    """
    What the HTTP CONNECT and SOCKS5 endpoints share: a stream to
    C{host:port} through the proxy that C{proxy_endpoint} reaches.

    C{credentials} (user, password) go to the proxy the way its protocol
    says; C{timeout} seconds bound connecting to the proxy and the
    negotiation together (C{None}: no bound); C{proxy_name} (e.g.
    C{host:port}, never credentials) names the proxy in messages. The
    endpoint keeps no state between C{connect} calls, so a reconnecting
    service can reuse it. Subclasses say how to negotiate.
    """

    _proxy_endpoint: IStreamClientEndpoint
    _host: str
    _port: int
    _credentials: tuple[str, str] | None = attrs.field(kw_only=True, default=None)
    _timeout: float | None = attrs.field(kw_only=True, default=30.0)
    _clock: IReactorTime = attrs.field(kw_only=True, default=None, converter=_reactor_if_none)
    _proxy_name: str = attrs.field(kw_only=True, default="")

    def __repr__(self) -> str:
        authority = format_authority(self._host, self._port)
        return f"<{type(self).__name__} {authority} via {self._proxy_endpoint!r}>"

    def _negotiation(self, target: str) -> Negotiation:
        """The handshake that asks the proxy for a stream to C{target}."""
        raise NotImplementedError

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return self._connect_to(self._host, protocolFactory)

    def _connect_to(self, target: str, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect C{protocolFactory}'s protocol through the proxy, asking it for
        C{target} (a name or an address).

        The Deferred fires with the caller's protocol once the tunnel is up,
        or fails with a ``WebProxyError`` (or the proxy endpoint's own error,
        e.g. connection refused); cancelling it cancels the connect or drops
        the proxy connection.
        """
        return _Attempt(
            self._proxy_endpoint,
            self._negotiation(target),
            protocolFactory,
            HostnameAddress(host_bytes(self._host), self._port),
            self._timeout,
            self._clock,
            self._proxy_name or repr(self._proxy_endpoint),
        ).result
