"""
The tunnel service for tests and embedding code.

C{start_tunnel_service(reactor, cert_dir)} listens on 127.0.0.1 (port 0 picks
a free one) and fires with a L{RunningTunnelService}: its C{endpoint},
C{api_url}, C{ca_file} and C{capath} are what a local proxy and boto3 need,
and its methods open, close and break tunnels in-process.  Call its
C{stop()} in a cleanup.  L{LocalTunnelService} is the same as an
C{IService}, for an application that runs it next to its own services
(pass C{stop_reactor_on_failure=False} and wait on its C{ready}).
"""

from aws_localproxy.tunnelservice.server import (
    LocalTunnelService,
    RunningTunnelService,
    start_tunnel_service,
)

__all__ = ["LocalTunnelService", "RunningTunnelService", "start_tunnel_service"]
