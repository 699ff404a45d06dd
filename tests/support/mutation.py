"""
A fixed sample of mutants, run in CI: each is one small change to the
package that a named set of fast tests must catch.

mutmut (C{tox -e mutation}) measures the whole score, which takes the better
part of an hour; CI cannot afford it.  The sample keeps the score in CI's
reach: it holds mutants of the kinds mutmut makes (a limit moved by one, a
state update dropped, a call skipped, a branch taken the wrong way) across
the data-path and lifecycle modules, each one that the suite once let
through or that guards a behaviour users met.  If a test is weakened or
deleted so that one of them survives, the build fails and names it.

A mutant is written as text: the exact lines to find (once, in one file) and
what to put in their place.  When the code it names changes, the find no
longer matches and the sample says so: the mutant is then moved to the new
code, not dropped.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional, Tuple

#: The checkout holding this file (tests/support/mutation.py).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: What is not copied into the scratch tree: build outputs, caches, VCS.
_SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".tox",
    "build",
    "dist",
    "mutants",
    "_trial_temp*",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".import_linter_cache",
    ".grimp_cache",
    "*.egg-info",
)

#: A mutant's test run that takes longer than this is reported as a hang: a
#: mutant must be caught by a failing test, not by a test waiting forever.
RUN_SECONDS = 120.0


@dataclass(frozen=True)
class Mutant:
    """
    One change to the package and the tests that must catch it.

    @ivar name: short, unique, says what the mutant breaks.
    @ivar path: the file changed, relative to the checkout.
    @ivar find: text that occurs exactly once in C{path}.
    @ivar replace: what takes its place.
    @ivar tests: trial names (modules, classes or methods) that must fail.
    @ivar why: what a user or peer would see if the mutant shipped.
    """

    name: str
    path: str
    find: str
    replace: str
    tests: Tuple[str, ...]
    why: str

    def mutated_source(self, original: str) -> str:
        """C{original} with the mutant applied; L{ValueError} unless C{find} occurs once."""
        count = original.count(self.find)
        if count != 1:
            raise ValueError(
                "mutant %r: its text occurs %d times in %s (it must occur once); "
                "the code changed: move the mutant to the new code" % (self.name, count, self.path)
            )
        return original.replace(self.find, self.replace)


@dataclass(frozen=True)
class Outcome:
    """What the tests did with a mutant in place."""

    killed: bool
    hung: bool
    seconds: float
    output: str


class ScratchTree:
    """
    A copy of the checkout that mutants are applied to one at a time (the
    real tree is never written), removed when the process exits.
    """

    def __init__(self) -> None:
        self.root = os.path.join(tempfile.mkdtemp(prefix="mutation-sample-"), "tree")
        shutil.copytree(ROOT, self.root, ignore=_SKIP, symlinks=True)
        atexit.register(shutil.rmtree, os.path.dirname(self.root), True)
        self._env = dict(os.environ)
        self._env["PYTHONPATH"] = self.root
        # A .pyc written for a mutated file could be reused for the restored
        # one when both have the same size and mtime: write none.
        self._env["PYTHONDONTWRITEBYTECODE"] = "1"
        self._check_imports_from_copy()

    def _check_imports_from_copy(self) -> None:
        found = subprocess.run(
            [sys.executable, "-c", "import aws_localproxy; print(aws_localproxy.__file__)"],
            cwd=self.root,
            env=self._env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not os.path.realpath(found).startswith(os.path.realpath(self.root) + os.sep):
            raise RuntimeError(
                "the scratch tree's tests would import aws_localproxy from %s, not from the "
                "copy: mutants would not be seen" % (found,)
            )

    def run(self, mutant: Mutant) -> Outcome:
        """Apply C{mutant}, run its tests, restore the file."""
        target = os.path.join(self.root, mutant.path)
        with open(target, encoding="utf-8") as f:
            original = f.read()
        mutated = mutant.mutated_source(original)
        try:
            with open(target, "w", encoding="utf-8") as f:
                f.write(mutated)
            # A mutant must change behaviour, not break the syntax: that
            # would "kill" it without any test having looked.
            compile(mutated, target, "exec")
            return self._run_tests(mutant.tests)
        finally:
            with open(target, "w", encoding="utf-8") as f:
                f.write(original)

    def _run_tests(self, tests: Tuple[str, ...]) -> Outcome:
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "twisted.trial", "--exitfirst", *tests],
                cwd=self.root,
                env=self._env,
                capture_output=True,
                text=True,
                timeout=RUN_SECONDS,
            )
        except subprocess.TimeoutExpired as e:
            output = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode()
            return Outcome(False, True, time.monotonic() - started, output)
        output = done.stdout + done.stderr
        # Killed means a test failed or errored; an import error of a test
        # module is an error too, which is why the file is compiled first.
        killed = done.returncode != 0 and "FAILED" in output
        return Outcome(killed, False, time.monotonic() - started, output)


_tree: Optional[ScratchTree] = None


def scratch_tree() -> ScratchTree:
    """The process's scratch tree, made on first use (trial's workers each make one)."""
    global _tree
    if _tree is None:
        _tree = ScratchTree()
    return _tree
