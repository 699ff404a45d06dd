"""
Faults, end to end, on 127.0.0.1: the WebSocket dropped mid-transfer in
each direction (through L{tests.support.faultrelay}), the local tunnel service
SIGSTOP'd past the ping timeout, killed and restarted on its port with its
state file, and down when the proxies start; the destination proxy killed
and restarted with its client token file, and replaced by a second
destination with the same client token.

Each test states its outcome and asserts it: the proxies reconnect within
the retry rules; every byte of a connection is either delivered in order or
the connection is closed (never corrupted, never cut short without a
close); a new connection works afterwards; no file descriptor is left.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
import urllib.request
from typing import Any, Dict, Optional

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.proxy.service import LocalProxyService
from tests.support.deadlines import EVENT, START, deadline, scaled, transfer
from tests.support.e2e import (
    Apps,
    Client,
    Collector,
    E2ETestCase,
    Echo,
    ProcessTestCase,
    Sender,
    _close_client,
    listen,
    new_client_token,
    pattern,
    proxy_name,
    proxy_state,
    spawn,
    table_size,
    with_settings,
)
from tests.support.faultrelay import FaultRelay
from tests.support.helpers import (
    ChildProcess,
    child_environ,
    free_port,
    open_fds,
    stop_child,
    wait_until,
)
from tests.support.payloads import assert_same_bytes

#: Pings every 500 ms, a silent service is gone after 1.5 s; retries every 200 ms.
#: (Tighter pong timeouts flap on a loaded 2-core machine.)
FAULT_SETTINGS = with_settings(
    ws_ping_period_ms=500,
    ws_pong_timeout_ms=1500,
    ws_retry_delay_ms=200,
    ws_connect_retry_count=100,
)
#: The same retries with the default pings, where a frozen service is not the fault.
RETRY_SETTINGS = with_settings(ws_retry_delay_ms=200, ws_connect_retry_count=100)


def start_proxy(
    test: TestCase,
    mode: Mode,
    token: str,
    service_map: Dict[str, str],
    *,
    host: str,
    port: int,
    capath: str,
    client_token: str,
    settings: Any = FAULT_SETTINGS,
) -> LocalProxyService:
    config = ProxyConfig(
        mode=mode,
        access_token=token,
        client_token=client_token,
        endpoint_host=host,
        endpoint_port=port,
        capath=capath,
        service_map=dict(service_map),
        bind_address="127.0.0.1",
        settings=settings,
    )
    proxy = LocalProxyService(config, reactor)
    proxy.startService()
    test.addCleanup(lambda: proxy.stopService() if proxy.running else None)
    return proxy


def sessions(proxy: LocalProxyService) -> int:
    return proxy._connector.sessions if proxy._connector is not None else 0


@inlineCallbacks
def connect_client(test: TestCase, port: int, name: str) -> Any:
    """A L{Client} called C{name} connected to C{port} (closed after the test), with a deadline."""
    client = Client(name)
    yield deadline(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(lambda: client)),
        EVENT,
        f"{name} did not connect to port {port}",
    )
    test.addCleanup(_close_client, client)
    return client


@inlineCallbacks
def echo_works(test: TestCase, port: int, payload: bytes = b"ping after the fault") -> Any:
    client = yield connect_client(test, port, "the client after the fault")
    client.transport.write(payload)
    got = yield client.wait_for(len(payload))
    test.assertEqual(got, payload)
    client.transport.loseConnection()
    yield client.when_closed()


class DroppedWebSocketTests(E2ETestCase):
    """The WebSocket of one proxy dropped mid-transfer (the relay aborts it)."""

    timeout = scaled(60)

    @inlineCallbacks
    def set_up_pair(self, relay_side: Mode, app_factory: Any) -> Any:
        app_port = yield self.listen(app_factory)
        service = self.tunnel_service
        self.relay = FaultRelay(reactor, service.port)
        relay_port = yield self.relay.listen()
        self.addCleanup(self.relay.stop)
        _, source_token, destination_token = service.open_tunnel(["ssh"])
        ports = {
            Mode.SOURCE: relay_port if relay_side is Mode.SOURCE else service.port,
            Mode.DESTINATION: relay_port if relay_side is Mode.DESTINATION else service.port,
        }
        self.destination = start_proxy(
            self,
            Mode.DESTINATION,
            destination_token,
            {"ssh": f"127.0.0.1:{app_port}"},
            host=service.host,
            port=ports[Mode.DESTINATION],
            capath=service.capath,
            client_token=new_client_token(),
            settings=RETRY_SETTINGS,
        )
        yield self.connected(self.destination)
        self.source = start_proxy(
            self,
            Mode.SOURCE,
            source_token,
            {"ssh": "0"},
            host=service.host,
            port=ports[Mode.SOURCE],
            capath=service.capath,
            client_token=new_client_token(),
            settings=RETRY_SETTINGS,
        )
        yield self.connected(self.source)
        self.source_port = yield self.listening(self.source, "ssh")
        # Everything the test keeps is open now: both WebSockets (through the
        # relay for one side), the listeners and the service.
        self.fds_before = open_fds()

    @inlineCallbacks
    def assert_nothing_left(self) -> Any:
        """Both tables empty and the process back to the fds it had before the fault."""
        yield self.until(
            lambda: table_size(self.source) == 0 and table_size(self.destination) == 0,
            "the proxies' connection tables did not empty",
            EVENT * 2,
            lambda: f"{proxy_state(self.source)}; {proxy_state(self.destination)}",
        )
        yield self.until(
            lambda: open_fds() <= self.fds_before,
            "the test's sockets were not all closed",
            EVENT * 2,
            lambda: f"{open_fds()} file descriptors open, {self.fds_before} expected",
        )

    @inlineCallbacks
    def test_source_websocket_dropped_while_sending(self) -> Any:
        """
        Outcome: the source's WebSocket is aborted while a client streams 16 MiB
        to the destination's application.  That application's connection is
        closed holding an in-order prefix of the stream (never corrupted), the
        client's connection is closed, the source reconnects within the retry
        rules, a new connection works, and no fd or table entry is left.
        """
        apps = self._apps = Apps(Collector)
        yield self.set_up_pair(Mode.SOURCE, apps)

        class Big(Sender):
            size = 16 * 1024 * 1024

        sender = Big()
        sender.closed = False

        def lost(reason: Any = None) -> None:
            sender.closed = True

        sender.connectionLost = lost  # type: ignore[method-assign]
        yield self.connect_as(self.source_port, lambda: sender)
        yield self.until(
            lambda: apps.made and len(apps.made[0].received) > 256 * 1024,
            "256 KiB of the client's stream did not reach the application",
            state=apps.summary,
        )
        self.relay.drop()
        app = apps.made[0]
        yield self.until(
            lambda: sender.closed, "the client was not closed after the source's WebSocket dropped"
        )
        # (Its close comes after the bytes stopped: no check that they move.)
        yield app.when_closed(EVENT * 3, stall=None)
        received = bytes(app.received)
        self.assertLess(len(received), Big.size, "the drop came after the end")
        assert_same_bytes(self, received, pattern(len(received)))
        yield self.until(
            lambda: sessions(self.source) >= 2,
            "the source did not reconnect",
            state=lambda: proxy_state(self.source),
        )
        yield self._echo_after()
        yield self.assert_nothing_left()

    @inlineCallbacks
    def _echo_after(self) -> Any:
        # The application here is a Collector: a new connection's bytes arrive whole.
        client = yield self.connect(self.source_port)
        client.transport.write(b"after the fault")
        # Reached the application through the new session.
        yield self.until(
            lambda: any(bytes(a.received) == b"after the fault" for a in self._apps_made()),
            "the bytes of a new connection did not reach an application",
            state=self._apps.summary,
        )
        client.transport.loseConnection()
        yield client.when_closed()

    def _apps_made(self) -> list:
        return list(self._apps.made)

    @inlineCallbacks
    def test_destination_websocket_dropped_while_sending(self) -> Any:
        """
        Outcome: the destination's WebSocket is aborted while its application
        streams 16 MiB to the client.  The client's connection is closed with
        an in-order prefix; the destination reconnects; a new connection works;
        no fd or table entry is left.
        """

        class Big(Sender):
            size = 16 * 1024 * 1024

        senders = Apps(Big)
        yield self.set_up_pair(Mode.DESTINATION, senders)
        client = yield self.connect(self.source_port)
        client.transport.write(b"go")
        yield client.wait_for(256 * 1024)
        self.relay.drop()
        received = yield client.when_closed(transfer(Big.size))
        self.assertLess(len(received), Big.size)
        assert_same_bytes(self, received, pattern(len(received)))
        yield self.until(
            lambda: sessions(self.destination) >= 2,
            "the destination did not reconnect",
            state=lambda: proxy_state(self.destination),
        )
        again = yield self.connect(self.source_port)
        first = yield again.wait_for(1024)
        self.assertEqual(first[:1024], pattern(1024))
        again.transport.abortConnection()
        yield again.when_closed()
        yield self.assert_nothing_left()


class ServiceProcess:
    """The local tunnel service as a child process (``localtunnel``'s module)."""

    def __init__(self, test: TestCase, workdir: str, port: int) -> None:
        self.test = test
        self.workdir = workdir
        self.port = port
        self.process: Optional[ChildProcess] = None
        self.info: Dict[str, str] = {}
        # One cleanup for every process it starts, registered now: it runs
        # after the proxies (started later) have stopped, as a service
        # outlives its clients.  Killed first, it would leave each proxy
        # closing a WebSocket whose connection is already gone, and
        # Autobahn's close-handshake timer pending on the reactor.
        test.addCleanup(self.stop)

    @inlineCallbacks
    def start(self) -> Any:
        ready = os.path.join(self.workdir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        argv = [
            sys.executable,
            "-m",
            "aws_localproxy.tunnelservice.cli",
            "--port",
            str(self.port),
            "--cert-dir",
            os.path.join(self.workdir, "certs"),
            "--state-file",
            os.path.join(self.workdir, "state.sqlite"),
            "--ready-file",
            ready,
        ]
        self.process = process = ChildProcess("the tunnel service")
        reactor.spawnProcess(process, argv[0], argv, env=child_environ(), path=self.workdir)
        yield wait_until(
            lambda: os.path.exists(ready) or process.exited,
            START,
            what="the tunnel service process did not write its ready file",
            state=process.output_tail,
        )
        if process.exited:
            raise AssertionError("the tunnel service did not start: " + process.output_tail())
        with open(ready) as f:
            self.info = json.load(f)

    def stop(self) -> Any:
        """Kill the service if it runs; fires once it has exited."""
        if self.process is None or self.process.exited:
            return None
        return stop_child(self.process, self.process.transport, "KILL")

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.transport is not None
        return int(self.process.transport.pid)

    @inlineCallbacks
    def kill(self) -> Any:
        assert self.process is not None
        os.kill(self.pid, signal.SIGKILL)
        yield self.process.when_ended(EVENT)

    def open_tunnel(self) -> tuple:
        context = ssl.create_default_context(cafile=self.info["ca_file"])
        request = urllib.request.Request(
            self.info["api_url"],
            data=json.dumps({"destinationConfig": {"services": ["ssh"]}}).encode(),
            headers={
                "X-Amz-Target": "IoTSecuredTunneling.OpenTunnel",
                "Content-Type": "application/x-amz-json-1.1",
            },
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            body = json.load(response)
        return body["sourceAccessToken"], body["destinationAccessToken"]


class ServiceFaultTests(TestCase):
    """The local tunnel service as a real process, frozen, killed and late."""

    timeout = scaled(90)

    def mktemp_dir(self) -> str:
        path = self.mktemp()
        os.makedirs(path)
        return path

    @inlineCallbacks
    def set_up(self, *, start_service: bool = True) -> Any:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        self.service = ServiceProcess(self, workdir, free_port())
        yield self.service.start()
        self.source_token, self.destination_token = self.service.open_tunnel()
        if not start_service:
            yield self.service.kill()
        echo = yield listen(self, Echo)
        self.echo_port = echo
        self.host = "127.0.0.1"

    def start_proxies(self) -> None:
        capath = os.path.join(self.service.workdir, "certs")
        info_capath = self.service.info.get("capath") or capath
        self.destination = start_proxy(
            self,
            Mode.DESTINATION,
            self.destination_token,
            {"ssh": f"127.0.0.1:{self.echo_port}"},
            host=self.host,
            port=self.service.port,
            capath=info_capath,
            client_token=new_client_token(),
        )
        self.source = start_proxy(
            self,
            Mode.SOURCE,
            self.source_token,
            {"ssh": "0"},
            host=self.host,
            port=self.service.port,
            capath=info_capath,
            client_token=new_client_token(),
        )

    @inlineCallbacks
    def both_connected(self, at_least: int) -> Any:
        yield wait_until(
            lambda: (
                sessions(self.source) >= at_least
                and sessions(self.destination) >= at_least
                and self.source.tunnel is not None
                and self.source.tunnel.ready
                and self.destination.tunnel.ready
            ),
            EVENT * 3,
            what=f"the proxies did not both have session {at_least} with service IDs",
            state=lambda: (
                f"{proxy_state(self.source)}; {proxy_state(self.destination)}; "
                + self.service.process.output_tail()
            ),  # type: ignore[union-attr]
        )
        port = yield deadline(
            self.source.listening_port("ssh"),
            EVENT,
            f"{proxy_name(self.source)} did not listen",
            lambda: proxy_state(self.source),
        )
        return port

    @inlineCallbacks
    def test_sigstop_longer_than_ping_timeout(self) -> Any:
        """
        Outcome: the service is frozen (SIGSTOP) past the 1.5 s pong timeout.
        Both proxies end their sessions (an open client
        connection is closed, not left hanging), reconnect once the service
        runs again (SIGCONT), and a new connection echoes.
        """
        yield self.set_up()
        self.start_proxies()
        port = yield self.both_connected(1)
        open_client = yield connect_client(self, port, "the open client")
        open_client.transport.write(b"before")
        yield open_client.wait_for(6)
        os.kill(self.service.pid, signal.SIGSTOP)
        try:
            received = yield open_client.when_closed()
            self.assertEqual(received, b"before")
        finally:
            os.kill(self.service.pid, signal.SIGCONT)
        port = yield self.both_connected(2)
        yield echo_works(self, port)

    @inlineCallbacks
    def test_killed_and_restarted_with_state_file(self) -> Any:
        """
        Outcome: the service is killed (SIGKILL) and started again on the same
        port with its state file: the tunnel and its tokens survive, both
        proxies reconnect (retries every 200 ms), and a new connection echoes.
        """
        yield self.set_up()
        self.start_proxies()
        port = yield self.both_connected(1)
        yield echo_works(self, port, b"before the restart")
        yield self.service.kill()
        yield self.service.start()
        port = yield self.both_connected(2)
        yield echo_works(self, port)

    @inlineCallbacks
    def test_down_at_start(self) -> Any:
        """
        Outcome: the proxies start while the service is down and it comes up
        2 s later: they retry every 200 ms (within websocket.connect_retry_count)
        and connect; a connection echoes.
        """
        yield self.set_up(start_service=False)
        self.start_proxies()
        from tests.support.helpers import sleep

        yield sleep(2.0)
        self.assertEqual(sessions(self.source), 0)
        yield self.service.start()
        port = yield self.both_connected(1)
        yield echo_works(self, port)


class Counted(Protocol):
    """An echo application that records each connection made to it and its end."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.lost = False

    def connectionMade(self) -> None:
        self.log.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class DestinationFaultTests(ProcessTestCase):
    """
    The destination side fails: its process is killed and restarted with
    the same client token, or another destination takes its slot.
    """

    timeout = scaled(90)

    @inlineCallbacks
    def open_clients(self, port: int, count: int) -> Any:
        clients = []
        for i in range(count):
            client = yield self.connect(port)
            payload = b"open %d" % (i,)
            client.transport.write(payload)
            got = yield client.wait_for(len(payload))
            self.assertEqual(got, payload)
            clients.append(client)
        return clients

    def spawn_destination(self, token: str, token_file: str, echo_port: int) -> ChildProcess:
        # The client token comes from a file (never argv); the access token from the environment.
        return spawn(
            self,
            self.proxy_args("-d", f"ssh=127.0.0.1:{echo_port}", "--client-token-file", token_file),
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": token},
        )

    @inlineCallbacks
    def test_destination_killed_and_restarted(self) -> Any:
        """
        Outcome: the destination proxy is SIGKILLed while three connections are
        open and started again with the same client token (its
        --client-token-file): the service takes the new process into the slot
        and resets the old streams, so the source closes the three client
        connections (each holding exactly what was echoed before); a new
        connection echoes; the source's fds and tables are back to where
        they were.
        """
        echo_port = yield self.listen(Echo)
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        token_file = os.path.join(os.path.abspath(self.mktemp_dir()), "client-token")
        first = self.spawn_destination(destination_token, token_file, echo_port)
        yield first.wait_for("Successfully established websocket connection")
        yield self.service_state(tunnel_id, "destination", "CONNECTED")
        with open(token_file) as f:
            client_token = f.read().strip()
        source = self.proxy(
            Mode.SOURCE, source_token, {}, client_token=new_client_token(), settings=RETRY_SETTINGS
        )
        yield self.connected(source)
        port = yield self.listening(source, "ssh")
        fds_before = open_fds()

        clients = yield self.open_clients(port, 3)
        os.kill(first.transport.pid, signal.SIGKILL)
        code = yield first.when_ended()
        self.assertEqual(code, -signal.SIGKILL)
        yield self.service_state(tunnel_id, "destination", "DISCONNECTED")

        second = self.spawn_destination(destination_token, token_file, echo_port)
        yield second.wait_for("Successfully established websocket connection")
        with open(token_file) as f:
            self.assertEqual(f.read().strip(), client_token)
        for i, client in enumerate(clients):
            received = yield client.when_closed()
            self.assertEqual(received, b"open %d" % (i,))
        yield echo_works(self, port)
        self.assertEqual(sessions(source), 1, "the source's own session was not disturbed")
        yield self.until(
            lambda: table_size(source) == 0,
            "the source's connection table did not empty",
            state=lambda: proxy_state(source),
        )
        yield self.until(
            lambda: open_fds() <= fds_before,
            "the test's sockets were not all closed",
            state=lambda: f"{open_fds()} file descriptors open, {fds_before} expected",
        )
        self.assertNotIn(client_token.encode(), first.output + second.output)

    @inlineCallbacks
    def test_peer_replaced(self) -> Any:
        """
        Outcome: a second destination with the same access and client token
        connects while the first runs.  The service closes the first's
        WebSocket (1000, a normal close: it stops, as the reference does);
        the first's connections to its application are closed; the source's
        clients of the old stream are closed (StreamReset); new connections
        reach the second destination's application only.
        """
        first_apps: list = []
        second_apps: list = []
        first_port = yield self.listen(lambda: Counted(first_apps))
        second_port = yield self.listen(lambda: Counted(second_apps))
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        client_token = new_client_token()

        def destination(app_port: int) -> LocalProxyService:
            """A destination (the same client token) to the application on C{app_port}."""
            return self.proxy(
                Mode.DESTINATION,
                destination_token,
                {"ssh": f"127.0.0.1:{app_port}"},
                client_token=client_token,
                settings=RETRY_SETTINGS,
            )

        first = destination(first_port)
        yield self.connected(first)
        source = self.proxy(
            Mode.SOURCE, source_token, {}, client_token=new_client_token(), settings=RETRY_SETTINGS
        )
        yield self.connected(source)
        port = yield self.listening(source, "ssh")
        clients = yield self.open_clients(port, 3)
        self.assertEqual(len(first_apps), 3)

        second = destination(second_port)
        yield self.connected(second)
        for i, client in enumerate(clients):
            received = yield client.when_closed()
            self.assertEqual(received, b"open %d" % (i,))
        yield self.until(
            lambda: all(app.lost for app in first_apps),
            "the first destination's application connections were not all closed",
            state=lambda: f"{sum(app.lost for app in first_apps)} of {len(first_apps)} closed",
        )
        code = yield self.finished(first)
        self.assertEqual(code, 0)

        more = yield self.open_clients(port, 2)
        self.assertEqual((len(first_apps), len(second_apps)), (3, 2))
        for client in more:
            client.transport.loseConnection()
            yield client.when_closed()
        yield self.until(
            lambda: table_size(source) == 0 and table_size(second) == 0,
            "the connection tables did not empty",
            state=lambda: f"{proxy_state(source)}; {proxy_state(second)}",
        )
        self.assertEqual(self.tunnel_service.violations, [])
