"""Tests of aws_localproxy.adapters.seams: what the adapters share."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters.seams import code_uses, warn_once
from tests.support.seams import adapter_warnings


class _Dependency:
    """Stands for a dependency's class."""

    limit = 3

    def write(self, data: bytes) -> None:
        self._pending = len(data)
        self._flush()

    def _flush(self) -> None:
        pass


class CodeUsesTests(SynchronousTestCase):
    def test_names_the_function_uses(self) -> None:
        self.assertTrue(code_uses(_Dependency, "write", "_pending", "_flush", "len"))
        self.assertTrue(code_uses(_Dependency(), "write", "_flush"))

    def test_a_name_it_does_not_use(self) -> None:
        self.assertFalse(code_uses(_Dependency, "write", "_flush", "_buffer"))
        self.assertFalse(code_uses(_Dependency, "_flush", "_pending"))

    def test_not_a_python_function(self) -> None:
        self.assertFalse(code_uses(_Dependency, "missing", "x"))
        self.assertFalse(code_uses(_Dependency, "limit", "x"))
        self.assertFalse(code_uses(dict, "get", "x"))


class WarnOnceTests(SynchronousTestCase):
    def test_once_per_key(self) -> None:
        warnings = adapter_warnings(self)
        self.assertTrue(warn_once("one", "first"))
        self.assertFalse(warn_once("one", "again"))
        self.assertTrue(warn_once("two", "second"))
        self.assertEqual(warnings, ["first", "second"])
