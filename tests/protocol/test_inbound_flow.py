"""
L{aws_localproxy.protocol.inbound_flow}: a full local connection pauses the WebSocket,
only past its bound, and it resumes when every full one has drained.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.inbound_flow import InboundFlow


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class InboundFlowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.flow = InboundFlow(self.clock)
        self.websocket = StringTransport()
        self.flow.attach(self.websocket)

    def test_blocked_pauses_websocket(self) -> None:
        self.flow.blocked("a")
        self.assertEqual(self.websocket.producerState, "paused")
        self.assertTrue(self.flow.websocket_paused)

    def test_waits_for_every_blocked_local(self) -> None:
        self.flow.blocked("a")
        self.flow.blocked("b")
        self.flow.unblocked("a")
        self.assertEqual(self.websocket.producerState, "paused")
        self.flow.unblocked("b")
        self.assertEqual(self.websocket.producerState, "producing")
        self.assertFalse(self.flow.websocket_paused)

    def test_unblocked_unknown_is_harmless(self) -> None:
        self.flow.unblocked("nobody")
        self.assertEqual(self.websocket.producerState, "producing")

    def test_new_session_starts_paused_when_blocked(self) -> None:
        self.flow.blocked("a")
        self.flow.detach()
        second = StringTransport()
        self.flow.attach(second)
        self.assertEqual(second.producerState, "paused")
        self.flow.unblocked("a")
        self.assertEqual(second.producerState, "producing")

    def test_paused_time_is_counted(self) -> None:
        """C{paused_seconds} says how long the WebSocket was held for a full local connection."""
        self.flow.blocked("a")
        self.clock.now = 1.5
        self.flow.unblocked("a")
        self.clock.now = 5.0
        self.flow.blocked("a")
        self.clock.now = 5.25
        self.assertEqual(self.flow.paused_seconds, 1.5)
        self.flow.detach()
        self.assertEqual(self.flow.paused_seconds, 1.75)

    def test_listener_hears_every_pause_and_resume(self) -> None:
        """The session's scheduler learns when reading stops and starts (its pacer cannot expect pongs)."""
        heard: list[bool] = []

        class Listener:
            def reading_paused(self, paused: bool) -> None:
                heard.append(paused)

        self.flow.blocked("a")
        self.flow.attach(StringTransport(), Listener())  # a new session, a connection still full
        self.flow.blocked("b")
        self.flow.unblocked("a")
        self.flow.unblocked("b")
        self.flow.detach()
        self.flow.blocked("c")
        self.assertEqual(heard, [True, False])
