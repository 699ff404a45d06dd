# -*- test-case-name: tests.test_embedding -*-
# mypy: disallow-untyped-calls=False
# (this module raises Twisted's ConnectError, whose constructor has no annotations)
"""
A destination service ID served by a protocol factory in the same process.

An application that embeds a destination local proxy can answer a service
ID itself, with any Twisted C{IProtocolFactory} (a twisted.web C{Site}, an
echo, a conch SSH server), without opening a TCP port: L{FactoryEndpoint}
is an C{IStreamClientEndpoint} whose every C{connect} joins a new protocol
of that factory to the proxy's local connection through a fresh
C{socketpair()}.  Both ends are ordinary reactor transports, so flow
control, half-closes and write buffering behave exactly as with a socket
to another process; nothing is listening, so nothing else can connect.
"""

from __future__ import annotations

import socket
from typing import Any, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

__all__ = ["FactoryEndpoint"]


class _Remember(Factory):
    """Builds with C{inner} and keeps the protocol it built."""

    def __init__(self, inner: IProtocolFactory) -> None:
        self._inner = inner
        self.protocol_built: Optional[IProtocol] = None

    def buildProtocol(self, addr: Any) -> Optional[IProtocol]:  # type: ignore[override]
        self.protocol_built = self._inner.buildProtocol(addr)
        return self.protocol_built


@implementer(IStreamClientEndpoint)
class FactoryEndpoint:
    """Connects to a new protocol of C{factory}, in this process (see the module docstring)."""

    def __init__(self, reactor: Any, factory: IProtocolFactory) -> None:
        """
        @param reactor: an C{IReactorSocket} (every POSIX reactor):
            C{adoptStreamConnection} takes both ends of the socket pair.
        """
        self._reactor = reactor
        self._factory = factory
        self._started = False

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """A new connection between a protocol of C{protocolFactory} and one of the served factory."""
        if not self._started:
            # A factory given to an endpoint is started once and kept started.
            self._factory.doStart()
            self._started = True
        try:
            client_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as error:
            return fail(ConnectError(string=f"socketpair failed: {error}"))
        client = _Remember(protocolFactory)
        server = _Remember(self._factory)
        try:
            for end in (client_end, server_end):
                end.setblocking(False)
            # adoptStreamConnection duplicates the descriptor; ours are closed below.
            self._reactor.adoptStreamConnection(server_end.fileno(), socket.AF_UNIX, server)
            if server.protocol_built is None:
                return fail(ConnectError(string=f"{self._factory!r} refused the connection"))
            self._reactor.adoptStreamConnection(client_end.fileno(), socket.AF_UNIX, client)
        finally:
            client_end.close()
            server_end.close()
        if client.protocol_built is None:
            return fail(ConnectError(string="the connecting factory built no protocol"))
        return succeed(client.protocol_built)

    def __repr__(self) -> str:
        return f"<FactoryEndpoint {self._factory!r}>"
