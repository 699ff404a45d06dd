"""
Tests for aws_localproxy.config.build: the checklist from plain option values
to a ProxyConfig, without usage.Options.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional

from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.build import build_config
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.validation import ConfigurationError
from aws_localproxy.protocol.constants import Mode, PeerVersion

TOKEN = "tok-" + "a" * 40
BASE: Dict[str, object] = {"access-token": TOKEN, "region": "us-east-1"}


class BuildConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cwd = self.mktemp()
        os.makedirs(self.cwd)

    def build(
        self,
        values: Mapping[str, object],
        environ: Optional[Mapping[str, str]] = None,
        sources: Optional[Mapping[str, str]] = None,
        secrets: Optional[List[str]] = None,
    ) -> ProxyConfig:
        return build_config(values, environ or {}, sources=sources, cwd=self.cwd, secrets=secrets)

    def test_plain_values(self) -> None:
        config = self.build(
            {**BASE, "source-listen-port": "SSH1=5555", "verbose": "5", "no-ssl-host-verify": True}
        )
        self.assertEqual(config.mode, Mode.SOURCE)
        self.assertEqual(dict(config.service_map), {"SSH1": "5555"})
        self.assertEqual(config.endpoint_host, "data.tunneling.iot.us-east-1.amazonaws.com")
        self.assertEqual(
            (config.verbosity, config.verify_tls, config.peer_version), (5, False, PeerVersion.V3)
        )

    def test_defaults(self) -> None:
        config = self.build({**BASE, "destination-app": "22"})
        self.assertEqual(
            (config.mode, config.verbosity, config.verify_tls), (Mode.DESTINATION, 4, True)
        )
        self.assertIsNone(config.client_token)

    def test_first_broken_rule_wins(self) -> None:
        """Several mistakes: the message is the earliest step's, as the reference checks in order."""
        values = {"access-token": "", "region": "BAD", "mode": "sideways", "capath": "/nonexistent"}
        e = self.assertRaises(ConfigurationError, self.build, values)
        self.assertEqual(str(e), "Access token cannot be empty (--access-token)")
        values["access-token"] = TOKEN
        e = self.assertRaises(ConfigurationError, self.build, values)
        self.assertIn("(--region)", str(e))
        values["region"] = "us-east-1"
        e = self.assertRaises(usage.UsageError, self.build, values)
        self.assertIn("Mode value is wrong!", str(e))
        values["mode"] = "src"
        e = self.assertRaises(ConfigurationError, self.build, values)
        self.assertIn("(--capath)", str(e))

    def test_missing_token_is_a_usage_error(self) -> None:
        e = self.assertRaises(usage.UsageError, self.build, {"region": "us-east-1"})
        self.assertNotIsInstance(e, ConfigurationError)
        self.assertTrue(str(e).startswith("the option '--access-token' is required but missing"))

    def test_sources_name_where_values_came_from(self) -> None:
        values = {**BASE, "proxy-endpoint": "h:1"}
        e = self.assertRaises(
            usage.UsageError, self.build, values, sources={"region": "env", "proxy-endpoint": "cli"}
        )
        self.assertIn(
            "(--region given by AWSIOT_TUNNEL_REGION, --proxy-endpoint given on the command line)",
            str(e),
        )

    def test_token_on_command_line_warns(self) -> None:
        with capturedLogs() as events:
            self.build({**BASE, "source-listen-port": "1"}, sources={"access-token": "cli"})
        self.assertTrue(
            any("Found access token supplied via CLI arg" in e["log_format"] for e in events)
        )
        with capturedLogs() as events:
            self.build({**BASE, "source-listen-port": "1"}, sources={"access-token": "env"})
        self.assertFalse(
            any("Found access token supplied via CLI arg" in e["log_format"] for e in events)
        )

    def test_secrets_collected_before_a_later_failure(self) -> None:
        secrets: List[str] = []
        client = "c" * 40
        environ = {"https_proxy": "http://user:hunter22@127.0.0.1:3128"}
        values = {**BASE, "client-token": client, "mode": "bad"}
        self.assertRaises(usage.UsageError, self.build, values, environ, secrets=secrets)
        self.assertEqual(secrets, [TOKEN, client, "hunter22"])

    def test_inert_setting_warns(self) -> None:
        path = os.path.join(self.cwd, "s.json")
        with open(path, "w") as f:
            f.write('{"tunneling": {"proxy": {"message": {"data_frame_max_size": "99"}}}}')
        with capturedLogs() as events:
            self.build({**BASE, "source-listen-port": "1", "settings-json": path})
        warnings = [
            e["setting_warning"] for e in events if e.get("log_format") == "{setting_warning}"
        ]
        self.assertEqual(len(warnings), 1)
        self.assertIn("tunneling.proxy.message.data_frame_max_size (99) has no effect", warnings[0])
        with capturedLogs() as events:
            self.build({**BASE, "source-listen-port": "1"})
        self.assertFalse([e for e in events if e.get("log_format") == "{setting_warning}"])

    def test_config_dir(self) -> None:
        directory = os.path.join(self.cwd, "config")
        os.makedirs(directory)
        with open(os.path.join(directory, "m.ini"), "w") as f:
            f.write("SSH1 = 22\n")
        config = self.build({**BASE, "mode": "dst"})
        self.assertEqual(len(config.config_files), 1)
        e = self.assertRaises(
            ConfigurationError, self.build, {**BASE, "mode": "dst", "config-dir": ""}
        )
        self.assertEqual(str(e), "Path cannot be empty (--config-dir)")
