# -*- test-case-name: tests.proxy.test_stdio_exit -*-
"""
How a ``--stdio`` proxy ends once its one connection is over.

The connection ends when standard input reaches EOF, standard output is
closed, or the peer resets it (L{aws_localproxy.local.stdio}).  A
connection the tunnel refused, or one whose session went first, ends the
proxy with exit code 1.  Otherwise the proxy stops (a close frame, exit code
0) once everything queued for the WebSocket has been written -- the last
bytes read from standard input and the connection's reset -- which the
session's outbound scheduler says with an event (C{when_idle}), or after
L{STDIO_FLUSH_TIMEOUT} seconds if the WebSocket cannot take them.
"""

from __future__ import annotations

from typing import Optional, Protocol

from twisted.internet.defer import TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aws_localproxy.local.stdio import StdioEnd
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.interfaces import Outbound

__all__ = ["STDIO_FLUSH_TIMEOUT", "end_after_stdio"]

log = Logger()

#: Seconds a ``--stdio`` proxy waits for its last bytes to be written to the
#: WebSocket before it closes it anyway.
STDIO_FLUSH_TIMEOUT = 10.0


class Link(Protocol):
    """The link to the service (the connector), as far as the end needs it."""

    def stop(self) -> object:
        """Close the WebSocket with a close frame; the proxy exits 0."""

    def fail(self, error: BaseException) -> None:
        """End the proxy with C{error} (exit 1)."""


def end_after_stdio(
    end: StdioEnd,
    outbound: Optional[Outbound],
    link: Link,
    clock: IReactorTime,
    flush_timeout: float = STDIO_FLUSH_TIMEOUT,
) -> None:
    """
    End the proxy as C{end} says (see the module's docstring): fail it at
    once, or stop it once what is queued has been sent or after
    C{flush_timeout} seconds on C{clock}.

    @param outbound: the current session's outbound queue (the tunnel's
        scheduler); C{None} without a session.
    """
    if end.refused:
        link.fail(FatalTunnelError("The tunnel refused the --stdio connection"))
        return
    if end.session_lost:
        link.fail(
            FatalTunnelError("The tunnel's session ended while the --stdio connection was open")
        )
        return
    log.info("The --stdio connection ended: stopping")
    if outbound is None:
        link.stop()
        return

    def unsent(failure: Failure) -> Optional[Failure]:
        if not isinstance(failure.value, TimeoutError):
            return failure
        log.warn("Stopping with data for the tunnel still unsent")
        return None

    sent = outbound.when_idle()
    sent.addTimeout(flush_timeout, clock)
    sent.addErrback(unsent)
    sent.addCallback(lambda _: link.stop())
