"""
A local implementation of the AWS IoT Secure Tunneling service.

One port serves the data plane (``/tunnel``, the WebSocket local proxies
connect to) and the management API (``POST /``, the ``iotsecuretunneling``
JSON API that boto3 and the AWS CLI speak).  Run it with ``localtunnel`` or
``twistd localtunnel``, or embed it through L{testing.start_tunnel_service}.
See docs/tunnelservice.md.
"""

from aws_localproxy.tunnelservice.server import (
    LocalTunnelService,
    RunningTunnelService,
    start_tunnel_service,
)

__all__ = ["LocalTunnelService", "RunningTunnelService", "start_tunnel_service"]
