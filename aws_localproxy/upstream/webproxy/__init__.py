# -*- test-case-name: tests.upstream.test_webproxy -*-
"""
Reaching the tunnel service through a web proxy, as Twisted endpoints.

Layering (the caller adds the top layer)::

    wrapClientTLS(service TLS,                      <- the caller (the runtime)
      HTTPConnectEndpoint | SOCKS5Endpoint(         <- CONNECT / SOCKS5 to host:port
        [wrapClientTLS(proxy TLS,]                  <- https:// proxies only
          HostnameEndpoint(proxy host, proxy port))))

``service_endpoint`` is the one call the runtime needs: it reads the proxy
configuration (raw URL, ``NO_PROXY``) and returns a plain stream to the
service's ``host:port``, direct or through the proxy.

The two proxy protocols (L{httpconnect}, L{socks}) are imported when a
proxy is used (or their endpoint classes are asked for): a proxy run
without one, the usual case, does not load them at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import TLSVersion, optionsForClientTLS
from twisted.logger import Logger

from aws_localproxy.adapters.twisted_private import IOpenSSLTrustRoot
from aws_localproxy.config.proxy_url import (
    ProxyURL,
    ProxyURLError,
    bypass_proxy,
    no_proxy_from_environment,
    parse_proxy_url,
    proxy_from_environment,
)
from aws_localproxy.upstream.tls_options import UnverifiedClientTLS
from aws_localproxy.upstream.webproxy import errors
from aws_localproxy.upstream.webproxy.errors import *  # noqa: F403 (the package's errors, re-exported below)

if TYPE_CHECKING:
    from aws_localproxy.upstream.webproxy.httpconnect import HTTPConnectEndpoint
    from aws_localproxy.upstream.webproxy.socks import SOCKS5Endpoint

__all__ = [
    "HTTPConnectEndpoint",
    "SOCKS5Endpoint",
    "ProxyURL",
    "ProxyURLError",
    "parse_proxy_url",
    "proxy_from_environment",
    "no_proxy_from_environment",
    "bypass_proxy",
    "proxied_endpoint",
    "proxy_tls_options",
    "service_endpoint",
]
# Every error of the package, under the names errors.py gives them.
__all__ += errors.__all__

log = Logger()

#: The endpoint classes imported on first use, and their modules.
_LAZY = {
    "HTTPConnectEndpoint": "aws_localproxy.upstream.webproxy.httpconnect",
    "SOCKS5Endpoint": "aws_localproxy.upstream.webproxy.socks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def proxy_tls_options(
    proxy: ProxyURL,
    *,
    trust_root: IOpenSSLTrustRoot | None = None,
    verify: bool = True,
) -> IOpenSSLClientConnectionCreator:
    """
    TLS settings for an ``https://`` proxy: TLS 1.2 or newer, certificate
    checked against the proxy's host name (``trust_root``: None for the
    platform's CAs), or nothing checked when ``verify`` is False (``-k``).
    """
    if not verify:
        log.warn(
            "SECURITY WARNING: SSL host verification is disabled for web proxy"
            " - connection is vulnerable to MITM attacks"
        )
        # The reference checks nothing and sends no SNI towards the proxy.
        return UnverifiedClientTLS()
    return optionsForClientTLS(
        proxy.host,
        trustRoot=trust_root,
        extraCertificateOptions={
            "raiseMinimumTo": TLSVersion.TLSv1_2,
        },
    )


def proxied_endpoint(
    reactor: IReactorTime,
    proxy: ProxyURL,
    host: str,
    port: int,
    *,
    proxy_tls: IOpenSSLClientConnectionCreator | None = None,
    timeout: float = 30,
) -> IStreamClientEndpoint:
    """
    A plain stream to ``host:port`` through ``proxy``; the caller wraps it with ``wrapClientTLS``.

    ``proxy_tls`` is used for ``https://`` proxies (default: the platform's
    CAs, see ``proxy_tls_options``). ``timeout`` bounds the TCP connect to
    the proxy, and, separately, the whole tunnel setup.
    """
    from aws_localproxy.upstream.webproxy.httpconnect import HTTPConnectEndpoint
    from aws_localproxy.upstream.webproxy.socks import SOCKS5Endpoint

    to_proxy: IStreamClientEndpoint = HostnameEndpoint(
        reactor, proxy.host, proxy.port, timeout=timeout
    )
    if proxy.scheme == "https":
        to_proxy = wrapClientTLS(proxy_tls or proxy_tls_options(proxy), to_proxy)
    if proxy.scheme in ("http", "https"):
        return HTTPConnectEndpoint(
            to_proxy,
            host,
            port,
            credentials=proxy.credentials,
            timeout=timeout,
            clock=reactor,
            proxy_name=proxy.authority,
        )
    return SOCKS5Endpoint(
        to_proxy,
        host,
        port,
        credentials=proxy.credentials,
        remote_dns=proxy.scheme == "socks5h",
        timeout=timeout,
        clock=reactor,
        proxy_name=proxy.authority,
    )


def service_endpoint(
    reactor: IReactorTime,
    config_web_proxy: str | None,
    no_proxy: str | None,
    host: str,
    port: int,
    *,
    proxy_tls: IOpenSSLClientConnectionCreator | None = None,
    trust_root: IOpenSSLTrustRoot | None = None,
    verify_tls: bool = True,
    timeout: float = 30,
) -> IStreamClientEndpoint:
    """
    The raw TCP stream to the tunnel service: direct, or through the configured proxy.

    ``config_web_proxy`` is the raw proxy URL (``ProxyConfig.web_proxy``),
    ``no_proxy`` the raw bypass list. For an ``https://`` proxy, TLS to the
    proxy uses ``proxy_tls`` if given, else ``trust_root``/``verify_tls``
    (the same ``-c``/``-k`` settings as the service's TLS, as in the
    reference). Raises ``ProxyURLError`` for an unusable URL. Build it once
    and reuse it for every reconnect: it keeps no per-connection state.
    """
    if config_web_proxy and not bypass_proxy(host, no_proxy, port):
        proxy = parse_proxy_url(config_web_proxy)
        if proxy.port_defaulted:
            log.warn(
                "No port was was provided for the web proxy, using default: {port}",
                port=proxy.port,
            )
        log.info(
            "Connecting to {target} through the web proxy {proxy}",
            target=f"{host}:{port}",
            proxy=str(proxy),
        )
        if proxy.scheme == "https" and proxy_tls is None:
            proxy_tls = proxy_tls_options(proxy, trust_root=trust_root, verify=verify_tls)
        return proxied_endpoint(reactor, proxy, host, port, proxy_tls=proxy_tls, timeout=timeout)
    if config_web_proxy:
        log.info("{host} is in NO_PROXY: connecting directly", host=host)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)
