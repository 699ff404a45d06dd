"""contrib/systemd/aws-localproxy-agent.service: systemd accepts it, and its --config example parses."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SkipTest, TestCase

from aws_localproxy.agent.options import AgentOptions

ROOT = Path(__file__).resolve().parent.parent.parent
UNIT = ROOT / "contrib" / "systemd" / "aws-localproxy-agent.service"
EXAMPLE = ROOT / "contrib" / "systemd" / "agent.conf.example"
INSTALLED_PROGRAM = "/opt/aws-localproxy/bin/localproxy-agent"


class AgentUnitTests(TestCase):
    def test_systemd_accepts_it(self) -> None:
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed (Debian package: systemd)")
        program = shutil.which("localproxy-agent") or str(
            Path(sys.executable).with_name("localproxy-agent")
        )
        if not Path(program).exists():
            program = sys.executable
        directory = Path(tempfile.mkdtemp(prefix="aws-localproxy-agent-unit-"))
        self.addCleanup(shutil.rmtree, directory, True)
        text = UNIT.read_text()
        self.assertIn(INSTALLED_PROGRAM, text)
        copy = directory / UNIT.name
        copy.write_text(text.replace(INSTALLED_PROGRAM, program))
        result = subprocess.run(
            [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
        )
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_config_example_parses(self) -> None:
        options = AgentOptions(environ={})
        options.parseOptions(["--config", str(EXAMPLE)])
        agent = options.agent
        assert agent is not None
        self.assertEqual(agent.thing_name, "my-device")
        self.assertEqual(agent.broker.port, 8883)
        self.assertEqual(agent.max_tunnels, 4)
        self.assertEqual(dict(agent.template.service_map), {"SSH": "22"})
