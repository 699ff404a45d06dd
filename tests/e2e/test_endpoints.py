"""
Any local endpoint, end to end: sources listening on Unix sockets and on
Twisted descriptions, destinations connecting to them, through the local
tunnel service on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Factory

from aws_localproxy.protocol.constants import Mode
from tests.support.deadlines import EVENT, deadline
from tests.support.e2e import Client, E2ETestCase, Echo, _close_client, new_client_token


class EndpointTests(E2ETestCase):
    def short_dir(self) -> str:
        """A directory with a path short enough for Unix sockets (108 bytes)."""
        path = tempfile.mkdtemp(prefix="lp-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    @inlineCallbacks
    def connect_unix(self, path: str) -> Any:
        client = Client(f"the client of {path}")
        yield deadline(
            UNIXClientEndpoint(reactor, path).connect(Factory.forProtocol(lambda: client)),
            EVENT,
            f"{client.name} did not connect",
        )
        self.addCleanup(_close_client, client)
        return client

    @inlineCallbacks
    def pair(self, source_map: Any, destination_map: Any) -> Any:
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(
            sorted(destination_map)
        )
        self.tunnel_id = tunnel_id
        self.destination = self.proxy(
            Mode.DESTINATION, destination_token, destination_map, client_token=new_client_token()
        )
        yield self.connected(self.destination)
        self.source = self.proxy(
            Mode.SOURCE, source_token, source_map, client_token=new_client_token()
        )
        yield self.connected(self.source)

    @inlineCallbacks
    def test_unix_socket_both_ends(self) -> Any:
        """-s SSH1=unix:/path and -d SSH1=unix:/path: a Unix client reaches a Unix service."""
        directory = self.short_dir()
        service_path = os.path.join(directory, "service.sock")
        source_path = os.path.join(directory, "source.sock")
        port = yield UNIXServerEndpoint(reactor, service_path).listen(Factory.forProtocol(Echo))
        self.addCleanup(port.stopListening)
        yield self.pair({"SSH1": f"unix:{source_path}"}, {"SSH1": f"unix:{service_path}"})
        address = yield self.within(
            self.source._source.listening_address("SSH1"),
            EVENT,
            "the source did not listen for SSH1",
        )
        self.assertEqual(address.name, source_path.encode())
        self.assertEqual(self.source.bound_ports(), {})
        client = yield self.connect_unix(source_path)
        client.transport.write(b"over unix sockets")
        received = yield client.wait_for(17)
        self.assertEqual(received, b"over unix sockets")

    @inlineCallbacks
    def test_reference_unix_path_destination(self) -> Any:
        """The reference's bare path form still means a Unix socket."""
        directory = self.short_dir()
        service_path = os.path.join(directory, "service.sock")
        port = yield UNIXServerEndpoint(reactor, service_path).listen(Factory.forProtocol(Echo))
        self.addCleanup(port.stopListening)
        yield self.pair({"SSH1": "0"}, {"SSH1": service_path})
        listening = yield self.listening(self.source, "SSH1")
        yield self.assert_echoes(listening, b"path")

    @inlineCallbacks
    def test_tcp_descriptions_and_kept_across_reconnect(self) -> Any:
        """
        -s X=tcp:0:interface=127.0.0.1 and -d X=tcp:host=127.0.0.1:port=N;
        after the WebSocket drops, the source listens on the same port.
        """
        echo_port = yield self.listen(Echo)
        yield self.pair(
            {"WEB": "tcp:0:interface=127.0.0.1"}, {"WEB": f"tcp:host=127.0.0.1:port={echo_port}"}
        )
        port = yield self.listening(self.source, "WEB")
        self.assertNotEqual(port, 0)
        client = yield self.assert_echoes(port, b"described")
        yield self.drop_and_reconnect(client)
        self.assertEqual(self.source.bound_ports(), {"WEB": port})
        client = yield self.assert_echoes(port, b"again")

    @inlineCallbacks
    def test_bad_description_is_fatal(self) -> Any:
        """A destination description that cannot connect: exit 1 once SERVICE_IDS names it."""
        _, _, destination_token = self.tunnel_service.open_tunnel(["WEB"])
        proxy = self.proxy(Mode.DESTINATION, destination_token, {"WEB": "tcp:host=127.0.0.1"})
        code = yield self.finished(proxy)
        self.assertEqual(code, 1)


class ReadBufferSizeTests(E2ETestCase):
    @inlineCallbacks
    def test_tcp_read_buffer_size_sets_the_local_read_size(self) -> Any:
        """tcp.read_buffer_size is the local transports' bufferSize, both sides."""
        from tests.support.e2e import with_settings

        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair(
            {"ssh": echo_port}, settings=with_settings(tcp_read_buffer_size=1000)
        )
        client = yield self.connect(ports["ssh"])
        client.transport.write(b"x" * 5000)
        yield client.wait_for(5000)
        for proxy in (self.source, self.destination):
            (connection,) = proxy.tunnel._session.services["ssh"].connections.values()
            local = connection.local
            protocol = getattr(local, "_protocol", local)  # a destination's pending wrapper
            self.assertEqual(protocol.transport.bufferSize, 1000)
