"""Tests for aws_localproxy.cli.localproxy: the console script's output, exit codes and hand-over to run_proxy."""

from __future__ import annotations

import io
import os
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.cli import localproxy as cli
from aws_localproxy.cli import log_setup
from aws_localproxy.cli.options import TRY_HELP, banner
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.protocol.constants import Mode
from tests.support.reference_settings import REFERENCE_DOCUMENT

TOKEN = "cli-token-" + "x" * 30


class _CLITestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.started: List[Tuple[int, Tuple[str, ...]]] = []
        self.log_streams: List[Any] = []
        self.patch(cli, "start_logging", self._fake_start_logging)
        cwd = self.mktemp()
        os.makedirs(cwd)
        self.patch(os, "getcwd", lambda: cwd)

    def _fake_start_logging(self, verbosity: int, stream: Any, secrets: Any = ()) -> Optional[Any]:
        """Like start_logging, but on the global publisher for this test only."""
        self.started.append((verbosity, tuple(secrets)))
        self.log_streams.append(stream)
        if verbosity == 0:
            return None
        observer, lines = log_setup.make_observer(verbosity, stream, secrets)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return lines

    def run_main(
        self, argv: List[str], env: Optional[Dict[str, str]] = None
    ) -> Tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(argv, env or {}, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()


class OutputTests(_CLITestCase):
    def test_usage_error(self) -> None:
        code, out, err = self.run_main(["-Z"])
        self.assertEqual(code, 1)
        self.assertEqual(out, banner() + "\n")
        self.assertEqual(err, f"unrecognised option '-Z'\n{TRY_HELP}\n")
        self.assertEqual(self.started, [])

    def test_missing_token(self) -> None:
        code, _, err = self.run_main(["-r", "us-east-1", "-s", "5555"])
        self.assertEqual(code, 1)
        self.assertIn("'--access-token' is required", err)
        self.assertTrue(err.endswith(TRY_HELP + "\n"))

    def test_configuration_error_is_fatal_log(self) -> None:
        code, out, err = self.run_main(["-t", TOKEN, "-r", "US", "-s", "1"])
        self.assertEqual(code, 1)
        self.assertEqual(out, banner() + "\n")
        self.assertIn("[fatal] Region must contain only lowercase letters", err)
        self.assertNotIn(TRY_HELP, err)
        self.assertNotIn(TOKEN, err)

    def test_configuration_error_silent_at_v0(self) -> None:
        code, _, err = self.run_main(["-t", TOKEN, "-r", "US", "-s", "1", "-v", "0"])
        self.assertEqual((code, err), (1, ""))

    def test_help(self) -> None:
        code, out, err = self.run_main(["-h"])
        self.assertEqual(code, 0)
        self.assertEqual(out, banner() + "\n")
        self.assertIn("Show help message", err)
        self.assertIn("--destination-client-type", err)

    def test_version(self) -> None:
        code, out, err = self.run_main(["--version", "-r", "BAD"])
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith("Running AWS IoT Secure Tunneling Local Proxy version: v"))

    def test_version_with_unknown_option_fails(self) -> None:
        self.assertEqual(self.run_main(["-V", "--bogus"])[0], 1)

    def test_export(self) -> None:
        path = self.mktemp()
        code, _, err = self.run_main(["--export-default-settings", path])
        self.assertEqual((code, err), (0, ""))
        with open(path) as f:
            self.assertEqual(f.read(), REFERENCE_DOCUMENT)

    def test_export_failure(self) -> None:
        path = os.path.join(self.mktemp(), "missing-dir", "s.json")
        code, _, err = self.run_main(["--export-default-settings", path])
        self.assertEqual(code, 1)
        self.assertIn("[fatal] Cannot write the default settings to", err)


class StdioOutputTests(_CLITestCase):
    """With --stdio, standard output belongs to the tunnel: not even the banner goes there."""

    def test_usage_error(self) -> None:
        code, out, err = self.run_main(["--stdio", "-d", "22", "-t", TOKEN, "-r", "us-east-1"])
        self.assertEqual((code, out), (1, ""))
        self.assertTrue(err.startswith(banner() + "\n"), err)
        self.assertTrue(err.endswith(TRY_HELP + "\n"))

    def test_unparsable_command_line(self) -> None:
        code, out, err = self.run_main(["--std", "--bogus"])
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"{banner()}\nunrecognised option '--bogus'\n{TRY_HELP}\n")

    def test_configuration_error(self) -> None:
        code, out, err = self.run_main(["--stdio", "-t", TOKEN, "-r", "US", "-v", "6"])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("[fatal] Region must contain only lowercase letters", err)

    def test_asks_for_stdio(self) -> None:
        self.assertTrue(cli._asks_for_stdio(["-r", "x", "--stdio"]))
        self.assertTrue(cli._asks_for_stdio(["--std"]))
        self.assertFalse(cli._asks_for_stdio(["--s", "--", "--stdio"]))
        self.assertFalse(cli._asks_for_stdio(["-s", "1"]))

    def test_real_process_keeps_stdout_clean(self) -> None:
        """A real process at -v 6 with a fatal error: everything on stderr, nothing on stdout."""
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": root,
            "AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN,
        }
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "aws_localproxy",
                "-r",
                "us-east-1",
                "-v",
                "6",
                "--stdio",
                "SSH1",
                "--settings-json",
                os.path.join(self.mktemp(), "missing.json"),
            ],
            env=env,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, b"")
        self.assertIn(banner().encode(), result.stderr)
        self.assertIn(b"[info] Using settings specified in file", result.stderr)
        self.assertIn(b"[fatal] Cannot read settings file", result.stderr)


class RunTests(_CLITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.configs: List[ProxyConfig] = []
        self.result = 0
        import aws_localproxy.proxy.service as service

        self.on_secrets: List[Any] = []

        def fake_run_proxy(
            reactor: Any, config: ProxyConfig, on_secret: Any = None
        ) -> defer.Deferred[int]:
            self.configs.append(config)
            self.on_secrets.append(on_secret)
            return defer.succeed(self.result)

        self.patch(service, "run_proxy", fake_run_proxy)
        self.patch(task, "react", self._fake_react)

    @staticmethod
    def _fake_react(main: Any) -> None:
        """What task.react does with the Deferred, on a memory reactor."""
        outcome: List[Any] = []
        main(MemoryReactorClock()).addBoth(outcome.append)
        (result,) = outcome
        if isinstance(result, defer.Failure):
            if result.check(SystemExit):
                raise result.value
            raise SystemExit(1)
        raise SystemExit(0)

    def test_config_handed_over(self) -> None:
        env = {"AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN, "AWSIOT_TUNNEL_REGION": "cn-north-1"}
        e = self.assertRaises(
            SystemExit,
            cli.main,
            ["-d", "SSH1=22", "-v", "3"],
            env,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
        self.assertEqual(e.code, 0)
        (config,) = self.configs
        self.assertEqual(config.mode, Mode.DESTINATION)
        self.assertEqual(config.access_token, TOKEN)
        self.assertEqual(config.endpoint_host, "data.tunneling.iot.cn-north-1.amazonaws.com.cn")
        self.assertEqual(dict(config.service_map), {"SSH1": "22"})
        self.assertEqual(self.started, [(3, (TOKEN,))])

    def test_stdio_logs_on_stderr_only(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        env = {"AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN}
        e = self.assertRaises(
            SystemExit,
            cli.main,
            ["-r", "us-east-1", "--stdio", "SSH1", "-v", "6"],
            env,
            stdout=out,
            stderr=err,
        )
        self.assertEqual(e.code, 0)
        (config,) = self.configs
        self.assertEqual((config.stdio, config.stdio_service_id), (True, "SSH1"))
        self.assertEqual(self.log_streams, [err])
        self.assertEqual(out.getvalue(), "")
        self.assertTrue(err.getvalue().startswith(banner() + "\n"))

    def test_nonzero_result_is_exit_code(self) -> None:
        self.result = 1
        e = self.assertRaises(
            SystemExit,
            cli.main,
            ["-t", TOKEN, "-r", "us-east-1", "-s", "5555"],
            {},
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
        self.assertEqual(e.code, 1)
