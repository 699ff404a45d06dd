"""
Shared pieces of the end-to-end tests: the local tunnel service, local TCP
services and clients, and source/destination proxies, all on 127.0.0.1
with ports chosen by the OS.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings import Settings
from aws_localproxy.protocol.constants import Mode, PeerVersion
from aws_localproxy.proxy.service import LocalProxyService
from tests.support.deadlines import EVENT, START, branch, deadline, scaled, tail, transfer
from tests.support.helpers import (
    ChildProcess,
    child_environ,
    free_port,
    run_child,
    spawn_child,
    wait_until,
)
from tests.support.payloads import unique_stream

#: Fast retries, so failure paths finish in well under a second.
TEST_SETTINGS = Settings(
    ws_retry_delay_ms=200,
    tcp_connection_retry_count=1,
    tcp_connection_retry_delay_ms=100,
    ws_connect_retry_count=5,
)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class DigestServer(Protocol):
    """Reads an 8-byte length and that many bytes, answers with their sha256."""

    def connectionMade(self) -> None:
        self.buffer = b""
        self.expected: Optional[int] = None
        self.digest = hashlib.sha256()
        self.received = 0

    def dataReceived(self, data: bytes) -> None:
        if self.expected is None:
            self.buffer += data
            if len(self.buffer) < 8:
                return
            (self.expected,) = struct.unpack(">Q", self.buffer[:8])
            data, self.buffer = self.buffer[8:], b""
        self.digest.update(data)
        self.received += len(data)
        if self.received >= self.expected:
            self.transport.write(self.digest.digest())


class Sender(Protocol):
    """Streams C{size} deterministic bytes, honouring back-pressure, then closes."""

    size = 0

    def connectionMade(self) -> None:
        self.sent = 0
        self.digest = hashlib.sha256()
        self.paused = False
        self.transport.registerProducer(self, True)
        self._pump()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._pump()

    def stopProducing(self) -> None:
        self.paused = True

    def _pump(self) -> None:
        while not self.paused and self.sent < self.size:
            chunk = pattern_chunk(self.sent, min(65536, self.size - self.sent))
            self.sent += len(chunk)
            self.transport.write(chunk)
        if self.sent >= self.size:
            self.transport.unregisterProducer()
            self.transport.loseConnection()


def pattern_chunk(offset: int, length: int) -> bytes:
    """
    The C{length} bytes at C{offset} of the transfer pattern, in which no
    block repeats (a TLS record or WebSocket frame sent twice, dropped or
    reordered changes the bytes): L{tests.support.payloads.unique_stream}.
    """
    return unique_stream(offset, length)


def pattern(size: int) -> bytes:
    """The first C{size} bytes of the pattern L{pattern_chunk} cuts."""
    out = bytearray()
    while len(out) < size:
        out += pattern_chunk(len(out), min(65536, size - len(out)))
    return bytes(out)


class Collector(Protocol):
    """
    The application behind a destination: keeps what it receives
    (C{received}); C{lost} says whether the connection ended and C{closed}
    fires then with all it received and the (monotonic) time (a test waits
    for it with L{when_closed}).  It may start with reading paused
    (C{paused}), for a test to resume.
    """

    #: Which connection, in messages (L{Apps} numbers them).
    name = "the application's connection"

    def __init__(self, paused: bool = False) -> None:
        self.received = bytearray()
        self.lost = False
        self.closed: Deferred[tuple[bytes, float]] = Deferred()
        self.start_paused = paused

    def when_closed(
        self, within: float = EVENT, stall: Optional[float] = EVENT
    ) -> Deferred[tuple[bytes, float]]:
        """
        L{closed}, failing if the connection has not ended within C{within}
        seconds, or once nothing has arrived for C{stall} seconds (C{None}:
        no such check, for a close that comes after a silence).
        """
        return deadline(
            branch(self.closed),
            within,
            f"{self.name} was not closed",
            lambda: f"it received {len(self.received):,} bytes",
            progress=lambda: len(self.received),
            stall=stall,
        )

    def connectionMade(self) -> None:
        if self.start_paused:
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True
        self.closed.callback((bytes(self.received), time.monotonic()))


class EchoingCollector(Collector):
    """An echo application that also keeps what it received, to tell its connections apart."""

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)  # type: ignore[union-attr]


class SendAndClose(Protocol):
    """An application that writes C{payload} at once and closes."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def connectionMade(self) -> None:
        self.transport.write(self.payload)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class Apps:
    """
    A protocol factory (for L{E2ETestCase.listen}) that remembers every
    application it made, named for messages ("application connection 2").
    """

    def __init__(self, make: Any) -> None:
        self.made: List[Any] = []
        self._make = make

    def __call__(self) -> Any:
        app = self._make()
        self.made.append(app)
        app.name = f"application connection {len(self.made)}"
        return app

    def summary(self) -> str:
        """How many applications were made, and what the first ones received, for a message."""
        closed = sum(1 for app in self.made if _ended(app))
        shown = ", ".join(
            f"{len(getattr(app, 'received', b'')):,} bytes{' (closed)' if _ended(app) else ''}"
            for app in self.made[:5]
        )
        more = ", ..." if len(self.made) > 5 else ""
        return f"{len(self.made)} application connection(s) made, {closed} closed" + (
            f" ({shown}{more})" if self.made else ""
        )


def _ended(app: Any) -> bool:
    """Whether an application's connection has ended."""
    if getattr(app, "lost", False):
        return True
    return bool(app.transport is None or app.transport.disconnected)


class Client(Protocol):
    """
    Collects everything received; L{closed} fires with it when the connection
    ends.  A test waits for bytes (L{wait_for}) or the close (L{when_closed})
    with a deadline; C{name} says which client in the messages.
    """

    def __init__(self, name: str = "the client") -> None:
        self.name = name
        self.received: List[bytes] = []
        self.size = 0
        self.closed: Deferred[bytes] = Deferred()
        self.connected = False
        self.waiters: List[tuple[int, Deferred[bytes]]] = []

    def connectionMade(self) -> None:
        self.connected = True

    def dataReceived(self, data: bytes) -> None:
        # Joined only when a waiter is due: joining on every read is
        # quadratic, and a 50 MB download then spends its time here.
        self.received.append(data)
        self.size += len(data)
        for waiter in list(self.waiters):
            if self.size >= waiter[0]:
                self.waiters.remove(waiter)
                waiter[1].callback(self.value())

    def value(self) -> bytes:
        return b"".join(self.received)

    def wait_for(
        self,
        count: int,
        within: Optional[float] = None,
        stall: Optional[float] = EVENT,
        progress: Optional[Any] = None,
        state: Optional[Any] = None,
    ) -> Deferred[bytes]:
        """
        Fires with everything received once there are at least C{count}
        bytes; fails at once if the connection closes first, once nothing
        has arrived for C{stall} seconds (C{None}: no such check), or after
        C{within} seconds (by default what C{count} bytes may take,
        L{tests.support.deadlines.transfer}).  Bytes that come only at the
        end (a digest) give the C{progress} to watch instead (what the far
        end received, say) and C{state()} to show with it.
        """

        def forget(d: Deferred[bytes]) -> None:
            self.waiters = [waiter for waiter in self.waiters if waiter[1] is not d]

        d: Deferred[bytes] = Deferred(forget)
        if self.size >= count:
            d.callback(self.value())
        elif self.closed.called:
            d.errback(AssertionError(self._closed_early(count)))
        else:
            self.waiters.append((count, d))
        return deadline(
            d,
            transfer(count) if within is None else within,
            f"{self.name} did not receive {count:,} bytes",
            lambda: (
                f"{self.size:,} received, the connection still open"
                + (f"; {state()}" if state is not None else "")
            ),
            progress=progress or (lambda: self.size),
            stall=stall,
        )

    def when_closed(self, within: float = EVENT, stall: Optional[float] = EVENT) -> Deferred[bytes]:
        """
        L{closed} (everything received), failing if the connection has not
        closed within C{within} seconds, or once nothing has arrived for
        C{stall} seconds (C{None}: no such check).
        """
        return deadline(
            branch(self.closed),
            within,
            f"{self.name} was not closed",
            lambda: f"it received {self.size:,} bytes",
            progress=lambda: self.size,
            stall=stall,
        )

    def _closed_early(self, count: int) -> str:
        return f"{self.name} was closed after {self.size:,} of the {count:,} bytes it waited for"

    def connectionLost(self, reason: Any = None) -> None:
        waiters, self.waiters = self.waiters, []
        for count, waiter in waiters:
            waiter.errback(AssertionError(self._closed_early(count)))
        self.closed.callback(self.value())


def all_of(waits: Sequence[Deferred[Any]]) -> Deferred[List[Any]]:
    """
    Fires with the results of C{waits} (each with its own deadline) once all
    have; fails with the first failure itself (not wrapped), the others'
    failures consumed so that none is reported twice.
    """
    return gatherResults(list(waits), consumeErrors=True).addErrback(
        lambda failure: failure.value.subFailure
    )


@inlineCallbacks
def listen(test: TestCase, protocol_factory: Any) -> Any:
    """A TCP service on 127.0.0.1 (a port the OS picks) until the test ends; fires with its port."""
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(protocol_factory)
    )
    test.addCleanup(port.stopListening)
    return port.getHost().port


#: The options of a tunnel service that covers for nobody: no StreamResets when a
#: peer re-attaches (the AWS service "may" send them; a proxy must not need them).
NO_RESETS: Dict[str, Any] = {"reset_on_reattach": False}


class E2ETestCase(TestCase):
    """
    A tunnel service per test, and helpers to start proxies and services.

    Every wait of these helpers has a deadline (L{tests.support.deadlines}):
    a test fails within seconds saying what did not happen, with the end of
    the log (L{log_tail}), long before the class's C{timeout}, which stays
    as a last resort.
    """

    timeout = scaled(60)
    #: Keyword arguments of the test's tunnel service (C{start_tunnel_service}),
    #: e.g. C{{"reset_on_reattach": False}} for a service that covers for nobody.
    tunnel_service_options: Dict[str, Any] = {}
    #: Log events kept for the messages of failed waits (the last ones).
    LOG_KEPT = 25

    @inlineCallbacks
    def setUp(self) -> Any:
        from aws_localproxy.tunnelservice.testing import start_tunnel_service

        self.keep_log()
        self.tunnel_service = yield self.within(
            start_tunnel_service(reactor, self.mktemp(), **self.tunnel_service_options),
            EVENT,
            "the local tunnel service did not start",
        )
        self.addCleanup(self.tunnel_service.stop)

    # -- waiting, with deadlines -----------------------------------------------------

    def keep_log(self) -> None:
        """
        Keep the last log events of the test's proxies, tunnel service and
        agent, and any warning or error (raw: formatted only for a message).
        """
        events: deque[Dict[str, Any]] = deque(maxlen=self.LOG_KEPT)
        self._log_events = events

        def keep(event: Dict[str, Any]) -> None:
            level = event.get("log_level")
            if str(event.get("log_namespace", "")).startswith("aws_localproxy") or level in (
                LogLevel.warn,
                LogLevel.error,
                LogLevel.critical,
            ):
                events.append(event)

        globalLogPublisher.addObserver(keep)
        self.addCleanup(globalLogPublisher.removeObserver, keep)

    def log_tail(self) -> str:
        """The test's last log lines (the proxies', the tunnel service's), for a message."""
        events = getattr(self, "_log_events", None)
        if not events:
            return "nothing logged"
        return "the log ends:\n" + tail(
            "\n".join(formatEvent(event) or "" for event in list(events)), lines=self.LOG_KEPT
        )

    def within(
        self,
        d: Deferred[Any],
        seconds: float,
        what: str,
        state: Optional[Any] = None,
    ) -> Deferred[Any]:
        """
        L{tests.support.deadlines.deadline} for an in-process wait: the
        message ends with C{state()}, if given, and the log's end.
        """

        def described() -> str:
            return (state() + "; " if state is not None else "") + self.log_tail()

        return deadline(d, seconds, what, described)

    def until(
        self, predicate: Any, what: str, seconds: float = EVENT, state: Optional[Any] = None
    ) -> Deferred[Any]:
        """
        L{wait_until} C{predicate} holds, the message ending with C{state()},
        if given, and the log's end.
        """

        def described() -> str:
            return (state() + "; " if state is not None else "") + self.log_tail()

        return wait_until(predicate, seconds, what=what, state=described)

    def connected(self, proxy: LocalProxyService, seconds: float = EVENT) -> Deferred[Any]:
        """C{proxy.connected} (its first session has service IDs), with a deadline."""
        return self.within(
            proxy.connected,
            seconds,
            f"{proxy_name(proxy)} did not connect (a session with service IDs)",
            lambda: proxy_state(proxy),
        )

    def finished(self, proxy: LocalProxyService, seconds: float = EVENT) -> Deferred[int]:
        """C{proxy.when_finished} (its exit code), with a deadline."""
        return self.within(
            proxy.when_finished,
            seconds,
            f"{proxy_name(proxy)} did not finish",
            lambda: proxy_state(proxy),
        )

    def listening(self, proxy: LocalProxyService, service_id: str) -> Deferred[int]:
        """The port C{proxy} (a source) listens on for C{service_id}, with a deadline."""
        return self.within(
            proxy.listening_port(service_id),
            EVENT,
            f"{proxy_name(proxy)} did not listen for service ID {service_id!r}",
            lambda: proxy_state(proxy),
        )

    def service_state(self, tunnel_id: str, mode: Any, state: str) -> Deferred[None]:
        """The tunnel service sees C{mode}'s slot of the tunnel in C{state}, with a deadline."""
        service = self.tunnel_service
        return self.within(
            service.wait_for_state(tunnel_id, mode, state),
            EVENT,
            f"the tunnel service did not see the {Mode(mode).value} {state}",
            lambda: f"it sees it {service.connection_state(tunnel_id, mode)}",
        )

    def listen(self, protocol_factory: Any) -> Any:
        return listen(self, protocol_factory)

    def proxy(
        self,
        mode: Mode,
        token: str,
        service_map: Mapping[str, str],
        *,
        peer_version: PeerVersion = PeerVersion.V3,
        settings: Settings = TEST_SETTINGS,
        client_token: Optional[str] = None,
        capath: Any = "service",
        endpoint_host: Optional[str] = None,
        service_options: Optional[Mapping[str, Any]] = None,
        **extra: Any,
    ) -> LocalProxyService:
        """
        A proxy on the test's tunnel service, started; C{extra} goes to its
        L{ProxyConfig}, C{service_options} to L{LocalProxyService} (e.g.
        C{destination_endpoints}).
        """
        service = self.tunnel_service
        config = ProxyConfig(
            mode=mode,
            access_token=token,
            client_token=client_token,
            endpoint_host=endpoint_host or service.host,
            endpoint_port=service.port,
            capath=service.capath if capath == "service" else capath,
            service_map=dict(service_map),
            bind_address="127.0.0.1",
            peer_version=peer_version,
            settings=settings,
            **extra,
        )
        proxy = LocalProxyService(config, reactor, **(service_options or {}))
        proxy.startService()
        self.addCleanup(_stop_quietly, proxy)
        return proxy

    @inlineCallbacks
    def tunnel_pair(
        self,
        destinations: Dict[str, int],
        *,
        source_version: PeerVersion = PeerVersion.V3,
        destination_version: PeerVersion = PeerVersion.V3,
        services: Optional[List[str]] = None,
        client_tokens: bool = True,
        settings: Settings = TEST_SETTINGS,
    ) -> Any:
        """Open a tunnel, start both proxies, wait until the source listens; returns source ports."""
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(
            list(destinations) if services is None else services
        )
        self.tunnel_id = tunnel_id
        single = source_version is PeerVersion.V1
        destination_map = (
            {"": f"127.0.0.1:{next(iter(destinations.values()))}"}
            if single
            else {sid: f"127.0.0.1:{port}" for sid, port in destinations.items()}
        )
        self.destination = self.proxy(
            Mode.DESTINATION,
            destination_token,
            destination_map,
            peer_version=destination_version,
            client_token=new_client_token() if client_tokens else None,
            settings=settings,
        )
        yield self.connected(self.destination)
        self.source = self.proxy(
            Mode.SOURCE,
            source_token,
            {"": "0"} if single else {},
            peer_version=source_version,
            client_token=new_client_token() if client_tokens else None,
            settings=settings,
        )
        connected = yield self.connected(self.source)
        ports = {}
        for service_id in connected.service_ids:
            ports[service_id] = yield self.listening(self.source, service_id)
        return ports

    @inlineCallbacks
    def assert_echoes(self, port: int, data: bytes) -> Any:
        """
        Connect to C{port} (a source's), send C{data} and check that the
        same bytes come back (an echo service behind the tunnel); fires with
        the client, still connected.
        """
        client = yield self.connect(port)
        client.transport.write(data)
        received = yield client.wait_for(len(data))
        self.assertEqual(received, data, f"{client.name} got other bytes back")
        return client

    @inlineCallbacks
    def drop_and_reconnect(self, client: Client) -> Any:
        """
        The service drops the tunnel's WebSockets: waits until C{client} (a
        connection through the tunnel) has closed and both proxies are in a
        new session with their service IDs.
        """
        self.tunnel_service.drop_connections(self.tunnel_id)
        yield client.when_closed()
        yield self.until(
            lambda: all(
                proxy._connector.sessions >= 2 and proxy.tunnel.ready
                for proxy in (self.source, self.destination)
            ),
            "the proxies did not both reconnect (a second session with service IDs)",
        )

    @inlineCallbacks
    def destination_to(self, port: int, services: Sequence[str] = ("ssh",)) -> Any:
        """
        A tunnel with C{services} and a connected in-process destination
        (with a client token) mapping each to 127.0.0.1:C{port} (without
        services, its one endpoint the V1 way); fires with (tunnel ID, the
        source's access token, the destination).
        """
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(list(services))
        destination = self.proxy(
            Mode.DESTINATION,
            destination_token,
            {sid: f"127.0.0.1:{port}" for sid in services or [""]},
            client_token=new_client_token(),
        )
        yield self.connected(destination)
        return tunnel_id, source_token, destination

    @inlineCallbacks
    def connect(self, port: int) -> Any:
        """A new L{Client} ("client 3 of port 4242" in messages) connected to C{port}."""
        self._clients = getattr(self, "_clients", 0) + 1
        client = Client(f"client {self._clients} of port {port}")
        yield deadline(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
                Factory.forProtocol(lambda: client)
            ),
            EVENT,
            f"{client.name} did not connect",
        )
        self.addCleanup(_close_client, client)
        return client

    def connect_as(self, port: int, make: Any) -> Deferred[Any]:
        """Connect a protocol of C{make} to 127.0.0.1:C{port}, with a deadline; fires with it."""
        return deadline(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(make)),
            EVENT,
            f"a connection to port {port} was not made",
        )


def errors_logged(test: Any) -> List[str]:
    """Warnings and errors logged from now until the test ends, as text."""
    lines: List[str] = []

    def observer(event: Dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return lines


def proxy_name(proxy: LocalProxyService) -> str:
    """ "the source proxy" or "the destination proxy", for messages."""
    return f"the {proxy.config.mode.value} proxy"


def proxy_state(proxy: LocalProxyService) -> str:
    """What a message says of an in-process proxy: running, sessions, ready, connections."""
    connector = proxy._connector
    tunnel = proxy.tunnel
    return (
        f"{proxy_name(proxy)}: {'running' if proxy.running else 'stopped'}, "
        f"{connector.sessions if connector is not None else 0} session(s), "
        f"{'ready' if tunnel is not None and tunnel.ready else 'not ready'}, "
        f"{table_size(proxy)} connection(s) in its tables"
    )


def table_size(proxy: LocalProxyService) -> int:
    """Connections in C{proxy}'s tunnel tables (0 without a session)."""
    session = proxy.tunnel._session if proxy.tunnel is not None else None
    if session is None:
        return 0
    return sum(len(service.connections) for service in session.services.values())


def new_client_token() -> str:
    import secrets

    return secrets.token_hex(24)


def with_settings(**changes: Any) -> Settings:
    return replace(TEST_SETTINGS, **changes)


def _close_client(client: Client) -> Any:
    if client.transport is not None and not client.closed.called:
        client.transport.abortConnection()
        return client.closed
    return None


def _stop_quietly(proxy: LocalProxyService) -> Any:
    if proxy.running:
        return proxy.stopService()
    return None


# -- the AWS SDK and CLI against a local tunnel service ------------------------------

#: Why tests that need boto3 or the AWS CLI are skipped (C{None}: they run).
boto3_missing = None if importlib.util.find_spec("boto3") else "boto3 is not importable"
awscli_missing = None if importlib.util.find_spec("awscli") else "awscli is not importable"

#: Credentials and region for the SDK and the CLI: the local tunnel service takes any.
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "dummy-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def tunneling_client(
    test: TestCase,
    running: Any,
    verify: Any = None,
    *,
    access_key: str = DUMMY_ENV["AWS_ACCESS_KEY_ID"],
    secret_key: str = DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
    region: str = "us-east-1",
    signed: bool = True,
) -> Any:
    """
    A boto3 ``iotsecuretunneling`` client of C{running}'s management API
    (checked against its CA unless C{verify} says otherwise), no retries,
    closed after the test.  Its calls block: run them in a thread.

    It signs with C{access_key}/C{secret_key} for C{region}, or not at all
    unless C{signed}.
    """
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    client = boto3.client(
        "iotsecuretunneling",
        endpoint_url=running.api_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        verify=running.ca_file if verify is None else verify,
        config=Config(
            retries={"max_attempts": 1},
            # Bounded calls (botocore waits 60 s for each by default): the
            # test's thread fails with a timeout naming the endpoint.
            connect_timeout=scaled(EVENT),
            read_timeout=scaled(EVENT),
            **({} if signed else {"signature_version": UNSIGNED}),
        ),
    )
    test.addCleanup(client.close)
    return client


@inlineCallbacks
def aws_cli(
    test: TestCase, running: Any, *args: str, env: Optional[Mapping[str, str]] = None
) -> Any:
    """
    Run ``aws iotsecuretunneling ARGS`` against C{running} (a child process,
    trusting its CA); the test fails unless it exits 0.  Fires with its JSON
    output (C{None} when it printed nothing).  C{env} overrides the
    environment (L{DUMMY_ENV}'s keys, no config files), e.g. other keys.
    """
    code, out, err = yield aws_cli_result(running, *args, env=env)
    test.assertEqual(code, 0, err.decode(errors="replace"))
    return json.loads(out) if out.strip() else None


@inlineCallbacks
def aws_cli_result(running: Any, *args: str, env: Optional[Mapping[str, str]] = None) -> Any:
    """L{aws_cli} that may fail: fires with (exit code, stdout, stderr)."""
    environ = dict(os.environ)
    environ.update(DUMMY_ENV)
    environ["AWS_CA_BUNDLE"] = running.ca_file
    environ["AWS_CONFIG_FILE"] = environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    environ.update(env or {})
    code, out, err = yield run_child(
        [
            sys.executable,
            "-m",
            "awscli",
            "iotsecuretunneling",
            *args,
            "--endpoint-url",
            running.api_url,
            "--output",
            "json",
        ],
        environ,
        START,
        name=f"`aws iotsecuretunneling {' '.join(args)}`",
    )
    return code, out, err


# -- the local proxy as a child process ---------------------------------------------


@dataclass
class SourceChild:
    """What L{ProcessTestCase.source_child_through_echo} set up."""

    tunnel_id: str
    source_token: str
    destination: LocalProxyService
    port: int
    token_file: str
    process: ChildProcess
    client: Client


class ProcessTestCase(E2ETestCase):
    """End-to-end tests that run a local proxy as a child process (``python -m aws_localproxy``)."""

    def mktemp_dir(self) -> str:
        path = self.mktemp()
        os.makedirs(path)
        return path

    def proxy_args(self, *extra: str) -> List[str]:
        return proxy_argv(self.tunnel_service, *extra)

    def token_file(self) -> str:
        """A new path for a child proxy's C{--client-token-file} (not created)."""
        return os.path.abspath(os.path.join(self.mktemp_dir(), "client-token"))

    def spawn_proxy(self, token: str, token_file: str, *args: str) -> ChildProcess:
        """A child proxy with C{args}, access token C{token} and C{--client-token-file}."""
        return spawn(
            self,
            self.proxy_args(*args, "--client-token-file", token_file),
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": token},
        )

    @inlineCallbacks
    def start_source(self, token: str, port: int, token_file: str) -> Any:
        """
        A child source proxy for service ``ssh`` on C{port}; fires with it
        once it listens.
        """
        process = self.spawn_proxy(token, token_file, "-s", f"ssh={port}")
        yield process.wait_for(f"Listening for new connection on port {port}")
        return process

    @inlineCallbacks
    def source_child_through_echo(self, apps: Apps, text: bytes) -> Any:
        """
        A tunnel for service ``ssh``, an in-process destination to a new
        local service of C{apps}, a child source (with a client token file)
        and one connection through it that echoed C{text}; fires with a
        L{SourceChild}.
        """
        echo_port = yield self.listen(apps)
        tunnel_id, source_token, destination = yield self.destination_to(echo_port)
        port = free_port()
        token_file = self.token_file()
        process = yield self.start_source(source_token, port, token_file)
        client = yield self.echo_within(port, text)
        return SourceChild(tunnel_id, source_token, destination, port, token_file, process, client)

    @inlineCallbacks
    def echo_within(self, port: int, text: bytes, seconds: float = EVENT) -> Any:
        """
        L{assert_echoes}, failing the test if the echo of C{text} has not
        come back within C{seconds} (the connection hangs); fires with the client.
        """
        client = yield self.connect(port)
        client.transport.write(text)
        received = yield client.wait_for(len(text), seconds)
        self.assertEqual(received, text, f"{client.name} got other bytes back")
        return client


def endpoint_args(service: Any) -> List[str]:
    """The options that point a proxy (ours or the reference) at local tunnel service C{service}."""
    return ["-e", service.endpoint, "-c", service.capath]


def proxy_argv(service: Any, *extra: str) -> List[str]:
    """C{python}'s arguments that run our proxy against C{service} with options C{extra}."""
    return ["-m", "aws_localproxy", *endpoint_args(service), *extra]


def spawn_stdio(test: TestCase, token: str, *args: str) -> Tuple[ChildProcess, Any]:
    """
    Our proxy as a C{--stdio} source child of C{test} (which has a
    C{tunnel_service}) with access token C{token} and options C{args}, in a
    new directory; gives the process and its transport (to write its stdin).
    """
    process = ChildProcess()
    cwd = test.mktemp()
    os.makedirs(cwd)
    argv = [sys.executable, *proxy_argv(test.tunnel_service, "--stdio", *args)]  # type: ignore[attr-defined]
    transport = spawn_child(
        test, process, argv, child_environ({"AWSIOT_TUNNEL_ACCESS_TOKEN": token}), cwd
    )
    return process, transport


def spawn(
    test: ProcessTestCase, args: List[str], env: Optional[Dict[str, str]] = None
) -> ChildProcess:
    """Run C{python ARGS} in a new directory of the test's, killed after the test."""
    process = ChildProcess()
    spawn_child(test, process, [sys.executable, *args], child_environ(env or {}), test.mktemp_dir())
    return process
