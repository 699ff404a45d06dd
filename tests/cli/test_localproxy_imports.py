"""
What the ``localproxy`` console script imports: only what the run uses (issue 22).

An ssh ``ProxyCommand`` starts a proxy for every ssh command, so every module
imported at start-up is paid again and again.  Each test runs the console
script as a real process against the local tunnel service, in a child that
writes the names in C{sys.modules} each time the proxy logs something, and
reads them once the run has done what it was started for (listened and
carried its first connection, connected through a web proxy, ...).  A
feature's modules must be absent when it is not asked for and present when
it is, so each test can fail both ways.  No timing here: bench/bench_startup.py
measures the time.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional, Set, cast

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.protocol.constants import Mode
from tests.support.e2e import Echo, ProcessTestCase, endpoint_args
from tests.support.helpers import ChildProcess, child_environ, free_port, spawn_child
from tests.support.payloads import assert_same_bytes, unique_payload

#: The child: the console script's own import first, as setup.py's entry point
#: does, then an observer that writes every imported module's name (and which
#: of them are still lazy, not run yet) to the file named in the environment.
CHILD = """
import gc, importlib.util, json, os, sys
from aws_localproxy.cli.localproxy import main
from twisted.logger import globalLogPublisher

path = os.environ["LOCALPROXY_TEST_MODULES"]

def dump(event):
    modules = dict(sys.modules)
    lazy = [name for name, module in modules.items() if type(module) is importlib.util._LazyModule]
    with open(path + ".new", "w") as f:
        json.dump({"modules": sorted(modules), "lazy": lazy,
                   "switch": os.environ.get("AUTOBAHN_USE_NVX"),
                   "collector": [gc.isenabled(), gc.get_freeze_count()]}, f)
    os.replace(path + ".new", path)

globalLogPublisher.addObserver(dump)
sys.exit(main())
"""

#: Modules that a plain source, destination or --stdio run never needs.
NEVER_ON_A_PLAIN_RUN = (
    # What --metrics-port serves with.
    "prometheus_client",
    "aws_localproxy.metrics.prometheus",
    "twisted.web.server",
    # The web proxies' protocols (https_proxy).
    "aws_localproxy.upstream.webproxy.httpconnect",
    "aws_localproxy.upstream.webproxy.socks",
    # What a Twisted endpoint description (-s SSH1=unix:/path) is checked with:
    # Twisted's endpoint plugins and a memory reactor (which brings trial).
    "twisted.plugins",
    "twisted.internet.testing",
    "twisted.trial",
    # Brought by Twisted's compat module, deferred by the console script.
    "http.cookiejar",
    "urllib.request",
    "http.client",
    # Autobahn's own NVX classes, and the C parser their declarations need:
    # the proxy masks with Autobahn's compiled NVX module directly.
    "autobahn.nvx",
    "pycparser",
    # Other programs of the project.
    "aws_localproxy.tunnelservice",
    "aws_localproxy.agent",
    "aws_localproxy.local.inprocess",
    "aws_localproxy.demo",
    # Version lookups through the installed metadata.
    "importlib.metadata",
    "pkg_resources",
)


class ImportedModules:
    """The modules of one child run, as its last dump had them."""

    def __init__(self, data: Dict[str, List[str]]) -> None:
        self.lazy: Set[str] = set(data["lazy"])
        #: AUTOBAHN_USE_NVX in the proxy's environment once it ran.
        self.switch = data["switch"]
        #: Whether the garbage collector runs, and how many objects are frozen.
        self.collector_on, self.frozen = data["collector"]
        #: Imported and run (a lazy module that was never used is not).
        self.loaded: Set[str] = set(data["modules"]) - self.lazy

    def loaded_of(self, names: Any) -> List[str]:
        """Those of C{names} loaded, or a submodule of which was loaded."""
        return sorted(
            name
            for name in names
            if any(m == name or m.startswith(name + ".") for m in self.loaded)
        )


class ConsoleScriptImportTests(ProcessTestCase):
    timeout = 60

    def spawn_logged(
        self, token: str, *args: str, env: Optional[Dict[str, str]] = None
    ) -> ChildProcess:
        """The console script with C{args} against the test's service, dumping its modules."""
        self.dump = os.path.abspath(self.mktemp())
        process = ChildProcess()
        environ = child_environ(
            {
                "AWSIOT_TUNNEL_ACCESS_TOKEN": token,
                "LOCALPROXY_TEST_MODULES": self.dump,
                **(env or {}),
            }
        )
        argv = [sys.executable, "-c", CHILD, *endpoint_args(self.tunnel_service), *args]
        self.transport = spawn_child(self, process, argv, environ, self.mktemp_dir())
        return process

    def modules(self) -> ImportedModules:
        with open(self.dump) as f:
            return ImportedModules(json.load(f))

    def assert_plain(self, modules: ImportedModules) -> None:
        self.assertEqual(modules.loaded_of(NEVER_ON_A_PLAIN_RUN), [])
        # Autobahn's switch was set for its import only: nothing the proxy starts inherits it.
        self.assertIsNone(modules.switch)
        # The collector was paused for the imports only, and their objects frozen.
        self.assertTrue(modules.collector_on)
        self.assertGreater(modules.frozen, 10000)
        # What every run needs is there: the dump saw the whole start-up.
        self.assertEqual(
            modules.loaded_of(["autobahn", "OpenSSL", "twisted.internet.reactor"]),
            ["OpenSSL", "autobahn", "twisted.internet.reactor"],
        )

    @inlineCallbacks
    def run_source(self, *args: str, env: Optional[Dict[str, str]] = None) -> Any:
        """
        A source for service ``ssh`` with C{args} (which say where it
        listens), until it listened and carried one connection to its end;
        fires with its modules.
        """
        echo_port = yield self.listen(Echo)
        _, source_token, _ = yield self.destination_to(echo_port)
        process = self.spawn_logged(source_token, *args, env=env)
        yield process.wait_for("Listening for new connection on port")
        port = int(process.output.split(b"Listening for new connection on port ")[1].split()[0])
        payload = unique_payload(4096)
        client = yield self.echo_within(port, payload)
        assert_same_bytes(self, client.value(), payload)
        client.transport.loseConnection()
        yield process.wait_for("Disconnected from")
        return self.modules()

    @inlineCallbacks
    def test_source(self) -> Any:
        modules = yield self.run_source("-s", f"ssh={free_port()}", "-b", "127.0.0.1")
        self.assert_plain(modules)
        # The lazy module is there, and was never run.
        self.assertIn("http.cookiejar", modules.lazy)

    @inlineCallbacks
    def test_destination(self) -> Any:
        echo_port = yield self.listen(Echo)
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        process = self.spawn_logged(destination_token, "-d", f"ssh=127.0.0.1:{echo_port}")
        yield process.wait_for("Successfully established websocket connection")
        source = self.proxy(Mode.SOURCE, source_token, {"ssh": "0"})
        port = yield source.listening_port("ssh")
        payload = unique_payload(4096)
        client = yield self.echo_within(port, payload)
        assert_same_bytes(self, client.value(), payload)
        client.transport.loseConnection()
        yield process.wait_for("Disconnected from")
        self.assert_plain(self.modules())

    @inlineCallbacks
    def test_stdio(self) -> Any:
        echo_port = yield self.listen(Echo)
        _, source_token, _ = yield self.destination_to(echo_port)
        process = self.spawn_logged(source_token, "--stdio")
        payload = unique_payload(4096)
        self.transport.write(payload)
        yield process.wait_for_stdout(len(payload))
        assert_same_bytes(self, process.stdout, payload)
        self.transport.closeStdin()
        yield process.ended
        self.assert_plain(self.modules())

    @inlineCallbacks
    def test_autobahn_nvx_switch_set_by_the_user(self) -> Any:
        """``AUTOBAHN_USE_NVX=1`` is obeyed: Autobahn's own NVX classes, and pycparser for them."""
        modules = yield self.run_source(
            "-s", f"ssh={free_port()}", "-b", "127.0.0.1", env={"AUTOBAHN_USE_NVX": "1"}
        )
        self.assertEqual(
            modules.loaded_of(["autobahn.nvx", "pycparser"]), ["autobahn.nvx", "pycparser"]
        )
        self.assertEqual(modules.switch, "1")

    @inlineCallbacks
    def test_metrics_port(self) -> Any:
        """``--metrics-port`` brings the Prometheus page, and the stdlib it needs."""
        modules = yield self.run_source(
            "-s", f"ssh={free_port()}", "-b", "127.0.0.1", "--metrics-port", "0"
        )
        self.assertEqual(
            modules.loaded_of(
                ["prometheus_client", "aws_localproxy.metrics.prometheus", "twisted.web.server"]
            ),
            ["aws_localproxy.metrics.prometheus", "prometheus_client", "twisted.web.server"],
        )
        # prometheus_client runs the deferred module: it is loaded when used.
        self.assertEqual(
            modules.loaded_of(["http.cookiejar", "urllib.request"]), ["urllib.request"]
        )

    @inlineCallbacks
    def test_endpoint_description(self) -> Any:
        """A Twisted endpoint description is checked with the endpoint plugins."""
        modules = yield self.run_source("-s", f"ssh=tcp:{free_port()}:interface=127.0.0.1")
        self.assertIn("twisted.plugins", modules.loaded_of(["twisted.plugins"]))
        self.assertIn("twisted.internet.testing", modules.loaded)

    @inlineCallbacks
    def test_web_proxy(self) -> Any:
        """With ``https_proxy``, the proxy's protocol is imported (and only that one)."""
        _, source_token, _ = self.tunnel_service.open_tunnel(["ssh"])
        process = self.spawn_logged(
            source_token,
            "-s",
            f"ssh={free_port()}",
            env={"https_proxy": f"http://127.0.0.1:{free_port()}"},
        )
        yield process.wait_for("Attempting to establish web socket connection")
        modules = self.modules()
        self.assertEqual(
            modules.loaded_of(
                [
                    "aws_localproxy.upstream.webproxy.httpconnect",
                    "aws_localproxy.upstream.webproxy.socks",
                ]
            ),
            [
                "aws_localproxy.upstream.webproxy.httpconnect",
                "aws_localproxy.upstream.webproxy.socks",
            ],
        )


class OptionsOnlyImportTests(ProcessTestCase):
    """``--help`` and ``--version`` import neither the reactor nor TLS nor the WebSocket."""

    def run_action(self, *args: str) -> Any:
        process = ChildProcess()
        argv = [
            sys.executable,
            "-c",
            "import json, sys\n"
            "from aws_localproxy.cli.localproxy import main\n"
            "code = main()\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
            "sys.exit(code)\n",
            *args,
        ]
        spawn_child(self, process, argv, child_environ(), self.mktemp_dir())
        return process.ended.addCallback(lambda code: (code, process))

    @inlineCallbacks
    def test_help_and_version(self) -> Any:
        for action in ("--help", "--version"):
            code, process = yield self.run_action(action)
            self.assertEqual(code, 0, process.output.decode())
            modules = json.loads(process.stderr.splitlines()[-1])
            heavy = [
                "twisted.internet.reactor",
                "twisted.internet.endpoints",
                "twisted.internet.defer",
                "OpenSSL",
                "autobahn",
            ]
            self.assertEqual([m for m in heavy if m in modules], [], action)
            self.assertIn("aws_localproxy.cli.options", modules)


class ImportedAlreadyTests(SynchronousTestCase):
    """
    Where the proxy was imported before the console script's run (an
    application, these tests), the run leaves the process as it is: the
    collector is not paused nor anything frozen, Autobahn's switch not set.
    """

    def test_run_changes_nothing(self) -> None:
        import gc

        from twisted.internet import task

        from aws_localproxy.cli import localproxy
        from aws_localproxy.proxy import service  # noqa: F401 - imported already, the point

        ran: List[Any] = []
        self.patch(task, "react", ran.append)
        frozen = gc.get_freeze_count()
        localproxy._run(cast(ProxyConfig, None))
        self.assertEqual(len(ran), 1)
        self.assertEqual(gc.get_freeze_count(), frozen)
        self.assertTrue(gc.isenabled())
        self.assertNotIn("AUTOBAHN_USE_NVX", os.environ)
