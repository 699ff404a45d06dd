"""Tests for aws_localproxy.cli.console: the console scripts' shared entry point and -h/-V flags."""

from __future__ import annotations

import io
import sys
from typing import IO, List, Mapping, Optional

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.cli.console import ActionFlags, console_main


class _Options(ActionFlags, usage.Options):
    action_docs = {"help": "Help text", "version": "Version text"}
    optFlags = [["other", None, "Another flag"]]


class ActionFlagsTests(SynchronousTestCase):
    def test_requests_recorded_not_acted_on(self) -> None:
        for args, requested in [
            ([], (False, False)),
            (["-h"], (True, False)),
            (["--help"], (True, False)),
            (["-V"], (False, True)),
            (["--version", "--help"], (True, True)),
        ]:
            options = _Options()
            options.parseOptions(args)  # neither prints nor exits
            self.assertEqual((options.help_requested, options.version_requested), requested, args)

    def test_help_texts(self) -> None:
        text = str(_Options())
        self.assertIn("-h, --help", text)
        self.assertIn("Help text", text)
        self.assertIn("-V, --version", text)
        self.assertIn("Version text", text)
        self.assertNotIn("Display", text)  # Twisted's own texts are replaced


class ConsoleMainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.calls: List[tuple[List[str], Optional[Mapping[str, str]], IO[str], IO[str]]] = []

        @console_main
        def main(
            args: List[str], environ: Optional[Mapping[str, str]], out: IO[str], err: IO[str]
        ) -> int:
            """The docstring."""
            self.calls.append((args, environ, out, err))
            return 7

        self.main = main

    def test_given(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        environ = {"A": "1"}
        self.assertEqual(self.main(["-x"], environ, stdout=out, stderr=err), 7)
        self.assertEqual(self.calls, [(["-x"], environ, out, err)])
        self.assertEqual(self.main.__doc__, "The docstring.")

    def test_defaults(self) -> None:
        self.patch(sys, "argv", ["prog", "a", "b"])
        self.assertEqual(self.main(), 7)
        self.assertEqual(self.calls, [(["a", "b"], None, sys.stdout, sys.stderr)])
