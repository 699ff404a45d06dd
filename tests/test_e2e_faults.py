"""
Faults, end to end, on 127.0.0.1: the WebSocket dropped mid-transfer in
each direction (through L{tests.faultrelay}), the local tunnel service
SIGSTOP'd past the ping timeout, killed and restarted on its port with its
state file, and down when the proxies start.

Each test states its outcome and asserts it: the proxies reconnect within
the retry rules; every byte of a connection is either delivered in order or
the connection is closed (never corrupted, never cut short without a
close); a new connection works afterwards; no file descriptor is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import urllib.request
from typing import Any, Dict, Optional

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from aws_localproxy.config import ProxyConfig
from aws_localproxy.constants import Mode
from aws_localproxy.service import LocalProxyService
from tests.e2e_support import (
    Client,
    E2ETestCase,
    Echo,
    Sender,
    new_client_token,
    pattern_chunk,
    wait_until,
    with_settings,
)
from tests.faultrelay import FaultRelay
from tests.test_cli_process import ProxyProcess, spawn
from tests.test_e2e_closes import open_fds

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


def pattern(size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += pattern_chunk(len(out), min(65536, size - len(out)))
    return bytes(out)


class Collector(Protocol):
    """The application behind the destination: keeps what it receives."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class Apps:
    def __init__(self, make: Any) -> None:
        self.made: list = []
        self._make = make

    def __call__(self) -> Any:
        app = self._make()
        self.made.append(app)
        return app


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
def echo_works(test: TestCase, port: int, payload: bytes = b"ping after the fault") -> Any:
    client = Client()
    yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(lambda: client))
    client.transport.write(payload)
    got = yield client.wait_for(len(payload))
    test.assertEqual(got, payload)
    client.transport.loseConnection()
    yield client.closed


class DroppedWebSocketTests(E2ETestCase):
    """The WebSocket of one proxy dropped mid-transfer (the relay aborts it)."""

    timeout = 60

    @inlineCallbacks
    def set_up_pair(self, relay_side: Mode, app_factory: Any) -> Any:
        self.fds_before = open_fds()
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
            self, Mode.DESTINATION, destination_token, {"ssh": f"127.0.0.1:{app_port}"},
            host=service.host, port=ports[Mode.DESTINATION], capath=service.capath,
            client_token=new_client_token(), settings=RETRY_SETTINGS,
        )
        yield self.destination.connected
        self.source = start_proxy(
            self, Mode.SOURCE, source_token, {"ssh": "0"},
            host=service.host, port=ports[Mode.SOURCE], capath=service.capath,
            client_token=new_client_token(), settings=RETRY_SETTINGS,
        )
        yield self.source.connected
        self.source_port = yield self.source.listening_port("ssh")

    @inlineCallbacks
    def test_source_websocket_dropped_while_sending(self) -> Any:
        """
        Outcome: the source's WebSocket is aborted while a client streams 16 MiB
        to the destination's application.  That application's connection is
        closed holding an in-order prefix of the stream (never corrupted), the
        client's connection is closed, the source reconnects within the retry
        rules, and a new connection works.
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
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.source_port).connect(
            Factory.forProtocol(lambda: sender)
        )
        yield wait_until(lambda: apps.made and len(apps.made[0].received) > 256 * 1024)
        self.relay.drop()
        app = apps.made[0]
        yield wait_until(lambda: sender.closed, timeout=10)
        yield wait_until(lambda: app.lost, timeout=30)
        received = bytes(app.received)
        self.assertLess(len(received), Big.size, "the drop came after the end")
        self.assertEqual(received, pattern(len(received)), "corrupted or reordered")
        yield wait_until(lambda: sessions(self.source) >= 2, timeout=10)
        yield self._echo_after()

    @inlineCallbacks
    def _echo_after(self) -> Any:
        # The application here is a Collector: a new connection's bytes arrive whole.
        client = Client()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.source_port).connect(
            Factory.forProtocol(lambda: client)
        )
        client.transport.write(b"after the fault")
        # Reached the application through the new session.
        yield wait_until(
            lambda: any(bytes(a.received) == b"after the fault" for a in self._apps_made())
        )
        client.transport.loseConnection()
        yield client.closed

    def _apps_made(self) -> list:
        return list(self._apps.made)

    @inlineCallbacks
    def test_destination_websocket_dropped_while_sending(self) -> Any:
        """
        Outcome: the destination's WebSocket is aborted while its application
        streams 16 MiB to the client.  The client's connection is closed with
        an in-order prefix; the destination reconnects; a new connection works.
        """

        class Big(Sender):
            size = 16 * 1024 * 1024

        senders = Apps(Big)
        yield self.set_up_pair(Mode.DESTINATION, senders)
        client = Client()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.source_port).connect(
            Factory.forProtocol(lambda: client)
        )
        client.transport.write(b"go")
        yield client.wait_for(256 * 1024)
        self.relay.drop()
        received = yield client.closed
        self.assertLess(len(received), Big.size)
        self.assertEqual(received, pattern(len(received)), "corrupted or reordered")
        yield wait_until(lambda: sessions(self.destination) >= 2, timeout=10)
        again = Client()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.source_port).connect(
            Factory.forProtocol(lambda: again)
        )
        first = yield again.wait_for(1024)
        self.assertEqual(first[:1024], pattern(1024))
        again.transport.abortConnection()
        yield again.closed


class ServiceProcess:
    """The local tunnel service as a child process (``localtunnel``'s module)."""

    def __init__(self, test: TestCase, workdir: str, port: int) -> None:
        self.test = test
        self.workdir = workdir
        self.port = port
        self.process: Optional[ProxyProcess] = None
        self.info: Dict[str, str] = {}

    @inlineCallbacks
    def start(self) -> Any:
        ready = os.path.join(self.workdir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        self.process = spawn(
            self.test,
            [
                "-m", "aws_localproxy.tunnelservice.cli",
                "--port", str(self.port),
                "--cert-dir", os.path.join(self.workdir, "certs"),
                "--state-file", os.path.join(self.workdir, "state.sqlite"),
                "--ready-file", ready,
            ],
        )
        yield wait_until(lambda: os.path.exists(ready), timeout=20)
        with open(ready) as f:
            self.info = json.load(f)

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.transport is not None
        return int(self.process.transport.pid)

    @inlineCallbacks
    def kill(self) -> Any:
        assert self.process is not None
        os.kill(self.pid, signal.SIGKILL)
        yield self.process.ended

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceFaultTests(TestCase):
    """The local tunnel service as a real process, frozen, killed and late."""

    timeout = 90

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
        echo = yield TCP4ServerEndpointListen(self, Echo)
        self.echo_port = echo
        self.host = "127.0.0.1"

    def start_proxies(self) -> None:
        capath = os.path.join(self.service.workdir, "certs")
        info_capath = self.service.info.get("capath") or capath
        self.destination = start_proxy(
            self, Mode.DESTINATION, self.destination_token, {"ssh": f"127.0.0.1:{self.echo_port}"},
            host=self.host, port=self.service.port, capath=info_capath,
            client_token=new_client_token(),
        )
        self.source = start_proxy(
            self, Mode.SOURCE, self.source_token, {"ssh": "0"},
            host=self.host, port=self.service.port, capath=info_capath,
            client_token=new_client_token(),
        )

    @inlineCallbacks
    def both_connected(self, at_least: int) -> Any:
        yield wait_until(
            lambda: sessions(self.source) >= at_least
            and sessions(self.destination) >= at_least
            and self.source.tunnel is not None
            and self.source.tunnel.ready
            and self.destination.tunnel.ready,
            timeout=30,
        )
        port = yield self.source.listening_port("ssh")
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
        open_client = Client()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            Factory.forProtocol(lambda: open_client)
        )
        open_client.transport.write(b"before")
        yield open_client.wait_for(6)
        os.kill(self.service.pid, signal.SIGSTOP)
        try:
            received = yield open_client.closed
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
        from tests.tunnelclient import sleep

        yield sleep(reactor, 2.0)
        self.assertEqual(sessions(self.source), 0)
        yield self.service.start()
        port = yield self.both_connected(1)
        yield echo_works(self, port)


@inlineCallbacks
def TCP4ServerEndpointListen(test: TestCase, protocol: Any) -> Any:
    from twisted.internet.endpoints import TCP4ServerEndpoint

    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(protocol)
    )
    test.addCleanup(port.stopListening)
    return port.getHost().port

