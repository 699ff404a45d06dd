# -*- test-case-name: tests.upstream.test_connector -*-
"""
The life of the WebSocket: connect, retry, reconnect, and when to stop.

The reference's rules for retries, reconnects and exit codes, with its bugs
fixed; one attempt is "TCP (maybe through a web proxy) + TLS + upgrade":

 - a network, proxy or TLS failure, or a 5xx upgrade response, is retried
   every ``websocket.retry_delay_ms``, up to ``websocket.connect_retry_count``
   retries (-1: forever).  N means N (the reference retries forever, W1); when
   they are used up the proxy exits 1 (the reference exits 0, W2);
 - any other upgrade response (4xx: bad, spent or wrong-mode token, closed
   tunnel) is final: one error line with the status, exit 1 (the reference
   exits 0);
 - a close frame from the service (CloseTunnel, expiry) ends the proxy with 0;
 - a broken session (dropped connection, unanswered ping, a recoverable
   protocol error) reconnects at once with the same tokens when
   ``websocket.reconnect_on_data_error`` is set, else exits 1;
 - a fatal protocol or configuration error exits 1.

Autobahn's ``ClientService`` pairing misbehaves when a connection drops
during the handshake (STYLE.md), so this is a small loop of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE
from aws_localproxy.protocol.errors import FatalTunnelError, RecoverableTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.pacing import Pacer
from aws_localproxy.protocol.scheduler import DEFAULT_LANE_LIMIT, OutboundScheduler
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.upstream.websocket import (
    CloseOutcome,
    TunnelClientFactory,
    TunnelClientProtocol,
)

__all__ = ["TunnelConnector", "RetryPolicy", "EXIT_OK", "EXIT_FAILURE"]

EXIT_OK = 0
EXIT_FAILURE = 1


@dataclass(frozen=True)
class RetryPolicy:
    """
    What the connector does after a failure (the ``websocket.*`` settings).

    @ivar retry_count: retries of a failed connect before the proxy exits 1
        (``websocket.connect_retry_count``; negative: for ever).
    @ivar retry_delay: seconds between them (``websocket.retry_delay_ms``).
    @ivar reconnect_on_data_error: a broken session reconnects at once
        (``websocket.reconnect_on_data_error``); else the proxy exits 1.
    """

    retry_count: int
    retry_delay: float
    reconnect_on_data_error: bool


class TunnelConnector:
    """
    Keeps one local proxy connected to the service; L{finished} fires with the exit code.

    @ivar on_ready: called (with the tunnel) each time a session has its service IDs.
    @ivar on_closed: called (with how it ended) each time an open session closes,
        before the connector decides whether to reconnect.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint: IStreamClientEndpoint,
        factory_builder: Callable[["TunnelConnector"], TunnelClientFactory],
        tunnel: Tunnel,
        inbound: InboundFlow,
        *,
        display_url: str,
        retries: RetryPolicy,
        on_ready: Callable[[Tunnel], None] = lambda tunnel: None,
        on_closed: Callable[[CloseOutcome], None] = lambda outcome: None,
        lane_limit: int = DEFAULT_LANE_LIMIT,
        pacing: bool = True,
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._factory = factory_builder(self)
        self._tunnel = tunnel
        self._inbound = inbound
        self._lane_limit = lane_limit
        self._pacing = pacing
        self._scheduler: Optional[OutboundScheduler] = None
        self._display_url = display_url
        self._retries = retries
        self._on_ready = on_ready
        self._on_closed = on_closed
        self._failures = 0
        self._protocol: Optional[TunnelClientProtocol] = None
        self._connecting: Optional[Deferred[IProtocol]] = None
        self._retry_call: Optional[IDelayedCall] = None
        self._session_error: Optional[BaseException] = None
        self._stopping = False
        self._done = False
        self.finished: Deferred[int] = Deferred()
        #: WebSocket sessions opened so far (the first one and every reconnect).
        self.sessions = 0
        #: When the WebSocket last opened or closed (the reactor's clock), for metrics.
        self.state_changed_at = reactor.seconds()
        self._records_sent_before = 0
        self._bytes_sent_before = 0

    # -- control --------------------------------------------------------------------

    def start(self) -> None:
        self._attempt()

    def stop(self, flush_timeout: float = 0.0) -> Deferred[int]:
        """
        Stop for good: no more retries, the WebSocket closed with a close frame.
        Fires L{finished} (with 0 unless it had already fired) and returns it.

        With C{flush_timeout}, an open session first resets every connection
        (L{Tunnel.reset_every_connection}) and the close frame follows once
        those resets, and the bytes queued before them, are written -- or
        after C{flush_timeout} seconds, so a dead WebSocket cannot hold the
        stop.  Autobahn's close handshake timeout then bounds the rest.
        """
        if self._done or self._closing_after_resets:
            # (A second stop while the last resets are written waits for them too.)
            return self.finished
        self._stopping = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        protocol = self._protocol
        if protocol is not None:
            if protocol.state == protocol.STATE_OPEN:
                scheduler = self._scheduler
                if flush_timeout > 0 and scheduler is not None:
                    self._close_after_resets(protocol, scheduler, flush_timeout)
                else:
                    protocol.sendClose(1000, "local proxy stopping")
            else:
                protocol.dropConnection(abort=True)
        else:
            self._finish(EXIT_OK)
        return self.finished

    def _close_after_resets(
        self, protocol: TunnelClientProtocol, scheduler: OutboundScheduler, timeout: float
    ) -> None:
        """Reset every connection, then close the WebSocket once that is sent (or at C{timeout})."""
        self._closing_after_resets = True
        self._tunnel.reset_every_connection()

        def close(_: object) -> None:
            if protocol.state == protocol.STATE_OPEN:
                protocol.sendClose(1000, "local proxy stopping")

        def timed_out(failure: Failure) -> Optional[Failure]:
            if not isinstance(failure.value, TimeoutError):
                return failure
            self.log.warn(
                "Stopping: the last resets and {count} bytes for the tunnel were not all "
                "sent within {timeout} s; closing the web socket anyway",
                count=scheduler.queued,
                timeout=timeout,
            )
            return None

        sent = scheduler.when_idle()
        sent.addTimeout(timeout, self._reactor)
        sent.addErrback(timed_out)
        sent.addCallback(close)

    _closing_after_resets = False

    def fail(self, error: BaseException) -> None:
        """A fatal error from elsewhere (e.g. a source that cannot listen): exit 1."""
        self.log.critical("{error}", error=str(error))
        self._session_error = FatalTunnelError(str(error))
        if self._protocol is not None:
            self._protocol.dropConnection(abort=True)
        elif not self._done:
            self._stopping = True
            if self._retry_call is not None and self._retry_call.active():
                self._retry_call.cancel()
            if self._connecting is not None:
                self._connecting.cancel()
            self._finish(EXIT_FAILURE)

    @property
    def protocol(self) -> Optional[TunnelClientProtocol]:
        """The current session's protocol, if a connection exists."""
        return self._protocol

    # -- one attempt -------------------------------------------------------------------

    def _attempt(self) -> None:
        self._retry_call = None
        if self._stopping:
            return
        self.log.info(
            "Attempting to establish web socket connection with endpoint {url}",
            url=self._display_url,
        )
        d = self._endpoint.connect(self._factory)
        self._connecting = d

        def connected(protocol: TunnelClientProtocol) -> None:
            self._connecting = None
            self._protocol = protocol

        def failed(failure: Failure) -> None:
            self._connecting = None
            if self._stopping:
                self._finish(EXIT_OK)
                return
            self.log.error(
                "Could not connect to proxy server: {error}", error=failure.getErrorMessage()
            )
            self._retry_or_give_up()

        d.addCallbacks(connected, failed)

    def _retry_or_give_up(self) -> None:
        self._failures += 1
        if 0 <= self._retries.retry_count < self._failures:
            self.log.critical(
                "Could not connect to the tunneling service after {count} retries "
                "(websocket.connect_retry_count); giving up",
                count=self._retries.retry_count,
            )
            self._finish(EXIT_FAILURE)
            return
        self._retry_call = self._reactor.callLater(self._retries.retry_delay, self._attempt)

    # -- SessionEvents --------------------------------------------------------------------

    @property
    def session_up(self) -> bool:
        """A WebSocket session is open now."""
        return self._scheduler is not None

    @property
    def records_sent(self) -> int:
        """Records written to the WebSocket over every session."""
        scheduler = self._scheduler
        return self._records_sent_before + (scheduler.records_sent if scheduler else 0)

    @property
    def bytes_sent(self) -> int:
        """Record bytes (length prefixes included) written to the WebSocket over every session."""
        scheduler = self._scheduler
        return self._bytes_sent_before + (scheduler.bytes_sent if scheduler else 0)

    @property
    def last_ping_rtt(self) -> Optional[float]:
        """
        Seconds from the current session's latest answered pacing ping to its
        pong, for metrics (C{None} between sessions and before the first pong).
        """
        scheduler = self._scheduler
        return scheduler.last_rtt if scheduler is not None else None

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        self._failures = 0
        self.sessions += 1
        self.state_changed_at = self._reactor.seconds()
        self._session_error = None
        self._protocol = protocol
        transport = protocol.transport
        assert transport is not None
        scheduler = OutboundScheduler(
            protocol.send_record,
            pacer=Pacer(self._reactor.seconds) if self._pacing else None,
            send_ping=protocol.send_ping,
            lane_limit=self._lane_limit,
            max_payload=self._tunnel.limits.max_payload_size,
            frame_limit=MAX_WEBSOCKET_FRAME_SIZE,
            clock=self._reactor,
        )
        self._scheduler = scheduler
        transport.registerProducer(scheduler, True)  # type: ignore[attr-defined]
        self._inbound.attach(transport, scheduler, protocol)  # type: ignore[arg-type]
        self._tunnel.session_started(subprotocol, scheduler)
        self._check_ready()

    def session_pong(self, protocol: TunnelClientProtocol, payload: bytes) -> bool:
        scheduler = self._scheduler
        if protocol is not self._protocol or scheduler is None:
            return False
        return scheduler.pong(payload)

    @property
    def scheduler(self) -> Optional[OutboundScheduler]:
        """The current session's outbound scheduler."""
        return self._scheduler

    def session_message(self, protocol: TunnelClientProtocol, payload: bytes) -> None:
        if protocol is not self._protocol or self._session_error is not None:
            return
        try:
            self._tunnel.data_received(payload)
        except (RecoverableTunnelError, FatalTunnelError) as error:
            self._session_error = error
            if isinstance(error, FatalTunnelError):
                self.log.critical("{error}", error=str(error))
            else:
                self.log.error("{error}", error=str(error))
            protocol.dropConnection(abort=True)
            return
        self._check_ready()

    def _check_ready(self) -> None:
        """Tell C{on_ready} once per session, when SERVICE_IDS has been applied."""
        if self._tunnel.ready and self._ready_session != self.sessions:
            self._ready_session = self.sessions
            self._on_ready(self._tunnel)

    _ready_session = 0

    def session_closed(self, protocol: TunnelClientProtocol, outcome: CloseOutcome) -> None:
        if protocol is self._protocol:
            self._protocol = None
        if outcome.was_open:
            scheduler = self._scheduler
            if scheduler is not None:
                self._records_sent_before += scheduler.records_sent
                self._bytes_sent_before += scheduler.bytes_sent
            self.state_changed_at = self._reactor.seconds()
            self._scheduler = None
            if scheduler is not None:
                scheduler.close()  # its stall timer too, whatever the tunnel does
            self._inbound.detach()
            self._tunnel.session_ended()
            try:
                self._on_closed(outcome)
            except Exception:
                self.log.failure("The session-closed hook failed")
        error = self._session_error
        if self._stopping or self._done:
            self._finish(EXIT_FAILURE if isinstance(error, FatalTunnelError) else EXIT_OK)
            return
        if isinstance(error, FatalTunnelError):
            self._finish(EXIT_FAILURE)
            return
        if not outcome.was_open:
            self._handshake_failed(outcome)
            return
        if outcome.closed_by_service and error is None:
            self.log.info(
                "Web socket close received. Code: {code}; Reason: {reason}",
                code=outcome.code,
                reason=outcome.reason,
            )
            self._finish(EXIT_OK)
            return
        what = str(error) if error is not None else (outcome.reason or "connection lost")
        if not self._retries.reconnect_on_data_error:
            self.log.critical("{what}", what=what)
            self._finish(EXIT_FAILURE)
            return
        self.log.error("Error from io_ctx::run(): {what}", what=what)
        self.log.error("Failed web socket session ID: {session}", session=self.sessions)
        self._attempt()

    def _handshake_failed(self, outcome: CloseOutcome) -> None:
        status = outcome.http_status
        # 5xx: the service is unwell, try again.  101: the upgrade itself
        # succeeded but the response was unusable (no subprotocol), which the
        # reference treats as a broken session: try again too.
        if status is not None and status != 101 and not 500 <= status <= 599:
            self.log.error(
                "Proxy server rejected web socket upgrade request: ({status_line})",
                status_line=outcome.http_status_line,
            )
            self._finish(EXIT_FAILURE)
            return
        if outcome.http_status is not None:
            self.log.error(
                "Proxy server rejected web socket upgrade request: ({status_line})",
                status_line=outcome.http_status_line,
            )
        elif outcome.transport_error:
            self.log.error(
                "Could not establish the WebSocket connection: {error}",
                error=outcome.transport_error,
            )
        else:
            self.log.error(
                "Could not establish the WebSocket connection: {reason}", reason=outcome.reason
            )
        self._retry_or_give_up()

    def _finish(self, code: int) -> None:
        if self._done:
            return
        self._done = True
        self._stopping = True
        self.finished.callback(code)
