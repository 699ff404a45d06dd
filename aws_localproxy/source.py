# -*- test-case-name: tests.test_local_sides -*-
"""
The source's local side: one listener per service ID.

A service ID's endpoint is the reference's ``[address:]port`` (a TCP port
on the bind address) or any Twisted server endpoint description
(``unix:/run/ssh1.sock``, ``tcp:0:interface=::1``; see
L{aws_localproxy.endpoints}); an embedding application may hand over any
C{IStreamServerEndpoint} for a service ID instead.

Listeners are opened when the first SERVICE_IDS arrives and then kept for
the life of the proxy, across reconnects, with the address they first got
(even a port the proxy picked itself), so a client configured against that
port keeps working; the reference closes them on every reconnect and may
pick new ports.  A connection accepted while the tunnel is not ready is
closed at once (the reference refuses it by not listening).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IAddress, IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger

from aws_localproxy.endpoints import EndpointError, SourceEndpoint, parse_source_endpoint
from aws_localproxy.errors import FatalTunnelError
from aws_localproxy.flowcontrol import InboundFlow
from aws_localproxy.interfaces import LocalConnection, TunnelConnection
from aws_localproxy.localconn import LocalStreamProtocol
from aws_localproxy.outcome import Outcome
from aws_localproxy.settings import LocalSockets

__all__ = ["SourceSide", "describe_address"]

Accept = Callable[[str, LocalConnection], Optional[TunnelConnection]]


def describe_address(address: object) -> str:
    """``port 5555`` for an IP address, the path of a Unix socket, else the address's repr."""
    port = getattr(address, "port", None)
    if port is not None:
        return f"port {port}"
    name = getattr(address, "name", None)
    if name is not None:
        return name.decode() if isinstance(name, bytes) else str(name)
    return repr(address)


class _ServiceFactory(Factory):
    """Accepted connections of one service ID become tunnel connections."""

    noisy = False

    def __init__(self, side: SourceSide, service_id: str) -> None:
        self.side = side
        self.service_id = service_id

    def buildProtocol(self, addr: object) -> LocalStreamProtocol:
        return LocalStreamProtocol(
            self.side.inbound,
            on_made=self._made,
            sockets=self.side.sockets,
        )

    def _made(self, protocol: LocalStreamProtocol) -> None:
        connection = self.side.accept(self.service_id, protocol)
        if connection is None:
            protocol.refuse()
            return
        protocol.tunnel_connection = connection
        host = protocol.transport.getHost()
        port = getattr(host, "port", None)
        if port is not None:
            self.side.log.info(
                "Accepted tcp connection on port {port} from {peer}", port=port, peer=protocol.peer
            )
        else:
            self.side.log.info(
                "Accepted connection on {address} for service id {service_id}",
                address=describe_address(host),
                service_id=self.service_id,
            )


@dataclass(frozen=True)
class _Listen:
    """How one service ID listens: what it says in logs and the endpoint to use."""

    describe: str
    make: Callable[[], IStreamServerEndpoint]
    fatal: str
    #: The reference form's port (0: picked by the system), else C{None}.
    port: Optional[int] = None


class SourceSide:
    """The L{LocalSide} of a source local proxy."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        inbound: InboundFlow,
        bind_address: str,
        *,
        on_fatal: Callable[[BaseException], None],
        sockets: LocalSockets = LocalSockets(),
        server_endpoints: Optional[Mapping[str, IStreamServerEndpoint]] = None,
    ) -> None:
        """
        @param sockets: backlog and read size of every local connection, and
            how binding a listener is retried.
        @param server_endpoints: service ID -> the endpoint to listen on,
            given by an embedding application; it wins over the configured text.
        """
        self.sockets = sockets
        self._reactor = reactor
        self.inbound = inbound
        self.bind_address = bind_address
        self._on_fatal = on_fatal
        self._server_endpoints = dict(server_endpoints or {})
        self.accept: Accept = lambda service_id, local: None
        self._ports: Dict[str, IListeningPort] = {}
        self._pending: Dict[str, Deferred[IListeningPort]] = {}
        self._bound: Dict[str, Outcome[IAddress]] = {}
        self._stopped = False
        self._stopping: Optional[Outcome[None]] = None

    def services_ready(self, endpoints: Mapping[str, str]) -> None:
        plans: Dict[str, _Listen] = {}
        for service_id, endpoint in endpoints.items():
            if service_id in self._ports or service_id in self._pending:
                continue
            plans[service_id] = self._plan(service_id, endpoint)
        for service_id, plan in plans.items():
            self.log.info("calling setup from loop")
            self._pending[service_id] = self._listen(service_id, plan)

    def _plan(self, service_id: str, text: str) -> _Listen:
        given = self._server_endpoints.get(service_id)
        if given is not None:
            return _Listen(
                repr(given),
                lambda: given,
                f"Source local proxy fails to listen on {given!r} for service id {service_id}",
            )
        try:
            parsed: SourceEndpoint = parse_source_endpoint(text)
        except EndpointError as error:
            raise FatalTunnelError(str(error)) from None
        if parsed.description is None:
            port = parsed.port
            return _Listen(
                f"{self.bind_address}:{port}",
                lambda: parsed.server_endpoint(self._reactor, self.bind_address),
                f"Source local proxy fails to bind address {self.bind_address}:{port} "
                f"for service id {service_id}",
                port=port,
            )
        return _Listen(
            parsed.description,
            lambda: parsed.server_endpoint(self._reactor, self.bind_address),
            f"Source local proxy fails to listen on {parsed.description} "
            f"for service id {service_id}",
        )

    def connect(self, connection: TunnelConnection) -> LocalConnection:
        raise FatalTunnelError("A source local proxy does not connect to local services")

    def listening_address(self, service_id: str) -> Deferred[IAddress]:
        """The bound address of C{service_id}'s listener, once it listens."""
        return self._bound.setdefault(service_id, Outcome()).wait()

    def listening_port(self, service_id: str) -> Deferred[int]:
        """
        The bound port of C{service_id}'s listener, once it listens; fails
        with C{ValueError} for a listener without a port (a Unix socket).
        """

        def port_of(address: IAddress) -> int:
            port = getattr(address, "port", None)
            if port is None:
                raise ValueError(f"service id {service_id} listens on {address!r}, not on a port")
            return int(port)

        return self.listening_address(service_id).addCallback(port_of)

    def bound_ports(self) -> Mapping[str, int]:
        """Service ID -> bound port, for the listeners open now that have one."""
        ports = {}
        for service_id, listening in self._ports.items():
            port = getattr(listening.getHost(), "port", None)
            if port is not None:
                ports[service_id] = int(port)
        return ports

    async def _listen_with_retries(self, plan: _Listen, service_id: str) -> IListeningPort:
        attempts = 0
        while True:
            try:
                listening: IListeningPort = await plan.make().listen(
                    _ServiceFactory(self, service_id)
                )
                return listening
            except Exception as error:
                attempts += 1
                reason = getattr(error, "message", None) or str(error) or type(error).__name__
                if plan.port is not None:
                    self.log.error(
                        "Could not bind to address: {address}:{port} -- {error}",
                        address=self.bind_address,
                        port=plan.port,
                        error=reason,
                    )
                else:
                    self.log.error(
                        "Could not listen on {endpoint} -- {error}",
                        endpoint=plan.describe,
                        error=reason,
                    )
                if self._stopped or (0 <= self.sockets.retry_count < attempts):
                    raise
                await deferLater(self._reactor, self.sockets.retry_delay)

    def _listen(self, service_id: str, plan: _Listen) -> Deferred[IListeningPort]:
        d = Deferred.fromCoroutine(self._listen_with_retries(plan, service_id))

        def listening(listening_port: IListeningPort) -> IListeningPort:
            self._pending.pop(service_id, None)
            if self._stopped:
                listening_port.stopListening()
                return listening_port
            self._ports[service_id] = listening_port
            address = listening_port.getHost()
            bound = getattr(address, "port", None)
            if bound is not None:
                self.log.info("Listening for new connection on port {port}", port=bound)
            else:
                self.log.info(
                    "Listening for new connection on {address} for service id {service_id}",
                    address=describe_address(address),
                    service_id=service_id,
                )
            if plan.port == 0:
                self.log.info(
                    "Listen port assigned for service id {service_id}. New port mapping: ",
                    service_id=service_id,
                )
                self.log.info("{service_id} = {port}", service_id=service_id, port=bound)
            self._bound.setdefault(service_id, Outcome()).succeed(address)
            return listening_port

        def failed(failure: object) -> None:
            self._pending.pop(service_id, None)
            if not self._stopped:
                self._on_fatal(FatalTunnelError(plan.fatal))

        d.addCallbacks(listening, failed)
        return d

    def stop(self) -> Deferred[None]:
        """
        Stop every listener (the proxy is stopping); fires when all have
        stopped, also when called again while the first stop is under way.
        """
        if self._stopping is None:
            self._stopped = True
            for pending in list(self._pending.values()):
                pending.cancel()
            ports = list(self._ports.values())
            self._ports.clear()
            for bound in self._bound.values():
                bound.fail(CancelledError("the local proxy stopped"))
            stopped = DeferredList([maybeDeferred(port.stopListening) for port in ports])
            self._stopping = Outcome()
            stopping = self._stopping
            stopped.addCallback(lambda _: stopping.succeed(None))
        return self._stopping.wait()
