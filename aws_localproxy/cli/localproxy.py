# -*- test-case-name: tests.cli.test_localproxy -*-
"""
The ``localproxy`` console script (and ``python -m aws_localproxy``).

Process conventions are the reference's: the version banner on stdout
first, always (on stderr with ``--stdio``, whose stdout carries the
tunnel's bytes); ``--help`` text on stderr; a usage error as two lines
on stderr (the reason, then the "Try --help" line); a configuration error as
a ``fatal`` log line; exit code 0 for ``--help``, ``--version`` and
``--export-default-settings``, 1 for every error.  Then logging starts at the
``-v`` level and the proxy runs until it ends with its own exit code.
"""

from __future__ import annotations

import sys
from typing import IO, Any, Callable, List, Mapping, Optional

from twisted.logger import Logger
from twisted.python import usage

from aws_localproxy.adapters.startup import autobahn_nvx_wrappers_off, collector_paused
from aws_localproxy.cli import log_setup
from aws_localproxy.cli.console import console_main
from aws_localproxy.cli.options import TRY_HELP, ConfigurationError, LocalProxyOptions, banner
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings_json import export_default_settings

__all__ = ["main"]

log = Logger()

#: The module L{_run} imports the proxy from.
_PROXY_MODULE = "aws_localproxy.proxy.service"

#: Replaced in tests; see L{log_setup.start_logging}.
start_logging: Callable[..., Optional[log_setup.LineFormatObserver]] = log_setup.start_logging


def _asks_for_stdio(args: List[str]) -> bool:
    """Whether the command line names ``--stdio`` (or a prefix of it), even one that does not parse."""
    for arg in args:
        if arg == "--":
            return False
        if len(arg) > 3 and "--stdio".startswith(arg):
            return True
    return False


def _exit_with(code: Any) -> None:
    """Turn the proxy's result into the process's exit code (C{react} exits 0 otherwise)."""
    if isinstance(code, int) and code != 0:
        raise SystemExit(code)


def _run(config: ProxyConfig, on_secret: Optional[Callable[[str], None]] = None) -> None:
    """
    Run the proxy until it stops; raises C{SystemExit} with its exit code.
    C{on_secret} hears of the secrets the proxy makes up (a generated client
    token), to redact them from the log like the configured ones.

    The proxy, and with it the reactor, TLS and Autobahn, is imported here,
    once the command line asked for a run, trimmed as
    L{aws_localproxy.adapters.startup} says: without Autobahn's own NVX
    classes, and without the garbage collector going over the imports.  Not
    where the proxy was imported already (an application, the tests): there
    the trims would change the process for nothing.
    """
    from twisted.internet import task

    if _PROXY_MODULE in sys.modules:
        from aws_localproxy.proxy.service import run_proxy
    else:
        with collector_paused(), autobahn_nvx_wrappers_off():
            # The reactor too, as react would install it just after.
            from twisted.internet import reactor  # noqa: F401

            from aws_localproxy.proxy.service import run_proxy

    task.react(lambda reactor: run_proxy(reactor, config, on_secret).addCallback(_exit_with))


@console_main
def main(args: List[str], environ: Optional[Mapping[str, str]], out: IO[str], err: IO[str]) -> int:
    """
    Run ``localproxy`` with C{args} and C{environ} (C{None}: C{os.environ}).

    Returns the exit code for the paths that end before the proxy starts
    (errors, ``-h``, ``-V``, ``--export-default-settings``); once the proxy
    runs, the reactor's end raises C{SystemExit} with the proxy's exit code.
    """
    options = LocalProxyOptions(environ, exit_on_action=False)
    error: Optional[usage.UsageError] = None
    try:
        options.parseOptions(args)
    except usage.UsageError as e:
        error = e
    # Parsing prints nothing, so the banner is still the first line.  With
    # --stdio, standard output carries the tunnel's bytes and nothing else.
    stdio = options.stdio_requested or _asks_for_stdio(args)
    print(banner(), file=err if stdio else out, flush=True)
    if isinstance(error, ConfigurationError):
        # A rule broken by a value: the reference logs it at fatal (silent at -v 0).
        start_logging(options.verbosity, err, options.secrets)
        log.critical("{reason}", reason=str(error))
        return 1
    if error is not None:
        print(str(error), file=err)
        print(TRY_HELP, file=err, flush=True)
        return 1

    if options.version_requested:
        return 0
    if options.help_requested:
        print(str(options), file=err, flush=True)
        return 0
    if options.export_default_settings_to is not None:
        path = options.export_default_settings_to
        try:
            export_default_settings(path)
        except OSError as e:
            start_logging(options.verbosity, err)
            log.critical(
                "Cannot write the default settings to {path}: {error}",
                path=path,
                error=e.strerror or str(e),
            )
            return 1
        return 0

    config = options.config
    assert config is not None
    lines = start_logging(config.verbosity, err, options.secrets)
    _run(config, lines.add_secret if lines is not None else None)
    return 0  # pragma: no cover - react() always raises SystemExit
