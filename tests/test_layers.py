"""
The architecture's rules hold, and their checks can fail.

The import contracts (``.importlinter``, run by ``lint-imports`` in
scripts/lint and ``tox -e lint``) pass on this tree, and fail, naming the
contract, on a copy of the package with one forbidden import added.  The
metrics read other layers' objects through public figures only: an AST scan
of C{aws_localproxy/metrics} finds no C{x._name} on anything but C{self} or
C{cls}.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from typing import List, Tuple

from twisted.trial.unittest import SynchronousTestCase

import aws_localproxy

PACKAGE = os.path.dirname(os.path.abspath(aws_localproxy.__file__))
ROOT = os.path.dirname(PACKAGE)
CONFIG = os.path.join(ROOT, ".importlinter")

#: The contracts' names, as lint-imports prints them.
LAYERS = "Layers import only downwards"
NO_IO = "The protocol core imports nothing of Twisted's reactor or transports"
ACYCLIC = "No import cycles, between the layers or inside one"


def lint_imports(project: str) -> Tuple[int, str]:
    """
    Run lint-imports on the package in C{project} (its exit code and output):
    it puts its working directory first on the path, so that copy is the one
    checked, with the contracts of this tree.
    """
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
            "--no-logo",
            CONFIG,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr


class ContractTests(SynchronousTestCase):
    def copy_with(self, module: str, line: str) -> str:
        """A copy of the package, C{line} added at the end of its C{module} (a relative path)."""
        project = self.mktemp()
        shutil.copytree(PACKAGE, os.path.join(project, "aws_localproxy"))
        with open(os.path.join(project, "aws_localproxy", module), "a") as f:
            f.write(f"\n{line}\n")
        return project

    def test_this_tree_keeps_every_contract(self) -> None:
        code, output = lint_imports(ROOT)
        self.assertEqual(code, 0, output)
        self.assertIn("0 broken", output)

    def test_core_importing_a_layer_above_fails(self) -> None:
        """The protocol core importing the connector breaks the layers, and makes a cycle."""
        project = self.copy_with("protocol/wire.py", "import aws_localproxy.upstream.connector")
        code, output = lint_imports(project)
        self.assertNotEqual(code, 0, output)
        self.assertIn(f"{LAYERS} BROKEN", output)
        self.assertIn("aws_localproxy.protocol is not allowed to import aws_localproxy.upstream", output)
        self.assertIn("aws_localproxy.protocol.wire -> aws_localproxy.upstream.connector", output)
        self.assertIn(f"{ACYCLIC} BROKEN", output)
        self.assertIn(f"{NO_IO} KEPT", output)

    def test_core_importing_the_reactor_fails(self) -> None:
        """The protocol core importing Twisted's reactor breaks its own contract, and only that."""
        project = self.copy_with("protocol/scheduler.py", "from twisted.internet import reactor")
        code, output = lint_imports(project)
        self.assertNotEqual(code, 0, output)
        self.assertIn(f"{NO_IO} BROKEN", output)
        self.assertIn("aws_localproxy.protocol.scheduler -> twisted.internet.reactor", output)
        self.assertIn(f"{LAYERS} KEPT", output)

    def test_local_and_upstream_are_independent(self) -> None:
        project = self.copy_with("local/source.py", "import aws_localproxy.upstream.link")
        code, output = lint_imports(project)
        self.assertNotEqual(code, 0, output)
        self.assertIn(f"{LAYERS} BROKEN", output)
        self.assertIn("aws_localproxy.local.source -> aws_localproxy.upstream.link", output)


def private_reads(source: str) -> List[Tuple[int, str]]:
    """
    Every C{x._name} in C{source} where C{x} is not C{self} or C{cls}
    (dunders are not private): (line, the expression).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append((node.lineno, ast.unparse(node)))
    return found


class MetricsReadPublicFiguresTests(SynchronousTestCase):
    def test_scan_finds_a_private_read(self) -> None:
        source = "def f(proxy):\n    self._ok = proxy.tunnel._session\n    return cls.__name__\n"
        self.assertEqual(private_reads(source), [(2, "proxy.tunnel._session")])

    def test_metrics_read_no_private_attribute(self) -> None:
        directory = os.path.join(PACKAGE, "metrics")
        modules = sorted(name for name in os.listdir(directory) if name.endswith(".py"))
        self.assertIn("snapshot.py", modules)
        for name in modules:
            with open(os.path.join(directory, name)) as f:
                self.assertEqual(private_reads(f.read()), [], f"aws_localproxy/metrics/{name}")
