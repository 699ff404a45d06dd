"""
Tests of aws_localproxy.adapters.lazy_stdlib: the standard-library modules
Twisted imports and a proxy never uses are imported lazily.

The canary runs in a fresh interpreter (this one imported Twisted long ago):
after L{defer_unused_stdlib}, Twisted's compat module imports without
running C{http.cookiejar} (so without C{urllib.request}), and the module is
whole the moment it is used.  If a Twisted release stops importing it, the
canary still passes (nothing to defer); if Python's import system stops
honouring the lazy module, it fails.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import subprocess
import sys
import types
from typing import Any, Optional, Sequence

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters.lazy_stdlib import DEFERRED, defer_unused_stdlib
from tests.support.helpers import child_environ

CANARY = """
import json, sys
from aws_localproxy.adapters.lazy_stdlib import defer_unused_stdlib
made_lazy = defer_unused_stdlib()
import twisted.python.compat
before = sorted(m for m in ("http.cookiejar", "urllib.request", "http.client") if m in sys.modules)
lazy = type(sys.modules["http.cookiejar"]).__name__
from http import cookiejar
jar = cookiejar.CookieJar()
print(json.dumps({
    "made_lazy": made_lazy,
    "in_sys_modules": before,
    "type_before_use": lazy,
    "type_after_use": type(sys.modules["http.cookiejar"]).__name__,
    "jar": type(jar).__module__ + "." + type(jar).__name__,
    "urllib_request_after_use": "urllib.request" in sys.modules,
}))
"""


class FreshInterpreterTests(SynchronousTestCase):
    def test_twisted_compat_does_not_run_cookiejar(self) -> None:
        output = subprocess.run(
            [sys.executable, "-c", CANARY],
            env=child_environ(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        seen = json.loads(output)
        self.assertEqual(seen["made_lazy"], ["http.cookiejar"])
        # Imported (Twisted's compat holds it), not run: nothing it imports is there.
        self.assertEqual(seen["in_sys_modules"], ["http.cookiejar"])
        self.assertEqual(seen["type_before_use"], "_LazyModule")
        # Used: it runs, whole, and brings what it needs.
        self.assertEqual(seen["type_after_use"], "module")
        self.assertEqual(seen["jar"], "http.cookiejar.CookieJar")
        self.assertTrue(seen["urllib_request_after_use"])


class _EagerOnlyLoader(importlib.abc.Loader):
    """A loader as some freezers have: C{load_module} only, which cannot load lazily."""

    def load_module(self, fullname: str) -> types.ModuleType:
        module = sys.modules[fullname] = types.ModuleType(fullname)
        module.loaded_by = "eager"  # type: ignore[attr-defined]
        return module


class _EagerOnlyFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Any = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != "lazy_stdlib_test_eager":
            return None
        return importlib.machinery.ModuleSpec(fullname, _EagerOnlyLoader())


class LeftAloneTests(SynchronousTestCase):
    def test_already_imported(self) -> None:
        """What this process imported already (Twisted's cookiejar) stays as it is."""
        for name in DEFERRED:
            __import__(name)
        before = {name: sys.modules[name] for name in DEFERRED}
        self.assertEqual(defer_unused_stdlib(), [])
        self.assertEqual({name: sys.modules[name] for name in DEFERRED}, before)

    def test_unknown_module(self) -> None:
        self.assertEqual(defer_unused_stdlib(["lazy_stdlib_test_no_such_module"]), [])
        self.assertNotIn("lazy_stdlib_test_no_such_module", sys.modules)

    def test_loader_that_cannot_load_lazily(self) -> None:
        """Such a module is not touched, and imports as usual afterwards."""
        finder = _EagerOnlyFinder()
        sys.meta_path.insert(0, finder)
        self.addCleanup(sys.meta_path.remove, finder)
        self.addCleanup(sys.modules.pop, "lazy_stdlib_test_eager", None)
        self.assertEqual(defer_unused_stdlib(["lazy_stdlib_test_eager"]), [])
        self.assertNotIn("lazy_stdlib_test_eager", sys.modules)
        module = __import__("lazy_stdlib_test_eager")
        self.assertEqual(module.loaded_by, "eager")
