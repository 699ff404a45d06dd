"""
Tests of aws_localproxy.adapters.startup: what the console scripts leave out
of their dependencies' start-up.

The canaries run in a fresh interpreter (this one imported Twisted and
Autobahn long ago).  After L{defer_unused_stdlib}, Twisted's compat module
imports without running C{http.cookiejar} (so without C{urllib.request}),
and the module is whole the moment it is used: if a Twisted release stops
importing it, the canary still passes (nothing to defer); if Python's import
system stops honouring the lazy module, it fails.  Within
L{autobahn_nvx_wrappers_off}, Autobahn imports without pycparser, its own
maskers are its Python ones and still mask as RFC 6455 says, and the
proxy's masker is still NVX; a switch the user set is obeyed.  Within
L{collector_paused} the collector is off; after it, it is on again and what
was there is frozen, unless it was off to begin with.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import subprocess
import sys
import types
from typing import Any, Optional, Sequence

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters.startup import (
    AUTOBAHN_NVX_SWITCH,
    DEFERRED,
    autobahn_nvx_wrappers_off,
    defer_unused_stdlib,
)
from tests.support.helpers import child_environ

CANARY = """
import json, sys
from aws_localproxy.adapters.startup import defer_unused_stdlib
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


AUTOBAHN_CANARY = """
import json, os, sys
from aws_localproxy.adapters.startup import autobahn_nvx_wrappers_off
with autobahn_nvx_wrappers_off() as off:
    import autobahn.websocket
    from autobahn.websocket.xormasker import create_xor_masker
switch_after = os.environ.get("AUTOBAHN_USE_NVX")
from aws_localproxy.upstream.masking import masker_in_use
mask, sample = b"\\x01\\x80\\x7f\\xfe", bytes(range(200))
masked = create_xor_masker(mask, len(sample)).process(sample)
print(json.dumps({
    "off": off,
    "autobahn_uses_nvx": autobahn.websocket.USES_NVX,
    "pycparser": "pycparser" in sys.modules,
    "switch_after": switch_after,
    "masks": masked == bytes(b ^ mask[i % 4] for i, b in enumerate(sample)),
    "proxy_masker": masker_in_use(),
}))
"""


COLLECTOR_CANARY = """
import gc, json, sys
from aws_localproxy.adapters.startup import collector_paused
if sys.argv[1] == "off":
    gc.disable()
with collector_paused() as paused:
    inside = gc.isenabled()
print(json.dumps({
    "paused": paused,
    "inside": inside,
    "after": gc.isenabled(),
    "frozen": gc.get_freeze_count() > 0,
}))
"""


def _run_fresh(code: str, *args: str, **environ: str) -> Any:
    """What C{code}, run in a new interpreter with C{environ} added, printed as JSON."""
    output = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=child_environ(environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return json.loads(output)


class FreshInterpreterTests(SynchronousTestCase):
    def test_twisted_compat_does_not_run_cookiejar(self) -> None:
        seen = _run_fresh(CANARY)
        self.assertEqual(seen["made_lazy"], ["http.cookiejar"])
        # Imported (Twisted's compat holds it), not run: nothing it imports is there.
        self.assertEqual(seen["in_sys_modules"], ["http.cookiejar"])
        self.assertEqual(seen["type_before_use"], "_LazyModule")
        # Used: it runs, whole, and brings what it needs.
        self.assertEqual(seen["type_after_use"], "module")
        self.assertEqual(seen["jar"], "http.cookiejar.CookieJar")
        self.assertTrue(seen["urllib_request_after_use"])

    def test_autobahn_without_its_nvx_classes(self) -> None:
        seen = _run_fresh(AUTOBAHN_CANARY)
        self.assertEqual(
            seen,
            {
                "off": True,
                "autobahn_uses_nvx": False,
                "pycparser": False,
                "switch_after": None,
                "masks": True,
                "proxy_masker": "nvx",
            },
        )

    def test_autobahn_switch_set_by_the_user(self) -> None:
        """The user's C{AUTOBAHN_USE_NVX=1} wins: Autobahn's NVX classes, and pycparser with them."""
        seen = _run_fresh(AUTOBAHN_CANARY, AUTOBAHN_USE_NVX="1")
        self.assertEqual(
            (seen["off"], seen["autobahn_uses_nvx"], seen["pycparser"], seen["switch_after"]),
            (False, True, True, "1"),
        )
        self.assertTrue(seen["masks"])

    def test_collector_paused_then_frozen(self) -> None:
        self.assertEqual(
            _run_fresh(COLLECTOR_CANARY, "on"),
            {"paused": True, "inside": False, "after": True, "frozen": True},
        )

    def test_collector_off_already(self) -> None:
        """A collector someone turned off stays off, and nothing is frozen."""
        self.assertEqual(
            _run_fresh(COLLECTOR_CANARY, "off"),
            {"paused": False, "inside": False, "after": False, "frozen": False},
        )


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
    def test_autobahn_imported_already(self) -> None:
        """Here Autobahn came first: the switch is not set, and nothing changes."""
        import autobahn.websocket  # noqa: F401 - what this test is about

        with autobahn_nvx_wrappers_off() as off:
            self.assertNotIn(AUTOBAHN_NVX_SWITCH, os.environ)
        self.assertFalse(off)

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
