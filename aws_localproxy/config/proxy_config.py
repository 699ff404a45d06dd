# -*- test-case-name: tests.config.test_proxy_config -*-
"""
The validated configuration of one local proxy: what the CLI, twistd and an
embedding application all hand to L{aws_localproxy.proxy.service.LocalProxyService}.

Building one is the end of validation, never the start: the option parser
(L{aws_localproxy.cli.options}) checks every rule of the reference and only then
constructs a L{ProxyConfig}; an application that builds one in code gets the
same checks from C{__post_init__}.  An invalid configuration cannot exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from aws_localproxy.config.settings import Settings
from aws_localproxy.protocol.constants import Mode, PeerVersion

__all__ = ["ProxyConfig"]


@dataclass(frozen=True)
class ProxyConfig:
    """
    Everything a local proxy needs to run, validated.

    @ivar service_map: the ``-s``/``-d`` mapping, service ID -> endpoint text.
        Empty when none was given (config files or "pick a port" decide);
        C{{"": endpoint}} for the V1 format (a bare port or host:port).
    @ivar config_files: ``(path, text)`` pairs from ``--config-dir`` (or the
        default ``./config``), looked up when SERVICE_IDS arrives.
    @ivar use_tls: C{False} only for the documented ``ws://`` test extension.
    @ivar capath: the ``-c`` directory (OpenSSL hashed), added to the system CAs.
    @ivar verify_tls: C{False} with ``-k``.
    @ivar web_proxy: the raw proxy URL (``https_proxy`` / ``HTTPS_PROXY``), or C{None}.
    @ivar no_proxy: the raw ``NO_PROXY`` list, or C{None}.
    @ivar verbosity: ``-v`` level, 0 (off) to 6 (trace).
    @ivar client_token_file: ``--client-token-file``: where the client token
        is kept across restarts (L{aws_localproxy.config.client_token.load_or_create_client_token}).
        C{None} when not given, and when C{client_token} is given (that one wins).
    @ivar stdio: ``--stdio``: a source whose one local connection is the
        process's standard input and output (no listener; logs on stderr only).
    @ivar stdio_service_id: the service ID that connection is for; C{None}
        for a tunnel without service IDs (or with a single one).
    @ivar metrics_port: ``--metrics-port``: where to serve metrics (0: a port
        the system picks); C{None}: no metrics listener.
    @ivar metrics_address: ``--metrics-address``: the metrics listener's address.
    """

    mode: Mode
    access_token: str = field(repr=False)
    endpoint_host: str
    endpoint_port: int = 443
    client_token: Optional[str] = field(default=None, repr=False)
    use_tls: bool = True
    service_map: Mapping[str, str] = field(default_factory=dict)
    config_files: Tuple[Tuple[str, str], ...] = ()
    bind_address: Optional[str] = None
    capath: Optional[str] = None
    verify_tls: bool = True
    peer_version: PeerVersion = PeerVersion.V3
    settings: Settings = field(default_factory=Settings)
    web_proxy: Optional[str] = field(default=None, repr=False)
    no_proxy: Optional[str] = None
    verbosity: int = 4
    client_token_file: Optional[str] = None
    stdio: bool = False
    stdio_service_id: Optional[str] = None
    metrics_port: Optional[int] = None
    metrics_address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not self.access_token:
            raise ValueError("an access token is required")
        if not self.endpoint_host:
            raise ValueError("a proxy endpoint host is required")
        if not 0 < self.endpoint_port < 65536:
            raise ValueError(f"invalid proxy endpoint port: {self.endpoint_port}")
        if not 0 <= self.verbosity <= 6:
            raise ValueError(f"verbosity must be 0..6, not {self.verbosity}")
        if self.stdio and self.mode is not Mode.SOURCE:
            raise ValueError("stdio works in source mode only")
        if self.stdio and self.service_map:
            raise ValueError("stdio has no -s/-d mapping")
        if self.stdio_service_id is not None and not self.stdio:
            raise ValueError("stdio_service_id needs stdio")
        if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
            raise ValueError(f"invalid metrics port: {self.metrics_port}")
        if not self.metrics_address:
            raise ValueError("a metrics address is required")

    @property
    def listen_address(self) -> str:
        """Where a source binds its listeners: ``-b``, else ``default_bind_address``."""
        return self.bind_address or self.settings.default_bind_address

    @property
    def websocket_url(self) -> str:
        """The data-plane URL, with the mode in the query (no secrets in it)."""
        scheme = "wss" if self.use_tls else "ws"
        host = f"[{self.endpoint_host}]" if ":" in self.endpoint_host else self.endpoint_host
        default = 443 if self.use_tls else 80
        port = "" if self.endpoint_port == default else f":{self.endpoint_port}"
        return f"{scheme}://{host}{port}/tunnel?local-proxy-mode={self.mode.query_value}"
