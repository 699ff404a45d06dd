# -*- test-case-name: tests.cli.test_console -*-
"""
What the project's console scripts (``localproxy``, ``localproxy-agent``) share.

Both parse the whole command line before they act, so that a usage error
is reported the same way whatever else was asked for: ``-h`` and ``-V`` only
record the request (L{ActionFlags}), and the script decides after parsing
what to print and where.  Both take their arguments, environment and
standard streams from their caller, so tests run them in-process
(L{console_main}).
"""

from __future__ import annotations

import functools
import sys
from typing import IO, Callable, ClassVar, List, Mapping, Optional, Protocol

__all__ = ["ActionFlags", "ConsoleMain", "console_main"]


class ActionFlags:
    """
    ``-h/--help`` and ``-V/--version`` for a C{usage.Options}: they set
    C{help_requested} and C{version_requested} instead of printing and
    exiting, as Twisted's own do.

    Put it before C{usage.Options} in the bases and give each flag's help
    text in L{action_docs}.
    """

    #: ``help`` and ``version`` -> the text ``--help`` shows for them.
    action_docs: ClassVar[Mapping[str, str]]
    help_requested = False
    version_requested = False
    docs: dict[str, str]

    def __init__(self) -> None:
        super().__init__()
        self.docs.update(self.action_docs)

    def opt_help(self) -> None:
        self.help_requested = True

    opt_h = opt_help

    def opt_version(self) -> None:
        self.version_requested = True

    opt_V = opt_version


class ConsoleMain(Protocol):
    """A console script's entry point, as setup.py's ``console_scripts`` and the tests call it."""

    def __call__(
        self,
        argv: Optional[List[str]] = None,
        environ: Optional[Mapping[str, str]] = None,
        *,
        stdout: Optional[IO[str]] = None,
        stderr: Optional[IO[str]] = None,
    ) -> int: ...


def console_main(
    body: Callable[[List[str], Optional[Mapping[str, str]], IO[str], IO[str]], int],
) -> ConsoleMain:
    """
    The entry point that runs C{body(args, environ, out, err)}: C{argv}
    defaults to C{sys.argv[1:]}, the streams to C{sys.stdout} and
    C{sys.stderr}; C{environ} is passed on (C{None}: the options read
    C{os.environ}).  Returns C{body}'s exit code.
    """

    @functools.wraps(body)
    def main(
        argv: Optional[List[str]] = None,
        environ: Optional[Mapping[str, str]] = None,
        *,
        stdout: Optional[IO[str]] = None,
        stderr: Optional[IO[str]] = None,
    ) -> int:
        return body(
            sys.argv[1:] if argv is None else argv,
            environ,
            stdout if stdout is not None else sys.stdout,
            stderr if stderr is not None else sys.stderr,
        )

    return main
