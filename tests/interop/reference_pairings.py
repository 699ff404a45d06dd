"""
Pairings with the C++ reference local proxy, for local runs only.

The reference binary is never part of this project and CI has none, so this
module is not named ``test_*.py``: ``trial tests`` does not collect it.  Run it
with the binary's path in ``LOCALPROXY_REFERENCE``::

    LOCALPROXY_REFERENCE=/path/to/localproxy tox -e interop
    LOCALPROXY_REFERENCE=/path/to/localproxy python -m twisted.trial tests.interop.reference_pairings

Each test runs the reference in one role and this project's ``localproxy`` in
the other (both as child processes), through the local tunnel service, and
checks what a user would: every byte echoed back in order, connections after a
restart, V1-format peers without ``-y`` on our side.  Without the variable
every test fails and says what to set: a run that silently checked nothing
would look like a pass.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread

from tests.support.deadlines import EVENT, RATE, START, scaled, transfer
from tests.support.e2e import (
    Echo,
    ProcessTestCase,
    endpoint_args,
    new_client_token,
    pattern,
    proxy_argv,
    spawn,
    tunneling_client,
)
from tests.support.helpers import ChildProcess, child_environ, free_port, spawn_child, wait_until

REFERENCE_VARIABLE = "LOCALPROXY_REFERENCE"
#: Both proxies log at debug level: each test keeps what they said (``-ref-s.log``...).
VERBOSITY = "5"

#: Bytes echoed by the bulk tests: enough to fill every queue on the path many times.
BULK = 20_000_000
#: Through the real service's 800 KB/s cap, about five seconds each way.
CAPPED = 4_000_000
CAP = 800_000


class BoundedEcho(Protocol):
    """
    An echo application that stops reading while its replies wait, as a
    blocking ``recv``/``sendall`` loop does, and that now and then takes a
    moment before it reads on (as an application writing to a disk does): the
    back-pressure a real application puts on the destination.  Twisted's plain
    echo buffers without bound and reads at once, which hides it.
    """

    #: Bytes read between two pauses, and the pause.
    STRETCH = 512 * 1024
    PAUSE = 0.02

    def connectionMade(self) -> None:
        self.transport.registerProducer(self.transport, True)
        self.since_pause = 0

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)
        self.since_pause += len(data)
        if self.since_pause >= self.STRETCH:
            self.since_pause = 0
            _pause_briefly(self.transport)


def _mapping(ports: Dict[str, int]) -> str:
    """``-s``/``-d`` for C{ports}: ``PORT`` for the unnamed service, else ``A=PORT,B=PORT``."""
    if list(ports) == [""]:
        return str(ports[""])
    return ",".join(f"{name}={port}" for name, port in ports.items())


def _write(path: str, output: bytes) -> None:
    with open(path, "wb") as file:
        file.write(output)


def _pause_briefly(transport: Any, pause: float = BoundedEcho.PAUSE) -> None:
    """Stop reading C{transport} for a moment, as a busy application does."""
    transport.pauseProducing()
    reactor.callLater(pause, transport.resumeProducing)


#: The client's pauses.  Short: the reference as a source has no back-pressure
#: towards its client (its bug F1) and exits once 131076 bytes wait for a
#: client that does not read; 5 ms at loopback rates fits in the kernel's buffers.
CLIENT_PAUSE = 0.005


class RunningService(NamedTuple):
    """What a local tunnel service child process wrote in its ready file."""

    endpoint: str
    capath: str
    api_url: str
    ca_file: str


def reference_binary() -> str:
    path = os.environ.get(REFERENCE_VARIABLE, "")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"set {REFERENCE_VARIABLE} to the C++ reference localproxy binary (got {path!r})"
        )
    return path


class ReferencePairingTests(ProcessTestCase):
    """The reference and this project's proxy on the two ends of one tunnel."""

    timeout = scaled(60)

    @inlineCallbacks
    def setUp(self) -> Any:
        self.keep_log()
        # Not the in-process service of E2ETestCase: sharing the test's reactor
        # would slow the service down and pace the reference for us.
        self.reference = reference_binary()
        # A service that covers for nobody: no StreamResets when a peer re-attaches.
        self.tunnel_service = yield self.start_service("--no-reset-on-reattach")

    @inlineCallbacks
    def start_service(self, *extra: str) -> Any:
        """The local tunnel service as a child process of its own; fires with its ready file."""
        directory = os.path.abspath(self.mktemp_dir())
        ready = os.path.join(directory, "ready.json")
        process = spawn(
            self,
            [
                "-m",
                "aws_localproxy.tunnelservice.cli",
                "--cert-dir",
                os.path.join(directory, "certs"),
                "--ready-file",
                ready,
                *extra,
            ],
        )
        yield wait_until(
            lambda: os.path.exists(ready) or process.exited,
            START,
            what="the local tunnel service did not write its ready file",
            state=process.output_tail,
        )
        if process.exited:
            self.fail("the local tunnel service did not start:\n" + process.output.decode())
        with open(ready) as file:
            info = json.load(file)
        return RunningService(info["endpoint"], info["capath"], info["api_url"], info["ca_file"])

    @inlineCallbacks
    def open_tunnel(self, service: RunningService, services: List[str]) -> Any:
        """OpenTunnel through the service's management API; fires with both access tokens."""
        client = tunneling_client(self, service)
        arguments = {"destinationConfig": {"services": services}} if services else {}
        tunnel = yield deferToThread(lambda: client.open_tunnel(**arguments))
        return tunnel["sourceAccessToken"], tunnel["destinationAccessToken"]

    def capped_service(self) -> Any:
        """A second local tunnel service, capped as the AWS service is."""
        return self.start_service("--no-reset-on-reattach", "--bandwidth-limit", str(CAP))

    def start(
        self,
        kind: str,
        flag: str,
        mapping: str,
        token: str,
        *extra: str,
        service: Any = None,
        client_token: Optional[str] = None,
    ) -> ChildProcess:
        """Start C{kind} (``ref`` or ``py``) as a proxy with C{flag} (``-s``/``-d``) C{mapping}."""
        service = service or self.tunnel_service
        env: Dict[str, str] = {"AWSIOT_TUNNEL_ACCESS_TOKEN": token}
        if client_token is not None:
            env["AWSIOT_TUNNEL_CLIENT_TOKEN"] = client_token
        process = self._start(kind, flag, mapping, service, env, extra)
        # What each child said, kept beside the test's other files for a failure's post-mortem.
        log = os.path.abspath(self.mktemp() + f"-{kind}{flag}.log")
        self.addCleanup(lambda: _write(log, process.output))
        return process

    def _start(
        self,
        kind: str,
        flag: str,
        mapping: str,
        service: Any,
        env: Dict[str, str],
        extra: tuple[str, ...],
    ) -> ChildProcess:
        options = [flag, mapping, "-v", VERBOSITY, *extra]
        if kind == "ref":
            process = ChildProcess()
            argv = [self.reference, *endpoint_args(service), *options]
            spawn_child(self, process, argv, child_environ(env), self.mktemp_dir())
            return process
        return spawn(self, proxy_argv(service, *options), env)

    @inlineCallbacks
    def pair(
        self,
        source: str,
        destination: str,
        *,
        services: Optional[List[str]] = None,
        service: Any = None,
        source_extra: tuple[str, ...] = (),
        destination_extra: tuple[str, ...] = (),
    ) -> Any:
        """
        Open a tunnel, an echo service, the destination and the source; fires with
        the source's port once it accepts connections.
        """
        service = service or self.tunnel_service
        source_token, destination_token = yield self.open_tunnel(service, services or [])
        self.source_token = source_token
        # The application pauses now and then, except behind the reference: a
        # slow reader overflows its 131076-byte buffer and it exits (its bug
        # F1, in docs/compatibility.md), which is not what these tests look for.
        echo_port = yield self.listen(BoundedEcho if destination == "py" else Echo)
        names = services or [""]
        # One free port per service on the source; every service to the one echo application.
        self.ports = {name: free_port() for name in names}
        self.destination_process = self.start(
            destination,
            "-d",
            _mapping({name: echo_port for name in names}),
            destination_token,
            *destination_extra,
            service=service,
        )
        yield self.destination_process.wait_for("connection with proxy server")
        self.source_mapping = _mapping(self.ports)
        # A client token, so that a restarted source may use the access token again.
        self.source_client_token = new_client_token()
        self.source_process = self.start(
            source,
            "-s",
            self.source_mapping,
            source_token,
            *source_extra,
            service=service,
            client_token=self.source_client_token,
        )
        for port in self.ports.values():
            yield self.source_process.wait_for(f"Listening for new connection on port {port}")
        return self.ports[names[0]]

    @inlineCallbacks
    def connect_soon(self, port: int) -> Any:
        """
        Connect to a source's port, trying again for up to a second: the
        reference logs ``Listening for new connection`` a moment before its
        restarted listener accepts.
        """
        for _ in range(20):
            try:
                client = yield self.connect(port)
            except ConnectionRefusedError:
                yield task.deferLater(reactor, 0.05, lambda: None)
            else:
                return client
        return (yield self.connect(port))

    @inlineCallbacks
    def echo(self, port: int, size: int, rate: float = RATE) -> Any:
        """
        C{size} bytes through the tunnel and back, all of them, in order,
        within L{transfer} of C{size} at C{rate}; the connection closes.  The
        client reads as the application does, with pauses, so back-pressure
        builds up on both sides.
        """
        data = pattern(size)
        client = yield self.connect_soon(port)
        client.transport.registerProducer(client.transport, True)
        pauser = task.LoopingCall(_pause_briefly, client.transport, CLIENT_PAUSE)
        pauser.start(0.05, now=False)
        self.addCleanup(lambda: pauser.running and pauser.stop())
        client.transport.write(data)
        received = yield client.wait_for(len(data), transfer(size, rate))
        pauser.stop()
        self.assertEqual(received, data)
        client.transport.loseConnection()
        yield client.when_closed()

    # -- bulk both ways ----------------------------------------------------

    @inlineCallbacks
    def test_reference_source_bulk(self) -> Any:
        """The reference does not pace: our destination must not deadlock under its bulk."""
        port = yield self.pair("ref", "py")
        yield self.echo(port, BULK)

    @inlineCallbacks
    def test_reference_destination_bulk(self) -> Any:
        port = yield self.pair("py", "ref")
        yield self.echo(port, BULK)

    @inlineCallbacks
    def test_reference_source_capped(self) -> Any:
        service = yield self.capped_service()
        port = yield self.pair("ref", "py", service=service)
        yield self.echo(port, CAPPED, CAP / 2)

    @inlineCallbacks
    def test_reference_destination_capped(self) -> Any:
        service = yield self.capped_service()
        port = yield self.pair("py", "ref", service=service)
        yield self.echo(port, CAPPED, CAP / 2)

    @inlineCallbacks
    def all_echo(self, clients: List[Tuple[Any, bytes]]) -> Any:
        """Each client sends its bytes, all at once, then each gets them back."""
        for client, data in clients:
            client.transport.write(data)
        for client, data in clients:
            received = yield client.wait_for(len(data))
            self.assertEqual(received, data)

    @inlineCallbacks
    def several_services(self, source: str, destination: str) -> Any:
        """Two services at once, each with two connections, each its own echo."""
        yield self.pair(source, destination, services=["SSH", "WEB"])
        clients = []
        for index, port in enumerate(list(self.ports.values()) * 2):
            client = yield self.connect_soon(port)
            clients.append((client, pattern(300_000 + index)))
        yield self.all_echo(clients)

    def test_reference_source_several_services(self) -> Any:
        return self.several_services("ref", "py")

    def test_reference_destination_several_services(self) -> Any:
        return self.several_services("py", "ref")

    @inlineCallbacks
    def test_reference_source_several_connections(self) -> Any:
        """Six connections at once from the reference source, each its own echo."""
        port = yield self.pair("ref", "py", services=["WEB"])
        clients = []
        for index in range(6):
            client = yield self.connect_soon(port)
            clients.append((client, pattern(200_000 + index)))
        yield self.all_echo(clients)

    # -- V1-format peers without -y on our side -----------------------------
    # Only as a source: the reference with -y V1 as a destination still sends
    # connection IDs and resets a stream on a ConnectionReset, which no V1 peer
    # does (the foreign peer of tests/ stands in for V1 destinations).

    @inlineCallbacks
    def echo_twice_through_v1_reference(self, port: int) -> Any:
        """
        Two connections one after the other through the reference as a V1
        source.  After a V1/V2 close it closes and reopens its listener, and a
        client accepted meanwhile is lost (its bug, in docs/compatibility.md):
        the second client waits for the new listener, as a user would retry.
        """
        yield self.echo(port, 100_000)
        yield wait_until(
            lambda: self.source_process.output.count(b"Listening for new connection") >= 2,
            what="the reference source did not listen again after the first connection",
            state=self.source_process.output_tail,
        )
        yield self.echo(port, 100_000)

    @inlineCallbacks
    def test_v1_reference_source_one_service(self) -> Any:
        """
        The reference with ``-y V1`` as a source sends no service ID, as the
        console's browser SSH does; our destination serves the tunnel's one service.
        """
        port = yield self.pair("ref", "py", services=["SSH"], source_extra=("-y", "V1"))
        yield self.echo_twice_through_v1_reference(port)

    @inlineCallbacks
    def test_v1_reference_source_no_service(self) -> Any:
        port = yield self.pair("ref", "py", source_extra=("-y", "V1"))
        yield self.echo_twice_through_v1_reference(port)

    # -- restarts ----------------------------------------------------------

    @inlineCallbacks
    def restart_source(self, kind: str) -> Any:
        """Stop the source and start it again with the same access and client tokens."""
        self.source_process.transport.signalProcess("TERM")
        yield self.source_process.when_ended(EVENT)
        self.source_process = self.start(
            kind,
            "-s",
            self.source_mapping,
            self.source_token,
            client_token=self.source_client_token,
        )
        yield self.source_process.wait_for("Listening for new connection on port")

    @inlineCallbacks
    def test_reference_source_restarts(self) -> Any:
        """The reference starts again at stream id 1: our destination takes it as a new stream."""
        port = yield self.pair("ref", "py")
        yield self.echo(port, 10_000)
        yield self.restart_source("ref")
        yield self.echo(port, 10_000)

    @inlineCallbacks
    def test_our_source_restarts(self) -> Any:
        """The reference destination ignores a StreamStart for its current stream id."""
        port = yield self.pair("py", "ref")
        yield self.echo(port, 10_000)
        yield self.restart_source("py")
        yield self.echo(port, 10_000)
