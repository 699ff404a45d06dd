"""
The fixed sample of mutants (L{tests.mutants}): each must be killed by its
tests, in seconds, by a failing test rather than a hang.

One test per mutant, named after it, so a survivor is named in trial's
summary.  The whole score, with every mutant mutmut makes, is
C{tox -e mutation} (docs/reliability.md).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Callable, Dict, List

from twisted.trial.unittest import SynchronousTestCase

import tests.mutants
from tests.support.mutation import ROOT, Mutant, scratch_tree


def sample() -> List[Mutant]:
    """Every mutant of every module of L{tests.mutants}, in a fixed order."""
    found: List[Mutant] = []
    for info in sorted(pkgutil.iter_modules(tests.mutants.__path__), key=lambda i: i.name):
        module = importlib.import_module("tests.mutants." + info.name)
        found.extend(module.MUTANTS)
    return found


def _test_name(mutant: Mutant) -> str:
    return "test_" + mutant.name.replace("-", "_")


class SampleShapeTests(SynchronousTestCase):
    """The sample itself: well formed, and every mutant still applies to the code."""

    def test_not_empty(self) -> None:
        self.assertGreaterEqual(len(sample()), 1)

    def test_names_unique(self) -> None:
        names = [_test_name(m) for m in sample()]
        self.assertEqual(sorted(set(names)), sorted(names))

    def test_each_applies_once(self) -> None:
        """A mutant whose code moved fails here first, naming itself."""
        problems = []
        for mutant in sample():
            with open(os.path.join(ROOT, mutant.path), encoding="utf-8") as f:
                source = f.read()
            try:
                mutant.mutated_source(source)
            except ValueError as e:
                problems.append(str(e))
        self.assertEqual(problems, [])

    def test_each_names_tests_and_a_reason(self) -> None:
        for mutant in sample():
            self.assertTrue(mutant.tests, mutant.name)
            self.assertTrue(mutant.why.strip(), mutant.name)
            self.assertNotEqual(mutant.find, mutant.replace, mutant.name)


class ScratchTreeTests(SynchronousTestCase):
    """The runner tells a caught mutant from one that changes nothing a test sees."""

    def test_survivor_reported(self) -> None:
        """A change no test can see (a comment) is reported as surviving, not killed."""
        harmless = Mutant(
            name="comment-only",
            path="aws_localproxy/protocol/peer_format.py",
            find="# -*- test-case-name: tests.protocol.test_peer_format,",
            replace="# a comment no test reads\n# -*- test-case-name: tests.protocol.test_peer_format,",
            tests=("tests.protocol.test_peer_format",),
            why="nothing",
        )
        outcome = scratch_tree().run(harmless)
        self.assertFalse(outcome.killed, outcome.output[-2000:])
        self.assertFalse(outcome.hung)
        self.assertIn("PASSED", outcome.output)

    def test_real_tree_untouched(self) -> None:
        """Mutants are applied to the scratch copy only, and the copy is restored."""
        mutant = sample()[0]
        path = os.path.join(ROOT, mutant.path)
        with open(path, encoding="utf-8") as f:
            before = f.read()
        scratch_tree().run(mutant)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), before)
        with open(os.path.join(scratch_tree().root, mutant.path), encoding="utf-8") as f:
            self.assertEqual(f.read(), before)


def _make_test(mutant: Mutant) -> Callable[[SynchronousTestCase], None]:
    def test(self: SynchronousTestCase) -> None:
        outcome = scratch_tree().run(mutant)
        if outcome.hung:
            self.fail(
                "mutant %r was not caught within %.0f s by %s: a test waited instead of failing\n"
                "%s"
                % (mutant.name, outcome.seconds, " ".join(mutant.tests), outcome.output[-3000:])
            )
        if not outcome.killed:
            self.fail(
                "mutant %r survived: %s pass with it in place.\n"
                "It changes %s:\n--- find\n%s\n+++ replace\n%s\nIf it shipped: %s"
                % (
                    mutant.name,
                    " ".join(mutant.tests),
                    mutant.path,
                    mutant.find,
                    mutant.replace,
                    mutant.why,
                )
            )

    test.__doc__ = "Killed: " + mutant.why
    return test


def _mutant_tests() -> Dict[str, Callable[[SynchronousTestCase], None]]:
    return {_test_name(m): _make_test(m) for m in sample()}


#: One test per mutant; trial's workers split them between the cores.
SampleTests = type(
    "SampleTests",
    (SynchronousTestCase,),
    {"__doc__": "Each mutant of the sample is killed by its tests.", **_mutant_tests()},
)
