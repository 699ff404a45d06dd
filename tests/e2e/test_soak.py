"""
Soak: many connections through one tunnel leave nothing behind.

Connections are churned one after another (each writes, is echoed, closes)
and then held open all at once; afterwards this process's file descriptors
are back to where they were, its RSS has grown by less than L{RSS_BOUND},
and both tunnels' connection tables are empty.  CI runs a short version;
C{LOCALPROXY_SOAK=long} (C{tox -e soak}) runs 10,000 churned and 1,000
simultaneous connections.

The simultaneous connections are opened in batches of L{BATCH} (all of them
are then open at once): a thousand connects at one instant overflow the
listen backlog (50), and under load the kernel's SYN retries outlast a
client's 30 s connect timeout.  That is a property of the test's clients,
not of the tunnel.
"""

from __future__ import annotations

import os
import resource
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

from tests.support.e2e import Client, E2ETestCase, Echo, table_size, with_settings
from tests.support.helpers import open_fds, wait_until

LONG = os.environ.get("LOCALPROXY_SOAK") == "long"
CHURN = 10_000 if LONG else 300
SIMULTANEOUS = 1_000 if LONG else 100
#: Connections opened at once while building up the simultaneous ones.
BATCH = 100
#: RSS may grow by this much over a run (allocator and import noise included).
RSS_BOUND = 64 * 1024 * 1024


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class SoakTests(E2ETestCase):
    timeout = 1800 if LONG else 120

    @inlineCallbacks
    def one(self, port: int, payload: bytes) -> Any:
        client = Client()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            Factory.forProtocol(lambda: client)
        )
        client.transport.write(payload)
        echoed = client.wait_for(len(payload))

        def closed(value: bytes) -> bytes:
            # Closed before its echo: fail the test instead of hanging it.
            if not echoed.called:
                echoed.errback(AssertionError("closed after %d bytes" % (len(value),)))
            return value

        client.closed.addCallback(closed)
        got = yield echoed
        self.assertEqual(got, payload)
        return client

    @inlineCallbacks
    def test_churn_then_simultaneous(self) -> Any:
        echo_port = yield self.listen(Echo)
        settings = with_settings(tcp_max_active_connections=SIMULTANEOUS + 10)
        ports = yield self.tunnel_pair({"ssh": echo_port}, settings=settings)
        port = ports["ssh"]
        # Warm up (imports, allocator pools), then measure.
        for i in range(20):
            client = yield self.one(port, b"warm %d" % i)
            client.transport.loseConnection()
            yield client.closed
        yield wait_until(lambda: table_size(self.source) == 0 and table_size(self.destination) == 0)
        fds_before, rss_before = open_fds(), rss()

        for i in range(CHURN):
            client = yield self.one(port, b"churn %d" % i)
            client.transport.loseConnection()
            yield client.closed
        clients: list = []
        for start in range(0, SIMULTANEOUS, BATCH):
            batch = yield gatherResults(
                [
                    self.one(port, b"held %d" % i)
                    for i in range(start, min(start + BATCH, SIMULTANEOUS))
                ]
            )
            clients.extend(batch)
        self.assertEqual(table_size(self.source), SIMULTANEOUS)
        for client in clients:
            client.transport.loseConnection()
        yield gatherResults([client.closed for client in clients])

        yield wait_until(
            lambda: table_size(self.source) == 0 and table_size(self.destination) == 0,
            timeout=30,
        )
        yield wait_until(lambda: open_fds() <= fds_before, timeout=30)
        grown = rss() - rss_before
        print(
            "\nsoak: %d churned, %d simultaneous; fds %d -> %d; RSS %.1f -> %.1f MiB"
            % (CHURN, SIMULTANEOUS, fds_before, open_fds(), rss_before / 2**20, rss() / 2**20)
        )
        self.assertLess(grown, RSS_BOUND)
