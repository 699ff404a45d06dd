# -*- test-case-name: tests.agent.test_options -*-
# mypy: disallow-untyped-calls=False
# (this module calls Twisted APIs that have no annotations)
"""
The ``localproxy-agent`` console script.

The conventions of ``localproxy``: the banner on stdout first, a usage
error as the reason and a "Try --help" line on stderr, a value that breaks
a rule as a ``fatal`` log line, exit code 1 for every error.  Then logging
starts at the ``-v`` level, with every tunnel's access and client token
redacted from every line, and the agent runs until SIGINT/SIGTERM, which
stop every destination cleanly first.
"""

from __future__ import annotations

from typing import IO, Any, Callable, List, Mapping, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from aws_localproxy.agent.options import TRY_HELP, AgentConfig, AgentOptions, banner, make_agent
from aws_localproxy.cli import log_setup
from aws_localproxy.cli.console import console_main
from aws_localproxy.config.validation import ConfigurationError

__all__ = ["main"]

log = Logger()

#: Replaced in tests; see L{log_setup.start_logging}.
start_logging: Callable[..., Optional[log_setup.LineFormatObserver]] = log_setup.start_logging


def _run(config: AgentConfig, lines: Optional[log_setup.LineFormatObserver]) -> None:
    from twisted.internet import task

    def redact(secret: str) -> None:
        if lines is not None:
            lines.add_secret(secret)

    def run(reactor: Any) -> Deferred[None]:
        agent = make_agent(reactor, config, on_secret=redact)
        agent.startService()
        reactor.addSystemEventTrigger("before", "shutdown", agent.stopService)
        return Deferred()  # runs until the reactor is stopped by a signal

    task.react(run)


@console_main
def main(args: List[str], environ: Optional[Mapping[str, str]], out: IO[str], err: IO[str]) -> int:
    """Run ``localproxy-agent`` with C{args}; returns the exit code of an early end."""
    options = AgentOptions(environ)
    print(banner(), file=out, flush=True)
    try:
        options.parseOptions(args)
    except ConfigurationError as e:
        start_logging(options.verbosity, err)
        log.critical("{reason}", reason=str(e))
        return 1
    except usage.UsageError as e:
        print(str(e), file=err)
        print(TRY_HELP, file=err, flush=True)
        return 1
    if options.help_requested:
        print(str(options), file=out, flush=True)
        return 0
    if options.version_requested:
        return 0
    config = options.agent
    assert config is not None
    lines = start_logging(config.verbosity, err)
    _run(config, lines)
    return 0  # pragma: no cover - react() always raises SystemExit


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
