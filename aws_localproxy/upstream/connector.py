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
during the handshake (STYLE.md), so this is a loop of its own: a state
machine (automat's, as Twisted's ``ClientService`` uses), whose states say
where the connector is and whose transitions are the rules above.

The states, and what the connector does in each:

 - C{idle}: built, not started;
 - C{connecting}: one attempt's TCP (web proxy, TLS) connect is under way;
 - C{handshaking}: connected; the WebSocket upgrade is under way;
 - C{attempt_failed}: an attempt failed; deciding: retry later, or give up;
 - C{waiting_to_retry}: the next attempt is timed;
 - C{session_up}: the WebSocket is open; the tunnel has its session;
 - C{broken}: the tunnel could not take a message; the WebSocket is dropped;
 - C{session_lost}: an open session ended; deciding: reconnect, or give up;
 - C{failing}: a fatal error; the WebSocket is dropped (exit 1);
 - C{flushing}: stopping; every connection was reset, and the close frame
   follows once those resets are written (or at their bound);
 - C{closing}: stopping; the close frame was sent (or the connection dropped);
 - C{done}: L{TunnelConnector.finished} fired with the exit code.

The two deciding states last no longer than the transition into them: its
output decides and feeds the next input at once (automat runs it as soon as
the transition is over).  Every transition is tested on a fake clock in
C{tests/upstream/test_connector_states.py}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence, TypeVar, cast, runtime_checkable

from automat import TypeMachineBuilder
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from aws_localproxy.protocol.errors import FatalTunnelError, TunnelError
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

    def used_up(self, failures: int) -> bool:
        """Whether C{failures} failed attempts in a row leave no retry."""
        return 0 <= self.retry_count < failures


def _final(outcome: CloseOutcome) -> bool:
    """
    Whether a refused upgrade is final.  5xx: the service is unwell, try
    again.  101: the upgrade itself succeeded but the response was unusable
    (no subprotocol), which the reference treats as a broken session: try
    again too.  Any other status (4xx: a bad, spent or wrong-mode token, a
    closed tunnel) will not change.
    """
    status = outcome.http_status
    return status is not None and status != 101 and not 500 <= status <= 599


class TunnelConnector:
    """
    Keeps one local proxy connected to the service; L{finished} fires with the exit code.

    It hears what happens -- its own calls (L{start}, L{stop}, L{fail}), the
    endpoint's answer, the WebSocket's L{SessionEvents}, its timers -- and
    feeds each to its state machine as an input (see the module docstring).

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
        *,
        display_url: str,
        retries: RetryPolicy,
        on_ready: Callable[[Tunnel], None] = lambda tunnel: None,
        on_closed: Callable[[CloseOutcome], None] = lambda outcome: None,
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._factory = factory_builder(self)
        self._tunnel = tunnel
        tunnel.on_session_ready = self._session_ready
        self._display_url = display_url
        self._retries = retries
        self._on_ready = on_ready
        self._on_closed = on_closed
        #: Failed attempts since the last session opened.
        self._failures = 0
        #: The WebSocket of the current attempt or session, once connected.
        self._protocol: Optional[TunnelClientProtocol] = None
        self.finished: Deferred[int] = Deferred()
        #: WebSocket sessions opened so far (the first one and every reconnect).
        self.sessions = 0
        #: When the WebSocket last opened or closed (the reactor's clock), for metrics.
        self.state_changed_at = reactor.seconds()
        self._machine: _Inputs = _LIFECYCLE(self)

    # -- control --------------------------------------------------------------------

    def start(self) -> None:
        """Connect, and keep connected until the rules say the proxy ends."""
        self._machine.start()

    def stop(self, flush_timeout: float = 0.0) -> Deferred[int]:
        """
        Stop for good: no more retries, the WebSocket closed with a close frame.
        Fires L{finished} (with 0 unless it had already fired, or a fatal
        error comes first) and returns it.

        With C{flush_timeout}, an open session first resets every connection
        (L{Tunnel.reset_every_connection}) and the close frame follows once
        those resets, and the bytes queued before them, are written -- or
        after C{flush_timeout} seconds, so a dead WebSocket cannot hold the
        stop.  Autobahn's close handshake timeout then bounds the rest.  A
        second stop while the resets are written waits for them too.
        """
        self._machine.stop(flush_timeout)
        return self.finished

    def fail(self, error: BaseException) -> None:
        """A fatal error from elsewhere (e.g. a source that cannot listen): exit 1."""
        self._machine.fail(error)

    @property
    def protocol(self) -> Optional[TunnelClientProtocol]:
        """The current session's protocol, if a connection exists."""
        return self._protocol

    # -- SessionEvents: what the WebSocket reports ------------------------------------------

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        if protocol is self._protocol:
            self._machine.session_opened(protocol, subprotocol)

    def session_failed(self, protocol: TunnelClientProtocol, error: TunnelError) -> None:
        if protocol is not self._protocol:
            return
        if isinstance(error, FatalTunnelError):
            self._machine.fail(error)
        else:
            self._machine.session_failed(error)

    def session_closed(self, protocol: TunnelClientProtocol, outcome: CloseOutcome) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        if outcome.was_open:
            # Whatever comes next, the session is over: the tunnel's ends, and
            # C{on_closed} hears of it before anything is decided.
            self._session_over(outcome)
            if outcome.closed_by_service:
                self._machine.service_closed(outcome)
            else:
                self._machine.session_lost(outcome)
        elif _final(outcome):
            self._machine.upgrade_refused(outcome)
        else:
            self._machine.handshake_failed(outcome)

    def _session_ready(self) -> None:
        """The tunnel's session has its service IDs: tell C{on_ready} (once a session)."""
        self._on_ready(self._tunnel)

    # -- what the state machine's outputs do -----------------------------------------------

    def _dial(self) -> Deferred[TunnelClientProtocol]:
        """Start one attempt; its result is fed back to the machine."""
        self.log.info(
            "Attempting to establish web socket connection with endpoint {url}",
            url=self._display_url,
        )
        attempt = cast("Deferred[TunnelClientProtocol]", self._endpoint.connect(self._factory))
        attempt.addCallbacks(self._machine.dialed, self._machine.dial_failed)
        return attempt

    def _count_failure(self) -> None:
        """An attempt failed: retry after the delay, or give up if that was the last retry."""
        self._failures += 1
        if self._retries.used_up(self._failures):
            self.log.critical(
                "Could not connect to the tunneling service after {count} retries "
                "(websocket.connect_retry_count); giving up",
                count=self._retries.retry_count,
            )
            self._machine.give_up()
        else:
            self._machine.retry_later()

    def _log_failed_handshake(self, outcome: CloseOutcome) -> None:
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

    def _session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        self._failures = 0
        self.sessions += 1
        self.state_changed_at = self._reactor.seconds()
        # From here on the WebSocket hands its messages to the tunnel itself.
        self._tunnel.link_opened(subprotocol, protocol)

    def _session_over(self, outcome: CloseOutcome) -> None:
        """An open session's WebSocket is gone: the tunnel's session ends, C{on_closed} hears."""
        self.state_changed_at = self._reactor.seconds()
        self._tunnel.link_closed()
        try:
            self._on_closed(outcome)
        except Exception:
            self.log.failure("The session-closed hook failed")

    def _reconnect_or_give_up(self, what: str) -> None:
        """A session was lost (C{what} says why): reconnect at once, or exit 1 (the settings say)."""
        if not self._retries.reconnect_on_data_error:
            self.log.critical("{what}", what=what)
            self._machine.give_up()
            return
        self.log.error("Error from io_ctx::run(): {what}", what=what)
        self.log.error("Failed web socket session ID: {session}", session=self.sessions)
        self._machine.reconnect()

    def _drop(self) -> None:
        """Abort the current WebSocket (its close is reported as usual)."""
        if self._protocol is not None:
            self._protocol.dropConnection(abort=True)

    def _close_if_open(self) -> None:
        """Send the close frame if the WebSocket is still open (the resets are written)."""
        protocol = self._protocol
        if protocol is not None and protocol.state == protocol.STATE_OPEN:
            protocol.sendClose(1000, "local proxy stopping")

    def _flush_then_close(self, timeout: float) -> None:
        """
        Reset every connection, then feed C{resets_sent} once that is written
        (or at C{timeout}); a WebSocket that is not open is dropped at once.
        """
        protocol = self._protocol
        scheduler = self._tunnel.scheduler
        if protocol is None or scheduler is None or protocol.state != protocol.STATE_OPEN:
            self._drop()
            return
        # Read before the resets: they move every connection's bytes in front
        # of them, where the scheduler no longer counts them as queued.
        queued = scheduler.queued
        self._tunnel.reset_every_connection()

        def timed_out(failure: Failure) -> Optional[Failure]:
            if not isinstance(failure.value, TimeoutError):
                return failure
            self.log.warn(
                "Stopping: the last resets and {count} bytes for the tunnel were not all "
                "sent within {timeout} s; closing the web socket anyway",
                count=queued,
                timeout=timeout,
            )
            return None

        sent = scheduler.when_idle()
        sent.addTimeout(timeout, self._reactor)
        sent.addErrback(timed_out)
        sent.addCallback(lambda _: self._machine.resets_sent())

    def _close_at_once(self) -> None:
        """
        A stop without a flush: nothing is reset, so flushing ends in the same
        step (C{resets_sent}, whose output sends the close frame); a WebSocket
        that is not open is dropped first.
        """
        protocol = self._protocol
        if protocol is not None and protocol.state != protocol.STATE_OPEN:
            protocol.dropConnection(abort=True)
        self._machine.resets_sent()

    def _finish(self, code: int) -> None:
        self.finished.callback(code)


class _Inputs(Protocol):
    """
    What happens to a connector: the inputs of its state machine.  The
    first group comes from its callers and its timers, the second from the
    endpoint and the WebSocket (L{SessionEvents}, sorted by
    L{TunnelConnector}), the last from its own deciding outputs.
    """

    def start(self) -> None: ...
    def stop(self, flush_timeout: float) -> None: ...
    def fail(self, error: BaseException) -> None: ...
    def retry_due(self) -> None: ...
    def resets_sent(self) -> None: ...

    def dialed(self, protocol: TunnelClientProtocol) -> None: ...
    def dial_failed(self, failure: Failure) -> None: ...
    def upgrade_refused(self, outcome: CloseOutcome) -> None: ...
    def handshake_failed(self, outcome: CloseOutcome) -> None: ...
    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None: ...
    def session_failed(self, error: TunnelError) -> None: ...
    def service_closed(self, outcome: CloseOutcome) -> None: ...
    def session_lost(self, outcome: CloseOutcome) -> None: ...

    def retry_later(self) -> None: ...
    def reconnect(self) -> None: ...
    def give_up(self) -> None: ...


_Output = TypeVar("_Output", bound=Callable[..., Any])


@runtime_checkable
class _Pending(Protocol):
    """
    What C{connecting} and C{waiting_to_retry} hold, and a stop or a fatal
    error cancels: the attempt's Deferred, or the retry's timer.
    """

    def cancel(self) -> None: ...


def _upon_each(
    states: Sequence[Any], inputs: Sequence[Callable[..., None]], target: Any = None
) -> Callable[[_Output], _Output]:  # pragma: no mutate block
    """
    Register one output for every input of C{inputs} in every state of
    C{states}, leading to C{target} (or staying put when it is None): the
    transitions that share an output, written once as a row of the table.
    """

    def register(output: _Output) -> _Output:
        for state in states:
            for upon in inputs:
                transition = state.upon(upon)
                (transition.loop() if target is None else transition.to(target))(output)
        return output

    return register


def _build_lifecycle() -> Callable[[TunnelConnector], _Inputs]:  # pragma: no mutate block
    """
    The connector's state machine (see the module docstring for the states).

    (mutmut leaves this and L{_upon_each} alone: they run once, at import,
    before any of its mutants could be chosen, and the outputs are decorated.
    Their mutants are written by hand: C{tests/mutants/lifecycle.py}.)
    """
    builder = TypeMachineBuilder(_Inputs, TunnelConnector)
    In = _Inputs

    def dial(machine: _Inputs, core: TunnelConnector) -> Deferred[TunnelClientProtocol]:
        return core._dial()

    def retry_timer(machine: _Inputs, core: TunnelConnector) -> IDelayedCall:
        return core._reactor.callLater(core._retries.retry_delay, machine.retry_due)

    def broken_by(machine: _Inputs, core: TunnelConnector, error: TunnelError) -> TunnelError:
        return error

    idle = builder.state("idle")
    connecting = builder.state("connecting", dial)
    handshaking = builder.state("handshaking")
    attempt_failed = builder.state("attempt_failed")
    waiting_to_retry = builder.state("waiting_to_retry", retry_timer)
    session_up = builder.state("session_up")
    broken = builder.state("broken", broken_by)
    session_lost = builder.state("session_lost")
    failing = builder.state("failing")
    flushing = builder.state("flushing")
    closing = builder.state("closing")
    done = builder.state("done")

    # -- starting, and stopping or failing before any connection ----------------------

    idle.upon(In.start).to(connecting).returns(None)

    @_upon_each((idle, attempt_failed, session_lost), (In.stop,), done)
    def stopped(machine: _Inputs, core: TunnelConnector, flush_timeout: float) -> None:
        # (No session: nothing to reset.)
        core._finish(EXIT_OK)

    @_upon_each((idle, attempt_failed, session_lost), (In.fail,), done)
    def failed(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:
        core.log.critical("{error}", error=str(error))
        core._finish(EXIT_FAILURE)

    # -- one attempt ------------------------------------------------------------------

    @connecting.upon(In.dialed).to(handshaking)
    def dialed(
        machine: _Inputs,
        core: TunnelConnector,
        attempt: Deferred[TunnelClientProtocol],
        protocol: TunnelClientProtocol,
    ) -> None:
        core._protocol = protocol

    @connecting.upon(In.dial_failed).to(attempt_failed)
    def dial_failed(
        machine: _Inputs,
        core: TunnelConnector,
        attempt: Deferred[TunnelClientProtocol],
        failure: Failure,
    ) -> None:
        core.log.error(
            "Could not connect to proxy server: {error}", error=failure.getErrorMessage()
        )
        core._count_failure()

    @_upon_each((connecting, waiting_to_retry), (In.stop,), done)
    def stopped_while_pending(
        machine: _Inputs, core: TunnelConnector, pending: _Pending, flush_timeout: float
    ) -> None:
        pending.cancel()
        core._finish(EXIT_OK)

    @_upon_each((connecting, waiting_to_retry), (In.fail,), done)
    def failed_while_pending(
        machine: _Inputs, core: TunnelConnector, pending: _Pending, error: BaseException
    ) -> None:
        core.log.critical("{error}", error=str(error))
        pending.cancel()
        core._finish(EXIT_FAILURE)

    @handshaking.upon(In.session_opened).to(session_up)
    def opened(
        machine: _Inputs, core: TunnelConnector, protocol: TunnelClientProtocol, subprotocol: str
    ) -> None:
        core._session_opened(protocol, subprotocol)

    @handshaking.upon(In.handshake_failed).to(attempt_failed)
    def handshake_failed(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:
        core._log_failed_handshake(outcome)
        core._count_failure()

    @handshaking.upon(In.upgrade_refused).to(done)
    def upgrade_refused(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:
        core.log.error(
            "Proxy server rejected web socket upgrade request: ({status_line})",
            status_line=outcome.http_status_line,
        )
        core._finish(EXIT_FAILURE)

    @handshaking.upon(In.stop).to(closing)
    def stopped_handshaking(machine: _Inputs, core: TunnelConnector, flush_timeout: float) -> None:
        # (No session yet: nothing to reset.)
        core._drop()

    attempt_failed.upon(In.retry_later).to(waiting_to_retry).returns(None)

    @attempt_failed.upon(In.give_up).to(done)
    @session_lost.upon(In.give_up).to(done)
    def gave_up(machine: _Inputs, core: TunnelConnector) -> None:
        core._finish(EXIT_FAILURE)

    waiting_to_retry.upon(In.retry_due, nodata=True).to(connecting).returns(None)

    # -- an open session ----------------------------------------------------------------

    @session_up.upon(In.session_failed).to(broken)
    def session_failed(machine: _Inputs, core: TunnelConnector, error: TunnelError) -> None:
        core.log.error("{error}", error=str(error))
        core._drop()

    @_upon_each((handshaking, session_up, flushing, closing), (In.fail,), failing)
    @failing.upon(In.fail).loop()
    def fatal(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:
        core.log.critical("{error}", error=str(error))
        core._drop()

    @broken.upon(In.fail).to(failing)
    def fatal_while_broken(
        machine: _Inputs, core: TunnelConnector, broken_by: TunnelError, error: BaseException
    ) -> None:
        core.log.critical("{error}", error=str(error))
        core._drop()

    @session_up.upon(In.service_closed).to(done)
    def closed_by_service(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:
        core.log.info(
            "Web socket close received. Code: {code}; Reason: {reason}",
            code=outcome.code,
            reason=outcome.reason,
        )
        core._finish(EXIT_OK)

    @session_up.upon(In.session_lost).to(session_lost)
    def lost(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:
        core._reconnect_or_give_up(outcome.reason or "connection lost")

    @broken.upon(In.service_closed).to(session_lost)
    @broken.upon(In.session_lost).to(session_lost)
    def lost_after_error(
        machine: _Inputs, core: TunnelConnector, error: TunnelError, outcome: CloseOutcome
    ) -> None:
        core._reconnect_or_give_up(str(error))

    session_lost.upon(In.reconnect).to(connecting).returns(None)

    # -- stopping -------------------------------------------------------------------------

    @session_up.upon(In.stop).to(flushing)
    def flush(machine: _Inputs, core: TunnelConnector, flush_timeout: float) -> None:
        if flush_timeout > 0:
            core._flush_then_close(flush_timeout)
        else:
            core._close_at_once()

    @closing.upon(In.stop).loop()
    def close_again(machine: _Inputs, core: TunnelConnector, flush_timeout: float) -> None:
        # (Never open here: the close frame went, or the WebSocket was dropped.)
        core._drop()

    @flushing.upon(In.resets_sent).to(closing)
    def resets_sent(machine: _Inputs, core: TunnelConnector) -> None:
        core._close_if_open()

    @failing.upon(In.stop).loop()
    def drop(machine: _Inputs, core: TunnelConnector, flush_timeout: float) -> None:
        core._drop()

    @broken.upon(In.stop).to(closing)
    def drop_broken(
        machine: _Inputs, core: TunnelConnector, broken_by: TunnelError, flush_timeout: float
    ) -> None:
        # (Nothing is left to reset: the session is being dropped already.)
        core._drop()

    @closing.upon(In.session_opened).loop()
    @failing.upon(In.session_opened).loop()
    def drop_late_open(
        machine: _Inputs, core: TunnelConnector, protocol: TunnelClientProtocol, subprotocol: str
    ) -> None:
        # (The upgrade completed as the attempt was being dropped.)
        core._drop()

    @flushing.upon(In.session_failed).to(closing)
    @closing.upon(In.session_failed).loop()
    def failed_while_stopping(machine: _Inputs, core: TunnelConnector, error: TunnelError) -> None:
        core.log.error("{error}", error=str(error))
        core._drop()

    @_upon_each((flushing, closing), (In.service_closed, In.session_lost), done)
    @_upon_each((closing,), (In.handshake_failed, In.upgrade_refused), done)
    def stopped_session(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:
        core._finish(EXIT_OK)

    @_upon_each(
        (failing,),
        (In.service_closed, In.session_lost, In.handshake_failed, In.upgrade_refused),
        done,
    )
    def failed_session(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:
        core._finish(EXIT_FAILURE)

    # -- what no longer matters -------------------------------------------------------------

    # A second stop while the resets are written waits for them too; a message
    # the tunnel fails after the first failure is not handed over (nor reported).
    flushing.upon(In.stop).loop().returns(None)
    broken.upon(In.session_failed).loop().returns(None)
    failing.upon(In.session_failed).loop().returns(None)
    # The resets were written after the WebSocket closed, or the stop dropped it.
    closing.upon(In.resets_sent).loop().returns(None)
    failing.upon(In.resets_sent).loop().returns(None)
    # Whatever arrives once the exit code is out (a cancelled attempt's failure,
    # a stop of a proxy that ended) changes nothing; a fatal error is still logged.
    for ignored in (
        In.start,
        In.stop,
        In.dial_failed,
        In.resets_sent,
        In.session_failed,
        In.retry_later,
        In.reconnect,
        In.give_up,
    ):
        done.upon(ignored).loop().returns(None)

    @done.upon(In.fail).loop()
    def logged(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:
        core.log.critical("{error}", error=str(error))

    return builder.build()


_LIFECYCLE = _build_lifecycle()
