"""
The doubles of L{tests.fakes} stand for what they claim to: each satisfies
the protocol of the object it replaces, so a test that passes on a fake
does not pass because the fake lacks a method the real object has.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.interfaces import LocalConnection, LocalSide, Outbound
from aws_localproxy.protocol.scheduler import OutboundScheduler
from tests.fakes.local import FakeLocalConnection, FakeLocalSide
from tests.fakes.peer import FakePeer


class FakesTests(SynchronousTestCase):
    """The fakes implement the interfaces they stand for."""

    def test_interfaces(self) -> None:
        """FakePeer, FakeLocalSide and FakeLocalConnection satisfy the protocols."""
        self.assertIsInstance(OutboundScheduler(FakePeer().send_record), Outbound)
        self.assertIsInstance(FakeLocalSide(), LocalSide)
        self.assertIsInstance(FakeLocalConnection(), LocalConnection)
