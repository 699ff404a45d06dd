"""
Every close arrives through a tunneling service that does not reset the
other side's streams when a peer goes or re-attaches (the AWS guide says the
service "may" reset them; we cannot count on it):

 - a proxy that stops (SIGTERM, C{stopService}) resets its open connections
   before it closes its WebSocket, so the peer closes its side;
 - a proxy that restarted answers DATA of the old process's streams with a
   reset, so the peer's connections of those streams close at their next
   bytes instead of hanging.

End to end on 127.0.0.1 through the local tunnel service with its resets on
re-attach turned off (L{NO_RESETS}).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet.defer import inlineCallbacks

from aws_localproxy.protocol.constants import Mode
from tests.support.deadlines import EVENT, scaled
from tests.support.e2e import (
    NO_RESETS,
    Apps,
    EchoingCollector,
    ProcessTestCase,
    new_client_token,
)

#: Seconds a close may take to arrive here (it takes milliseconds; without
#: the fix it never arrives).
CLOSE_WAIT = EVENT


class EveryCloseTests(ProcessTestCase):
    timeout = scaled(60)
    tunnel_service_options = NO_RESETS

    def closed(self, client: Any) -> Any:
        """C{client}'s close (what it received), within L{CLOSE_WAIT} seconds."""
        return client.when_closed(CLOSE_WAIT)

    @inlineCallbacks
    def test_stopping_source_tells_the_destination(self) -> Any:
        """
        SIGTERM to a source with an open connection: the destination closes
        the application's connection, after the bytes sent before the stop.
        Failed before: the source only closed its WebSocket, and the
        application's connection stayed open.
        """
        apps = Apps(EchoingCollector)
        run = yield self.source_child_through_echo(apps, b"before the stop")
        source = run.process
        os.kill(source.transport.pid, signal.SIGTERM)
        self.assertEqual((yield source.when_ended()), 0, source.output.decode())
        yield apps.made[0].when_closed(CLOSE_WAIT)
        self.assertEqual(bytes(apps.made[0].received), b"before the stop")
        yield self.closed(run.client)
        self.assertIn(b"resetting 1 open connection", source.output)
        self.assertEqual(run.destination._connector.sessions, 1)
        self.assertEqual(self.tunnel_service.violations, [])

    @inlineCallbacks
    def test_stopping_destination_tells_the_source(self) -> Any:
        """
        C{stopService} of a destination with two open connections: the
        source closes both clients, each after every byte echoed to it.
        Failed before: the clients stayed open.
        """
        apps = Apps(EchoingCollector)
        echo_port = yield self.listen(apps)
        ports = yield self.tunnel_pair({"ssh": echo_port})
        first = yield self.echo_within(ports["ssh"], b"one")
        second = yield self.echo_within(ports["ssh"], b"two")
        yield self.within(self.destination.stopService(), EVENT, "the destination did not stop")
        self.assertEqual((yield self.closed(first)), b"one")
        self.assertEqual((yield self.closed(second)), b"two")
        self.assertEqual(self.source._connector.sessions, 1)
        self.assertTrue(self.source.running)

    @inlineCallbacks
    def test_restarted_destination_closes_the_old_clients(self) -> Any:
        """
        The destination is killed (no reset sent) and started again with the
        same client token; the service keeps the source's stream.  A client
        of the old stream that sends bytes is closed (the new destination
        answers its DATA with a StreamReset), so is its sibling, and a new
        connection echoes.  Failed before: the bytes were dropped in silence
        and the clients hung.
        """
        apps = Apps(EchoingCollector)
        echo_port = yield self.listen(apps)
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        token_file = self.token_file()
        args = ("-d", f"ssh=127.0.0.1:{echo_port}")
        first = self.spawn_proxy(destination_token, token_file, *args)
        yield first.wait_for("Successfully established websocket connection")
        yield self.service_state(tunnel_id, "destination", "CONNECTED")
        source = self.proxy(Mode.SOURCE, source_token, {}, client_token=new_client_token())
        yield self.connected(source)
        port = yield self.listening(source, "ssh")
        clients = [(yield self.echo_within(port, b"one")), (yield self.echo_within(port, b"two"))]
        os.kill(first.transport.pid, signal.SIGKILL)
        yield first.when_ended()
        yield self.service_state(tunnel_id, "destination", "DISCONNECTED")
        second = self.spawn_proxy(destination_token, token_file, *args)
        yield second.wait_for("Successfully established websocket connection")
        yield self.service_state(tunnel_id, "destination", "CONNECTED")
        clients[0].transport.write(b"anyone there?")
        self.assertEqual((yield self.closed(clients[0])), b"one")
        self.assertEqual((yield self.closed(clients[1])), b"two")
        yield self.echo_within(port, b"three")
        self.assertIn(b"answering with a STREAM_RESET", second.output)
        self.assertEqual(source._connector.sessions, 1)
        self.assertEqual(self.tunnel_service.violations, [])

    @inlineCallbacks
    def test_restarted_source_closes_the_old_application_connection(self) -> Any:
        """
        The source is killed (no reset sent) and started again with the
        same client token; the application of the old connection writes, and
        the new source answers that DATA with a StreamReset: the destination
        closes the application's connection.  Failed before: it stayed open.
        """
        apps = Apps(EchoingCollector)
        run = yield self.source_child_through_echo(apps, b"before the restart")
        os.kill(run.process.transport.pid, signal.SIGKILL)
        yield run.process.when_ended()
        yield self.service_state(run.tunnel_id, "source", "DISCONNECTED")
        second = yield self.start_source(run.source_token, run.port, run.token_file)
        apps.made[0].transport.write(b"prompt> ")
        yield apps.made[0].when_closed(CLOSE_WAIT)
        self.assertEqual(run.destination._connector.sessions, 1)
        self.assertFalse(second.exited)
