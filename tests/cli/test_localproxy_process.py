"""
The console script and ``twistd localproxy`` as real processes against the
local tunnel service: exit codes, signals, and secrets kept out of the output.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet.defer import inlineCallbacks

from aws_localproxy.protocol.constants import Mode
from tests.support.e2e import Echo, ProcessTestCase, new_client_token, spawn
from tests.support.helpers import free_port


class ConsoleScriptTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def test_close_tunnel_exits_zero(self) -> Any:
        echo_port = yield self.listen(Echo)
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        destination = spawn(
            self,
            self.proxy_args("-d", f"ssh=127.0.0.1:{echo_port}"),
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": destination_token},
        )
        yield destination.wait_for("Successfully established websocket connection")
        self.tunnel_service.close_tunnel(tunnel_id)
        code = yield destination.ended
        self.assertEqual(code, 0, destination.output.decode())
        self.assertIn(b"Web socket close received. Code: 1000", destination.output)

    @inlineCallbacks
    def test_rejected_token_exits_one(self) -> Any:
        self.tunnel_service.open_tunnel(["ssh"])
        process = spawn(
            self,
            self.proxy_args("-s", "ssh=5555"),
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": "not-a-valid-token"},
        )
        code = yield process.ended
        self.assertEqual(code, 1)
        self.assertIn(
            b"Proxy server rejected web socket upgrade request: (HTTP/1.1 401", process.output
        )

    @inlineCallbacks
    def test_sigterm_stops_cleanly(self) -> Any:
        """SIGTERM: a close frame to the service, exit 0 (the reference just dies)."""
        echo_port = yield self.listen(Echo)
        tunnel_id, _, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        process = spawn(
            self,
            self.proxy_args("-d", f"ssh=127.0.0.1:{echo_port}"),
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": destination_token},
        )
        yield process.wait_for("Successfully established websocket connection")
        yield self.tunnel_service.wait_for_state(tunnel_id, "destination", "CONNECTED")
        os.kill(process.transport.pid, signal.SIGTERM)
        code = yield process.ended
        self.assertEqual(code, 0, process.output.decode())
        yield self.tunnel_service.wait_for_state(tunnel_id, "destination", "DISCONNECTED")
        self.assertEqual(self.tunnel_service.violations, [])

    @inlineCallbacks
    def test_tokens_never_in_output(self) -> Any:
        """At the most verbose level, neither token appears in the output."""
        echo_port = yield self.listen(Echo)
        tunnel_id, _, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        client_token = new_client_token()
        process = spawn(
            self,
            self.proxy_args("-v", "6", "-d", f"ssh=127.0.0.1:{echo_port}"),
            {
                "AWSIOT_TUNNEL_ACCESS_TOKEN": destination_token,
                "AWSIOT_TUNNEL_CLIENT_TOKEN": client_token,
            },
        )
        yield process.wait_for("Successfully established websocket connection")
        self.tunnel_service.close_tunnel(tunnel_id)
        code = yield process.ended
        self.assertEqual(code, 0)
        self.assertNotIn(destination_token.encode(), process.output)
        self.assertNotIn(client_token.encode(), process.output)

    @inlineCallbacks
    def test_usage_error_exits_one_before_connecting(self) -> Any:
        process = spawn(self, ["-m", "aws_localproxy", "-r", "us-east-1", "-s", "5555"])
        code = yield process.ended
        self.assertEqual(code, 1)
        self.assertIn(b"--access-token", process.output)


class TwistdTests(ProcessTestCase):
    timeout = 60

    @inlineCallbacks
    def test_twistd_localproxy_runs_a_source(self) -> Any:
        echo_port = yield self.listen(Echo)
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        destination = self.proxy(
            Mode.DESTINATION,
            destination_token,
            {"ssh": f"127.0.0.1:{echo_port}"},
        )
        yield destination.connected
        service = self.tunnel_service
        process = spawn(
            self,
            [
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "localproxy",
                "-e",
                service.endpoint,
                "-c",
                service.capath,
                "-s",
                f"ssh={free_port()}",
                "-b",
                "127.0.0.1",
            ],
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": source_token},
        )
        yield process.wait_for("Listening for new connection on port")
        self.tunnel_service.close_tunnel(tunnel_id)
        code = yield process.ended
        self.assertEqual(code, 0, process.output.decode())
