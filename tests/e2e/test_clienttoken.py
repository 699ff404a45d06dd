"""
Client tokens that just work: a reconnect after the WebSocket drops comes
back with single-use access tokens whether or not ``-i`` was given, and a
restarted process rejoins its tunnel with ``--client-token-file``.
"""

from __future__ import annotations

import os
import signal
import stat
from typing import Any

from twisted.internet.defer import inlineCallbacks

from aws_localproxy.config.client_token import is_valid_client_token, read_client_token
from aws_localproxy.protocol.constants import Mode
from tests.support.deadlines import scaled
from tests.support.e2e import E2ETestCase, Echo, ProcessTestCase, spawn


class ReconnectTests(E2ETestCase):
    @inlineCallbacks
    def reconnect_after_drop(self, client_tokens: bool) -> Any:
        echo_port = yield self.listen(Echo)
        ports = yield self.tunnel_pair({"ssh": echo_port}, client_tokens=client_tokens)
        client = yield self.connect(ports["ssh"])
        client.transport.write(b"before")
        yield client.wait_for(6)
        yield self.drop_and_reconnect(client)
        client = yield self.assert_echoes(ports["ssh"], b"after")
        for proxy in (self.source, self.destination):
            self.assertFalse(proxy.when_finished.called)
            self.assertTrue(is_valid_client_token(proxy.client_token))

    def test_reconnect_without_client_token(self) -> Any:
        """No -i: the proxy makes up a client token, so the single-use access token is reusable."""
        return self.reconnect_after_drop(client_tokens=False)

    def test_reconnect_with_client_token(self) -> Any:
        return self.reconnect_after_drop(client_tokens=True)

    @inlineCallbacks
    def test_given_client_token_is_sent(self) -> Any:
        echo_port = yield self.listen(Echo)
        yield self.tunnel_pair({"ssh": echo_port})
        self.assertEqual(self.source.client_token, self.source.config.client_token)

    @inlineCallbacks
    def test_generated_tokens_differ(self) -> Any:
        echo_port = yield self.listen(Echo)
        yield self.tunnel_pair({"ssh": echo_port}, client_tokens=False)
        self.assertNotEqual(self.source.client_token, self.destination.client_token)

    @inlineCallbacks
    def test_unusable_token_file_exits_one(self) -> Any:
        """A file that turned bad after the options were read: a fatal line and exit 1."""
        _, _, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a token\n")
        proxy = self.proxy(
            Mode.DESTINATION, destination_token, {"ssh": "22"}, client_token_file=path
        )
        self.assertEqual((yield self.finished(proxy)), 1)


class RestartTests(ProcessTestCase):
    timeout = scaled(60)

    @inlineCallbacks
    def start_destination(self, token: str, echo_port: int, *extra: str) -> Any:
        process = spawn(
            self,
            self.proxy_args("-v", "6", "-d", f"ssh=127.0.0.1:{echo_port}", *extra),
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": token},
        )
        yield process.wait_for("Successfully established websocket connection")
        return process

    @inlineCallbacks
    def kill(self, process: Any, tunnel_id: str) -> Any:
        os.kill(process.transport.pid, signal.SIGKILL)
        yield process.when_ended()
        yield self.service_state(tunnel_id, "destination", "DISCONNECTED")

    @inlineCallbacks
    def test_restart_rejoins_with_token_file(self) -> Any:
        echo_port = yield self.listen(Echo)
        tunnel_id, _, token = self.tunnel_service.open_tunnel(["ssh"])
        path = os.path.abspath(os.path.join(self.mktemp_dir(), "client-token"))
        first = yield self.start_destination(token, echo_port, "--client-token-file", path)
        stored = read_client_token(path)
        assert stored is not None
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        yield self.kill(first, tunnel_id)
        second = yield self.start_destination(token, echo_port, "--client-token-file", path)
        yield self.service_state(tunnel_id, "destination", "CONNECTED")
        self.assertEqual(read_client_token(path), stored)
        for process in (first, second):
            self.assertNotIn(stored.encode(), process.output)
            self.assertNotIn(token.encode(), process.output)
        self.tunnel_service.close_tunnel(tunnel_id)
        self.assertEqual((yield second.when_ended()), 0, second.output.decode())

    @inlineCallbacks
    def test_restart_without_token_file_is_refused(self) -> Any:
        """The control case: a generated token dies with its process, the access token is spent."""
        echo_port = yield self.listen(Echo)
        tunnel_id, _, token = self.tunnel_service.open_tunnel(["ssh"])
        first = yield self.start_destination(token, echo_port)
        yield self.kill(first, tunnel_id)
        second = spawn(
            self,
            self.proxy_args("-d", f"ssh=127.0.0.1:{echo_port}"),
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": token},
        )
        self.assertEqual((yield second.when_ended()), 1)
        self.assertIn(b"rejected web socket upgrade request: (HTTP/1.1 403", second.output)

    @inlineCallbacks
    def test_generated_token_never_logged(self) -> Any:
        """-v 6 shows the handshake; the generated client token is redacted from it."""
        echo_port = yield self.listen(Echo)
        tunnel_id, _, token = self.tunnel_service.open_tunnel(["ssh"])
        process = yield self.start_destination(token, echo_port)
        yield self.service_state(tunnel_id, "destination", "CONNECTED")
        slot = self.tunnel_service.registry.get(tunnel_id).slot(Mode.DESTINATION)
        generated = slot.client_token
        self.assertTrue(generated and is_valid_client_token(generated))
        self.tunnel_service.close_tunnel(tunnel_id)
        self.assertEqual((yield process.when_ended()), 0)
        self.assertNotIn(generated.encode(), process.output)
        self.assertNotIn(token.encode(), process.output)
