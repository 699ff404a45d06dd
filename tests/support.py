"""
Small helpers that test modules of every layer share: a free port, waiting
on the reactor, and a L{TunnelConnection} that records what a local side
reports.  What belongs to one kind of test stays in its own support module
(C{e2e_support}, C{webproxy_support}, C{agent_support}, C{proxies}).
"""

from __future__ import annotations

import socket
from typing import Any, Callable, List

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a process or daemon to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sleep(seconds: float, clock: Any = None) -> Deferred[None]:
    """Fires after C{seconds} on C{clock} (default: the global reactor)."""
    if clock is None:
        from twisted.internet import reactor as clock
    return deferLater(clock, seconds, lambda: None)


@inlineCallbacks
def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll C{predicate} on the reactor until it holds; the test fails if it never does."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        yield sleep(step)
        waited += step


class RecordingTunnelConnection:
    """
    A L{TunnelConnection} that records what the local side reports: the
    bytes read, how many times the socket was lost and, for a destination,
    why connecting failed (a source's connection never connects: a report
    of a failed connect fails the test).
    """

    connection_id = 1

    def __init__(self, service_id: str = "ssh", *, destination: bool = False) -> None:
        self.service_id = service_id
        self.data: List[bytes] = []
        self.lost = 0
        self.failed: List[str] = []
        self._destination = destination

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def connection_lost(self) -> None:
        self.lost += 1

    def connect_failed(self, reason: str) -> None:
        if not self._destination:
            raise AssertionError("a source's connection does not connect: " + reason)
        self.failed.append(reason)
