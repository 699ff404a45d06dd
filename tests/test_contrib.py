"""
The files in contrib/ and the Dockerfile: the systemd unit is one systemd
accepts (``systemd-analyze verify``, no warnings) with the hardening it
claims, its example environment file fits it, and the Dockerfile keeps its
promises (slim base, non-root user, ``localproxy`` as the entry point).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from twisted.trial.unittest import SkipTest, TestCase

from aws_localproxy.cli.options import parse_port_mapping

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "systemd" / "aws-localproxy-destination.service"
ENV_EXAMPLE = ROOT / "contrib" / "systemd" / "destination.env.example"
DOCKERFILE = ROOT / "Dockerfile"
INSTALLED_PROGRAM = "/opt/aws-localproxy/bin/localproxy"


def _unit_settings(text: str) -> Dict[str, List[str]]:
    """Every ``Key=value`` of a unit file, keyed by ``Section.Key``, in order."""
    settings: Dict[str, List[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def _env_file(text: str) -> Dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _systemd_analyze() -> str:
    program = shutil.which("systemd-analyze")
    if program is None:
        raise SkipTest(
            "systemd-analyze is not installed (Debian package: systemd); the unit file is unchecked"
        )
    return program


class SystemdUnitTests(TestCase):
    def setUp(self) -> None:
        self.text = UNIT.read_text()
        self.settings = _unit_settings(self.text)

    def verifiable_copy(self) -> Path:
        """
        The unit with C{ExecStart} pointing at a program that exists here:
        C{systemd-analyze verify} checks that the command is executable.
        """
        program = shutil.which("localproxy") or str(Path(sys.executable).with_name("localproxy"))
        if not Path(program).exists():
            program = sys.executable
        directory = Path(tempfile.mkdtemp(prefix="aws-localproxy-unit-"))
        self.addCleanup(shutil.rmtree, directory, True)
        copy = directory / UNIT.name
        self.assertIn(INSTALLED_PROGRAM, self.text)
        copy.write_text(self.text.replace(INSTALLED_PROGRAM, program))
        return copy

    def test_systemd_accepts_it(self) -> None:
        """C{systemd-analyze verify} exits 0 and prints nothing: no unknown keys, no bad values."""
        analyze = _systemd_analyze()
        result = subprocess.run(
            [analyze, "verify", str(self.verifiable_copy())],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_exposure_is_low(self) -> None:
        """
        C{systemd-analyze security} rates the unit at most 2.0 (its "OK"
        band): the hardening settings are all recognised and in effect.
        """
        analyze = _systemd_analyze()
        result = subprocess.run(
            [
                analyze,
                "security",
                "--offline=true",
                "--threshold=20",
                str(self.verifiable_copy()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        verdict = (result.stdout.strip().splitlines() or [""])[-1]
        self.assertEqual(result.returncode, 0, verdict + result.stderr)
        self.assertIn("Overall exposure level", verdict)

    def test_tokens_from_environment_file(self) -> None:
        """
        The access token comes from the environment file, never the command
        line (where C{ps} shows it), and the client token is kept in the
        state directory, so a restart can reconnect with the same access token.
        """
        self.assertEqual(
            self.settings["Service.EnvironmentFile"], ["/etc/aws-localproxy/destination.env"]
        )
        [exec_start] = self.settings["Service.ExecStart"]
        self.assertNotRegex(exec_start, r"(^|\s)(-t|--access-token|-i|--client-token)(\s|=|$)")
        self.assertIn("--client-token-file /var/lib/aws-localproxy/client-token", exec_start)
        self.assertEqual(self.settings["Service.StateDirectory"], ["aws-localproxy"])

    def test_restart_and_hardening(self) -> None:
        expected = {
            "Service.Restart": "on-failure",
            "Service.DynamicUser": "yes",
            "Service.NoNewPrivileges": "yes",
            "Service.ProtectSystem": "strict",
            "Service.ProtectHome": "yes",
            "Service.PrivateTmp": "yes",
            "Service.CapabilityBoundingSet": "",
            "Service.UMask": "0077",
        }
        self.assertEqual({key: self.settings.get(key, [None])[-1] for key in expected}, expected)

    def test_example_environment_fits_the_unit(self) -> None:
        """
        The example defines every variable C{ExecStart} uses, leaves the
        token empty, and its C{-d} mapping is one the proxy accepts.
        """
        example = _env_file(ENV_EXAMPLE.read_text())
        [exec_start] = self.settings["Service.ExecStart"]
        used = set(re.findall(r"\$\{(\w+)\}", exec_start))
        self.assertTrue(used)
        self.assertLessEqual(used, set(example))
        self.assertEqual(example["AWSIOT_TUNNEL_ACCESS_TOKEN"], "")
        self.assertEqual(
            parse_port_mapping(
                example["LOCALPROXY_DESTINATION_APP"], "destination-app", source=False
            ),
            {"SSH1": "22"},
        )


class DockerfileTests(TestCase):
    """Static checks: no Docker engine here, so the image itself is not built."""

    def setUp(self) -> None:
        self.lines = [
            line.strip()
            for line in DOCKERFILE.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]

    def last_stage(self) -> List[str]:
        starts = [i for i, line in enumerate(self.lines) if line.startswith("FROM ")]
        return self.lines[starts[-1] :]

    def test_slim_base(self) -> None:
        self.assertEqual(self.last_stage()[0], "FROM python:3.11-slim")

    def test_runs_as_non_root(self) -> None:
        users = [line.split()[1] for line in self.last_stage() if line.startswith("USER ")]
        self.assertEqual(len(users), 1)
        self.assertNotIn(users[0].split(":")[0], ("root", "0"))

    def test_entry_point(self) -> None:
        self.assertIn('ENTRYPOINT ["localproxy"]', self.last_stage())

    def test_context_leaves_out_local_state(self) -> None:
        """The build context has no virtual environment, git history or keys."""
        ignored = (ROOT / ".dockerignore").read_text().split()
        for entry in (".git", ".venv", "*.pem", "*.key"):
            self.assertIn(entry, ignored)
