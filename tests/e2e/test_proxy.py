"""
End to end: TCP client -> source proxy -> local tunnel service -> destination
proxy -> TCP service, all real sockets on 127.0.0.1, TLS verified with the
service's own CA (``-c``).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V2, Mode, PeerVersion
from tests.support.deadlines import scaled, transfer
from tests.support.e2e import (
    Apps,
    DigestServer,
    E2ETestCase,
    Echo,
    Sender,
    all_of,
    pattern_chunk,
    with_settings,
)
from tests.support.helpers import sleep

FIFTY_MB = 50 * 1024 * 1024


class DataPathTests(E2ETestCase):
    # The 50 MB transfers are granted a minute each on a loaded machine.
    timeout = scaled(120)

    @inlineCallbacks
    def test_single_port(self) -> Any:
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair({"ssh": echo_port})
        self.assertEqual(list(ports), ["ssh"])
        yield self.assert_echoes(ports["ssh"], b"hello through the tunnel")

    @inlineCallbacks
    def test_connected_reports_session(self) -> Any:
        echo_port = yield self.listen(Echo)
        yield self.tunnel_pair({"ssh": echo_port})
        connected = yield self.connected(self.source)
        self.assertEqual(connected.subprotocol, "aws.iot.securetunneling-3.0")
        self.assertEqual(connected.service_ids, ("ssh",))

    @inlineCallbacks
    def test_two_service_ids(self) -> Any:
        first = yield self.listen(Echo)
        second = yield self.listen(lambda: _Prefix(b"2:"))
        ports = yield self.tunnel_pair({"SSH1": first, "HTTP2": second})
        a = yield self.connect(ports["SSH1"])
        b = yield self.connect(ports["HTTP2"])
        a.transport.write(b"one")
        b.transport.write(b"two")
        got_a, got_b = yield all_of([a.wait_for(3), b.wait_for(5)])
        self.assertEqual((got_a, got_b), (b"one", b"2:two"))

    @inlineCallbacks
    def test_200_simultaneous_connections(self) -> Any:
        """V3: 200 TCP connections of one service at once (the reference crashes at 129)."""
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair(
            {"ssh": echo_port}, settings=with_settings(tcp_max_active_connections=256)
        )
        clients = []
        for _ in range(200):
            client = yield self.connect(ports["ssh"])
            clients.append(client)
        for index, client in enumerate(clients):
            client.transport.write(b"client %05d" % index)
        results = yield all_of([c.wait_for(12) for c in clients])
        self.assertEqual(results, [b"client %05d" % i for i in range(200)])

    @inlineCallbacks
    def test_connections_over_the_limit_are_refused(self) -> Any:
        """tcp.max_active_connections: the next connection is closed, the others live on."""
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair(
            {"ssh": echo_port}, settings=with_settings(tcp_max_active_connections=3)
        )
        clients = []
        for _ in range(3):
            client = yield self.connect(ports["ssh"])
            clients.append(client)
            client.transport.write(b"ok")
            yield client.wait_for(2)
        refused = yield self.connect(ports["ssh"])
        received = yield refused.when_closed()
        self.assertEqual(received, b"")
        clients[0].transport.write(b"still")
        received = yield clients[0].wait_for(7)
        self.assertEqual(received, b"okstill")

    @inlineCallbacks
    def test_many_small_interleaved_writes(self) -> Any:
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair({"ssh": echo_port})
        clients = []
        for _ in range(10):
            client = yield self.connect(ports["ssh"])
            clients.append(client)
        expected = {}
        for round_number in range(300):
            for index, client in enumerate(clients):
                piece = b"%d.%d;" % (index, round_number)
                expected[index] = expected.get(index, b"") + piece
                client.transport.write(piece)
        results = yield all_of([c.wait_for(len(expected[i])) for i, c in enumerate(clients)])
        for index, result in enumerate(results):
            self.assertEqual(
                hashlib.sha256(result).hexdigest(), hashlib.sha256(expected[index]).hexdigest()
            )

    @inlineCallbacks
    def test_50mb_upload_integrity(self) -> Any:
        servers = Apps(DigestServer)
        digest_port = yield self.listen(servers)
        ports = yield self.tunnel_pair({"bulk": digest_port})
        client = yield self.connect(ports["bulk"])
        client.transport.write(struct.pack(">Q", FIFTY_MB))
        expected = hashlib.sha256()
        sent = 0
        while sent < FIFTY_MB:
            chunk = pattern_chunk(sent, min(65536, FIFTY_MB - sent))
            expected.update(chunk)
            client.transport.write(chunk)
            sent += len(chunk)
            if sent % (4 * 1024 * 1024) == 0:
                # Let the reactor drain now and then instead of buffering 50 MB here.
                yield sleep(0)
        # The digest comes once the 50 MB are through: the deadline is the transfer's.
        digest = yield client.wait_for(
            32,
            transfer(FIFTY_MB),
            progress=lambda: servers.made[0].received,
            state=lambda: f"the service received {servers.made[0].received:,} of {FIFTY_MB:,}",
        )
        self.assertEqual(digest, expected.digest())

    @inlineCallbacks
    def test_50mb_download_integrity(self) -> Any:
        class BigSender(Sender):
            size = FIFTY_MB

        sender_port = yield self.listen(BigSender)
        ports = yield self.tunnel_pair({"bulk": sender_port})
        client = yield self.connect(ports["bulk"])
        received = yield client.when_closed(transfer(FIFTY_MB))
        expected = hashlib.sha256()
        offset = 0
        while offset < FIFTY_MB:
            chunk = pattern_chunk(offset, min(65536, FIFTY_MB - offset))
            expected.update(chunk)
            offset += len(chunk)
        self.assertEqual(len(received), FIFTY_MB)
        self.assertEqual(hashlib.sha256(received).digest(), expected.digest())


class BackPressureTests(E2ETestCase):
    timeout = scaled(120)

    @inlineCallbacks
    def test_slow_reader_bounds_the_path(self) -> Any:
        """
        A TCP service that stops reading stops the client, through both
        proxies and the service, instead of filling memory (the reference's
        F1/F2); when it reads again every byte arrives, in order.
        """
        stalled: list = []

        class StalledDigest(DigestServer):
            def connectionMade(self) -> None:
                super().connectionMade()
                self.transport.pauseProducing()
                stalled.append(self)

        digest_port = yield self.listen(StalledDigest)
        ports = yield self.tunnel_pair({"bulk": digest_port})
        client = yield self.connect(ports["bulk"])
        budget = 200 * 1024 * 1024
        pusher = _Pusher(client.transport, budget)
        yield pusher.stalled(reactor, within=transfer(64 * 1024 * 1024))
        self.assertLess(pusher.sent, 64 * 1024 * 1024)
        self.assertTrue(self.destination.inbound.websocket_paused)
        sent = pusher.stop()
        stalled[0].expected = sent
        stalled[0].transport.resumeProducing()
        digest = yield client.wait_for(
            32,
            transfer(sent),
            progress=lambda: stalled[0].received,
            state=lambda: f"the service received {stalled[0].received:,} of {sent:,}",
        )
        self.assertEqual(digest, pusher.digest.digest())


class _Pusher:
    """Writes deterministic bytes while its transport accepts them (a streaming producer)."""

    def __init__(self, transport: Any, budget: int) -> None:
        self.transport = transport
        self.budget = budget
        self.sent = 0
        self.digest = hashlib.sha256()
        self.paused = False
        self.last_progress = 0.0
        self.stopped = False
        transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.stopped and self.sent < self.budget:
            chunk = pattern_chunk(self.sent, 65536)
            self.digest.update(chunk)
            self.sent += len(chunk)
            self.last_progress = reactor.seconds()
            self.transport.write(chunk)

    def stopProducing(self) -> None:
        self.stopped = True

    def stop(self) -> int:
        self.stopped = True
        self.transport.unregisterProducer()
        return self.sent

    @inlineCallbacks
    def stalled(self, clock: Any, within: float) -> Any:
        """
        Fires once nothing was written for a whole second (or the budget is
        spent); fails if the writes go on for C{within} seconds.
        """
        end = clock.seconds() + scaled(within)
        while (
            clock.seconds() - self.last_progress < 1.0 or not self.paused
        ) and self.sent < self.budget:
            if clock.seconds() > end:
                raise AssertionError(
                    f"the client's writes were not held up within {scaled(within):g} s: "
                    f"{self.sent:,} bytes sent, {'paused' if self.paused else 'not paused'}"
                )
            yield sleep(0.2, clock)


class VersionTests(E2ETestCase):
    @inlineCallbacks
    def test_v2_source_and_destination(self) -> Any:
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair(
            {"ssh": echo_port},
            source_version=PeerVersion.V2,
            destination_version=PeerVersion.V2,
        )
        yield self.assert_echoes(ports["ssh"], b"v2 bytes")

    @inlineCallbacks
    def test_v1_source_and_destination(self) -> Any:
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair(
            {"ssh": echo_port},
            source_version=PeerVersion.V1,
            destination_version=PeerVersion.V1,
        )
        (port,) = ports.values()
        yield self.assert_echoes(port, b"v1 bytes")

    @inlineCallbacks
    def test_v2_subprotocol_negotiated(self) -> Any:
        """A service that speaks only 2.0 (asked for by the settings) still carries data."""
        yield self.check_subprotocol(SUBPROTOCOL_V2, "ssh")

    @inlineCallbacks
    def test_v1_subprotocol(self) -> Any:
        """1.0: no SERVICE_IDS; the V1-format mappings (no service ID) are used."""
        yield self.check_subprotocol(SUBPROTOCOL_V1, "")

    @inlineCallbacks
    def check_subprotocol(self, subprotocol: str, service_id: str) -> Any:
        echo_port = yield self.listen(Echo)
        settings = with_settings(ws_subprotocol=subprotocol)
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        destination = self.proxy(
            Mode.DESTINATION,
            destination_token,
            {service_id: f"127.0.0.1:{echo_port}"},
            settings=settings,
        )
        yield self.connected(destination)
        source_map = {"": "0"} if not service_id else {}
        source = self.proxy(Mode.SOURCE, source_token, source_map, settings=settings)
        connected = yield self.connected(source)
        self.assertEqual(connected.subprotocol, subprotocol)
        port = yield self.listening(source, connected.service_ids[0])
        client = yield self.connect(port)
        client.transport.write(subprotocol.encode())
        received = yield client.wait_for(len(subprotocol))
        self.assertEqual(received, subprotocol.encode())


class FailureTests(E2ETestCase):
    @inlineCallbacks
    def test_destination_service_down(self) -> Any:
        """The client's connection is closed, the tunnel stays up, later connections work."""
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.protocol import Factory

        probe = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        free_port = probe.getHost().port
        yield probe.stopListening()
        ports = yield self.tunnel_pair({"ssh": free_port})
        client = yield self.connect(ports["ssh"])
        client.transport.write(b"nobody listens")
        yield client.when_closed()
        port = yield TCP4ServerEndpoint(reactor, free_port, interface="127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        self.addCleanup(port.stopListening)
        client = yield self.assert_echoes(ports["ssh"], b"now it does")
        self.assertFalse(self.source.when_finished.called)

    @inlineCallbacks
    def test_reconnect_after_drop(self) -> Any:
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair({"ssh": echo_port})
        client = yield self.connect(ports["ssh"])
        client.transport.write(b"before")
        yield client.wait_for(6)
        # Both proxies reconnect with the same tokens; the source keeps its port.
        yield self.drop_and_reconnect(client)
        self.assertEqual(self.source.bound_ports(), ports)
        client = yield self.assert_echoes(ports["ssh"], b"after")

    @inlineCallbacks
    def test_unanswered_pings_reconnect(self) -> Any:
        """
        A service that stops answering (here: stops reading the source's
        connection) is detected by the pong timeout and replaced by a new
        connection; the reference would wait for a TCP error forever.
        """
        from aws_localproxy.protocol.constants import Mode as SlotMode

        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair(
            {"ssh": echo_port},
            settings=with_settings(ws_ping_period_ms=1000, ws_pong_timeout_ms=1000),
        )
        tunnel = self.tunnel_service.registry.get(self.tunnel_id)
        frozen = tunnel.slot(SlotMode.SOURCE).peer
        frozen._protocol.transport.pauseProducing()
        yield self.until(
            lambda: self.source._connector.sessions >= 2 and self.source.tunnel.ready,
            "the source did not reconnect after its pings went unanswered",
        )
        self.assertEqual(self.source._connector.sessions, 2)
        self.assertIsNot(tunnel.slot(SlotMode.SOURCE).peer, frozen)
        yield self.assert_echoes(ports["ssh"], b"alive")

    @inlineCallbacks
    def test_close_tunnel_exits_zero(self) -> Any:
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair({"ssh": echo_port})
        client = yield self.connect(ports["ssh"])
        self.tunnel_service.close_tunnel(self.tunnel_id)
        codes = yield all_of([self.finished(self.source), self.finished(self.destination)])
        self.assertEqual(codes, [0, 0])
        yield client.when_closed()

    @inlineCallbacks
    def test_rejected_token_exits_non_zero(self) -> Any:
        proxy = self.proxy(Mode.SOURCE, "not-a-token", {})
        code = yield self.finished(proxy)
        self.assertEqual(code, 1)
        yield self.assertFailure(proxy.connected, RuntimeError)

    @inlineCallbacks
    def test_unverifiable_service_is_retried_then_fails(self) -> Any:
        """Without the service's CA the TLS check fails: retried, then exit 1."""
        tunnel_id, source_token, _ = self.tunnel_service.open_tunnel(["ssh"])
        proxy = self.proxy(
            Mode.SOURCE,
            source_token,
            {},
            settings=with_settings(ws_connect_retry_count=1),
            capath=None,
        )
        code = yield self.finished(proxy)
        self.assertEqual(code, 1)
        self.assertEqual(self.tunnel_service.connection_state(tunnel_id, "source"), "DISCONNECTED")


class _Prefix(Echo):
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(self.prefix + data)
