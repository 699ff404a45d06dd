"""
L{aws_localproxy.protocol.inbound_flow}: a full local connection pauses the WebSocket,
only past its bound, and it resumes when every full one has drained.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.protocol.wire import DataFields
from aws_localproxy.upstream.connector import RetryPolicy
from tests.fakes.connector import scripted_connector
from tests.fakes.endpoints import FakeEndpoint
from tests.fakes.local import Reader
from tests.fakes.websocket import FakeProtocol, closed


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


class SessionWiringTests(SynchronousTestCase):
    """The connector tells each session's scheduler and WebSocket protocol when reading stops."""

    def test_pause_reaches_the_pacer_and_the_keepalive(self) -> None:
        clock = MemoryReactorClock()
        endpoint = FakeEndpoint()
        protocol = FakeProtocol()
        endpoint.results = [protocol]
        tunnel = Tunnel(Mode.SOURCE, None, service_map={})  # type: ignore[arg-type]
        connector = scripted_connector(clock, endpoint, tunnel, RetryPolicy(-1, 1.0, True))
        connector.start()
        connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        scheduler = connector.scheduler
        assert scheduler is not None and scheduler._pacer is not None
        inbound = connector._inbound
        inbound.blocked("a full local connection")
        self.assertTrue(scheduler._pacer.deaf)
        inbound.unblocked("a full local connection")
        self.assertFalse(scheduler._pacer.deaf)
        self.assertEqual(protocol.reading_paused_calls, [True, False])

    def test_session_end_cancels_the_stall_timer(self) -> None:
        clock = MemoryReactorClock()
        endpoint = FakeEndpoint()
        protocol = FakeProtocol()
        endpoint.results = [protocol]
        tunnel = Tunnel(Mode.SOURCE, None, service_map={})  # type: ignore[arg-type]
        connector = scripted_connector(clock, endpoint, tunnel, RetryPolicy(0, 1.0, True))
        connector.start()
        connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        scheduler = connector.scheduler
        assert scheduler is not None
        lane = scheduler.open_lane(DataFields("", 1, 1), Reader())
        lane.write(b"B" * (4 * 1024 * 1024))
        self.assertEqual(len(clock.getDelayedCalls()), 1)  # the stall timer
        connector.session_closed(protocol, closed())  # type: ignore[arg-type]
        self.assertEqual(clock.getDelayedCalls(), [])
