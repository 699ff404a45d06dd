"""The agent's options and console script: required options, the destination checklist, messages."""

from __future__ import annotations

import io
from typing import Any, List

from twisted.python import usage
from twisted.trial.unittest import TestCase

from aws_localproxy.agent import cli
from aws_localproxy.agent.options import AgentOptions
from aws_localproxy.config.validation import ConfigurationError

BASE = ["--thing-name", "dev1", "--mqtt-broker", "mqtt://127.0.0.1:1883"]


def parse(*args: str, environ: Any = None) -> AgentOptions:
    options = AgentOptions(environ={} if environ is None else environ)
    options.parseOptions(list(args))
    return options


class AgentOptionsTests(TestCase):
    def test_defaults(self) -> None:
        agent = parse(*BASE, "-d", "SSH=22").agent
        assert agent is not None
        self.assertEqual(agent.thing_name, "dev1")
        self.assertEqual(agent.client_id, "dev1")
        self.assertEqual(agent.max_tunnels, 10)
        self.assertEqual(agent.keepalive, 60)
        self.assertTrue(agent.endpoint_from_region)
        self.assertEqual(dict(agent.template.service_map), {"SSH": "22"})
        self.assertFalse(agent.broker.use_tls)

    def test_proxy_endpoint_and_settings(self) -> None:
        agent = parse(
            *BASE,
            "-d",
            "SSH=22,WEB=127.0.0.1:80",
            "-e",
            "127.0.0.1:4443",
            "--max-tunnels",
            "3",
            "--mqtt-client-id",
            "c1",
        ).agent
        assert agent is not None
        self.assertFalse(agent.endpoint_from_region)
        self.assertEqual(
            (agent.template.endpoint_host, agent.template.endpoint_port), ("127.0.0.1", 4443)
        )
        self.assertEqual(agent.max_tunnels, 3)
        self.assertEqual(agent.client_id, "c1")

    def test_config_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                "thing-name = dev7\nmqtt-broker = mqtts://iot.example:443\ndestination-app = SSH=22\n"
            )
        agent = parse("--config", path).agent
        assert agent is not None
        self.assertEqual(agent.thing_name, "dev7")
        self.assertTrue(agent.broker.offers_alpn)

    def test_environment_tokens_are_not_taken(self) -> None:
        agent = parse(
            *BASE, "-d", "22", environ={"AWSIOT_TUNNEL_ACCESS_TOKEN": "secret-token"}
        ).agent
        assert agent is not None
        self.assertNotEqual(agent.template.access_token, "secret-token")

    def test_errors(self) -> None:
        cases: List[Any] = [
            (
                ["--mqtt-broker", "mqtt://h", "-d", "22"],
                usage.UsageError,
                "'--thing-name' is required",
            ),
            (["--thing-name", "dev1", "-d", "22"], usage.UsageError, "'--mqtt-broker' is required"),
            (
                ["--thing-name", "a/b", "--mqtt-broker", "mqtt://h", "-d", "22"],
                ConfigurationError,
                "thing name",
            ),
            ([*BASE[:3], "http://h", "-d", "22"], ConfigurationError, "mqtt:// or mqtts://"),
            (BASE, ConfigurationError, "No port mapping exists"),
            ([*BASE, "-d", "SSH=99999"], ConfigurationError, "Port must be between"),
            (
                [*BASE, "-d", "22", "--max-tunnels", "0"],
                usage.UsageError,
                "--max-tunnels must be between",
            ),
            ([*BASE, "-d", "22", "--mqtt-keepalive", "x"], usage.UsageError, "whole number"),
            ([*BASE, "-d", "22", "--mqtt-cert", "/c"], ConfigurationError, "needs its key"),
        ]
        for args, error, message in cases:
            with self.assertRaises(error) as caught:
                parse(*args)
            self.assertIn(message, str(caught.exception), args)


class AgentCliTests(TestCase):
    def run_cli(self, *args: str) -> Any:
        out, err = io.StringIO(), io.StringIO()
        self.patch(cli, "start_logging", lambda verbosity, stream, secrets=(): None)
        code = cli.main(list(args), {}, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    def test_usage_error(self) -> None:
        code, out, err = self.run_cli("-d", "22")
        self.assertEqual(code, 1)
        self.assertTrue(
            out.startswith("Running AWS IoT Secure Tunneling Local Proxy agent version: v")
        )
        self.assertEqual(
            err,
            "the option '--thing-name' is required but missing\n"
            "Try 'localproxy-agent --help' for a list of options.\n",
        )

    def test_version(self) -> None:
        code, out, err = self.run_cli("--version")
        self.assertEqual((code, err), (0, ""))

    def test_help(self) -> None:
        code, out, _ = self.run_cli("--help")
        self.assertEqual(code, 0)
        self.assertIn("--mqtt-broker", out)


class TwistdPluginTests(TestCase):
    def test_plugin(self) -> None:
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        names = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("localproxy-agent", names)

    def test_make_service(self) -> None:
        from aws_localproxy.agent import tap
        from aws_localproxy.agent.service import AgentService

        options = tap.Options(environ={})
        options.parseOptions([*BASE, "-d", "22"])
        service = tap.makeService(options)
        self.assertIsInstance(service, AgentService)
        self.assertFalse(service.running)
