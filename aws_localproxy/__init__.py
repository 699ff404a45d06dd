"""
aws-localproxy: the AWS IoT Secure Tunneling local proxy as a Twisted protocol stack.

The public API, for applications that embed a proxy::

    from aws_localproxy import LocalProxyService, ProxyConfig, Mode

 - L{LocalProxyService}: one source or destination local proxy, an C{IService};
 - L{ProxyConfig}, L{Settings}, L{Mode}, L{PeerVersion}: what it is built from;
 - L{ConnectedTunnel}, L{ClosedTunnel}: what its hooks are called with;
 - L{FactoryEndpoint}: a client endpoint to a protocol factory in this process;
 - L{TunnelMetrics}, L{ServiceMetrics}: what C{LocalProxyService.metrics()} returns.

The names are imported on first use, so ``import aws_localproxy`` stays cheap
(the twistd plugin and the console script's ``--help`` load nothing else).
"""

from __future__ import annotations

import importlib
from typing import Any

from aws_localproxy._version import __version__

_EXPORTS = {
    "LocalProxyService": "aws_localproxy.proxy.service",
    "ConnectedTunnel": "aws_localproxy.proxy.tunnel_events",
    "ClosedTunnel": "aws_localproxy.proxy.tunnel_events",
    "run_proxy": "aws_localproxy.proxy.service",
    "ProxyConfig": "aws_localproxy.config.proxy_config",
    "Settings": "aws_localproxy.config.settings",
    "Mode": "aws_localproxy.protocol.constants",
    "PeerVersion": "aws_localproxy.protocol.constants",
    "FactoryEndpoint": "aws_localproxy.local.inprocess",
    "TunnelMetrics": "aws_localproxy.metrics.snapshot",
    "ServiceMetrics": "aws_localproxy.metrics.snapshot",
}

# Written out for the tools that read it without running it (pydoctor, IDEs);
# tests.test_embedding checks it names exactly the exports.
__all__ = [
    "__version__",
    "LocalProxyService",
    "ConnectedTunnel",
    "ClosedTunnel",
    "run_proxy",
    "ProxyConfig",
    "Settings",
    "Mode",
    "PeerVersion",
    "FactoryEndpoint",
    "TunnelMetrics",
    "ServiceMetrics",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aws_localproxy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
