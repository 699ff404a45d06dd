"""
The command line (twistd plugin and console script) and the ready file.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial import unittest

from aws_localproxy.tunnelservice import cli, tap
from aws_localproxy.tunnelservice.server import LocalTunnelService
from tests.support import tunnelclient


class OptionsTests(unittest.TestCase):
    def test_defaults(self) -> None:
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(options["interface"], "127.0.0.1")
        self.assertEqual(options["port"], 0)
        self.assertFalse(options["no-tls"])
        self.assertEqual(options["cert-dir"], os.path.abspath("localtunnel-certs"))

    def test_values(self) -> None:
        options = tap.Options()
        options.parseOptions(
            [
                "--interface",
                "::1",
                "--port",
                "8443",
                "--no-tls",
                "--ready-file",
                "r.json",
                "--state-file",
                "s.db",
                "--cert-dir",
                "/tmp/x",
            ]
        )
        self.assertEqual(
            (
                options["interface"],
                options["port"],
                options["no-tls"],
                options["ready-file"],
                options["state-file"],
                options["cert-dir"],
            ),
            ("::1", 8443, True, "r.json", "s.db", "/tmp/x"),
        )

    def test_bad_port(self) -> None:
        self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--port", "70000"])

    def test_plugin(self) -> None:
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("localtunnel", makers)
        self.assertIs(makers["localtunnel"].options, tap.Options)

    def test_make_service(self) -> None:
        options = tap.Options()
        options.parseOptions(["--cert-dir", self.mktemp()])
        self.assertIsInstance(tap.makeService(options, reactor), LocalTunnelService)


class ServiceTests(unittest.TestCase):
    @inlineCallbacks
    def test_ready_file(self) -> Any:
        """The service writes the ready file once listening, and it is usable."""
        cert_dir, ready = self.mktemp(), self.mktemp()
        options = tap.Options()
        options.parseOptions(["--cert-dir", cert_dir, "--ready-file", ready])
        service = tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        running = yield service.ready
        with open(ready) as f:
            info = json.load(f)
        self.assertEqual(info["endpoint"], "127.0.0.1:%d" % (running.port,))
        self.assertEqual(info["api_url"], "https://127.0.0.1:%d" % (running.port,))
        self.assertEqual(info["ca_file"], os.path.join(os.path.abspath(cert_dir), "ca.pem"))
        self.assertTrue(os.path.isdir(info["capath"]))
        tunnel_id, source_token, _ = running.open_tunnel(["ssh"])
        client = yield tunnelclient.connect(reactor, running, token=source_token)
        self.addCleanup(tunnelclient.close_client, client)
        self.assertTrue(client.opened)

    @inlineCallbacks
    def test_state_file(self) -> Any:
        """With --state-file a restarted service accepts the tokens of before."""
        cert_dir, state = self.mktemp(), self.mktemp()
        options = tap.Options()
        options.parseOptions(["--cert-dir", cert_dir, "--state-file", state])
        first = tap.makeService(options, reactor)
        first.startService()
        running = yield first.ready
        tunnel_id, source_token, _ = running.open_tunnel(["ssh"])
        yield first.stopService()
        second = tap.makeService(options, reactor)
        second.startService()
        self.addCleanup(second.stopService)
        running = yield second.ready
        self.assertEqual(running.connection_state(tunnel_id, "source"), "DISCONNECTED")
        client = yield tunnelclient.connect(reactor, running, token=source_token)
        self.addCleanup(tunnelclient.close_client, client)
        self.assertTrue(client.opened)

    def test_banner(self) -> None:
        class Running:
            use_tls = True
            endpoint = "127.0.0.1:8443"
            api_url = "https://127.0.0.1:8443"
            ca_file = "/c/ca.pem"
            capath = "/c/capath"
            signature_check = None

        text = cli.banner(Running(), "eu-west-1")  # type: ignore[arg-type]
        self.assertIn("AWS_CA_BUNDLE=/c/ca.pem aws iotsecuretunneling open-tunnel", text)
        self.assertIn("--endpoint-url https://127.0.0.1:8443", text)
        self.assertIn("localproxy -e 127.0.0.1:8443 -c /c/capath -s 5555 -t", text)
        self.assertIn("localproxy -e 127.0.0.1:8443 -c /c/capath -d 22 -t", text)
        # The proxy refuses -r together with -e.
        self.assertNotIn("localproxy -r", text)

    def test_version(self) -> None:
        """--version is this project's, not Twisted's."""
        from aws_localproxy._version import __version__

        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(SystemExit, cli.main, ["--version"], io.StringIO(), io.StringIO())
        self.assertEqual(error.code, 0)
        self.assertEqual(out.getvalue(), "localtunnel (aws-localproxy) %s\n" % (__version__,))

    def test_usage_error(self) -> None:
        err = io.StringIO()
        error = self.assertRaises(SystemExit, cli.main, ["--port", "x"], io.StringIO(), err)
        self.assertEqual(error.code, 2)
        self.assertIn("--port", err.getvalue())
