"""
Client endpoints whose connection attempts the test scripts.
"""

from __future__ import annotations

from typing import List

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError

from tests.fakes.websocket import FakeProtocol


class FakeEndpoint:
    """
    Each connect() takes the next scripted result: an exception fails it, a
    L{Deferred} is the attempt (still under way until the test fires it),
    anything else is the connected protocol (a L{FakeProtocol} learns the
    factory it reports to).
    """

    def __init__(self) -> None:
        self.results: List[object] = []
        self.attempts = 0

    def connect(self, factory: object) -> Deferred:
        self.attempts += 1
        result = self.results.pop(0) if self.results else ConnectionRefusedError()
        if isinstance(result, Exception):
            return fail(result)
        if isinstance(result, Deferred):
            return result
        if isinstance(result, FakeProtocol):
            result.factory = factory
        return succeed(result)
