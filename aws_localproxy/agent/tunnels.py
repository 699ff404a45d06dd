# -*- test-case-name: tests.agent.test_tunnels -*-
"""
The destinations the agent runs: one in-process local proxy per notified tunnel.

For each valid notification L{TunnelManager.open} decides whether the
device can serve the tunnel (a free place under the cap; a local mapping
for every service ID the tunnel names; not a token already running), builds
the destination's L{ProxyConfig} from the agent's template (the ``-d``
mapping narrowed to the tunnel's services, the endpoint of the
notification's region unless ``-e`` gave one, a new client token), and
starts a L{LocalProxyService}.  When that proxy ends (the tunneling service
closed the tunnel, or the token was refused) it is stopped and forgotten.
Every decision is one log line; no token is ever in one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.logger import Logger

from aws_localproxy.agent.notification import TunnelNotification
from aws_localproxy.config.client_token import generate_client_token
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.regions import EndpointError, endpoint_for_region
from aws_localproxy.protocol.constants import Mode

__all__ = ["TunnelManager", "RunningTunnel", "ProxyFactory", "DEFAULT_MAX_TUNNELS"]

DEFAULT_MAX_TUNNELS = 10

#: Builds a destination local proxy: C{(config, reactor) -> IService} with
#: C{when_finished} (L{aws_localproxy.proxy.service.LocalProxyService} itself).
ProxyFactory = Callable[[ProxyConfig, Any], Any]


def _default_proxy_factory(config: ProxyConfig, reactor: Any) -> Any:
    from aws_localproxy.proxy.service import LocalProxyService

    return LocalProxyService(config, reactor)


def _token_key(token: str) -> bytes:
    """What running tunnels are keyed by: a digest of the access token, not the token."""
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


@dataclass
class RunningTunnel:
    """One destination the agent started."""

    number: int
    services: Tuple[str, ...]
    proxy: Any
    config: ProxyConfig


@attrs.define(eq=False, repr=False)
class TunnelManager:
    """
    Starts, counts and ends the agent's destinations.

    Its C{lookup_endpoints} is the ``--config-dir`` mapping files' lookup,
    when the template has no ``-d`` mapping; C{on_secret} is called with each
    access and client token before the proxy starts (the console script
    redacts them from every log line).

    @ivar template: the destination settings from the agent's options (its
        access token is a placeholder, replaced per tunnel).
    @ivar endpoint_from_region: C{True} when no ``-e`` was given: each tunnel's
        endpoint comes from its notification's region.
    """

    log = Logger()

    _reactor: Any
    template: ProxyConfig = attrs.field()
    endpoint_from_region: bool = attrs.field(kw_only=True)
    max_tunnels: int = attrs.field(kw_only=True, default=DEFAULT_MAX_TUNNELS)
    _lookup: Optional[Callable[[List[str]], Mapping[str, str]]] = attrs.field(
        kw_only=True, alias="lookup_endpoints", default=None
    )
    _proxy_factory: ProxyFactory = attrs.field(kw_only=True, default=_default_proxy_factory)
    _on_secret: Callable[[str], None] = attrs.field(kw_only=True, default=lambda secret: None)
    _tunnels: Dict[bytes, RunningTunnel] = attrs.field(init=False, factory=dict)
    _count: int = attrs.field(init=False, default=0)
    _stopping: bool = attrs.field(init=False, default=False)
    #: Every tunnel that ended, by number, with its exit code (newest last).
    ended: List[Tuple[int, int]] = attrs.field(init=False, factory=list)

    @template.validator
    def _destination(self, attribute: Any, template: ProxyConfig) -> None:
        if template.mode is not Mode.DESTINATION:
            raise ValueError("the agent's template must be a destination")

    @max_tunnels.validator
    def _at_least_one(self, attribute: Any, max_tunnels: int) -> None:
        if max_tunnels < 1:
            raise ValueError("max_tunnels must be at least 1")

    @property
    def tunnels(self) -> List[RunningTunnel]:
        """The destinations running now, oldest first."""
        return sorted(self._tunnels.values(), key=lambda t: t.number)

    # -- deciding ---------------------------------------------------------------------------

    def _service_map(self, services: Tuple[str, ...]) -> Tuple[Optional[Dict[str, str]], str]:
        """The destination mapping for these service IDs, or C{None} and why not."""
        configured = dict(self.template.service_map)
        if len(configured) == 1 and "" in configured:
            # -d 22: one endpoint for a tunnel with one (or no) service ID.
            if len(services) > 1:
                return None, (
                    f"it names {len(services)} services ({', '.join(services)}) but -d gives a"
                    " single endpoint without a service ID"
                )
            return configured, ""
        if not services:
            return None, "it names no service ID and -d maps service IDs"
        if configured:
            missing = [s for s in services if s not in configured]
            if missing:
                return None, f"no local mapping for service ID {', '.join(missing)} (-d)"
            return {s: configured[s] for s in services}, ""
        found = self._lookup(list(services)) if self._lookup is not None else {}
        missing = [s for s in services if s not in found]
        if missing:
            return None, f"no local mapping for service ID {', '.join(missing)} (--config-dir)"
        return {s: found[s] for s in services}, ""

    def _config_for(
        self, notification: TunnelNotification, service_map: Dict[str, str]
    ) -> ProxyConfig:
        changes: Dict[str, Any] = {}
        if self.endpoint_from_region:
            endpoint = endpoint_for_region(notification.region, self.template.settings)
            changes.update(
                endpoint_host=endpoint.host, endpoint_port=endpoint.port, use_tls=endpoint.use_tls
            )
        return replace(
            self.template,
            access_token=notification.client_access_token,
            client_token=generate_client_token(),
            client_token_file=None,
            service_map=service_map,
            config_files=(),
            **changes,
        )

    # -- acting -------------------------------------------------------------------------------

    def open(self, notification: TunnelNotification) -> Optional[RunningTunnel]:
        """Start a destination for C{notification}, or log why not; returns it if started."""
        services = notification.services
        shown = ", ".join(services) or "(none)"
        if self._stopping:
            return None
        key = _token_key(notification.client_access_token)
        if key in self._tunnels:
            running = self._tunnels[key]
            self.log.info(
                "Ignored a repeated notification for tunnel #{number} (services {services})",
                number=running.number,
                services=shown,
            )
            return None
        if len(self._tunnels) >= self.max_tunnels:
            self.log.error(
                "Refused a tunnel for services {services}: {count} tunnels are open, the most"
                " allowed (--max-tunnels)",
                services=shown,
                count=len(self._tunnels),
            )
            return None
        service_map, why = self._service_map(services)
        if service_map is None:
            self.log.error(
                "Refused a tunnel for services {services}: {why}", services=shown, why=why
            )
            return None
        try:
            config = self._config_for(notification, service_map)
        except (EndpointError, ValueError) as e:
            self.log.error(
                "Refused a tunnel for services {services}: {why}", services=shown, why=str(e)
            )
            return None
        self._on_secret(config.access_token)
        if config.client_token:
            self._on_secret(config.client_token)
        self._count += 1
        number = self._count
        proxy = self._proxy_factory(config, self._reactor)
        running = RunningTunnel(number, services, proxy, config)
        self._tunnels[key] = running
        self.log.info(
            "Tunnel #{number}: starting a destination for services {services} via {host}:{port}"
            " ({mapping})",
            number=number,
            services=shown,
            host=config.endpoint_host,
            port=config.endpoint_port,
            mapping=", ".join(f"{k or '(v1)'}={v}" for k, v in service_map.items()),
        )
        proxy.when_finished.addCallback(self._finished, key, running)
        try:
            proxy.startService()
        except Exception:
            self.log.failure("Tunnel #{number}: the destination could not start", number=number)
            self._tunnels.pop(key, None)
            return None
        return running

    def _finished(self, code: int, key: bytes, running: RunningTunnel) -> Deferred[None]:
        if self._tunnels.get(key) is running:
            del self._tunnels[key]
        self.ended.append((running.number, code))
        if not self._stopping:
            self.log.info(
                "Tunnel #{number} ended (exit code {code}); {count} open",
                number=running.number,
                code=code,
                count=len(self._tunnels),
            )
        stopped: Deferred[None] = (
            maybeDeferred(running.proxy.stopService) if running.proxy.running else succeed(None)
        )
        return stopped.addErrback(lambda f: self.log.failure("Stopping tunnel failed", f))

    def stop(self) -> Deferred[None]:
        """Stop every destination (the agent is stopping); fires when all are stopped."""
        self._stopping = True
        waits: List[Deferred[Any]] = []
        for running in self.tunnels:
            if running.proxy.running:
                waits.append(maybeDeferred(running.proxy.stopService))
        return gatherResults(waits).addCallback(lambda _: None)
