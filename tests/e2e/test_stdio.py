"""
``--stdio`` as a real process: standard input and output are one tunnel
connection, and ``ssh -o ProxyCommand=...`` reaches a local ``sshd`` through
the local tunnel service.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from typing import Any, Sequence

from twisted.internet.defer import inlineCallbacks

from tests.support.deadlines import START, branch, scaled, tail
from tests.support.e2e import (
    Apps,
    Collector,
    E2ETestCase,
    Echo,
    SendAndClose,
    pattern_chunk,
    spawn_stdio,
)
from tests.support.helpers import ChildProcess, child_environ, spawn_child
from tests.support.sshd import require_openssh, ssh_argv, sshd_listening, start_sshd


class _StdioCase(E2ETestCase):
    timeout = scaled(60)

    @inlineCallbacks
    def destination_for(self, protocol: Any, services: Sequence[str] = ("SSH1",)) -> Any:
        """
        A tunnel with C{services} and a destination proxy for it; without
        services the destination maps its one endpoint the V1 way (``-d PORT``).
        """
        port = yield self.listen(protocol)
        self.tunnel_id, source_token, _ = yield self.destination_to(port, services)
        return source_token

    def spawn_stdio(self, token: str, *args: str) -> ChildProcess:
        process, self.stdio_transport = spawn_stdio(self, token, *args)
        return process


class StdioTests(_StdioCase):
    @inlineCallbacks
    def test_echo_then_eof_exits_zero(self) -> Any:
        token = yield self.destination_for(Echo)
        process = self.spawn_stdio(token, "SSH1")
        self.stdio_transport.write(b"hello over stdio")
        yield process.wait_for_stdout(16)
        self.assertEqual(process.stdout, b"hello over stdio")
        self.stdio_transport.closeStdin()
        self.assertEqual((yield process.when_ended()), 0, process.stderr.decode())
        self.assertIn(b"Running AWS IoT Secure Tunneling Local Proxy", process.stderr)
        self.assertNotIn(token.encode(), process.stderr)

    @inlineCallbacks
    def test_tunnel_without_services(self) -> Any:
        """
        Issue 18: on a tunnel opened without services (SERVICE_IDS with an
        empty list) ``--stdio`` without a name is the tunnel's one unnamed
        service; it used to exit 1 with ``The tunnel has several service ids ()``.
        """
        token = yield self.destination_for(Echo, services=())
        process = self.spawn_stdio(token)
        self.stdio_transport.write(b"no service ids")
        yield process.wait_for_stdout(14)
        self.assertEqual(process.stdout, b"no service ids")
        self.stdio_transport.closeStdin()
        self.assertEqual((yield process.when_ended()), 0, process.stderr.decode())

    @inlineCallbacks
    def test_tunnel_without_services_refuses_a_name(self) -> Any:
        """A service ID named for a tunnel without any is a fatal error that says so."""
        token = yield self.destination_for(Echo, services=())
        process = self.spawn_stdio(token, "SSH1")
        self.assertEqual((yield process.when_ended()), 1)
        self.assertIn(b"the tunnel has no service ids (leave SERVICE_ID out)", process.stderr)
        self.assertEqual(process.stdout, b"")

    @inlineCallbacks
    def test_upload_then_eof_delivers_every_byte(self) -> Any:
        """1 MiB on stdin, then EOF: the process exits 0 only after the service got all of it."""
        apps = Apps(Collector)
        token = yield self.destination_for(apps)
        process = self.spawn_stdio(token)  # the tunnel's only service ID
        data = b"".join(pattern_chunk(offset, 65536) for offset in range(0, 1 << 20, 65536))
        self.stdio_transport.write(data)
        self.stdio_transport.closeStdin()
        self.assertEqual((yield process.when_ended()), 0, process.stderr.decode())
        yield self.until(
            lambda: bool(apps.made) and apps.made[0].lost,
            "the application's connection was not closed after the upload",
            state=apps.summary,
        )
        received = bytes(apps.made[0].received)
        self.assertEqual(len(received), len(data))
        self.assertEqual(hashlib.sha256(received).digest(), hashlib.sha256(data).digest())

    @inlineCallbacks
    def test_peer_reset_flushes_stdout_and_exits_zero(self) -> Any:
        """The local service writes 1 MiB and closes: all of it reaches stdout, exit 0."""
        data = b"".join(pattern_chunk(offset, 65536) for offset in range(0, 1 << 20, 65536))
        token = yield self.destination_for(lambda: SendAndClose(data))
        process = self.spawn_stdio(token, "SSH1")
        self.assertEqual((yield process.when_ended()), 0, process.stderr.decode())
        self.assertEqual(len(process.stdout), len(data))
        self.assertEqual(process.stdout, data)

    @inlineCallbacks
    def test_unknown_service_id_exits_one(self) -> Any:
        token = yield self.destination_for(Echo)
        process = self.spawn_stdio(token, "OTHER")
        self.assertEqual((yield process.when_ended()), 1)
        self.assertIn(
            b"Service id OTHER given to --stdio is not one of the tunnel's: SSH1", process.stderr
        )
        self.assertEqual(process.stdout, b"")

    @inlineCallbacks
    def test_several_services_need_a_name(self) -> Any:
        token = yield self.destination_for(Echo, ["SSH1", "WEB"])
        process = self.spawn_stdio(token)
        self.assertEqual((yield process.when_ended()), 1)
        self.assertIn(b"name one with --stdio SERVICE_ID", process.stderr)


class SSHTests(_StdioCase):
    """Real ssh with ``ProxyCommand='python -m aws_localproxy ... --stdio SSH1'`` to a real sshd."""

    def setUp(self) -> Any:
        require_openssh()
        return super().setUp()

    @inlineCallbacks
    def test_ssh_proxy_command(self) -> Any:
        sshd = start_sshd(self)
        yield sshd_listening(sshd.port, sshd)
        token = yield self.destination_for_port(sshd.port)
        service = self.tunnel_service
        proxy_command = (
            f"{sys.executable} -m aws_localproxy -e {service.endpoint} -c {service.capath} "
            "--stdio SSH1"
        )
        process = ChildProcess()
        spawn_child(
            self,
            process,
            ssh_argv(proxy_command, sshd.user_key, "echo ok"),
            child_environ({"AWSIOT_TUNNEL_ACCESS_TOKEN": token}),
            executable=shutil.which("ssh"),
        )
        code = yield self.within(
            branch(process.ended),
            START,
            "ssh through the tunnel did not exit",
            lambda: f"{process.output_tail()}\nsshd's log ends:\n{tail(sshd.log_text())}",
        )
        self.assertEqual(
            (code, process.stdout),
            (0, b"ok\n"),
            f"ssh stderr:\n{process.stderr.decode()}\nsshd:\n{sshd.log_text()}",
        )
        self.assertNotIn(token.encode(), process.stderr)

    @inlineCallbacks
    def destination_for_port(self, port: int) -> Any:
        _, source_token, _ = yield self.destination_to(port, ["SSH1"])
        return source_token
