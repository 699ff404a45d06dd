"""
The single-file executable (``scripts/build-executable``, docs/executable.md)
run for real: it is the pip-installed commands in one file.

 - Its three commands, started through links of their names and through
   the first-argument form, answer ``--version``, ``--help`` and a usage
   error with the same bytes on stdout and stderr and the same exit code as
   the pip-installed console scripts of this test run's Python.
 - The demo's path with nothing but the executable: ``localtunnel``, a
   destination and a source ``localproxy``; the tunnel opened through the
   management API, a mebibyte each way through it, a close from each end,
   CloseTunnel, and each process's exit code.  Neither proxy may log the
   pure-Python masking warning (both mask every frame they send), and the
   tunnel's messages are protobuf all the way.
 - ``ssh`` with the executable's ``localproxy --stdio`` as its ProxyCommand
   reaches a real sshd.
 - ``--self-check`` passes: every module of the checkout imports inside the
   file, NVX masks, protobuf runs on the build's runtime.  It is what fails
   when the build misses a module (docs/executable.md shows it failing).

Which file: ``LOCALPROXY_EXECUTABLE`` (``scripts/test`` builds it and sets
it).  Without it these tests fail under CI, where the executable must have
been built; elsewhere they build it once with ``scripts/build-executable``
(about a minute and a half) into build/executable/, or reuse that build
while it is newer than the sources.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import Factory
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from aws_localproxy.demo import api_call
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.upstream.masking import SLOW_MASKING_WARNING
from tests.support.e2e import Apps, Client, E2ETestCase, EchoingCollector, listen
from tests.support.helpers import (
    PROJECT_ROOT,
    ChildProcess,
    child_environ,
    free_port,
    spawn_child,
)
from tests.support.payloads import assert_same_bytes, unique_stream
from tests.support.sshd import require_openssh, ssh_argv, sshd_listening, start_sshd

#: The console scripts of setup.py, each with the module whose C{main} it runs.
COMMANDS = {
    "localproxy": "aws_localproxy.cli.localproxy",
    "localtunnel": "aws_localproxy.tunnelservice.cli",
    "localproxy-agent": "aws_localproxy.agent.cli",
}

#: What scripts/build-executable builds by default, and what it is built from.
DEFAULT_BUILD = os.path.join(PROJECT_ROOT, "build", "executable", "aws-localproxy")
_SOURCES = ("aws_localproxy", "packaging", "setup.py", os.path.join("scripts", "build-executable"))

_built: Optional[str] = None


def _newest_source() -> float:
    newest = 0.0
    for name in _SOURCES:
        path = os.path.join(PROJECT_ROOT, name)
        for directory, _, files in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
            for file in files:
                if not file.endswith((".pyc", ".pyo")):
                    newest = max(newest, os.stat(os.path.join(directory, file)).st_mtime)
    return newest


def executable(test: TestCase) -> str:
    """
    The executable under test (see the module docstring); fails C{test} if
    there is none and it may not be built here.
    """
    global _built
    path = os.environ.get("LOCALPROXY_EXECUTABLE")
    if path:
        if not os.access(path, os.X_OK):
            test.fail(f"LOCALPROXY_EXECUTABLE={path} is not an executable file")
        return path
    if os.environ.get("CI"):
        test.fail(
            "the executable was not built: LOCALPROXY_EXECUTABLE is not set (scripts/test "
            "builds it with scripts/build-executable and sets it)"
        )
    if _built is None:
        os.makedirs(os.path.join(PROJECT_ROOT, "build"), exist_ok=True)
        # One build for all of trial's workers: the others wait, then reuse it.
        with open(os.path.join(PROJECT_ROOT, "build", "executable.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fresh = os.path.exists(DEFAULT_BUILD) and (
                os.stat(DEFAULT_BUILD).st_mtime > _newest_source()
            )
            if not fresh:
                build = subprocess.run(
                    ["bash", os.path.join(PROJECT_ROOT, "scripts", "build-executable")],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                if build.returncode != 0:
                    test.fail(
                        "scripts/build-executable failed:\n" + build.stdout.decode(errors="replace")
                    )
        _built = DEFAULT_BUILD
    return _built


def linked(test: TestCase, command: str) -> str:
    """A symlink named C{command} to the executable, in a new directory of the test's."""
    directory = os.path.abspath(test.mktemp())
    os.makedirs(directory)
    link = os.path.join(directory, command)
    os.symlink(os.path.abspath(executable(test)), link)
    return link


def executable_environ(extra: Mapping[str, str] = {}) -> Dict[str, str]:
    """
    The executable's environment: the test's without C{PYTHONPATH} (a
    bundle takes no code from outside; had it, it would not be tested),
    nor the access token variables, plus C{extra}.
    """
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWSIOT_TUNNEL_", "PYTHON")) and k != "LOCALPROXY_EXECUTABLE"
    }
    environ.update(extra)
    return environ


def pip_installed(command: str) -> List[str]:
    """
    The argv of console script C{command} as pip installed it beside this
    test run's Python; where it is not there, that script's two lines.
    """
    script = os.path.join(os.path.dirname(sys.executable), command)
    if os.path.exists(script):
        return [script]
    return [
        sys.executable,
        "-c",
        f"import sys; sys.argv[0] = {command!r}; from {COMMANDS[command]} import main; "
        "sys.exit(main())",
    ]


@inlineCallbacks
def outcome(
    test: TestCase, argv: Sequence[str], pip: bool = False, env: Mapping[str, str] = {}
) -> Any:
    """
    Run C{argv} (the pip-installed command if C{pip}) in a new directory,
    with C{env} added to its environment; fires with (exit code, stdout, stderr).
    """
    directory = test.mktemp()
    os.makedirs(directory)
    out, err, code = yield getProcessOutputAndValue(
        argv[0],
        list(argv[1:]),
        env=child_environ(env) if pip else executable_environ(env),
        path=directory,
        reactor=reactor,
    )
    return code, out, err


#: The time and thread at the start of each of the proxy's log lines.
_LOG_PREFIX = re.compile(rb"^\[[0-9: .-]+\] \(0x[0-9a-f]+\) ", re.MULTILINE)


def _untimed(result: Tuple[int, bytes, bytes]) -> Tuple[int, bytes, bytes]:
    code, out, err = result
    return code, _LOG_PREFIX.sub(b"", out), _LOG_PREFIX.sub(b"", err)


class CommandLineTests(TestCase):
    """The executable's commands say and exit exactly what the pip-installed ones do."""

    timeout = 120

    @inlineCallbacks
    def assert_same_as_pip(
        self,
        command: str,
        *args: str,
        env: Mapping[str, str] = {},
        logged: bool = False,
        first_argument: bool = False,
    ) -> Any:
        """
        C{command ARGS} through a link named C{command} (and as
        ``aws-localproxy command ARGS`` too if C{first_argument}) gives the
        pip-installed script's exit code, stdout and stderr, byte for byte
        (but for the time and thread of each log line when C{logged});
        fires with them.
        """
        expected = yield outcome(self, [*pip_installed(command), *args], pip=True, env=env)
        forms = [("a link", [linked(self, command), *args])]
        if first_argument:
            forms.append(("the first argument", [executable(self), command, *args]))
        for form, argv in forms:
            got = yield outcome(self, argv, env=env)
            self.assertEqual(
                _untimed(got) if logged else got,
                _untimed(expected) if logged else expected,
                f"{command} {' '.join(args)} named by {form} differs from the pip-installed one",
            )
        return expected

    @inlineCallbacks
    def test_version(self) -> Any:
        for command in COMMANDS:
            code, out, _ = yield self.assert_same_as_pip(command, "--version")
            self.assertEqual(code, 0)
            self.assertIn(b"0.", out)

    @inlineCallbacks
    def test_help(self) -> Any:
        """Also through the first argument: the help names the command, not the file."""
        for command in COMMANDS:
            code, out, err = yield self.assert_same_as_pip(command, "--help", first_argument=True)
            self.assertEqual(code, 0)
            self.assertIn(b"--version", out + err)

    @inlineCallbacks
    def test_usage_error(self) -> Any:
        for command in COMMANDS:
            code, _, err = yield self.assert_same_as_pip(command, "--no-such-option")
            self.assertNotEqual(code, 0)
            self.assertIn(b"no-such-option", err)

    @inlineCallbacks
    def test_configuration_error(self) -> Any:
        """A value the options refuse (a port out of range) is logged as fatal, the same way."""
        code, _, err = yield self.assert_same_as_pip(
            "localproxy",
            "-r",
            "us-east-1",
            "-s",
            "70000",
            env={"AWSIOT_TUNNEL_ACCESS_TOKEN": "not-a-token"},
            logged=True,
        )
        self.assertEqual(code, 1)
        self.assertIn(b"[fatal] Port must be between 1 and 65535", err)

    @inlineCallbacks
    def test_own_options(self) -> Any:
        """The file's own --version and --help; without a command it exits 1 and says why."""
        program = executable(self)
        code, out, _ = yield outcome(self, [program, "--version"])
        self.assertEqual((code, out.split()[0]), (0, b"aws-localproxy"))
        code, out, _ = yield outcome(self, [program, "--help"])
        self.assertEqual(code, 0)
        for command in COMMANDS:
            self.assertIn(command.encode(), out)
        for argv in ([program], [program, "localproxyy"]):
            code, out, err = yield outcome(self, argv)
            self.assertEqual((code, out), (1, b""))
            self.assertIn(b"Try 'aws-localproxy --help'", err)

    @inlineCallbacks
    def test_self_check(self) -> Any:
        """Every module of the checkout imports inside the file, NVX masks, protobuf works."""
        code, out, err = yield outcome(self, [executable(self), "--self-check"])
        self.assertEqual(code, 0, (out + err).decode(errors="replace"))
        self.assertIn(b"WebSocket masker: nvx", out)
        self.assertNotIn(b"FAIL", out)
        self.assertTrue(out.endswith(b"self-check: ok\n"), out)


class DemoFlowTests(TestCase):
    """
    The demo's path (aws_localproxy/demo.py) with every process the
    executable: the local tunnel service, a destination and a source.
    """

    timeout = 120

    def spawn(self, command: str, *args: str, token: Optional[str] = None) -> ChildProcess:
        """
        C{command ARGS} through a link named C{command}, with access token
        C{token} in its environment.  It is stopped after the test with
        SIGTERM, which the executable's launcher passes on: SIGKILL would
        stop only the launcher and leave the command running.
        """
        process = ChildProcess()
        directory = self.mktemp()
        os.makedirs(directory)
        environ = executable_environ({"AWSIOT_TUNNEL_ACCESS_TOKEN": token} if token else {})
        transport = spawn_child(
            self, process, [linked(self, command), *args], environ, path=directory
        )

        def terminate() -> Any:
            if process.exited:
                return None
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                return None
            return process.ended

        self.addCleanup(terminate)
        return process

    @inlineCallbacks
    def test_demo_flow(self) -> Any:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        ready_file = os.path.join(workdir, "ready.json")
        service = self.spawn(
            "localtunnel",
            "--port",
            "0",
            "--cert-dir",
            os.path.join(workdir, "certs"),
            "--ready-file",
            ready_file,
        )
        yield service.wait_for("Management API:")  # the banner, after the ready file
        with open(ready_file) as f:
            ready = json.load(f)
        opened = api_call(ready, "OpenTunnel", {"destinationConfig": {"services": ["demo"]}})

        apps = Apps(EchoingCollector)
        app_port = yield listen(self, apps)
        common = ["-e", ready["endpoint"], "-c", ready["capath"]]
        destination = self.spawn(
            "localproxy",
            *common,
            "-d",
            f"demo=127.0.0.1:{app_port}",
            token=opened["destinationAccessToken"],
        )
        yield destination.wait_for("Successfully established websocket connection")
        port = free_port()
        source = self.spawn(
            "localproxy",
            *common,
            "-s",
            f"demo={port}",
            "-b",
            "127.0.0.1",
            token=opened["sourceAccessToken"],
        )
        yield source.wait_for(f"Listening for new connection on port {port}")
        tunnel = api_call(ready, "DescribeTunnel", {"tunnelId": opened["tunnelId"]})["tunnel"]
        self.assertEqual(
            (
                tunnel["sourceConnectionState"]["status"],
                tunnel["destinationConnectionState"]["status"],
            ),
            ("CONNECTED", "CONNECTED"),
        )

        # A mebibyte up and back: each proxy masks every frame it sends.
        upload = unique_stream(0, 1 << 20, seed=1)
        first = yield self.connect(port)
        first.transport.write(upload)
        echoed = yield first.wait_for(len(upload))
        assert_same_bytes(self, echoed, upload)
        # A close from the source's end reaches the application ...
        first.transport.loseConnection()
        received, _ = yield apps.made[0].closed
        assert_same_bytes(self, received, upload)
        # ... and one from the application reaches the client.
        second = yield self.connect(port)
        second.transport.write(b"second connection")
        yield second.wait_for(17)
        apps.made[1].transport.loseConnection()
        self.assertEqual((yield second.closed), b"second connection")

        api_call(ready, "CloseTunnel", {"tunnelId": opened["tunnelId"]})
        self.assertEqual((yield source.ended), 0, source.output.decode(errors="replace"))
        self.assertEqual((yield destination.ended), 0, destination.output.decode(errors="replace"))
        for process, mode in ((source, Mode.SOURCE), (destination, Mode.DESTINATION)):
            self.assertIn(f"Starting proxy in {mode.value} mode".encode(), process.output)
            for line in SLOW_MASKING_WARNING:
                self.assertNotIn(
                    line.encode(), process.output, f"the {mode.value} masks in pure Python"
                )
        service.transport.signalProcess("TERM")  # type: ignore[attr-defined]
        self.assertEqual((yield service.ended), 0, service.output.decode(errors="replace"))

    @inlineCallbacks
    def connect(self, port: int) -> Any:
        client = Client()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            Factory.forProtocol(lambda: client)
        )
        self.addCleanup(_abort, client)
        return client


def _abort(client: Client) -> None:
    if not client.closed.called:
        client.transport.abortConnection()  # type: ignore[attr-defined]


class SystemdUnitTests(TestCase):
    """The units of contrib/systemd take the executable's links in place of the pip-installed scripts."""

    def test_units_accept_the_links(self) -> None:
        """
        C{systemd-analyze verify} (which checks that C{ExecStart}'s program
        is executable) accepts each unit with the program replaced by a link
        to the executable, and prints nothing.
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed (Debian package: systemd)")
        units = os.path.join(PROJECT_ROOT, "contrib", "systemd")
        for unit, command in (
            ("aws-localproxy-destination.service", "localproxy"),
            ("aws-localproxy-agent.service", "localproxy-agent"),
        ):
            with open(os.path.join(units, unit)) as f:
                text = f.read()
            installed = f"/opt/aws-localproxy/bin/{command} "
            self.assertIn(installed, text)
            copy = os.path.join(os.path.abspath(self.mktemp()), unit)
            os.makedirs(os.path.dirname(copy))
            with open(copy, "w") as f:
                f.write(text.replace(installed, linked(self, command) + " "))
            result = subprocess.run(
                [analyze, "verify", copy], capture_output=True, text=True, timeout=60
            )
            self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""), unit)


class StdioSSHTests(E2ETestCase):
    """``ssh`` through the executable's ``localproxy --stdio`` as its ProxyCommand, to a real sshd."""

    def setUp(self) -> Any:
        require_openssh()
        return super().setUp()

    @inlineCallbacks
    def test_ssh_proxy_command(self) -> Any:
        sshd = start_sshd(self)
        yield sshd_listening(sshd.port)
        _, token, _ = yield self.destination_to(sshd.port, ["SSH1"])
        service = self.tunnel_service
        proxy_command = (
            f"{linked(self, 'localproxy')} -e {service.endpoint} -c {service.capath} --stdio SSH1"
        )
        process = ChildProcess()
        spawn_child(
            self,
            process,
            ssh_argv(proxy_command, sshd.user_key, "echo ok"),
            executable_environ({"AWSIOT_TUNNEL_ACCESS_TOKEN": token}),
            executable=shutil.which("ssh"),
        )
        code: Tuple[int, bytes] = (yield process.ended), process.stdout
        self.assertEqual(
            code,
            (0, b"ok\n"),
            f"ssh stderr:\n{process.stderr.decode()}\nsshd:\n{sshd.log_text()}",
        )
        self.assertNotIn(token.encode(), process.stderr)
