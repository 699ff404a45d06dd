"""
Helpers that test modules of several layers share, by what they stand in for:

 - the machine: a free port, waiting on the reactor, child processes;
 - the local side: a TCP-like transport, a recording L{TunnelConnection};
 - the local tunnel service without sockets: its registry, relay and a peer;
 - the connector over a scripted WebSocket.

What belongs to one kind of test stays in its own support module
(C{e2e_support}, C{webproxy_support}, C{agent_support}, C{proxies}).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import tempfile
import termios
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.error import (
    ConnectionRefusedError,
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3
from aws_localproxy.protocol.errors import TunnelError
from aws_localproxy.protocol.wire import Message, decode_all
from aws_localproxy.tunnelservice.certs import CertificateFiles, ensure_certificates
from aws_localproxy.tunnelservice.registry import TunnelRegistry
from aws_localproxy.tunnelservice.relay import Relay
from aws_localproxy.upstream.connector import RetryPolicy, TunnelConnector
from aws_localproxy.upstream.websocket import CloseOutcome
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


# -- the local side -------------------------------------------------------------------


class TCPLikeTransport(StringTransport):
    """
    A StringTransport whose C{unregisterProducer} accepts having no producer,
    as Twisted's TCP and TLS transports do (Autobahn and the web proxy
    endpoints unregister unconditionally when they drop a connection).
    """

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class RecordingTunnelConnection:
    """
    A L{TunnelConnection} that records what the local side reports: the
    bytes read, how many times the socket was lost and, for a destination,
    why connecting failed (a source's connection never connects: a report
    of a failed connect fails the test).
    """

    connection_id = 1

    def __init__(self, service_id: str = "ssh", *, destination: bool = False) -> None:
        self.service_id = service_id
        self.data: List[bytes] = []
        self.lost = 0
        self.failed: List[str] = []
        #: (stand-in, connected) local connections the destination side swapped.
        self.replaced: List[tuple] = []
        self._destination = destination

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def connection_lost(self) -> None:
        self.lost += 1

    def connect_failed(self, reason: str) -> None:
        if not self._destination:
            raise AssertionError("a source's connection does not connect: " + reason)
        self.failed.append(reason)

    def replace_local(self, stand_in: Any, local: Any) -> None:
        if not self._destination:
            raise AssertionError("a source's connection does not connect")
        self.replaced.append((stand_in, local))


# -- the local tunnel service without sockets -----------------------------------------

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


class FakePeer:
    """A L{PeerLink} that records what the registry and the relay do to it."""

    def __init__(self, subprotocol: str = SUBPROTOCOL_V3) -> None:
        self.subprotocol = subprotocol
        self.sent: List[bytes] = []
        self.closed: List[Tuple[int, str]] = []
        self.aborted = False
        self.paused: Set[str] = set()

    def send_frames(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self, reason: str) -> None:
        self.paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        self.paused.discard(reason)

    def messages(self) -> List[Message]:
        return decode_all(b"".join(self.sent))


# -- the connector over a scripted WebSocket ----------------------------------------


class FakeProtocol:
    """
    The WebSocket protocol as the connector and the tunnel see it: records
    what it is asked to do; the test hands the session its messages with
    L{deliver}, as the real protocol would.
    """

    STATE_OPEN = 3
    STATE_CLOSED = 4

    #: The connector's factory (its C{events}), set by L{FakeEndpoint}.
    factory: Any = None

    def __init__(self) -> None:
        self.state = 1
        self.transport = StringTransport()
        self.dropped: List[bool] = []
        self.closed_with: List[tuple] = []
        self.sent: List[bytes] = []
        self.websocket_protocol_in_use = SUBPROTOCOL_V3
        #: What inbound flow control told it (True: the WebSocket is no longer read).
        self.reading_paused_calls: List[bool] = []
        #: Where the session takes messages (the tunnel's), once it started.
        self.receive: Optional[Callable[[bytes], None]] = None
        #: The session's outbound scheduler, once it started.
        self.outbound: Any = None

    def start_session(self, receive: Callable[[bytes], None], outbound: Any, inbound: Any) -> None:
        self.receive = receive
        self.outbound = outbound
        self.transport.registerProducer(outbound, True)
        inbound.attach(self.transport, outbound, self)

    def deliver(self, payload: bytes) -> None:
        """
        One message from the service, handed over as the real protocol does:
        to the session's receiver; a L{TunnelError} is reported to the
        connector and nothing more is handed over.
        """
        receive = self.receive
        if receive is None:
            return
        try:
            receive(payload)
        except TunnelError as error:
            self.receive = None
            self.factory.events.session_failed(self, error)

    def dropConnection(self, abort: bool = False) -> None:
        self.dropped.append(abort)

    def sendClose(self, code: int, reason: str) -> None:
        self.closed_with.append((code, reason))

    def send_record(self, record: bytes) -> None:
        self.sent.append(record)

    def send_ping(self, payload: bytes) -> None:
        pass

    def reading_paused(self, paused: bool) -> None:
        self.reading_paused_calls.append(paused)


class FakeEndpoint:
    """
    Each connect() takes the next scripted result: an exception fails it, a
    L{Deferred} is the attempt (still under way until the test fires it),
    anything else is the connected protocol.
    """

    def __init__(self) -> None:
        self.results: List[object] = []
        self.attempts = 0

    def connect(self, factory: object) -> Deferred:
        self.attempts += 1
        result = self.results.pop(0) if self.results else ConnectionRefusedError()
        if isinstance(result, Exception):
            return fail(result)
        if isinstance(result, Deferred):
            return result
        if isinstance(result, FakeProtocol):
            result.factory = factory
        return succeed(result)


def closed(**kwargs: Any) -> CloseOutcome:
    """How a session ended: an unclean drop of an open WebSocket unless C{kwargs} say otherwise."""
    values = dict(was_open=True, was_clean=False, code=1006, reason="", closed_by_service=False)
    values.update(kwargs)
    return CloseOutcome(**values)


def scripted_connector(
    clock: Any, endpoint: FakeEndpoint, tunnel: Any, retries: RetryPolicy, **options: Any
) -> TunnelConnector:
    """
    A L{TunnelConnector} for C{tunnel} over C{endpoint}'s scripted attempts,
    on C{clock}; the test plays the WebSocket's events to it.
    """
    return TunnelConnector(
        clock,
        endpoint,  # type: ignore[arg-type]
        _ScriptedFactory,  # type: ignore[arg-type]
        tunnel,
        display_url="wss://example.invalid:443",
        retries=retries,
        **options,
    )


class _ScriptedFactory:
    """What the connector's factory is to a L{FakeProtocol}: where it reports."""

    def __init__(self, events: TunnelConnector) -> None:
        self.events = events


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
