# -*- test-case-name: tests.test_source -*-
"""
The source's local side: one TCP listener per service ID.

Listeners are opened when the first SERVICE_IDS arrives and then kept for
the life of the proxy, across reconnects, with the port they first got
(even one the proxy picked itself), so a client configured against that
port keeps working; the reference closes them on every reconnect and may
pick new ports.  A connection accepted while the tunnel is not ready is
closed at once (the reference refuses it by not listening).
"""

from __future__ import annotations

import socket
from typing import Callable, Dict, Mapping, Optional

from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger

from aws_localproxy.errors import FatalTunnelError
from aws_localproxy.flowcontrol import InboundFlow
from aws_localproxy.interfaces import LocalConnection, TunnelConnection
from aws_localproxy.localconn import DEFAULT_BACKLOG_LIMIT, LocalStreamProtocol
from aws_localproxy.outcome import Outcome

__all__ = ["SourceSide", "listen_port_of"]

Accept = Callable[[str, LocalConnection], Optional[TunnelConnection]]


def listen_port_of(endpoint: str) -> int:
    """The port a source listens on: the part after the last ``:`` (a host part is ignored)."""
    text = endpoint.rsplit(":", 1)[-1].strip()
    if not text.isdigit():
        raise FatalTunnelError(f"Invalid listen port in port mapping: {endpoint}")
    port = int(text, 10)
    if port > 65535:
        raise FatalTunnelError(f"Invalid listen port in port mapping: {endpoint}")
    return port


class _ServiceFactory(Factory):
    """Accepted connections of one service ID become tunnel connections."""

    noisy = False

    def __init__(self, side: SourceSide, service_id: str) -> None:
        self.side = side
        self.service_id = service_id

    def buildProtocol(self, addr: object) -> LocalStreamProtocol:
        return LocalStreamProtocol(
            self.side.inbound, on_made=self._made, backlog_limit=self.side.backlog_limit
        )

    def _made(self, protocol: LocalStreamProtocol) -> None:
        connection = self.side.accept(self.service_id, protocol)
        if connection is None:
            protocol.refuse()
            return
        protocol.tunnel_connection = connection
        port = protocol.transport.getHost().port  # type: ignore[attr-defined]
        self.side.log.info(
            "Accepted tcp connection on port {port} from {peer}", port=port, peer=protocol.peer
        )


class SourceSide:
    """The L{LocalSide} of a source local proxy."""

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTCP,
        inbound: InboundFlow,
        bind_address: str,
        *,
        retry_count: int = 5,
        retry_delay: float = 2.5,
        on_fatal: Callable[[BaseException], None],
        backlog_limit: int = DEFAULT_BACKLOG_LIMIT,
    ) -> None:
        self.backlog_limit = backlog_limit
        self._reactor = reactor
        self.inbound = inbound
        self.bind_address = bind_address
        self._retry_count = retry_count
        self._retry_delay = retry_delay
        self._on_fatal = on_fatal
        self.accept: Accept = lambda service_id, local: None
        self._ports: Dict[str, IListeningPort] = {}
        self._pending: Dict[str, Deferred[IListeningPort]] = {}
        self._bound: Dict[str, Outcome[int]] = {}
        self._stopped = False

    def services_ready(self, endpoints: Mapping[str, str]) -> None:
        for service_id, endpoint in endpoints.items():
            if service_id in self._ports or service_id in self._pending:
                continue
            self.log.info("calling setup from loop")
            port = listen_port_of(endpoint)
            self._pending[service_id] = self._listen(service_id, port)

    def connect(self, connection: TunnelConnection) -> LocalConnection:
        raise FatalTunnelError("A source local proxy does not connect to local services")

    def listening_port(self, service_id: str) -> Deferred[int]:
        """The bound port of C{service_id}'s listener, once it listens."""
        return self._bound.setdefault(service_id, Outcome()).wait()

    def bound_ports(self) -> Mapping[str, int]:
        """Service ID -> bound port, for the listeners open now."""
        return {sid: p.getHost().port for sid, p in self._ports.items()}  # type: ignore[attr-defined]

    def _endpoint(self, port: int) -> TCP4ServerEndpoint | TCP6ServerEndpoint:
        address = self._resolve(self.bind_address)
        if ":" in address:
            return TCP6ServerEndpoint(self._reactor, port, interface=address)
        return TCP4ServerEndpoint(self._reactor, port, interface=address)

    @staticmethod
    def _resolve(address: str) -> str:
        """The first passive address of C{address}, as the reference picks it (``localhost`` -> 127.0.0.1)."""
        try:
            infos = socket.getaddrinfo(
                address, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
        except socket.gaierror as error:
            raise OSError(f"Could not resolve bind address: {address} -- {error}") from error
        families = sorted(infos, key=lambda info: info[0] != socket.AF_INET)
        return str(families[0][4][0])

    async def _listen_with_retries(self, service_id: str, port: int) -> IListeningPort:
        attempts = 0
        while True:
            try:
                endpoint = self._endpoint(port)
                listening = await endpoint.listen(_ServiceFactory(self, service_id))
                return listening
            except Exception as error:
                attempts += 1
                self.log.error(
                    "Could not bind to address: {address}:{port} -- {error}",
                    address=self.bind_address,
                    port=port,
                    error=getattr(error, "message", None) or str(error),
                )
                if self._stopped or (0 <= self._retry_count < attempts):
                    raise
                await deferLater(self._reactor, self._retry_delay)  # type: ignore[arg-type]

    def _listen(self, service_id: str, port: int) -> Deferred[IListeningPort]:
        d = Deferred.fromCoroutine(self._listen_with_retries(service_id, port))

        def listening(listening_port: IListeningPort) -> IListeningPort:
            self._pending.pop(service_id, None)
            if self._stopped:
                listening_port.stopListening()
                return listening_port
            self._ports[service_id] = listening_port
            bound = listening_port.getHost().port  # type: ignore[attr-defined]
            self.log.info("Listening for new connection on port {port}", port=bound)
            if port == 0:
                self.log.info(
                    "Listen port assigned for service id {service_id}. New port mapping: ",
                    service_id=service_id,
                )
                self.log.info("{service_id} = {port}", service_id=service_id, port=bound)
            self._bound.setdefault(service_id, Outcome()).succeed(bound)
            return listening_port

        def failed(failure: object) -> None:
            self._pending.pop(service_id, None)
            if not self._stopped:
                self._on_fatal(
                    FatalTunnelError(
                        f"Source local proxy fails to bind address {self.bind_address}:{port} "
                        f"for service id {service_id}"
                    )
                )

        d.addCallbacks(listening, failed)
        return d

    def stop(self) -> Deferred[None]:
        """Stop every listener (the proxy is stopping)."""
        self._stopped = True
        for pending in list(self._pending.values()):
            pending.cancel()
        ports = list(self._ports.values())
        self._ports.clear()
        for bound in self._bound.values():
            bound.fail(CancelledError("the local proxy stopped"))
        stopped = DeferredList([maybeDeferred(port.stopListening) for port in ports])
        return stopped.addCallback(lambda _: None)
