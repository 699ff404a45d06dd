"""
A real L{TunnelConnector} over the fakes: its endpoint's attempts are
scripted (L{FakeEndpoint}), the test plays the WebSocket's events to it.
"""

from __future__ import annotations

from typing import Any

from aws_localproxy.upstream.connector import RetryPolicy, TunnelConnector
from tests.fakes.endpoints import FakeEndpoint


def scripted_connector(
    clock: Any, endpoint: FakeEndpoint, tunnel: Any, retries: RetryPolicy, **options: Any
) -> TunnelConnector:
    """
    A L{TunnelConnector} for C{tunnel} over C{endpoint}'s scripted attempts,
    on C{clock}; the test plays the WebSocket's events to it.
    """
    return TunnelConnector(
        clock,
        endpoint,  # type: ignore[arg-type]
        _ScriptedFactory,  # type: ignore[arg-type]
        tunnel,
        display_url="wss://example.invalid:443",
        retries=retries,
        **options,
    )


class _ScriptedFactory:
    """
    What the connector's factory is to a
    L{FakeProtocol<tests.fakes.websocket.FakeProtocol>}: where it reports.
    """

    def __init__(self, events: TunnelConnector) -> None:
        self.events = events
