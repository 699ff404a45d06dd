"""``twistd localproxy-agent``: the console script's options and service."""

from __future__ import annotations

from twisted.application.service import IService

from aws_localproxy.agent.options import AgentOptions, banner, make_agent

__all__ = ["Options", "makeService"]


class Options(AgentOptions):
    """The options of the ``localproxy-agent`` command; ``--version`` prints and exits, as twistd's own."""

    def postOptions(self) -> None:
        super().postOptions()
        if self.help_requested or self.version_requested:
            print(str(self) if self.help_requested else banner())
            raise SystemExit(0)


def makeService(options: Options) -> IService:
    """The L{aws_localproxy.agent.service.AgentService} for the validated options."""
    from twisted.internet import reactor

    config = options.agent
    assert config is not None
    service: IService = make_agent(reactor, config)
    return service
