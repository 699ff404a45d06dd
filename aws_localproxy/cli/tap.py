"""
``twistd localproxy``: the same options and the same service as the console script.

twistd has no notion of an exit code, so when the proxy ends (the service
closed the tunnel, a fatal error) the reactor is stopped and the reason is
in the log; use the ``localproxy`` console script where the exit status matters.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from aws_localproxy.cli.options import LocalProxyOptions

__all__ = ["Options", "makeService"]


class Options(LocalProxyOptions):
    """The console script's options; ``--stdio`` is refused (twistd owns stdin/stdout, and may log there)."""

    def postOptions(self) -> None:
        super().postOptions()
        if self.config is not None and self.config.stdio:
            raise usage.UsageError(
                "--stdio cannot be used with twistd: run the localproxy command instead"
            )


def makeService(options: Options) -> IService:
    """Build the L{LocalProxyService} from the validated options; stop twistd when it ends."""
    from twisted.internet import reactor

    from aws_localproxy.proxy.service import LocalProxyService

    # twistd exits on --help/--version/--export-default-settings, so parsing
    # left a validated config.
    config = options.config
    assert config is not None
    service = LocalProxyService(config, reactor)

    running: Any = reactor  # the global reactor's module attribute has no precise type

    def ended(code: Any) -> None:
        if running.running:
            running.callLater(0, running.stop)

    service.when_finished.addCallback(ended)
    return service
