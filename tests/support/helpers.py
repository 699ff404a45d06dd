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
def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll C{predicate} on the reactor until it holds; the test fails if it never does."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        yield sleep(step)
        waited += step


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
    (minus the signal's number when a signal ended it).  A test can wait for
    some output; a wait still pending when the process ends fails with what
    it wrote.
    """

    def __init__(self) -> None:
        self.stdout = b""
        self.stderr = b""
        self.output = b""
        self.ended: Deferred[int] = Deferred()
        self._conditions = Conditions()

    @property
    def exited(self) -> bool:
        return self.ended.called

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        self.output += data
        self._conditions.check()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        self.output += data
        self._conditions.check()

    def wait_for(self, text: str) -> Deferred[None]:
        """Fires once C{text} appeared in its output (stdout or stderr)."""
        return self._conditions.when(lambda: text.encode() in self.output)

    def wait_for_stdout(self, count: int) -> Deferred[None]:
        """Fires once it wrote at least C{count} bytes to stdout."""
        return self._conditions.when(lambda: len(self.stdout) >= count)

    def processEnded(self, reason: Failure) -> None:
        self._conditions.fail_all(
            "process ended first; output:\n" + self.output.decode(errors="replace")
        )
        if reason.check(ProcessDone):
            self.ended.callback(0)
        elif reason.check(ProcessTerminated):
            value = reason.value
            self.ended.callback(value.exitCode if value.exitCode is not None else -value.signal)
        else:  # pragma: no cover
            self.ended.errback(reason)


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

    transport = reactor.spawnProcess(  # type: ignore[attr-defined]
        process, executable or argv[0], list(argv), env=dict(env), path=path
    )

    def kill() -> Optional[Deferred[int]]:
        if process.ended.called:
            return None
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
