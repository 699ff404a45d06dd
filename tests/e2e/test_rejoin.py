"""
Issue 18, restarts rejoin: ``localproxy -s PORT --client-token-file F``,
one echo, SIGTERM, the same command again: the restarted source's first
connection works, through a tunneling service that does not reset the
destination's streams when the source re-attaches (the AWS service is not
documented to; our local tunnel service does by default, which hid this).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests.support.deadlines import scaled
from tests.support.e2e import (
    NO_RESETS,
    Apps,
    EchoingCollector,
    ProcessTestCase,
)


class SourceRestartTests(ProcessTestCase):
    timeout = scaled(60)
    tunnel_service_options = NO_RESETS

    @inlineCallbacks
    def test_restarted_source_rejoins(self) -> Any:
        """
        The restarted source's first connection reaches the application
        through a connection of its own, and the old one is closed.  Failed
        before: the new process sent StreamStart with stream ID 1 again, the
        destination ignored it (``Ignoring stream start for the current
        stream``) and wrote the new client's bytes into the old client's
        application connection.
        """
        apps = Apps(EchoingCollector)
        run = yield self.source_child_through_echo(apps, b"before the restart")
        first, port = run.process, run.port
        os.kill(first.transport.pid, signal.SIGTERM)
        self.assertEqual((yield first.when_ended()), 0, first.output.decode())
        yield self.service_state(run.tunnel_id, "source", "DISCONNECTED")
        second = yield self.start_source(run.source_token, port, run.token_file)
        yield self.echo_within(port, b"after the restart")
        self.assertEqual(
            [bytes(app.received) for app in apps.made],
            [b"before the restart", b"after the restart"],
        )
        yield apps.made[0].when_closed()
        yield self.echo_within(port, b"and the next one")
        self.assertEqual(bytes(apps.made[-1].received), b"and the next one")
        self.assertEqual(run.destination._connector.sessions, 1)  # never reconnected
        self.assertEqual(self.tunnel_service.violations, [])
        self.assertFalse(second.exited)
