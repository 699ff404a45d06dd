# -*- test-case-name: tests.local.test_source,tests.local.test_source_waiting -*-
"""
The source's local side: one listener per service ID.

A service ID's endpoint is the reference's ``[address:]port`` (a TCP port
on the bind address) or any Twisted server endpoint description
(``unix:/run/ssh1.sock``, ``tcp:0:interface=::1``; see
L{aws_localproxy.config.local_endpoints}); an embedding application may hand over any
C{IStreamServerEndpoint} for a service ID instead.

Listeners are opened when the first SERVICE_IDS arrives and then kept for
the life of the proxy, across reconnects, with the address they first got
(even a port the proxy picked itself), so a client configured against that
port keeps working; the reference closes them on every reconnect and may
pick new ports.

A connection the tunnel cannot start yet (L{Wait}: the session is
connecting, reconnecting or has no SERVICE_IDS yet, or the peer has not yet
shown whether it takes several connections a stream) is held: not read
(its transport is paused), offered to the tunnel again each time the
tunnel says connections may start, in the order they were accepted, and
refused with a log line saying why after C{hold_timeout} seconds (the
WebSocket connect timeout plus one retry delay by default: long enough for
a reconnect whose first attempt fails).  The reference refuses them by not
listening while it reconnects.  The tunnel has no clock: the bound's timer
lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger

from aws_localproxy.config.local_endpoints import (
    EndpointError,
    SourceEndpoint,
    parse_source_endpoint,
)
from aws_localproxy.config.settings import LocalSockets, Settings
from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.local.outcome import Outcome
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import LocalConnection, TunnelConnection, Wait

__all__ = ["SourceSide", "describe_address", "DEFAULT_HOLD_TIMEOUT"]

Accept = Callable[[str, LocalConnection], Union[TunnelConnection, Wait, None]]

#: Seconds a connection waits for the tunnel before it is refused: the
#: WebSocket connect timeout plus one retry delay (the settings' defaults).
DEFAULT_HOLD_TIMEOUT = (Settings.ws_open_handshake_timeout_ms + Settings.ws_retry_delay_ms) / 1000

#: What the I/O side is told when the tunnel cannot say why (the proxy stops).
_STOPPING = Wait("the local proxy is stopping")


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
        self.side.offer(self.service_id, protocol)


class _Waiting:
    """
    A local connection held unread until the tunnel can start it; the
    protocol's L{TunnelConnection} meanwhile, so that its end is noticed.
    """

    connection_id = 0

    def __init__(self, side: SourceSide, service_id: str, protocol: LocalStreamProtocol) -> None:
        self.side = side
        self.service_id = service_id
        self.protocol = protocol
        self.wait: Wait = _STOPPING
        self.timer: Optional[IDelayedCall] = None
        #: Bytes a transport delivered although paused (none from a TCP transport).
        self.early: List[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.early.append(data)

    def connection_lost(self) -> None:
        self.side._forget(self)

    def connect_failed(self, reason: str) -> None:
        pass

    def replace_local(self, stand_in: LocalConnection, local: LocalConnection) -> None:
        pass


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
        accept: Accept,
        given_up: Callable[[str, Wait], None],
        on_fatal: Callable[[BaseException], None],
        sockets: LocalSockets = LocalSockets(),
        server_endpoints: Optional[Mapping[str, IStreamServerEndpoint]] = None,
        hold_timeout: float = DEFAULT_HOLD_TIMEOUT,
    ) -> None:
        """
        @param accept: the tunnel's answer to a new local connection, and to
            one that waited (C{Tunnel.local_connection_offered}).
        @param given_up: told when a waiting connection is refused
            (C{Tunnel.local_connection_given_up}).
        @param sockets: backlog and read size of every local connection, and
            how binding a listener is retried.
        @param server_endpoints: service ID -> the endpoint to listen on,
            given by an embedding application; it wins over the configured text.
        @param hold_timeout: seconds a connection the tunnel cannot start yet
            is held before it is refused.
        """
        self.sockets = sockets
        self._reactor = reactor
        self.inbound = inbound
        self.bind_address = bind_address
        self._on_fatal = on_fatal
        self._server_endpoints = dict(server_endpoints or {})
        self.hold_timeout = hold_timeout
        self._accept = accept
        self._given_up = given_up
        self._waiting: List[_Waiting] = []
        self._offering = False
        self._offer_again = False
        self._ports: Dict[str, IListeningPort] = {}
        self._pending: Dict[str, Deferred[IListeningPort]] = {}
        self._bound: Dict[str, Outcome[IAddress]] = {}
        self._stopped = False
        self._stopping: Optional[Outcome[None]] = None

    def offer(self, service_id: str, protocol: LocalStreamProtocol) -> None:
        """A listener of C{service_id} accepted C{protocol}: start, hold or refuse it."""
        answer = self._accept(service_id, protocol)
        if isinstance(answer, Wait):
            self._hold(service_id, protocol, answer)
        elif answer is None:
            protocol.refuse()
        else:
            self._started(service_id, protocol, answer)

    def _started(
        self, service_id: str, protocol: LocalStreamProtocol, connection: TunnelConnection
    ) -> None:
        protocol.tunnel_connection = connection
        host = protocol.transport.getHost()
        port = getattr(host, "port", None)
        if port is not None:
            self.log.info(
                "Accepted tcp connection on port {port} from {peer}", port=port, peer=protocol.peer
            )
        else:
            self.log.info(
                "Accepted connection on {address} for service id {service_id}",
                address=describe_address(host),
                service_id=service_id,
            )

    def _hold(self, service_id: str, protocol: LocalStreamProtocol, wait: Wait) -> None:
        """Keep C{protocol} unread until the tunnel can start it, for C{hold_timeout} at most."""
        if self._stopped:
            self._given_up(service_id, _STOPPING)
            protocol.refuse()
            return
        waiting = _Waiting(self, service_id, protocol)
        waiting.wait = wait
        protocol.pause_reading()
        protocol.tunnel_connection = waiting
        waiting.timer = self._reactor.callLater(self.hold_timeout, self._expired, waiting)
        self._waiting.append(waiting)
        self.log.info(
            "Holding connection from {peer} for service id {service_id}: {reason}",
            peer=protocol.peer,
            service_id=service_id,
            reason=wait.reason,
        )

    def offer_waiting(self) -> None:
        """
        The tunnel says connections may start: offer the waiting ones again,
        oldest first; each one starts, waits on, or is refused.
        """
        # A start may tell the tunnel that more may start (re-entrantly): that
        # call only asks for one more pass of this loop.
        self._offer_again = True
        if self._offering:
            return
        self._offering = True
        try:
            while self._offer_again:
                self._offer_again = False
                for waiting in list(self._waiting):
                    if waiting in self._waiting:
                        self._offer_one(waiting)
        finally:
            self._offering = False

    def _offer_one(self, waiting: _Waiting) -> None:
        protocol = waiting.protocol
        answer = self._accept(waiting.service_id, protocol)
        if isinstance(answer, Wait):
            waiting.wait = answer
            return
        self._forget(waiting)
        if answer is None:
            protocol.refuse()
            return
        self._started(waiting.service_id, protocol, answer)
        for data in waiting.early:
            answer.data_received(data)
        protocol.resume_reading()

    def _expired(self, waiting: _Waiting) -> None:
        waiting.timer = None
        if waiting not in self._waiting:
            return
        self._give_up(
            waiting,
            Wait(
                f"{waiting.wait.reason}, still after {self.hold_timeout:g} s "
                "(how long a connection waits: the WebSocket connect timeout "
                "plus one retry delay)"
            ),
        )

    def _give_up(self, waiting: _Waiting, wait: Wait) -> None:
        """Refuse a waiting connection for C{wait}'s reason (the tunnel logs and counts it)."""
        self._forget(waiting)
        self._given_up(waiting.service_id, wait)
        waiting.protocol.refuse()

    def _forget(self, waiting: _Waiting) -> None:
        """A waiting connection is started, refused or gone: stop holding it."""
        if waiting in self._waiting:
            self._waiting.remove(waiting)
        if waiting.timer is not None and waiting.timer.active():
            waiting.timer.cancel()
        waiting.timer = None
        if waiting.protocol.tunnel_connection is waiting:
            waiting.protocol.tunnel_connection = None

    @property
    def waiting(self) -> int:
        """How many accepted connections wait for the tunnel now."""
        return len(self._waiting)

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
            except CancelledError:
                # The proxy stopped while an endpoint was still binding: no
                # error of the listen's own to log.
                raise
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
            for waiting in list(self._waiting):
                self._give_up(waiting, _STOPPING)
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
