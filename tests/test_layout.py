"""
The tests mirror the package, and no test module leans on another.

 - A unit-test module under C{tests/<layer>/} (the layers of
   C{aws_localproxy}: protocol, upstream, local, config, cli, metrics,
   proxy, adapters, and their subpackages) is named for a module of the same
   place in the package: C{test_<module>.py}, or C{test_<module>_<aspect>.py}
   for one aspect of it.  So C{tests/protocol/test_tunnel_session.py} tests
   C{aws_localproxy/protocol/tunnel_session.py}, and a module's tests are
   found by its name.
 - No module under C{tests/} imports a test module (C{test_*}): what several
   test modules share lives in L{tests.fakes} (test doubles) or
   L{tests.support} (harness).  A test module that is also a library of
   fakes cannot be moved or split alone, and its name no longer says what
   it holds.
 - Every C{test-case-name} header in the package names test modules that
   exist (trial's C{--testmodule} and editors run the tests a header names).

Each rule is checked on the real tree, and on a small tree made to break it,
so that the check itself is shown to fail when it should.
"""

from __future__ import annotations

import ast
import os
import re
from typing import Dict, Iterator, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

#: The package's layers, each with its mirror under tests/.
LAYERS = ("protocol", "upstream", "local", "config", "cli", "metrics", "proxy", "adapters")

#: Test modules under a layer that are named for no module of it, with the reason.
#: (path relative to tests/, with "/" separators) -> why it may stay.
NAMING_EXCEPTIONS: Dict[str, str] = {}

_TESTS = os.path.dirname(os.path.abspath(__file__))
_PACKAGE = os.path.join(os.path.dirname(_TESTS), "aws_localproxy")


def _python_files(root: str) -> Iterator[str]:
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith(("_", ".")))
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def _dotted(root: str, path: str) -> str:
    """The module name of C{path}, a file under C{root} (the directory holding C{tests})."""
    relative = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
    if relative[-1] == "__init__":
        relative.pop()
    return ".".join(relative)


def _is_test_module(name: str) -> bool:
    return name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")


def _imported(tree: ast.Module, module: str, is_package: bool) -> Iterator[Tuple[int, str]]:
    """(line, module name) for each module an import statement of C{module} may name."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield node.lineno, source
            for alias in node.names:  # "from tests.protocol import test_tunnel"
                yield node.lineno, source + "." + alias.name


def imports_of_test_modules(root: str) -> List[str]:
    """
    Every import of a test module by a module of C{root}/tests, as
    "importer:line imports module" (C{root} is the directory holding C{tests}).
    """
    found = []
    for path in _python_files(os.path.join(root, "tests")):
        module = _dotted(root, path)
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for line, name in _imported(tree, module, path.endswith("__init__.py")):
            if _is_test_module(name) and name != module:
                found.append(f"{module}:{line} imports {name}")
    return sorted(set(found))


def _members(package_directory: str) -> List[str]:
    """The modules and subpackages of a package directory (none if it is no package)."""
    if not os.path.isfile(os.path.join(package_directory, "__init__.py")):
        return []
    members = []
    for name in os.listdir(package_directory):
        path = os.path.join(package_directory, name)
        if name.endswith(".py") and name != "__init__.py":
            members.append(name[: -len(".py")])
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            members.append(name)
    return members


def misnamed_test_modules(
    tests: str, package: str, exceptions: Dict[str, str] = NAMING_EXCEPTIONS
) -> List[str]:
    """
    The test modules under C{tests}/<layer>/ named for no module of
    C{package}/<layer>/ at the same place (C{tests} and C{package} are the
    two directories), each as its path under C{tests} and what it could
    have been named for.
    """
    found = []
    for layer in LAYERS:
        for path in _python_files(os.path.join(tests, layer)):
            name = os.path.basename(path)
            if not name.startswith("test_"):
                continue
            relative = os.path.relpath(path, tests).replace(os.sep, "/")
            if relative in exceptions:
                continue
            place = os.path.dirname(os.path.relpath(path, tests))
            members = _members(os.path.join(package, place))
            named = name[len("test_") : -len(".py")]
            if not any(named == m or named.startswith(m + "_") for m in members):
                found.append(f"{relative} (modules there: {', '.join(sorted(members)) or 'none'})")
    return sorted(found)


_HEADER = re.compile(r"-\*- test-case-name: (?P<names>\S+) -\*-")


def stale_test_case_names(root: str) -> List[str]:
    """
    The C{test-case-name} headers of C{root}/aws_localproxy that name a test
    module C{root}/tests does not have, as "file: module".
    """
    found = []
    for path in _python_files(os.path.join(root, "aws_localproxy")):
        with open(path, encoding="utf-8") as f:
            head = f.readline() + f.readline()
        match = _HEADER.search(head)
        for name in match["names"].split(",") if match else ():
            target = os.path.join(root, *name.split(".")) + ".py"
            if not name.startswith("tests.") or not os.path.isfile(target):
                found.append(f"{os.path.relpath(path, root)}: {name}")
    return sorted(found)


class RealTreeTests(SynchronousTestCase):
    """The checks on this checkout."""

    def test_no_test_module_imports_another(self) -> None:
        """Shared fakes and harness live in tests.fakes and tests.support, not in test modules."""
        self.assertEqual(imports_of_test_modules(os.path.dirname(_TESTS)), [])

    def test_test_modules_named_for_their_module(self) -> None:
        """Each unit-test module under a layer is test_<module>[_<aspect>].py of that layer."""
        self.assertEqual(misnamed_test_modules(_TESTS, _PACKAGE), [])

    def test_test_case_names_exist(self) -> None:
        """Each module's test-case-name header names test modules that exist."""
        self.assertEqual(stale_test_case_names(os.path.dirname(_TESTS)), [])

    def test_exceptions_still_exist(self) -> None:
        """An exception for a module that is gone or renamed is stale and must go."""
        for relative in NAMING_EXCEPTIONS:
            self.assertTrue(os.path.isfile(os.path.join(_TESTS, relative)), relative)


class CheckFailsTests(SynchronousTestCase):
    """The checks find what they are for, in a small tree made to break them."""

    def tree(self, files: Dict[str, str]) -> str:
        root = self.mktemp()
        for relative, text in files.items():
            path = os.path.join(root, *relative.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return root

    def test_each_form_of_import_found(self) -> None:
        root = self.tree(
            {
                "tests/__init__.py": "",
                "tests/protocol/__init__.py": "",
                "tests/protocol/test_tunnel.py": "",
                "tests/protocol/test_a.py": "from tests.protocol.test_tunnel import FakePeer\n",
                "tests/protocol/test_b.py": "import tests.protocol.test_tunnel\n",
                "tests/protocol/test_c.py": "from tests.protocol import test_tunnel\n",
                "tests/protocol/test_d.py": "from .test_tunnel import FakePeer\n",
                "tests/protocol/test_e.py": "def f():\n    from . import test_tunnel\n",
                "tests/support/__init__.py": "",
                "tests/support/helpers.py": "from ..protocol.test_tunnel import FakePeer\n",
                "tests/fakes/__init__.py": "",
                "tests/fakes/peer.py": "from tests.support.helpers import x\n",
                "tests/protocol/test_f.py": "from tests.fakes.peer import FakePeer\n",
            }
        )
        self.assertEqual(
            imports_of_test_modules(root),
            [
                "tests.protocol.test_a:1 imports tests.protocol.test_tunnel",
                "tests.protocol.test_b:1 imports tests.protocol.test_tunnel",
                "tests.protocol.test_c:1 imports tests.protocol.test_tunnel",
                "tests.protocol.test_d:1 imports tests.protocol.test_tunnel",
                "tests.protocol.test_e:2 imports tests.protocol.test_tunnel",
                "tests.support.helpers:1 imports tests.protocol.test_tunnel",
            ],
        )

    def test_misnamed_module_found(self) -> None:
        root = self.tree(
            {
                "aws_localproxy/local/__init__.py": "",
                "aws_localproxy/local/source.py": "",
                "aws_localproxy/local/destination.py": "",
                "aws_localproxy/upstream/__init__.py": "",
                "aws_localproxy/upstream/webproxy/__init__.py": "",
                "aws_localproxy/upstream/webproxy/socks.py": "",
                "tests/local/test_source.py": "",
                "tests/local/test_source_waiting.py": "",
                "tests/local/test_sides.py": "",
                "tests/local/test_sourcery.py": "",
                "tests/local/helpers.py": "",
                "tests/upstream/test_webproxy.py": "",
                "tests/upstream/webproxy/test_socks.py": "",
                "tests/upstream/webproxy/test_endpoint.py": "",
                "tests/upstream/nowhere/test_x.py": "",
                "tests/e2e/test_anything.py": "",
            }
        )
        tests, package = os.path.join(root, "tests"), os.path.join(root, "aws_localproxy")
        self.assertEqual(
            misnamed_test_modules(tests, package, {}),
            [
                "local/test_sides.py (modules there: destination, source)",
                "local/test_sourcery.py (modules there: destination, source)",
                "upstream/nowhere/test_x.py (modules there: none)",
                "upstream/webproxy/test_endpoint.py (modules there: socks)",
            ],
        )
        self.assertEqual(
            misnamed_test_modules(
                tests,
                package,
                {
                    "local/test_sides.py": "a reason",
                    "local/test_sourcery.py": "a reason",
                    "upstream/nowhere/test_x.py": "a reason",
                    "upstream/webproxy/test_endpoint.py": "a reason",
                },
            ),
            [],
        )

    def test_stale_test_case_name_found(self) -> None:
        root = self.tree(
            {
                "aws_localproxy/__init__.py": "",
                "aws_localproxy/local/__init__.py": "",
                "aws_localproxy/local/source.py": (
                    "# -*- test-case-name: tests.local.test_source,tests.local.test_sides -*-\n"
                ),
                "aws_localproxy/local/stdio.py": "# -*- test-case-name: tests.local.test_stdio -*-\n",
                "aws_localproxy/local/other.py": '"""No header."""\n',
                "tests/local/test_source.py": "",
            }
        )
        self.assertEqual(
            stale_test_case_names(root),
            [
                os.path.join("aws_localproxy", "local", "source.py") + ": tests.local.test_sides",
                os.path.join("aws_localproxy", "local", "stdio.py") + ": tests.local.test_stdio",
            ],
        )
