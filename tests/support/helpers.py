"""
Harness that test modules of several layers share:

 - the machine: a free port, waiting on the reactor, child processes;
 - the local tunnel service: its registry and relay on a clock, a client.

What belongs to one kind of test stays in its own support module
(L{tests.support.e2e}, L{tests.support.webproxy}, L{tests.support.agent},
L{tests.support.proxies}); the test doubles are in L{tests.fakes}.
"""

from __future__ import annotations

import fcntl
import inspect
import os
import shutil
import signal
import socket
import struct
import tempfile
import termios
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.tunnelservice.certs import CertificateFiles, ensure_certificates
from aws_localproxy.tunnelservice.registry import TunnelRegistry
from aws_localproxy.tunnelservice.relay import Relay
from tests.support.conditions import Conditions
from tests.support.deadlines import EVENT, START, branch, deadline, scaled, shown, tail

# -- the machine ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a process or daemon to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_ca(test: SynchronousTestCase) -> CertificateFiles:
    """
    A new private CA and a server certificate for localhost, 127.0.0.1 and
    ::1 (the local tunnel service's), in a directory removed after the test.
    """
    directory = tempfile.mkdtemp(prefix="aws-localproxy-certs-")
    test.addCleanup(shutil.rmtree, directory, True)
    return ensure_certificates(directory)


def readable_bytes(sock: socket.socket) -> int:
    """
    Bytes waiting in C{sock}'s receive queue (FIONREAD).  On loopback a
    C{send()} is in the peer's queue when it returns, so this tells whether
    a transport sent at once or left the bytes for a later reactor turn.
    """
    answer = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    count: int = struct.unpack("i", answer)[0]
    return count


def open_fds() -> int:
    """How many file descriptors this process has open (Linux), to find leaks."""
    return len(os.listdir("/proc/self/fd"))


def sleep(seconds: float, clock: Any = None) -> Deferred[None]:
    """Fires after C{seconds} on C{clock} (default: the global reactor)."""
    if clock is None:
        from twisted.internet import reactor as clock
    return deferLater(clock, seconds, lambda: None)


def fail_if_still_running(test: SynchronousTestCase, seconds: float = 10.0) -> None:
    """
    Fail C{test} if it is still running after C{seconds}: code that loops
    forever (in a test, or in the reactor, where trial's own timeout cannot
    fire) fails the test in seconds rather than hanging the run.  The alarm
    repeats every second after that, for a loop entered again on the way
    out (a connection's C{connectionLost} reading what is left).
    """

    def expired(signum: int, frame: Any) -> None:
        raise test.failureException(f"still running after {seconds} s: a loop that never ends")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    test.addCleanup(signal.signal, signal.SIGALRM, previous)
    test.addCleanup(signal.setitimer, signal.ITIMER_REAL, 0)


@inlineCallbacks
def wait_until(
    predicate: Callable[[], Any],
    timeout: float = EVENT,
    step: float = 0.05,
    what: Optional[str] = None,
    state: Optional[Callable[[], str]] = None,
) -> Any:
    """
    Poll C{predicate} on the reactor until it holds; the test fails if it
    does not within C{timeout} seconds (times L{tests.support.deadlines.FACTOR},
    counted on the reactor's clock, not in steps, which a loaded machine
    stretches), with C{what} (what did not happen; by default the
    predicate's source) and C{state()} (what is seen instead).
    """
    from twisted.internet import reactor

    limit = scaled(timeout)
    end = reactor.seconds() + limit  # type: ignore[attr-defined]
    while not predicate():
        if reactor.seconds() >= end:  # type: ignore[attr-defined]
            message = f"{what or _described(predicate)} within {shown(limit)}"
            if state is not None:
                message += "; " + state()
            raise AssertionError(message)
        yield sleep(step)


def _described(predicate: Callable[[], Any]) -> str:
    """A predicate's source ("the condition lambda: app.lost did not hold"), for a message."""
    try:
        source = " ".join(inspect.getsource(predicate).split())
    except (OSError, TypeError):
        source = repr(predicate)
    if "lambda" in source:
        source = "lambda" + source.split("lambda", 1)[1]
    if len(source) > 200:
        source = source[:200] + "..."
    return f"the condition {source} did not hold"


#: The checkout these tests belong to (first on a child Python's path).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child_environ(extra: Mapping[str, str] = {}) -> Dict[str, str]:
    """
    The environment of a child process: this one without its
    ``AWSIOT_TUNNEL_*`` variables, plus C{extra}, with this checkout first on
    ``PYTHONPATH`` (so ``python -m aws_localproxy`` runs the code under test).
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWSIOT_TUNNEL_")}
    environ.update(extra)
    environ["PYTHONPATH"] = PROJECT_ROOT + os.pathsep + environ.get("PYTHONPATH", "")
    return environ


class ChildProcess(ProcessProtocol):
    """
    A child process of a test: what it writes (C{stdout}, C{stderr}, and
    both in order as C{output}) and L{ended}, which fires with its exit code
    (minus the signal's number when a signal ended it).  A test waits for
    some output or for the exit with a deadline; a wait still pending when
    the process ends, or at its deadline, fails with the end of what the
    process wrote.  C{name} says which process in those messages.
    """

    def __init__(self, name: Optional[str] = None) -> None:
        self._name = name
        self.stdout = b""
        self.stderr = b""
        self.output = b""
        self.ended: Deferred[int] = Deferred()
        self._conditions = Conditions()

    @property
    def exited(self) -> bool:
        return self.ended.called

    @property
    def name(self) -> str:
        """Which process, in messages: the name given, else its program and first arguments."""
        return self._name or "the child process"

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        self.output += data
        self._conditions.check()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        self.output += data
        self._conditions.check()

    def output_tail(self) -> str:
        """Whether it still runs and what it wrote last (stdout and stderr), for a message."""
        return (
            f"it {'has exited' if self.exited else 'is still running'}; its output ends:\n"
            + tail(self.output)
        )

    def wait_for(self, text: str, within: float = START) -> Deferred[None]:
        """Fires once C{text} appeared in its output (stdout or stderr), within C{within} s."""
        return self._conditions.when(
            lambda: text.encode() in self.output,
            f"{self.name} did not write {text!r}",
            within,
            self.output_tail,
        )

    def wait_for_stdout(self, count: int, within: float = EVENT) -> Deferred[None]:
        """
        Fires once it wrote at least C{count} bytes to stdout, within
        C{within} s (failing sooner once nothing came for L{EVENT} s).
        """
        return self._conditions.when(
            lambda: len(self.stdout) >= count,
            f"{self.name} did not write {count:,} bytes to stdout",
            within,
            lambda: f"{len(self.stdout):,} written; " + self.output_tail(),
            lambda: len(self.stdout),
        )

    def when_ended(self, within: float = START) -> Deferred[int]:
        """
        Fires with its exit code (as L{ended}) once it exited; fails with its
        output's end if it has not within C{within} seconds.
        """
        return deadline(branch(self.ended), within, f"{self.name} did not exit", self.output_tail)

    def processEnded(self, reason: Failure) -> None:
        self._conditions.fail_all(
            f"{self.name} ended first; its output ends:\n" + tail(self.output, lines=30)
        )
        if reason.check(ProcessDone):
            self.ended.callback(0)
        elif reason.check(ProcessTerminated):
            value = reason.value
            self.ended.callback(value.exitCode if value.exitCode is not None else -value.signal)
        else:  # pragma: no cover
            self.ended.errback(reason)


def kill_descendants(pid: Optional[int]) -> None:
    """SIGKILL every descendant of process C{pid} (Linux: read from /proc), deepest first."""
    if pid is None:
        return
    parents: Dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # pid (comm) state ppid ...: comm may hold spaces and parentheses.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))

    def kill(parent: int) -> None:
        for child in parents.get(parent, []):
            kill(child)
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass

    kill(pid)


def process_name(argv: Sequence[str]) -> str:
    """
    A child's name in messages: its command line, paths cut to their last
    part, without the options that point a proxy at the tunnel service
    (``python -m aws_localproxy -s ssh=4242 --client-token-file client-token``).
    """
    words: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-e", "-c"):
            skip = True
        else:
            words.append(os.path.basename(arg) if arg.startswith("/") else str(arg))
    text = " ".join(words)
    return "`" + (text if len(text) <= 120 else text[:120] + " ...") + "`"


@inlineCallbacks
def stop_child(
    process: ChildProcess, transport: Any, signal_name: str = "TERM", within: float = EVENT
) -> Any:
    """
    Send C{signal_name} to a child and wait for its end; if it has not ended
    within C{within} seconds it is killed (SIGKILL) and the wait fails with
    the end of its output.  Fires with its exit code.
    """
    if process.exited:
        return (yield process.ended)
    try:
        transport.signalProcess(signal_name)
    except ProcessExitedAlready:
        pass
    return (yield _ended_or_killed(process, transport, within))


@inlineCallbacks
def _ended_or_killed(process: ChildProcess, transport: Any, within: float) -> Any:
    """
    Fires with C{process}'s exit code once it ends; if it has not ended
    within C{within} seconds it is killed (SIGKILL), and once it is gone the
    wait's failure (naming the end of its output) is raised.
    """
    try:
        return (yield process.when_ended(within))
    except AssertionError:
        try:
            transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
        yield process.ended
        raise


@inlineCallbacks
def run_child(
    argv: Sequence[str],
    env: Mapping[str, str],
    within: float = START,
    path: Optional[str] = None,
    name: Optional[str] = None,
) -> Any:
    """
    Run C{argv} to its end; fires with (exit code, stdout, stderr).  If it
    has not exited within C{within} seconds it is killed and the wait fails
    with the end of its output (C{getProcessOutputAndValue} would wait for
    ever, and leave the process behind).
    """
    from twisted.internet import reactor

    process = ChildProcess(name or process_name(argv))
    transport = reactor.spawnProcess(  # type: ignore[attr-defined]
        process, argv[0], list(argv), env=dict(env), path=path
    )
    code = yield _ended_or_killed(process, transport, within)
    return code, process.stdout, process.stderr


def spawn_child(
    test: SynchronousTestCase,
    process: ChildProcess,
    argv: Sequence[str],
    env: Mapping[str, str],
    path: Optional[str] = None,
    executable: Optional[str] = None,
) -> Any:
    """
    Start C{argv} as C{process} (the program is C{executable}, by default
    C{argv[0]}); it is killed after the test unless it ended.  Returns the
    process transport.
    """
    from twisted.internet import reactor

    if process._name is None:
        process.name = process_name(argv)
    transport = reactor.spawnProcess(  # type: ignore[attr-defined]
        process, executable or argv[0], list(argv), env=dict(env), path=path
    )

    def kill() -> Optional[Deferred[int]]:
        if process.ended.called:
            return None
        # Its own children too (ssh's ProxyCommand): they hold its output
        # pipes, and its end is only reported once those are closed.  (Not by
        # closing our ends: its end would then be reported before the reactor
        # has seen its sockets close, and the next cleanups would act on
        # connections that are already gone.)
        kill_descendants(transport.pid)
        try:
            transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
        return process.ended

    test.addCleanup(kill)
    return transport


# -- the local tunnel service --------------------------------------------------------

#: A client token for the source's handshakes.
CLIENT_TOKEN = "c" * 32


def registry_and_relay(
    test: SynchronousTestCase, now: float = 1000.0
) -> Tuple[Clock, TunnelRegistry, Relay]:
    """
    A local tunnel service's registry and relay on a L{Clock} at C{now};
    the registry's expiry timers are cancelled after the test.
    """
    clock = Clock()
    clock.advance(now)
    registry = TunnelRegistry(clock)
    test.addCleanup(registry.stop)
    return clock, registry, Relay(clock, registry.state_changed)


@inlineCallbacks
def service_client(test: SynchronousTestCase, running: Any, **kwargs: Any) -> Any:
    """
    A WebSocket client of the local tunnel service C{running}
    (L{tests.support.tunnelclient.connect} with C{kwargs}), closed after C{test}.
    """
    from twisted.internet import reactor

    from tests.support import tunnelclient

    client = yield tunnelclient.connect(reactor, running, **kwargs)
    test.addCleanup(tunnelclient.close_client, client)
    return client
