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

from twisted.internet.defer import inlineCallbacks

from tests.support.deadlines import EVENT, scaled
from tests.support.e2e import E2ETestCase, Echo, all_of, proxy_state, table_size, with_settings
from tests.support.helpers import open_fds

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
    timeout = scaled(1800 if LONG else 120)

    @inlineCallbacks
    def one(self, port: int, payload: bytes) -> Any:
        """
        A client that got the echo of C{payload} (its wait fails at once if
        the connection closes first, or after its deadline).
        """
        client = yield self.connect(port)
        client.transport.write(payload)
        got = yield client.wait_for(len(payload))
        self.assertEqual(got, payload)
        return client

    def tables_empty(self) -> Any:
        return self.until(
            lambda: table_size(self.source) == 0 and table_size(self.destination) == 0,
            "the proxies' connection tables did not empty",
            EVENT * 3,
            lambda: f"{proxy_state(self.source)}; {proxy_state(self.destination)}",
        )

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
            yield client.when_closed()
        yield self.tables_empty()
        fds_before, rss_before = open_fds(), rss()

        for i in range(CHURN):
            client = yield self.one(port, b"churn %d" % i)
            client.transport.loseConnection()
            yield client.when_closed()
        clients: list = []
        for start in range(0, SIMULTANEOUS, BATCH):
            batch = yield all_of(
                [
                    self.one(port, b"held %d" % i)
                    for i in range(start, min(start + BATCH, SIMULTANEOUS))
                ]
            )
            clients.extend(batch)
        self.assertEqual(table_size(self.source), SIMULTANEOUS)
        for client in clients:
            client.transport.loseConnection()
        yield all_of([client.when_closed(EVENT * 3) for client in clients])

        yield self.tables_empty()
        yield self.until(
            lambda: open_fds() <= fds_before,
            "the test's sockets were not all closed",
            EVENT * 3,
            lambda: f"{open_fds()} file descriptors open, {fds_before} expected",
        )
        grown = rss() - rss_before
        print(
            "\nsoak: %d churned, %d simultaneous; fds %d -> %d; RSS %.1f -> %.1f MiB"
            % (CHURN, SIMULTANEOUS, fds_before, open_fds(), rss_before / 2**20, rss() / 2**20)
        )
        self.assertLess(grown, RSS_BOUND)
