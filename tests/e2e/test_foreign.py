"""
Our proxy against a foreign peer (L{tests.support.foreignpeer}: unpaced, greedy,
V1/V2/V3, stream IDs from 1 after a restart) through a local tunnel service
that does not cover for us: no stream resets when a peer re-attaches, and,
where a test says so, the AWS service's bandwidth cap and other framing.

Each test checks that bytes arrive complete, in order, on the right
connection, and that closes arrive.  Issue 18 lists what each one found.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
from typing import Any, Dict, List, Optional

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.wire import Message
from tests.support.deadlines import EVENT, RATE, branch, scaled, transfer
from tests.support.e2e import (
    NO_RESETS,
    Apps,
    Collector,
    Echo,
    ProcessTestCase,
    all_of,
    errors_logged,
    new_client_token,
    pattern,
    spawn,
    spawn_stdio,
    table_size,
)
from tests.support.foreignpeer import ForeignPeer
from tests.support.helpers import free_port

#: The AWS service's documented cap, bytes per second per direction.
AWS_BANDWIDTH = 800_000


class ForeignTestCase(ProcessTestCase):
    """A tunnel service without resets on re-attach (and the class's other options) per test."""

    timeout = scaled(60)
    tunnel_service_options: Dict[str, Any] = NO_RESETS
    #: Bytes per second an echo is granted each way (L{transfer}): 20 MB
    #: may take 30 s (a few idle); an echo that stops moving fails sooner.
    echo_rate: float = RATE

    def open(self, services: List[str]) -> tuple[str, str]:
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(services)
        self.tunnel_id = tunnel_id
        return source_token, destination_token

    @inlineCallbacks
    def foreign(self, mode: str, token: str, **kwargs: Any) -> Any:
        peer = ForeignPeer(reactor, self.tunnel_service, mode, token, **kwargs)
        self.addCleanup(peer.stop)
        yield peer.start()
        return peer

    @inlineCallbacks
    def our_source(self, token: str, service_map: Dict[str, str], **kwargs: Any) -> Any:
        """Our source; fires with its listening ports by service ID."""
        self.source = self.proxy(Mode.SOURCE, token, service_map, **kwargs)
        connected = yield self.connected(self.source)
        ports = {}
        for service_id in connected.service_ids or ("",):
            ports[service_id] = yield self.listening(self.source, service_id)
        return ports

    @inlineCallbacks
    def our_destination(self, token: str, service_map: Dict[str, str], **kwargs: Any) -> Any:
        self.destination = self.proxy(Mode.DESTINATION, token, service_map, **kwargs)
        yield self.connected(self.destination)

    @inlineCallbacks
    def echo_through(
        self, port: int, size: int, chunk: int = 65536, rate: Optional[float] = None
    ) -> Any:
        """
        Send C{size} pattern bytes to C{port} and read the echo within
        L{transfer} of C{size} at C{rate} (default L{echo_rate}); the client
        closes after it got everything, and the test checks every byte and
        that the echo application's connection closes too.
        """
        data = pattern(size)
        apps = self.echo_apps
        before = len(apps.made)
        client = yield self.connect(port)
        for start in range(0, size, chunk):
            client.transport.write(data[start : start + chunk])
        received = yield client.wait_for(size, transfer(size, rate or self.echo_rate))
        self.assertEqual(len(received), size)
        self.assertEqual(hashlib.sha256(received).digest(), hashlib.sha256(data).digest())
        self.assertGreater(
            len(apps.made), before, "the echo came from an application connection made before"
        )
        client.transport.loseConnection()
        yield client.when_closed()
        yield self.until(
            lambda: all(_lost(app) for app in apps.made[before:]),
            f"the echo application's connection of {client.name} was not closed",
            state=apps.summary,
        )
        return client

    def echo_port(self) -> Any:
        """An echo application (L{RecordingEcho}s in C{echo_apps}); fires with its port."""
        self.echo_apps = Apps(RecordingEcho)
        return self.listen(self.echo_apps)


class BlockingEcho(Echo):
    """
    An echo application as a blocking server is one (sshd, socat): it stops
    reading while its replies are not being taken, so a proxy that stops
    reading them soon finds its writes to the application held up too.
    """

    #: Its socket's kernel buffers: small, so that it blocks within a few
    #: hundred KB of unread replies, as an application on a slower machine
    #: or link does, instead of after the megabytes loopback allows.
    socket_buffer = 32 * 1024

    def connectionMade(self) -> None:
        handle = self.transport.getHandle()  # type: ignore[union-attr]
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_buffer)
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.socket_buffer)
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        pass


class RecordingEcho(BlockingEcho):
    """A L{BlockingEcho} that keeps what it received, to tell which connection got what."""

    def __init__(self) -> None:
        self.received = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        super().dataReceived(data)


# -- bulk both ways --------------------------------------------------------------------


class BulkTests(ForeignTestCase):
    """Echoes through an unpaced peer: nothing waits for feedback the proxy itself blocks."""

    #: The echo's size with a V3 and with a V2 peer.
    size = 20 * 1024 * 1024
    v2_size = 5 * 1024 * 1024

    @inlineCallbacks
    def foreign_source_to_our_destination(self, size: int, version: int = 3) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open(["SSH1"])
        yield self.our_destination(destination_token, {"SSH1": f"127.0.0.1:{echo}"})
        peer = yield self.foreign("source", source_token, version=version)
        port = yield peer.listen("SSH1")
        yield self.echo_through(port, size)

    @inlineCallbacks
    def our_source_to_foreign_destination(self, size: int, version: int = 3) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open(["SSH1"])
        yield self.foreign(
            "destination", destination_token, version=version, destinations={"SSH1": echo}
        )
        ports = yield self.our_source(source_token, {})
        yield self.echo_through(ports["SSH1"], size)

    def test_foreign_source(self) -> Any:
        return self.foreign_source_to_our_destination(self.size)

    def test_foreign_destination(self) -> Any:
        return self.our_source_to_foreign_destination(self.size)

    def test_foreign_v2_source(self) -> Any:
        return self.foreign_source_to_our_destination(self.v2_size, version=2)

    def test_foreign_v2_destination(self) -> Any:
        return self.our_source_to_foreign_destination(self.v2_size, version=2)


class CappedBulkTests(BulkTests):
    """The AWS service's 800 KB/s per direction: about 5 s for a V3 echo, 1.3 s for V2."""

    tunnel_service_options = {**NO_RESETS, "bandwidth_limit": AWS_BANDWIDTH}
    size = 4 * 1000 * 1000
    v2_size = 1000 * 1000
    echo_rate = AWS_BANDWIDTH / 2


class CoalescedBulkTests(BulkTests):
    """The service joins records into full frames, cut wherever the records fall."""

    tunnel_service_options = {**NO_RESETS, "reframe": 131076}


class SplitBulkTests(BulkTests):
    """The service cuts the record stream into 4 KiB frames."""

    tunnel_service_options = {**NO_RESETS, "reframe": 4096}
    size = 4 * 1024 * 1024
    v2_size = 2 * 1024 * 1024


class CappedCoalescedBulkTests(CappedBulkTests):
    tunnel_service_options = {**NO_RESETS, "bandwidth_limit": AWS_BANDWIDTH, "reframe": 131076}


# -- restarts and reconnects -----------------------------------------------------------


class RestartTests(ForeignTestCase):
    """
    A source stopped while a client is connected, and started again with
    the same client token, rejoins; the service resets nothing.
    """

    @inlineCallbacks
    def destination_apps(self) -> Any:
        """Our destination in front of echo applications; fires with the source's token."""
        echo = yield self.echo_port()
        self.apps = self.echo_apps
        source_token, destination_token = self.open(["SSH1"])
        yield self.our_destination(destination_token, {"SSH1": f"127.0.0.1:{echo}"})
        return source_token

    @inlineCallbacks
    def open_echo(self, port: int) -> Any:
        """A client that got its first echo and stays connected."""
        client = yield self.connect(port)
        client.transport.write(b"before the restart")
        received = yield client.wait_for(18)
        self.assertEqual(received, b"before the restart")
        return client

    @inlineCallbacks
    def test_foreign_source_restarts(self) -> Any:
        """
        The foreign source (like the C++ reference) starts again from stream
        ID 1: our destination must take that StreamStart as a new stream.
        """
        source_token = yield self.destination_apps()
        client_token = new_client_token()
        first = yield self.foreign("source", source_token, client_token=client_token)
        port = yield first.listen("SSH1")
        client = yield self.open_echo(port)
        yield first.stop()
        yield client.when_closed()
        yield self.service_state(self.tunnel_id, "source", "DISCONNECTED")
        again = yield self.foreign("source", source_token, client_token=client_token)
        port = yield again.listen("SSH1")
        yield self.echo_through(port, 100_000)
        starts = [m.streamId for m in again.sent if m.type == Message.STREAM_START]
        self.assertEqual(starts, [1])
        self.assert_new_application_connection()

    @inlineCallbacks
    def test_our_source_process_restarts(self) -> Any:
        """``localproxy -s PORT --client-token-file F``, SIGTERM, and the same command again."""
        source_token = yield self.destination_apps()
        path = os.path.abspath(os.path.join(self.mktemp_dir(), "client-token"))
        port = free_port()
        args = self.proxy_args("-s", str(port), "--client-token-file", path)
        env = {"AWSIOT_TUNNEL_ACCESS_TOKEN": source_token}
        first = spawn(self, args, env)
        yield first.wait_for("Listening for new connection on port")
        client = yield self.open_echo(port)
        os.kill(first.transport.pid, signal.SIGTERM)
        yield first.when_ended()
        yield client.when_closed()
        yield self.service_state(self.tunnel_id, "source", "DISCONNECTED")
        second = spawn(self, args, env)
        yield second.wait_for("Listening for new connection on port")
        yield self.echo_through(port, 100_000)
        yield self.assert_new_application_connection()

    def assert_new_application_connection(self) -> Any:
        """The client after the restart had a new application connection; the old one ended."""
        self.assertEqual(
            [len(app.received) for app in self.apps.made],
            [len(b"before the restart"), 100_000],
            "the bytes after the restart went to the application connection from before",
        )
        return self.until(
            lambda: _lost(self.apps.made[0]),
            "the application connection from before the restart was not closed",
        )

    @inlineCallbacks
    def test_our_source_restarts(self) -> Any:
        """``localproxy -s`` stopped and started again with the same client token."""
        source_token = yield self.destination_apps()
        client_token = new_client_token()
        ports = yield self.our_source(source_token, {}, client_token=client_token)
        client = yield self.open_echo(ports["SSH1"])
        yield self.within(self.source.stopService(), EVENT, "the source did not stop")
        yield client.when_closed()
        yield self.service_state(self.tunnel_id, "source", "DISCONNECTED")
        ports = yield self.our_source(source_token, {}, client_token=client_token)
        yield self.echo_through(ports["SSH1"], 100_000)
        yield self.assert_new_application_connection()


def _lost(app: Any) -> bool:
    """Whether an application connection (an L{Echo}) has ended."""
    return bool(app.transport is None or app.transport.disconnected)


class ReconnectTests(ForeignTestCase):
    @inlineCallbacks
    def test_connection_while_reconnecting_waits(self) -> Any:
        """
        The service drops our source's WebSocket; a client that connects at
        once, before the new session has its service IDs, waits and then
        gets its echo.
        """
        echo = yield self.echo_port()
        source_token, destination_token = self.open(["SSH1"])
        yield self.foreign("destination", destination_token, destinations={"SSH1": echo})
        ports = yield self.our_source(source_token, {}, client_token=new_client_token())
        yield self.echo_through(ports["SSH1"], 1000)
        sessions = self.source._connector.sessions
        self.tunnel_service.drop_connections(self.tunnel_id, "source")
        client = yield self.connect(ports["SSH1"])
        client.transport.write(b"sent during the reconnect")
        received = yield client.wait_for(25)
        self.assertEqual(received, b"sent during the reconnect")
        self.assertFalse(client.closed.called)
        self.assertGreater(self.source._connector.sessions, sessions)
        client.transport.loseConnection()
        yield client.when_closed()


# -- V1 peers, without -y ---------------------------------------------------------------


class SilentFirstConnectionTests(ForeignTestCase):
    @inlineCallbacks
    def test_probe_then_client(self) -> Any:
        """
        A client connects and closes without sending (a port probe); the
        next client's bytes must reach a new application connection behind
        a V1 destination, not the probe's.
        """
        apps = Apps(Collector)
        app_port = yield self.listen(apps)
        source_token, destination_token = self.open([])
        destination = yield self.foreign(
            "destination", destination_token, version=1, destinations={"": app_port}
        )
        ports = yield self.our_source(source_token, {"": "0"})
        probe = yield self.connect(ports[""])
        probe.transport.loseConnection()
        yield probe.when_closed()
        # The probe's stream has reached the destination (a V1 destination
        # makes one application connection per StreamStart) and our source
        # is done with the probe: the applications made so far are the probe's.
        yield self.until(
            lambda: (
                table_size(self.source) == 0
                and destination.received_of(Message.STREAM_START)
                and destination.settled()
            ),
            "the probe's stream did not reach the foreign destination and end at our source",
        )
        before = len(destination.received_of(Message.STREAM_START))
        yield self.until(
            lambda: len(apps.made) == before,
            f"the foreign destination did not make {before} application connection(s)",
            state=apps.summary,
        )
        client = yield self.connect(ports[""])
        client.transport.write(b"second client")
        yield self.until(
            lambda: any(app.received for app in apps.made),
            "the second client's bytes did not reach an application",
            state=apps.summary,
        )
        index = next(i for i, app in enumerate(apps.made) if app.received)
        self.assertGreaterEqual(index, before, "the second client's bytes went to the probe's")
        yield self.until(
            lambda: bytes(apps.made[index].received) == b"second client",
            "the second client's 13 bytes did not all reach its application",
            state=apps.summary,
        )
        self.assertEqual([bytes(app.received) for app in apps.made[:index]], [b""] * index)
        client.transport.loseConnection()
        yield client.when_closed()
        # Every application connection ends: the probe's too.
        yield self.until(
            lambda: all(app.lost for app in apps.made),
            "the application connections were not all closed",
            state=apps.summary,
        )


class V1PeerTests(ForeignTestCase):
    """V1-only peers (Device Client, the console's browser SSH) and our proxy without -y."""

    @inlineCallbacks
    def our_source_v1_destination(self, services: List[str], source_map: Dict[str, str]) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open(services)
        yield self.foreign(
            "destination",
            destination_token,
            version=1,
            destinations={(services or [""])[0]: echo},
        )
        ports = yield self.our_source(source_token, source_map)
        port = next(iter(ports.values()))
        # Two connections one after the other: the first and every later one work.
        yield self.echo_through(port, 100_000)
        yield self.echo_through(port, 100_000)

    def test_our_source_v1_destination_no_services(self) -> Any:
        return self.our_source_v1_destination([], {"": "0"})

    def test_our_source_v1_destination_one_service(self) -> Any:
        """What the console and the Device Client open: ``services=SSH``."""
        return self.our_source_v1_destination(["SSH"], {})

    @inlineCallbacks
    def v1_source_our_destination(self, services: List[str], destination_key: str) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open(services)
        yield self.our_destination(destination_token, {destination_key: f"127.0.0.1:{echo}"})
        peer = yield self.foreign("source", source_token, version=1, cookie=True)
        port = yield peer.listen()
        yield self.echo_through(port, 100_000)
        yield self.echo_through(port, 100_000)

    def test_v1_source_one_service_named(self) -> Any:
        """The browser SSH (cookie token, no service ID) against ``-d SSH1=PORT``."""
        return self.v1_source_our_destination(["SSH1"], "SSH1")

    def test_v1_source_one_service_port_only(self) -> Any:
        """The browser SSH against ``-d PORT``."""
        return self.v1_source_our_destination(["SSH1"], "")

    def test_v1_source_no_services(self) -> Any:
        return self.v1_source_our_destination([], "")


class SeveralServicesV1Tests(ForeignTestCase):
    """A V1 peer on a tunnel with several services cannot work: one clear error, no hang."""

    @inlineCallbacks
    def assert_ends_clearly(self, client: Any, errors: List[str]) -> Any:
        client.transport.write(b"hello")
        yield self.within(
            branch(client.closed),
            EVENT,
            f"{client.name} was not closed",
            lambda: f"errors logged: {errors!r}",
        )
        about_v1 = [line for line in errors if "v1" in line.lower()]
        self.assertEqual(len(about_v1), 1, errors)

    @inlineCallbacks
    def test_our_source_v1_destination(self) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open(["SSH1", "SSH2"])
        yield self.foreign("destination", destination_token, version=1, destinations={"": echo})
        ports = yield self.our_source(source_token, {})
        errors = errors_logged(self)
        client = yield self.connect(ports["SSH1"])
        yield self.assert_ends_clearly(client, errors)

    @inlineCallbacks
    def test_v1_source_our_destination(self) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open(["SSH1", "SSH2"])
        yield self.our_destination(
            destination_token,
            {"SSH1": f"127.0.0.1:{echo}", "SSH2": f"127.0.0.1:{echo}"},
        )
        peer = yield self.foreign("source", source_token, version=1, cookie=True)
        port = yield peer.listen()
        errors = errors_logged(self)
        client = yield self.connect(port)
        yield self.assert_ends_clearly(client, errors)


# -- a failed local connect --------------------------------------------------------------


class FailedConnectTests(ForeignTestCase):
    """
    On a V3 tunnel our destination answers a connection it cannot make with
    a ConnectionReset for its connection ID (the V3 guide), never a
    StreamReset without one, which aws-c-iot takes for a V1 message and
    drops its whole WebSocket; the session goes on.
    """

    @inlineCallbacks
    def test_first_connection_fails(self) -> Any:
        """The StreamStart's own connection fails; the next connection works."""
        port_number = free_port()
        source_token, destination_token = self.open(["SSH1"])
        yield self.our_destination(destination_token, {"SSH1": f"127.0.0.1:{port_number}"})
        peer = yield self.foreign("source", source_token)
        port = yield peer.listen("SSH1")
        first = yield self.connect(port)
        first.transport.write(b"nobody listens")
        yield first.when_closed()
        self.assertEqual(resets(peer), [(Message.CONNECTION_RESET, 1)])
        self.echo_apps = Apps(RecordingEcho)
        listening = yield TCP4ServerEndpoint(reactor, port_number, interface="127.0.0.1").listen(
            Factory.forProtocol(self.echo_apps)
        )
        self.addCleanup(listening.stopListening)
        yield self.echo_through(port, 10_000)
        self.assertIsNone(peer.close_info)

    @inlineCallbacks
    def test_later_connection_fails(self) -> Any:
        """A ConnectionStart's connection fails; the connection open before goes on."""
        listening = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(BlockingEcho)
        )
        source_token, destination_token = self.open(["SSH1"])
        yield self.our_destination(
            destination_token, {"SSH1": f"127.0.0.1:{listening.getHost().port}"}
        )
        peer = yield self.foreign("source", source_token)
        port = yield peer.listen("SSH1")
        first = yield self.connect(port)
        first.transport.write(b"one")
        yield first.wait_for(3)
        yield listening.stopListening()
        second = yield self.connect(port)
        second.transport.write(b"two")
        yield second.when_closed()
        self.assertEqual(resets(peer), [(Message.CONNECTION_RESET, 2)])
        first.transport.write(b" still here")
        received = yield first.wait_for(14)
        self.assertEqual(received, b"one still here")
        self.assertIsNone(peer.close_info)
        first.transport.loseConnection()
        yield first.when_closed()


def resets(peer: ForeignPeer) -> List[tuple[int, int]]:
    """(type, connection ID) of every StreamReset and ConnectionReset C{peer} received."""
    return [
        (m.type, m.connectionId)
        for m in peer.received
        if m.type in (Message.STREAM_RESET, Message.CONNECTION_RESET)
    ]


# -- --stdio on a tunnel without services ------------------------------------------------


class StdioWithoutServicesTests(ForeignTestCase):
    """``--stdio`` without a service ID, whichever SERVICE_IDS the service sends."""

    @inlineCallbacks
    def stdio_echo(self) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open([])
        yield self.foreign("destination", destination_token, destinations={"": echo})
        process, stdio = spawn_stdio(self, source_token)
        stdio.write(b"hello over stdio")
        # Fails with the process's output if it ends first.
        yield process.wait_for_stdout(16)
        self.assertEqual(process.stdout, b"hello over stdio", process.stderr.decode())
        stdio.closeStdin()
        self.assertEqual((yield process.when_ended()), 0, process.stderr.decode())

    def test_stdio_without_service_id(self) -> Any:
        """SERVICE_IDS with no IDs (the default)."""
        return self.stdio_echo()


class StdioBlankServiceIdTests(StdioWithoutServicesTests):
    """SERVICE_IDS with one empty ID."""

    tunnel_service_options = {**NO_RESETS, "service_ids_without_services": "blank"}


# -- our proxy without -y, every peer version and tunnel shape ---------------------------


class PeerVersionMatrixTests(ForeignTestCase):
    """
    Our source without ``-y`` finds the destination's version: V2 and V3
    destinations, on tunnels without services and with one, in the first
    connection and a later one; and our destination serves V2 and V3
    sources the same way.
    """

    @inlineCallbacks
    def through_our_source(self, services: List[str], version: int) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open(services)
        yield self.foreign(
            "destination",
            destination_token,
            version=version,
            destinations={(services or [""])[0]: echo},
        )
        ports = yield self.our_source(source_token, {} if services else {"": "0"})
        port = next(iter(ports.values()))
        yield self.echo_through(port, 50_000)
        yield self.echo_through(port, 50_000)

    @inlineCallbacks
    def through_our_destination(self, services: List[str], version: int) -> Any:
        echo = yield self.echo_port()
        source_token, destination_token = self.open(services)
        key = services[0] if services else ""
        yield ForeignTestCase.our_destination(self, destination_token, {key: f"127.0.0.1:{echo}"})
        peer = yield self.foreign("source", source_token, version=version)
        port = yield peer.listen(key)
        yield self.echo_through(port, 50_000)
        yield self.echo_through(port, 50_000)


def _matrix(cls: Any) -> Any:
    # V1 peers: V1PeerTests (the console's cookie token, -d PORT and -d ID=PORT).
    for version in (2, 3):
        for shape, services in (("no_service", []), ("one_service", ["SSH1"])):
            for role in ("our_source", "our_destination"):

                def test(
                    self: Any, role: str = role, services: Any = services, v: int = version
                ) -> Any:
                    return getattr(self, "through_" + role)(list(services), v)

                name = "test_%s_v%d_peer_%s" % (role, version, shape)
                test.__name__ = name
                test.__doc__ = "Two echoes one after the other: %s, a V%d peer, %s." % (
                    role.replace("_", " "),
                    version,
                    shape.replace("_", " "),
                )
                setattr(cls, name, test)
    return cls


_matrix(PeerVersionMatrixTests)


class ConcurrentConnectionTests(ForeignTestCase):
    """Several connections at once through a V3 peer: all of them work, nothing is mixed."""

    @inlineCallbacks
    def test_burst_at_start_through_our_source(self) -> Any:
        """A browser opens six connections at once, the moment the source listens."""
        echo = yield self.echo_port()
        source_token, destination_token = self.open(["WEB"])
        yield self.foreign("destination", destination_token, destinations={"WEB": echo})
        ports = yield self.our_source(source_token, {})
        clients = []
        for i in range(6):
            client = yield self.connect(ports["WEB"])
            client.transport.write(b"connection %d " % i * 1000)
            clients.append(client)
        for i, client in enumerate(clients):
            received = yield client.wait_for(len(b"connection %d " % i) * 1000)
            self.assertEqual(received, b"connection %d " % i * 1000)
        for client in clients:
            client.transport.loseConnection()
            yield client.when_closed()
        yield self.until(
            lambda: all(_lost(app) for app in self.echo_apps.made),
            "the echo application's connections were not all closed",
            state=self.echo_apps.summary,
        )

    @inlineCallbacks
    def test_bulk_on_several_connections_to_our_destination(self) -> Any:
        """Four 5 MB echoes at once from a foreign source (the reference's multi-port case)."""
        echo = yield self.echo_port()
        source_token, destination_token = self.open(["SSH1"])
        yield self.our_destination(destination_token, {"SSH1": f"127.0.0.1:{echo}"})
        peer = yield self.foreign("source", source_token)
        port = yield peer.listen("SSH1")
        # Four at once: each echo's deadline is granted four times the time of one.
        yield all_of(
            [self.echo_through(port, 5 * 1024 * 1024, rate=self.echo_rate / 4) for _ in range(4)]
        )
