"""
A real L{TunnelConnector} over the fakes: its endpoint's attempts are
scripted (L{FakeEndpoint}), the test plays the WebSocket's events to it.
"""

from __future__ import annotations

from typing import Any

from aws_localproxy.protocol.inbound_flow import InboundFlow
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
        lambda connector: None,  # type: ignore[arg-type,return-value]
        tunnel,
        InboundFlow(),
        display_url="wss://example.invalid:443",
        retries=retries,
        **options,
    )
