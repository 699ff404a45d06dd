"""
Every close arrives: end-to-end on 127.0.0.1 through the local tunnel service.

A client of the source or an application behind the destination that
closes must be seen closing at the far end, after every byte it sent, in
both directions, small and back-pressured, and with the WebSocket going
away under open connections.  No socket may be left behind: each test
counts this process's file descriptors before and after.
"""

from __future__ import annotations

import os
import time
from typing import Any, List

from twisted.internet.defer import Deferred, inlineCallbacks

from tests.support.deadlines import EVENT, deadline, scaled, transfer
from tests.support.e2e import (
    Apps,
    Client,
    Collector,
    E2ETestCase,
    SendAndClose,
    Sender,
    all_of,
    pattern,
)
from tests.support.helpers import open_fds, sleep
from tests.support.payloads import assert_same_bytes

#: What this suite holds a close to on loopback (the target is 100 ms; CI
#: machines are slower and shared, so the assertion leaves room).
CLOSE_BOUND = 2.0


class CloseTests(E2ETestCase):
    timeout = scaled(120)

    @inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        self.fds_before = open_fds()

    @inlineCallbacks
    def assert_no_fd_left(self) -> Any:
        """Every local socket of the test is gone (the proxies and service stay up)."""
        before = self.fds_before + self.baseline_extra
        yield self.until(
            lambda: open_fds() <= before,
            "the test's sockets were not all closed",
            state=lambda: f"{open_fds()} file descriptors open, {before} expected",
        )

    baseline_extra = 0

    @inlineCallbacks
    def pair(self, app_factory: Any, services: tuple[str, ...] = ("ssh",)) -> Any:
        ports = {}
        for service_id in services:
            ports[service_id] = yield self.listen(app_factory)
        source_ports = yield self.tunnel_pair(ports)
        # Listeners, proxies' WebSockets and the service's sockets stay for the test.
        self.baseline_extra = open_fds() - self.fds_before
        return source_ports

    @inlineCallbacks
    def test_client_sends_little_and_closes(self) -> Any:
        """1 KB then close: the application gets it and EOF promptly, then nothing is left."""
        apps = Apps(Collector)
        ports = yield self.pair(apps)
        payload = os.urandom(1024)
        sent_at = time.monotonic()
        yield self.connect_as(ports["ssh"], lambda: SendAndClose(payload))
        yield self.until(lambda: bool(apps.made), "the destination did not connect the application")
        data, closed_at = yield apps.made[0].when_closed()
        self.assertEqual(data, payload)
        self.assertLess(closed_at - sent_at, CLOSE_BOUND)
        yield self.assert_no_fd_left()

    @inlineCallbacks
    def test_client_pushes_into_a_slow_application_and_closes(self) -> Any:
        """
        A client pushes into an application that is not reading, and closes:
        when the application reads again it gets every byte, then EOF.  The
        sizes straddle the point where the destination's socket buffer is
        full but its bound is not yet reached, so the reset arrives while
        Twisted has the connection's producer paused (that trap kept such
        connections open for ever).
        """
        apps = Apps(lambda: Collector(paused=True))
        ports = yield self.pair(apps)
        for size in (256 * 1024, 1024 * 1024, 2 * 1024 * 1024, 3 * 1024 * 1024, 4 * 1024 * 1024):
            client_done: Deferred[None] = Deferred()

            class Push(Sender):
                def connectionLost(self, reason: Any = None, done: Any = client_done) -> None:
                    done.callback(None)

            Push.size = size
            yield self.connect_as(ports["ssh"], Push)
            yield deadline(
                client_done,
                transfer(size),
                f"the client pushing {size:,} bytes did not finish and close",
                apps.summary,
            )
            yield sleep(0.3)  # the reset has reached the destination, if it could
            app = apps.made[-1]
            app.transport.resumeProducing()
            data, _ = yield app.when_closed(transfer(size))
            self.assertEqual(len(data), size)
            assert_same_bytes(self, data, pattern(size))
        yield self.assert_no_fd_left()

    @inlineCallbacks
    def test_application_sends_much_and_closes(self) -> Any:
        """An application sends 8 MB and closes: the client gets every byte, then EOF."""
        size = 8 * 1024 * 1024

        class Big(Sender):
            pass

        Big.size = size
        ports = yield self.pair(Big)
        client = yield self.connect(ports["ssh"])
        client.transport.pauseProducing()  # the client reads late: the source is back-pressured
        yield sleep(0.5)
        client.transport.resumeProducing()
        data = yield client.when_closed(transfer(size))
        self.assertEqual(len(data), size)
        assert_same_bytes(self, data, pattern(size))
        yield self.assert_no_fd_left()

    @inlineCallbacks
    def test_short_connections(self) -> Any:
        """
        Write a line and close at once, many times in a row (``echo cmd | nc``):
        every connection reaches the application with its bytes and its EOF,
        including those whose reset overtakes the destination's connect.
        """
        apps = Apps(Collector)
        ports = yield self.pair(apps)
        count = 1000
        for i in range(count):
            yield self.connect_as(ports["ssh"], lambda i=i: SendAndClose(b"cmd %d\n" % i))
        yield self.until(
            lambda: len(apps.made) == count,
            f"the destination did not connect the application {count} times",
            EVENT * 3,
            apps.summary,
        )
        results = yield all_of([app.when_closed() for app in apps.made])
        lines = sorted(data for data, _ in results)
        self.assertEqual(lines, sorted(b"cmd %d\n" % i for i in range(count)))
        yield self.assert_no_fd_left()

    @inlineCallbacks
    def test_multiplex_integrity(self) -> Any:
        """
        Bulk transfers on two services and three connections each, at once,
        both ways; each ends with its sender's EOF and every byte arrives
        before the close, in order, on its own connection.
        """

        request = 300_000

        class Reply(Sender):
            """Reads the whole request, then streams its reply and closes."""

            size = 1024 * 1024 + 17

            def connectionMade(self) -> None:
                self.got = 0

            def dataReceived(self, data: bytes) -> None:
                self.got += len(data)
                if self.got == request:
                    super().connectionMade()

        ports = yield self.pair(Reply, services=("ssh", "web"))
        clients: List[Client] = []
        for service_id in ("ssh", "web"):
            for _ in range(3):
                client = yield self.connect(ports[service_id])
                client.transport.write(pattern(request))
                clients.append(client)
        # Six transfers at once each way.
        within = transfer(6 * (request + Reply.size))
        results = yield all_of([c.when_closed(within) for c in clients])
        for data in results:
            assert_same_bytes(self, data, pattern(Reply.size))
        yield self.assert_no_fd_left()

    @inlineCallbacks
    def test_websocket_closed_under_open_connections(self) -> Any:
        """
        CloseTunnel with connections open: the applications behind the
        destination and the clients of the source all see EOF, after the
        bytes already sent.
        """
        apps = Apps(Collector)
        ports = yield self.pair(apps)
        clients = []
        for i in range(3):
            client = yield self.connect(ports["ssh"])
            client.transport.write(b"hello %d" % i)
            clients.append(client)
        yield self.until(
            lambda: len(apps.made) == 3 and all(a.received for a in apps.made),
            "the three clients' bytes did not reach three applications",
        )
        self.tunnel_service.close_tunnel(self.tunnel_id)
        results = yield all_of([app.when_closed() for app in apps.made])
        self.assertEqual(sorted(data for data, _ in results), [b"hello 0", b"hello 1", b"hello 2"])
        yield all_of([c.when_closed() for c in clients])
        code = yield self.finished(self.destination)
        self.assertEqual(code, 0)
