"""
Issue 18, a failed local connect costs only its own connection: when a
destination cannot reach its local service for a V3 stream's first
connection, it answers with a ConnectionReset for that connection, and the
stream's other connections go on.  It used to answer with a StreamReset,
which ended every connection of the service (and made aws-c-iot, which takes
a StreamReset without a connection ID for a V1/V2 message on its V3 session,
drop its whole WebSocket).
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError

from aws_localproxy.protocol.constants import Mode
from tests.support.e2e import E2ETestCase, Echo, new_client_token, with_settings


class FirstConnectHeld:
    """
    A client endpoint whose first connect waits until the test fails it
    (C{first}); every later one connects to the application.
    """

    def __init__(self, port: int) -> None:
        self._port = port
        self.first: Deferred[Any] = Deferred()
        self.attempts: List[int] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts.append(len(self.attempts) + 1)
        if len(self.attempts) == 1:
            return self.first
        return TCP4ClientEndpoint(reactor, "127.0.0.1", self._port).connect(factory)


class ConnectFailureTests(E2ETestCase):
    @inlineCallbacks
    def test_first_connection_fails_the_second_goes_on(self) -> Any:
        """
        Client A's connection (the StreamStart of service ssh's stream) cannot
        connect while client B's (a ConnectionStart on the same stream) is
        open: A is closed, B goes on echoing, neither proxy reconnects.
        Failed before: the StreamReset closed B as well.

        An echo on service web first shows the source that its peer speaks
        V3, so that it starts B at once rather than waiting for A's answer.
        """
        echo_port = yield self.listen(Echo)
        endpoint = FirstConnectHeld(echo_port)
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh", "web"])
        settings = with_settings(tcp_connection_retry_count=0)
        destination = self.proxy(
            Mode.DESTINATION,
            destination_token,
            {"ssh": "127.0.0.1:1", "web": f"127.0.0.1:{echo_port}"},
            client_token=new_client_token(),
            settings=settings,
            service_options={"destination_endpoints": {"ssh": endpoint}},
        )
        yield self.connected(destination)
        source = self.proxy(
            Mode.SOURCE, source_token, {}, client_token=new_client_token(), settings=settings
        )
        yield self.connected(source)
        web = yield self.listening(source, "web")
        yield self.assert_echoes(web, b"the peer speaks V3")
        port = yield self.listening(source, "ssh")
        a = yield self.connect(port)
        a.transport.write(b"for a")
        yield self.until(
            lambda: endpoint.attempts, "the destination did not try to connect client A's"
        )
        b = yield self.assert_echoes(port, b"for b")
        self.assertEqual(len(endpoint.attempts), 2)
        endpoint.first.errback(ConnectionRefusedError("held, then refused"))
        yield a.when_closed()  # (after its connect failed)
        self.assertEqual(a.value(), b"")
        b.transport.write(b" still")
        received = yield b.wait_for(len(b"for b still"))
        self.assertEqual(received, b"for b still")
        self.assertFalse(b.closed.called, "client B was closed with A")
        # The stream lives on: a new client starts a connection on it and echoes.
        yield self.assert_echoes(port, b"for c")
        self.assertEqual((source._connector.sessions, destination._connector.sessions), (1, 1))
        self.assertEqual(self.tunnel_service.violations, [])
        self.assertEqual(destination.metrics().services["ssh"].connections_refused, 1)
