# -*- test-case-name: tests.tunnelservice.test_api -*-
# mypy: disallow-untyped-calls=False
# (this module subclasses or calls Twisted/Autobahn APIs that have no annotations)
"""
Both planes on one port, and the object that runs them.

``GET /tunnel`` upgrades to the data plane (L{dataplane}), ``POST /`` is the
management API (L{api}); everything else is a 400, as the real service
answers a bad path.  L{RunningTunnelService} is what embedding code (tests,
the lead's runtime) and the twistd service hold: where the service listens,
its CA, and in-process shortcuts to open, close and break tunnels.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, TypedDict, Union, Unpack, cast

from autobahn.twisted.resource import WebSocketResource
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages
from twisted.web.resource import Resource
from twisted.web.server import Request

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.api import ManagementApi, NotifyDevice
from aws_localproxy.tunnelservice.certs import ensure_certificates, server_tls_options
from aws_localproxy.tunnelservice.dataplane import DataPlaneFactory
from aws_localproxy.tunnelservice.frontdoor import (
    DEFAULT_HANDSHAKE_DEADLINE,
    DEFAULT_MAX_CONNECTIONS,
    LimitedChannel,
    LimitedSite,
)
from aws_localproxy.tunnelservice.model import DEFAULT_LIFETIME_MINUTES
from aws_localproxy.tunnelservice.registry import TunnelRegistry
from aws_localproxy.tunnelservice.relay import Relay, RelayOptions
from aws_localproxy.tunnelservice.sigv4 import CredentialsSource, SignatureCheck, load_credentials
from aws_localproxy.tunnelservice.store import SQLiteTunnelStore
from aws_localproxy.upstream.tls_layer import BatchingTLSFactory

log = Logger()


class _Root(Resource):
    """``/`` is the API, ``/tunnel`` the data plane, anything else a 400."""

    def __init__(self, api: Any, data_plane: Any) -> None:
        super().__init__()
        self.putChild(b"", api)
        self.putChild(b"tunnel", data_plane)

    def getChild(self, path: bytes, request: Any) -> Any:
        return pages.errorPage(400, "Bad Request", "Unknown path")


class _DataPlaneResource(WebSocketResource):
    """Autobahn's upgrade resource, minus the HTTP idle timer of the taken-over channel."""

    def render(self, request: Request) -> Any:
        channel = cast(LimitedChannel, request.channel)
        if channel.transport is not None:
            channel.site.taken_over(channel)
        result = super().render(request)
        # The WebSocket owns the connection now; the HTTP channel's idle
        # timer would otherwise fire on a connection it no longer has.
        channel.setTimeout(None)
        return result


def advertised_host(interface: str) -> str:
    """The host clients should use for C{interface} (a wildcard means this machine)."""
    if interface in ("", "0.0.0.0"):
        return "127.0.0.1"
    if interface == "::":
        return "::1"
    return interface


def host_port(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


@dataclass(eq=False)
class RunningTunnelService:
    """
    A listening tunnel service.

    The methods are in-process shortcuts for tests and embedding code: they
    act on the service's state directly, without HTTP.
    """

    host: str
    port: int
    use_tls: bool
    ca_file: Optional[str]
    capath: Optional[str]
    registry: TunnelRegistry
    relay: Relay
    _listening: Any  # IListeningPort
    _factory: DataPlaneFactory
    _site: LimitedSite
    _store: Optional[SQLiteTunnelStore] = None
    _stopped: Optional[Deferred[None]] = field(default=None)
    #: Checks the management API's signatures (C{credentials}); C{None}: open.
    signature_check: Optional[SignatureCheck] = None

    @property
    def endpoint(self) -> str:
        """``HOST:PORT``, what a local proxy takes as its proxy endpoint."""
        return host_port(self.host, self.port)

    @property
    def api_url(self) -> str:
        """The management API's endpoint URL (boto3 ``endpoint_url``, CLI ``--endpoint-url``)."""
        return "%s://%s" % ("https" if self.use_tls else "http", self.endpoint)

    def ready_info(self) -> Dict[str, Optional[str]]:
        """What ``--ready-file`` holds."""
        return {
            "endpoint": self.endpoint,
            "api_url": self.api_url,
            "ca_file": self.ca_file,
            "capath": self.capath,
        }

    def open_tunnel(
        self,
        services: Sequence[str] = (),
        max_lifetime_minutes: int = DEFAULT_LIFETIME_MINUTES,
    ) -> Tuple[str, str, str]:
        """Open a tunnel; return (tunnel ID, source token, destination token)."""
        tunnel = self.registry.open_tunnel(
            services=list(services), max_lifetime_minutes=max_lifetime_minutes
        )
        return (
            tunnel.tunnel_id,
            tunnel.slot(Mode.SOURCE).access_token,
            tunnel.slot(Mode.DESTINATION).access_token,
        )

    def close_tunnel(self, tunnel_id: str) -> None:
        """Close a tunnel and both its WebSockets, like the CloseTunnel API."""
        self.registry.close_tunnel(tunnel_id)

    def drop_connections(self, tunnel_id: str, mode: Union[str, Mode, None] = None) -> None:
        """
        Abort the TCP connections of a tunnel's WebSockets (one mode, or
        both) without a close frame, as a network failure would.  The tunnel
        stays open: a client that sent a client token may reconnect.
        """
        tunnel = self.registry.get(tunnel_id)
        modes = list(Mode) if mode is None else [Mode(mode)]
        for each in modes:
            peer = tunnel.slot(each).peer
            if peer is not None:
                peer.abort()

    def connection_state(self, tunnel_id: str, mode: Union[str, Mode]) -> str:
        """``CONNECTED`` or ``DISCONNECTED``, as DescribeTunnel reports it."""
        return self.registry.get(tunnel_id).slot(Mode(mode)).state

    def wait_for_state(self, tunnel_id: str, mode: Union[str, Mode], state: str) -> Deferred[None]:
        """Fires once C{connection_state(tunnel_id, mode)} is C{state}: tests wait with it."""
        return self.registry.wait_for_state(tunnel_id, Mode(mode), state)

    @property
    def violations(self) -> List[Tuple[str, str, str]]:
        """(tunnel ID, mode, reason) of every connection closed for breaking a rule."""
        return self.relay.violations

    def stop(self) -> Deferred[None]:
        """Stop listening and drop every connection; fires when all are gone."""
        if self._stopped is None:
            self.registry.stop()
            self._stopped = gatherResults(
                [
                    maybeDeferred(self._listening.stopListening),
                    self._factory.stop_all(),
                    self._site.stop_all(),
                ]
            ).addCallback(self._close_store)
        d: Deferred[None] = Deferred()

        def done(result: object) -> object:
            d.callback(None)
            return result

        self._stopped.addBoth(done)
        return d

    def _close_store(self, _: object) -> None:
        if self._store is not None:
            self._store.close()


#: The region the local tunnel service says it is in, unless told otherwise.
REGION = "us-east-1"


class TunnelServiceSettings(TypedDict, total=False):
    """The settings L{LocalTunnelService} hands to L{start_tunnel_service} (see there)."""

    interface: str
    port: int
    use_tls: bool
    state_file: Optional[str]
    region: str
    bandwidth_limit: int
    max_connections: int
    handshake_deadline: float
    # The service's choices the AWS service may make differently (see start_tunnel_service).
    reset_on_reattach: bool
    service_ids_without_services: str
    reframe: int
    credentials: CredentialsSource


@inlineCallbacks
def start_tunnel_service(
    reactor: Any,
    cert_dir: Optional[str],
    interface: str = "127.0.0.1",
    port: int = 0,
    use_tls: bool = True,
    state_file: Optional[str] = None,
    region: str = REGION,
    bandwidth_limit: int = 0,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    handshake_deadline: float = DEFAULT_HANDSHAKE_DEADLINE,
    notify: Optional[NotifyDevice] = None,
    reset_on_reattach: bool = True,
    service_ids_without_services: str = "empty",
    reframe: int = 0,
    credentials: CredentialsSource = None,
) -> Any:
    """
    Create (or reuse) the certificates, restore the state file if any, and
    listen on C{interface}:C{port}.

    @param bandwidth_limit: bytes per second each tunnel carries per
        direction, as the AWS tunneling service caps it (0: unlimited).
    @param max_connections: connections open at once; more are closed at once.
    @param handshake_deadline: seconds from accept to the end of the first
        request head (TLS handshake included).
    @param notify: tells a thing about a tunnel opened for it (``--mqtt-broker``).
    @param reset_on_reattach: reset the other side's streams when a peer
        (re)connects (L{RelayOptions}).
    @param service_ids_without_services: C{"empty"} or C{"blank"}: the
        SERVICE_IDS of a tunnel without services (L{RelayOptions}).
    @param reframe: 0 forwards each message as received; N joins what is
        pending for a peer and cuts it into frames of N bytes (L{dataplane}).
    @param credentials: the key pairs whose Signature Version 4 the
        management API accepts, and no other: an AWS shared-credentials file
        (L{sigv4.load_credentials}) or a mapping of access key ID to secret
        access key.  C{None}: any request is accepted (logged as a warning on
        an interface other than loopback).

    @return: a Deferred firing with a L{RunningTunnelService}.
    """
    signature_check = _signature_check(reactor, credentials, region)
    files = None
    tls = None
    if use_tls:
        if cert_dir is None:
            raise ValueError("a certificate directory is needed for TLS")
        files = ensure_certificates(cert_dir)
        tls = server_tls_options(files)
    store = SQLiteTunnelStore(state_file) if state_file else None
    registry = TunnelRegistry(reactor, region=region, store=store)
    registry.load()
    if bandwidth_limit < 0:
        raise ValueError("the bandwidth limit must not be negative")
    relay = Relay(
        reactor,
        on_state_changed=registry.state_changed,
        options=RelayOptions(
            reset_on_reattach=reset_on_reattach,
            service_ids_without_services=service_ids_without_services,
        ),
    )
    factory = DataPlaneFactory(
        registry, relay, reactor=reactor, bandwidth_limit=bandwidth_limit, reframe=reframe
    )
    site = LimitedSite(
        _Root(ManagementApi(registry, notify, signature_check), _DataPlaneResource(factory)),
        reactor,
        max_connections=max_connections,
        handshake_deadline=handshake_deadline,
    )
    site.count_others = lambda: len(factory.connections)
    endpoint: Any = TCP4ServerEndpoint(reactor, port, interface=interface)
    # The proxies' TLS layer serves here too: the service relays every byte
    # of every tunnel, so its cost per record is the bench's ceiling.
    listened: Any = site if tls is None else BatchingTLSFactory(tls, False, site)
    try:
        listening = yield endpoint.listen(listened)
    except BaseException:
        registry.stop()
        if store is not None:
            store.close()
        raise
    running = RunningTunnelService(
        host=advertised_host(interface),
        port=listening.getHost().port,
        use_tls=use_tls,
        ca_file=files.ca_file if files else None,
        capath=files.capath if files else None,
        registry=registry,
        relay=relay,
        _listening=listening,
        _factory=factory,
        _site=site,
        _store=store,
        signature_check=signature_check,
    )
    _warn_if_open(running, interface)
    log.info(
        "Local tunnel service listening on {endpoint} (API {api_url})",
        endpoint=running.endpoint,
        api_url=running.api_url,
    )
    return running


def is_loopback(interface: str) -> bool:
    """Whether only this machine can reach C{interface} (``localhost`` or a loopback address)."""
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def _signature_check(
    reactor: Any, credentials: CredentialsSource, region: str
) -> Optional[SignatureCheck]:
    """The management API's L{sigv4.SignatureCheck} on the reactor's clock, if any."""
    if credentials is None:
        return None
    keys = load_credentials(credentials) if isinstance(credentials, str) else credentials
    check = SignatureCheck(keys, region, clock=reactor.seconds)
    log.info(
        "Management API: Signature Version 4 required; {count} access key(s) accepted",
        count=len(check.access_key_ids),
    )
    return check


def _warn_if_open(running: RunningTunnelService, interface: str) -> None:
    if running.signature_check is None and not is_loopback(interface):
        log.warn(
            "WARNING: the management API on {interface} is UNAUTHENTICATED, it accepts "
            "any request: whoever reaches {endpoint} can list every tunnel "
            "and rotate its tokens to take a side. Give --credentials FILE to require "
            "signed requests.",
            interface=interface,
            endpoint=running.endpoint,
        )


def write_ready_file(path: str, info: Dict[str, Optional[str]]) -> None:
    """Write C{info} as JSON to C{path} atomically (a reader never sees half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(temporary, "w") as f:
        json.dump(info, f)
        f.write("\n")
    os.replace(temporary, path)


class LocalTunnelService(Service):
    """
    The tunnel service as an C{IService}, for twistd, the console script and
    any application that embeds it (a test fixture, a demo).

    @ivar running_service: the L{RunningTunnelService} once listening (open
        tunnels with it, read its C{endpoint} and C{capath}).
    @ivar ready: fires with it (or fails) once startService has listened.
    """

    def __init__(
        self,
        reactor: Any,
        cert_dir: Optional[str],
        *,
        ready_file: Optional[str] = None,
        mqtt_broker: Optional[Any] = None,
        stop_reactor_on_failure: bool = True,
        **settings: Unpack[TunnelServiceSettings],
    ) -> None:
        """
        @param cert_dir: where the CA and server certificate are kept
            (created there if missing); C{None} only without TLS.
        @param ready_file: where to write the service's endpoints and CA
            (L{RunningTunnelService.ready_info}) once it listens.
        @param mqtt_broker: a L{aws_localproxy.agent.broker.BrokerConfig}: notify
            things there (L{notify.TunnelNotifier}); C{None}: no notifications.
        @param stop_reactor_on_failure: stop the reactor when it cannot
            listen (what twistd and the console script want); an embedding
            application passes C{False} and waits on L{ready} instead.
        @param settings: the keyword arguments of L{start_tunnel_service}.
        """
        self._reactor = reactor
        self._stop_reactor_on_failure = stop_reactor_on_failure
        self.notifier: Optional[Any] = None
        if mqtt_broker is not None:
            from aws_localproxy.tunnelservice.notify import TunnelNotifier

            self.notifier = TunnelNotifier(reactor, mqtt_broker, settings.get("region", REGION))
        self._cert_dir = cert_dir
        self._settings = settings
        self._ready_file = ready_file
        self.running_service: Optional[RunningTunnelService] = None
        self.ready: Deferred[RunningTunnelService] = Deferred()

    def startService(self) -> None:
        super().startService()
        notify = None
        if self.notifier is not None:
            self.notifier.startService()
            notify = self.notifier.notify
        d = start_tunnel_service(self._reactor, self._cert_dir, notify=notify, **self._settings)
        d.addCallback(self._started)
        d.addErrback(self._failed)

    def _started(self, running: RunningTunnelService) -> None:
        self.running_service = running
        if self._ready_file:
            write_ready_file(self._ready_file, running.ready_info())
        self.ready.callback(running)

    def _failed(self, failure: Failure) -> None:
        log.failure("The local tunnel service could not start", failure)
        self.ready.errback(failure)
        if self._stop_reactor_on_failure and self._reactor.running:
            self._reactor.stop()

    def stopService(self) -> Optional[Deferred[None]]:
        super().stopService()
        waits: List[Deferred[Any]] = []
        if self.notifier is not None and self.notifier.running:
            waits.append(self.notifier.stopService())
        if self.running_service is not None:
            waits.append(self.running_service.stop())
        return gatherResults(waits).addCallback(lambda _: None)
