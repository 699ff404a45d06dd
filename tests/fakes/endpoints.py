"""
Client endpoints whose connection attempts the test scripts.
"""

from __future__ import annotations

from typing import List

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError


class FakeEndpoint:
    """Each connect() takes the next scripted result."""

    def __init__(self) -> None:
        self.results: List[object] = []
        self.attempts = 0

    def connect(self, factory: object) -> Deferred:
        self.attempts += 1
        result = self.results.pop(0) if self.results else ConnectionRefusedError()
        if isinstance(result, Exception):
            return fail(result)
        return succeed(result)
