"""
Mutants of the lifecycles: the connector (connect, retry, reconnect, stop,
exit codes), how a ``--stdio`` proxy ends, and the proxy service's exits.

C{MUTANTS} is the CI sample.  C{STATE_TABLE} is the whole hand-made set
for the connector's state machine, which mutmut cannot reach: the machine
is built once, at import, before mutmut chooses a mutant, and its outputs
are decorated functions, which mutmut does not mutate.  Each of those
mutants changes one row of the table the way mutmut changes a line (an
exit code, a call dropped, a target state, a condition); measure them with
C{python -m tests.mutants.lifecycle} (about three seconds a mutant).
"""

from __future__ import annotations

import sys
from typing import Tuple

from tests.support.mutation import Mutant

CONNECTOR = "aws_localproxy/upstream/connector.py"
STDIO_EXIT = "aws_localproxy/proxy/stdio_exit.py"
SERVICE = "aws_localproxy/proxy/service.py"
CONNECTOR_TESTS = ("tests.upstream.test_connector_states", "tests.upstream.test_connector")


def _row(name: str, find: str, replace: str, why: str) -> Mutant:
    """A mutant of the connector's state table, for the connector's tests."""
    return Mutant(name, CONNECTOR, find, replace, CONNECTOR_TESTS, why)


#: Every hand-made mutant of the connector's state machine (see the docstring).
STATE_TABLE: Tuple[Mutant, ...] = (
    _row(
        "start-does-not-connect",
        "idle.upon(In.start).to(connecting)",
        "idle.upon(In.start).to(idle)",
        "a started proxy never connects",
    ),
    _row(
        "stopped-before-connecting-exits-one",
        "        # (No session: nothing to reset.)\n        core._finish(EXIT_OK)",
        "        # (No session: nothing to reset.)\n        core._finish(EXIT_FAILURE)",
        "a proxy stopped between attempts exits 1",
    ),
    _row(
        "stopped-between-attempts-can-start-again",
        "@_upon_each((idle, attempt_failed, session_lost), (In.stop,), done)",
        "@_upon_each((idle, attempt_failed, session_lost), (In.stop,), idle)",
        "a stopped proxy connects again when started",
    ),
    _row(
        "fatal-before-connecting-exits-zero",
        "    def failed(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n"
        '        core.log.critical("{error}", error=str(error))\n'
        "        core._finish(EXIT_FAILURE)",
        "    def failed(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n"
        '        core.log.critical("{error}", error=str(error))\n'
        "        core._finish(EXIT_OK)",
        "a fatal error between attempts exits 0",
    ),
    _row(
        "fatal-before-connecting-not-logged",
        "    def failed(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n"
        '        core.log.critical("{error}", error=str(error))\n',
        "    def failed(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n",
        "the proxy exits 1 without saying why",
    ),
    _row(
        "dialed-protocol-forgotten",
        "        core._protocol = protocol",
        "        pass",
        "a stop during the upgrade cannot drop the connection",
    ),
    _row(
        "dialed-skips-the-handshake",
        "@connecting.upon(In.dialed).to(handshaking)",
        "@connecting.upon(In.dialed).to(session_up)",
        "a connection counts as a session before its upgrade",
    ),
    _row(
        "dial-failure-not-counted",
        '            "Could not connect to proxy server: {error}", error=failure.getErrorMessage()\n'
        "        )\n"
        "        core._count_failure()",
        '            "Could not connect to proxy server: {error}", error=failure.getErrorMessage()\n'
        "        )",
        "a refused connect is never retried",
    ),
    _row(
        "dial-failure-not-logged",
        "        core.log.error(\n"
        '            "Could not connect to proxy server: {error}", error=failure.getErrorMessage()\n'
        "        )\n",
        "",
        "connect failures are silent",
    ),
    _row(
        "stop-leaves-the-attempt-running",
        "        pending.cancel()\n        core._finish(EXIT_OK)",
        "        core._finish(EXIT_OK)",
        "a stopped proxy still connects (or retries) afterwards",
    ),
    _row(
        "stop-while-pending-exits-one",
        "        pending.cancel()\n        core._finish(EXIT_OK)",
        "        pending.cancel()\n        core._finish(EXIT_FAILURE)",
        "a proxy stopped while connecting exits 1",
    ),
    _row(
        "fatal-leaves-the-attempt-running",
        "        pending.cancel()\n        core._finish(EXIT_FAILURE)",
        "        core._finish(EXIT_FAILURE)",
        "a proxy that failed still connects afterwards",
    ),
    _row(
        "fatal-while-pending-exits-zero",
        "        pending.cancel()\n        core._finish(EXIT_FAILURE)",
        "        pending.cancel()\n        core._finish(EXIT_OK)",
        "a fatal error while connecting (a port in use) exits 0",
    ),
    _row(
        "fatal-while-pending-not-logged",
        '        core.log.critical("{error}", error=str(error))\n        pending.cancel()',
        "        pending.cancel()",
        "the proxy exits 1 without saying why",
    ),
    _row(
        "opened-session-not-started",
        "        core._session_opened(protocol, subprotocol)",
        "        pass",
        "the tunnel never gets its session",
    ),
    _row(
        "opened-stays-handshaking",
        "@handshaking.upon(In.session_opened).to(session_up)",
        "@handshaking.upon(In.session_opened).to(handshaking)",
        "an open session's end is taken for a failed upgrade",
    ),
    _row(
        "failed-handshake-not-logged",
        "        core._log_failed_handshake(outcome)\n",
        "",
        "failed upgrades are silent",
    ),
    _row(
        "failed-handshake-not-counted",
        "        core._log_failed_handshake(outcome)\n        core._count_failure()",
        "        core._log_failed_handshake(outcome)",
        "a 5xx upgrade is never retried",
    ),
    _row(
        "refused-upgrade-exits-zero",
        "            status_line=outcome.http_status_line,\n"
        "        )\n"
        "        core._finish(EXIT_FAILURE)",
        "            status_line=outcome.http_status_line,\n"
        "        )\n"
        "        core._finish(EXIT_OK)",
        "a bad or spent token exits 0",
    ),
    _row(
        "refused-upgrade-not-logged",
        "        core.log.error(\n"
        '            "Proxy server rejected web socket upgrade request: ({status_line})",\n'
        "            status_line=outcome.http_status_line,\n"
        "        )\n"
        "        core._finish(EXIT_FAILURE)",
        "        core._finish(EXIT_FAILURE)",
        "a rejected token exits 1 without the status",
    ),
    _row(
        "stop-during-upgrade-not-dropped",
        "        # (No session yet: nothing to reset.)\n        core._drop()",
        "        # (No session yet: nothing to reset.)\n        pass",
        "a stop during the upgrade waits for the upgrade",
    ),
    _row(
        "stop-during-upgrade-forgotten",
        "@handshaking.upon(In.stop).to(closing)",
        "@handshaking.upon(In.stop).to(handshaking)",
        "a session that opens after the stop is kept",
    ),
    _row(
        "retry-without-delay",
        "attempt_failed.upon(In.retry_later).to(waiting_to_retry)",
        "attempt_failed.upon(In.retry_later).to(connecting)",
        "retries hammer the service without websocket.retry_delay_ms",
    ),
    _row(
        "retries-used-up-exits-zero",
        "    def gave_up(machine: _Inputs, core: TunnelConnector) -> None:\n"
        "        core._finish(EXIT_FAILURE)",
        "    def gave_up(machine: _Inputs, core: TunnelConnector) -> None:\n"
        "        core._finish(EXIT_OK)",
        "an unreachable service exits 0 (the reference's W2)",
    ),
    _row(
        "retry-timer-without-delay",
        "core._reactor.callLater(core._retries.retry_delay, machine.retry_due)",
        "core._reactor.callLater(0, machine.retry_due)",
        "retries ignore websocket.retry_delay_ms",
    ),
    _row(
        "retry-due-never-connects",
        "waiting_to_retry.upon(In.retry_due, nodata=True).to(connecting)",
        "waiting_to_retry.upon(In.retry_due, nodata=True).to(waiting_to_retry)",
        "the first retry never comes",
    ),
    _row(
        "broken-session-not-dropped",
        '        core.log.error("{error}", error=str(error))\n'
        "        core._drop()\n"
        "\n"
        "    @_upon_each((handshaking, session_up, flushing, closing), (In.fail,), failing)",
        '        core.log.error("{error}", error=str(error))\n'
        "\n"
        "    @_upon_each((handshaking, session_up, flushing, closing), (In.fail,), failing)",
        "a session the tunnel cannot parse stays up",
    ),
    _row(
        "broken-session-not-logged",
        "    def session_failed(machine: _Inputs, core: TunnelConnector, error: TunnelError) -> None:\n"
        '        core.log.error("{error}", error=str(error))\n',
        "    def session_failed(machine: _Inputs, core: TunnelConnector, error: TunnelError) -> None:\n",
        "a malformed record is dropped silently",
    ),
    _row(
        "broken-session-forgets-its-error",
        "@session_up.upon(In.session_failed).to(broken)",
        "@session_up.upon(In.session_failed).to(session_up)",
        "the reconnect's line says 'connection lost', not the error",
    ),
    _row(
        "fatal-does-not-drop",
        "    def fatal(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n"
        '        core.log.critical("{error}", error=str(error))\n'
        "        core._drop()",
        "    def fatal(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n"
        '        core.log.critical("{error}", error=str(error))',
        "a fatal error leaves the WebSocket open: the proxy never exits",
    ),
    _row(
        "fatal-not-logged",
        "    def fatal(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n"
        '        core.log.critical("{error}", error=str(error))\n',
        "    def fatal(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n",
        "the proxy exits 1 without saying why",
    ),
    _row(
        "fatal-during-stop-exits-zero",
        "    @_upon_each((handshaking, session_up, flushing, closing), (In.fail,), failing)",
        "    @_upon_each((handshaking, session_up), (In.fail,), failing)\n"
        "    @_upon_each((flushing, closing), (In.fail,), closing)",
        "a fatal error during a stop exits 0",
    ),
    _row(
        "fatal-during-upgrade-exits-zero",
        "    @_upon_each((handshaking, session_up, flushing, closing), (In.fail,), failing)",
        "    @_upon_each((session_up, flushing, closing), (In.fail,), failing)\n"
        "    @_upon_each((handshaking,), (In.fail,), closing)",
        "a fatal error during the upgrade exits 0",
    ),
    _row(
        "fatal-while-broken-exits-zero",
        "@broken.upon(In.fail).to(failing)",
        "@broken.upon(In.fail).to(closing)",
        "a fatal error after a malformed record exits 0",
    ),
    _row(
        "fatal-while-broken-not-logged",
        "        machine: _Inputs, core: TunnelConnector, broken_by: TunnelError, error: BaseException\n"
        "    ) -> None:\n"
        '        core.log.critical("{error}", error=str(error))\n',
        "        machine: _Inputs, core: TunnelConnector, broken_by: TunnelError, error: BaseException\n"
        "    ) -> None:\n",
        "the proxy exits 1 without saying why",
    ),
    _row(
        "service-close-exits-one",
        "            reason=outcome.reason,\n        )\n        core._finish(EXIT_OK)",
        "            reason=outcome.reason,\n        )\n        core._finish(EXIT_FAILURE)",
        "a tunnel closed by its owner exits 1",
    ),
    _row(
        "service-close-reconnects",
        "@session_up.upon(In.service_closed).to(done)\n"
        "    def closed_by_service(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:\n"
        "        core.log.info(\n"
        '            "Web socket close received. Code: {code}; Reason: {reason}",\n'
        "            code=outcome.code,\n"
        "            reason=outcome.reason,\n"
        "        )\n"
        "        core._finish(EXIT_OK)",
        "@session_up.upon(In.service_closed).to(session_lost)\n"
        "    def closed_by_service(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:\n"
        "        core.log.info(\n"
        '            "Web socket close received. Code: {code}; Reason: {reason}",\n'
        "            code=outcome.code,\n"
        "            reason=outcome.reason,\n"
        "        )\n"
        "        core._reconnect_or_give_up(outcome.reason)",
        "a closed tunnel is reconnected to for ever",
    ),
    _row(
        "lost-without-default-reason",
        'core._reconnect_or_give_up(outcome.reason or "connection lost")',
        "core._reconnect_or_give_up(outcome.reason)",
        "a drop without a reason logs an empty critical line",
    ),
    _row(
        "lost-after-error-without-the-error",
        "        core._reconnect_or_give_up(str(error))",
        '        core._reconnect_or_give_up(outcome.reason or "connection lost")',
        "the reconnect's line hides the malformed record's error",
    ),
    _row(
        "reconnect-waits-a-retry-delay",
        "session_lost.upon(In.reconnect).to(connecting)",
        "session_lost.upon(In.reconnect).to(waiting_to_retry)",
        "a lost session reconnects only after websocket.retry_delay_ms",
    ),
    _row(
        "stop-never-flushes",
        "        if flush_timeout > 0:\n            core._flush_then_close(flush_timeout)",
        "        if False:\n            core._flush_then_close(flush_timeout)",
        "a stopping proxy closes without resetting its connections",
    ),
    _row(
        "stop-always-flushes",
        "        if flush_timeout > 0:\n            core._flush_then_close(flush_timeout)",
        "        if flush_timeout >= 0:\n            core._flush_then_close(flush_timeout)",
        "stop() without a flush time waits on the queue",
    ),
    _row(
        "second-stop-waits-for-the-close",
        "        # (Never open here: the close frame went, or the WebSocket was dropped.)\n"
        "        core._drop()",
        "        # (Never open here: the close frame went, or the WebSocket was dropped.)\n"
        "        pass",
        "a second Ctrl-C waits for the close handshake",
    ),
    _row(
        "no-close-frame-after-the-resets",
        "        core._close_if_open()",
        "        pass",
        "a stop never sends the close frame: the stop hangs on a live WebSocket",
    ),
    _row(
        "stop-during-fatal-not-dropped",
        "    def drop(machine: _Inputs, core: TunnelConnector, flush_timeout: float) -> None:\n"
        "        core._drop()",
        "    def drop(machine: _Inputs, core: TunnelConnector, flush_timeout: float) -> None:\n"
        "        pass",
        "a stop does not hasten a failing proxy's end",
    ),
    _row(
        "stop-during-fatal-exits-zero",
        "@failing.upon(In.stop).loop()",
        "@failing.upon(In.stop).to(closing)",
        "a stop turns a fatal error into exit 0",
    ),
    _row(
        "stop-while-broken-not-dropped",
        "        # (Nothing is left to reset: the session is being dropped already.)\n"
        "        core._drop()",
        "        # (Nothing is left to reset: the session is being dropped already.)\n        pass",
        "a second drop is not asked for",
    ),
    _row(
        "stop-while-broken-reconnects",
        "@broken.upon(In.stop).to(closing)",
        "@broken.upon(In.stop).to(broken)",
        "a stop racing a reconnect loses: the proxy reconnects after it was stopped",
    ),
    _row(
        "late-open-kept",
        "        # (The upgrade completed as the attempt was being dropped.)\n        core._drop()",
        "        # (The upgrade completed as the attempt was being dropped.)\n        pass",
        "an upgrade completing after a stop or a fatal error is left open",
    ),
    _row(
        "failure-while-stopping-not-dropped",
        "    def failed_while_stopping(machine: _Inputs, core: TunnelConnector, error: TunnelError) -> None:\n"
        '        core.log.error("{error}", error=str(error))\n'
        "        core._drop()",
        "    def failed_while_stopping(machine: _Inputs, core: TunnelConnector, error: TunnelError) -> None:\n"
        '        core.log.error("{error}", error=str(error))',
        "a stopping session the tunnel cannot parse waits for the close handshake",
    ),
    _row(
        "failure-while-flushing-keeps-flushing",
        "@flushing.upon(In.session_failed).to(closing)",
        "@flushing.upon(In.session_failed).loop()",
        "a close frame is sent on a broken session after its flush",
    ),
    _row(
        "stopped-session-exits-one",
        "    def stopped_session(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:\n"
        "        core._finish(EXIT_OK)",
        "    def stopped_session(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:\n"
        "        core._finish(EXIT_FAILURE)",
        "a stopped proxy exits 1",
    ),
    _row(
        "failed-session-exits-zero",
        "    def failed_session(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:\n"
        "        core._finish(EXIT_FAILURE)",
        "    def failed_session(machine: _Inputs, core: TunnelConnector, outcome: CloseOutcome) -> None:\n"
        "        core._finish(EXIT_OK)",
        "a fatal error exits 0",
    ),
    _row(
        "second-stop-cuts-the-flush",
        "    flushing.upon(In.stop).loop().returns(None)",
        "    flushing.upon(In.stop).to(closing).returns(None)",
        "a second stop during the flush ends it without a close frame",
    ),
    _row(
        "stop-after-the-end-raises",
        "        In.start,\n        In.stop,\n",
        "        In.start,\n",
        "stopping a proxy that ended raises",
    ),
    _row(
        "fatal-after-the-end-not-logged",
        "    def logged(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n"
        '        core.log.critical("{error}", error=str(error))',
        "    def logged(machine: _Inputs, core: TunnelConnector, error: BaseException) -> None:\n"
        "        pass",
        "a fatal error after the end is lost",
    ),
)


#: The CI sample: mutants of the issue's clusters that the new tests kill.
MUTANTS: Tuple[Mutant, ...] = (
    Mutant(
        name="connector-fatal-during-stop-exits-zero",
        path=CONNECTOR,
        find="    @_upon_each((handshaking, session_up, flushing, closing), (In.fail,), failing)",
        replace="    @_upon_each((handshaking, session_up), (In.fail,), failing)\n"
        "    @_upon_each((flushing, closing), (In.fail,), closing)",
        tests=("tests.upstream.test_connector_states",),
        why="a fatal error while the proxy stops (a port in use, a bad SERVICE_IDS) exits 0",
    ),
    Mutant(
        name="connector-retries-not-reset-by-a-session",
        path=CONNECTOR,
        find="        self._failures = 0\n        self.sessions += 1",
        replace="        self.sessions += 1",
        tests=("tests.upstream.test_connector_states",),
        why="after a session that worked, the next outage gets only the retries left over",
    ),
    Mutant(
        name="connector-stop-leaves-the-reconnect-running",
        path=CONNECTOR,
        find="        pending.cancel()\n        core._finish(EXIT_OK)",
        replace="        core._finish(EXIT_OK)",
        tests=("tests.upstream.test_connector_states",),
        why="a stop racing a reconnect: the proxy exits 0 but its attempt or retry goes on",
    ),
    Mutant(
        name="connector-5xx-boundary",
        path=CONNECTOR,
        find="not 500 <= status <= 599",
        replace="not 500 < status <= 599",
        tests=("tests.upstream.test_connector_states",),
        why="a 500 from the service ends the proxy instead of being retried",
    ),
    Mutant(
        name="connector-flush-warning-counts-after-the-resets",
        path=CONNECTOR,
        find="                count=queued,",
        replace="                count=scheduler.queued,",
        tests=("tests.upstream.test_connector_states",),
        why="the warning of an unfinished stop always says 0 bytes were left unsent",
    ),
    Mutant(
        name="stdio-websocket-drop-exits-zero",
        path=STDIO_EXIT,
        find="    if end.session_lost:\n"
        "        link.fail(\n"
        '            FatalTunnelError("The tunnel\'s session ended while the --stdio connection was open")\n'
        "        )\n"
        "        return\n",
        replace="",
        tests=("tests.proxy.test_service_lifecycle",),
        why="ssh -o ProxyCommand sees exit 0 when the WebSocket dropped mid-connection",
    ),
    Mutant(
        name="service-stop-without-resets",
        path=SERVICE,
        find="waits.append(self._connector.stop(STOP_FLUSH_TIMEOUT))",
        replace="waits.append(self._connector.stop())",
        tests=("tests.proxy.test_service_lifecycle",),
        why="a stopped proxy closes its WebSocket without resetting its connections",
    ),
    Mutant(
        name="link-k-ignored-for-the-service",
        path="aws_localproxy/upstream/link.py",
        find="service_tls_options(config.endpoint_host, config.capath, config.verify_tls)",
        replace="service_tls_options(config.endpoint_host, config.capath)",
        tests=("tests.upstream.test_link",),
        why="-k no longer turns off the service certificate's check",
    ),
)


def main() -> int:
    """Run every mutant of L{STATE_TABLE}; print each outcome and the score."""
    from tests.support.mutation import scratch_tree

    tree = scratch_tree()
    killed = 0
    for mutant in STATE_TABLE:
        outcome = tree.run(mutant)
        status = "hung" if outcome.hung else "killed" if outcome.killed else "SURVIVED"
        killed += outcome.killed
        print("%-45s %-8s %5.1f s" % (mutant.name, status, outcome.seconds), flush=True)
    print(
        "%d of %d killed (%.1f%%)" % (killed, len(STATE_TABLE), 100.0 * killed / len(STATE_TABLE))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
