"""
The deadlines of the end-to-end tests' waits (L{tests.support.deadlines}):
a wait that does not end fails at its deadline with a message saying what
did not happen, cancels what it waited on, and leaves no timer behind.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.support import deadlines
from tests.support.conditions import Conditions
from tests.support.deadlines import _factor, branch, deadline, scaled, tail, transfer
from tests.support.e2e import Client


class DeadlineTests(SynchronousTestCase):
    def test_fails_with_what_and_state_at_the_deadline(self) -> None:
        clock = Clock()
        d: Deferred[int] = Deferred()
        waited = deadline(d, 10, "the echo did not come back", lambda: "3 bytes back", clock)
        clock.advance(scaled(10) - 0.1)
        self.assertNoResult(waited)
        clock.advance(0.1)
        failure = self.failureResultOf(waited, AssertionError)
        self.assertEqual(str(failure.value), "the echo did not come back within 10 s; 3 bytes back")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancels_what_it_waited_on(self) -> None:
        """The wait's own Deferred is cancelled: its canceller stops what it waited for."""
        clock = Clock()
        cancelled: List[Deferred[None]] = []
        d: Deferred[None] = Deferred(cancelled.append)
        waited = deadline(d, 1, "nothing happened", clock=clock)
        clock.advance(scaled(1))
        self.assertEqual(cancelled, [d])
        self.failureResultOf(waited, AssertionError)

    def test_any_cancellation_error_becomes_the_message(self) -> None:
        """A canceller that fails with its own error (a connect's) still gives the message."""
        clock = Clock()
        d: Deferred[None] = Deferred(lambda d: d.errback(ValueError("connect cancelled")))
        waited = deadline(d, 1, "the client did not connect", clock=clock)
        clock.advance(scaled(1))
        failure = self.failureResultOf(waited, AssertionError)
        self.assertIn("the client did not connect within", str(failure.value))

    def test_result_in_time_leaves_no_timer(self) -> None:
        clock = Clock()
        d: Deferred[int] = Deferred()
        waited = deadline(d, 10, "never", clock=clock)
        d.callback(7)
        self.assertEqual(self.successResultOf(waited), 7)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_failure_in_time_passes_through(self) -> None:
        clock = Clock()
        d: Deferred[int] = Deferred()
        waited = deadline(d, 10, "never", clock=clock)
        d.errback(ZeroDivisionError())
        self.failureResultOf(waited, ZeroDivisionError)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_state_that_raises_still_gives_the_message(self) -> None:
        clock = Clock()
        waited = deadline(Deferred(), 1, "it did not happen", lambda: 1 // 0, clock)
        clock.advance(scaled(1))
        failure = self.failureResultOf(waited, AssertionError)
        self.assertIn("it did not happen within", str(failure.value))
        self.assertIn("ZeroDivisionError", str(failure.value))

    def test_a_stalled_transfer_fails_before_its_deadline(self) -> None:
        """With C{progress}, nothing moving for C{stall} seconds fails the wait."""
        clock = Clock()
        moved = [0]
        waited = deadline(
            Deferred(),
            60,
            "the echo did not come back",
            lambda: f"{moved[0]} bytes back",
            clock,
            progress=lambda: moved[0],
            stall=10,
        )
        for _ in range(3):  # it moves: 30 s go by
            moved[0] += 100
            clock.advance(scaled(10))
        self.assertNoResult(waited)
        clock.advance(scaled(10))  # it stopped
        failure = self.failureResultOf(waited, AssertionError)
        self.assertEqual(
            str(failure.value),
            "the echo did not come back: nothing moved for 10 s; 300 bytes back",
        )
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_moving_transfer_gets_its_whole_deadline(self) -> None:
        clock = Clock()
        moved = [0]
        d: Deferred[None] = Deferred()
        waited = deadline(d, 60, "never", clock=clock, progress=lambda: moved[0], stall=10)
        for _ in range(5):
            moved[0] += 1
            clock.advance(scaled(10))
        d.callback(None)
        self.successResultOf(waited)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_branch_leaves_the_shared_deferred_alone(self) -> None:
        """A deadline on a branch cancels the branch only; the shared Deferred fires later."""
        clock = Clock()
        shared: Deferred[bytes] = Deferred()
        waited = deadline(branch(shared), 1, "not closed", clock=clock)
        clock.advance(scaled(1))
        self.failureResultOf(waited, AssertionError)
        self.assertFalse(shared.called)
        shared.callback(b"late")
        self.assertEqual(self.successResultOf(shared), b"late")


class BoundTests(SynchronousTestCase):
    def test_factor(self) -> None:
        self.assertEqual(_factor(None), 1.0)
        self.assertEqual(_factor(""), 1.0)
        self.assertEqual(_factor("2.5"), 2.5)
        for bad in ("0", "-1", "fast"):
            self.assertRaises(ValueError, _factor, bad)

    def test_scaled_by_the_factor(self) -> None:
        self.patch(deadlines, "FACTOR", 3.0)
        self.assertEqual(scaled(10), 30.0)

    def test_transfer_grows_with_the_size(self) -> None:
        self.assertEqual(transfer(0), deadlines.EVENT)
        self.assertEqual(transfer(int(20 * deadlines.RATE)), deadlines.EVENT + 20)
        self.assertEqual(transfer(800_000, rate=400_000), deadlines.EVENT + 2)

    def test_tail(self) -> None:
        text = "".join(f"line {i}\n" for i in range(100)).encode()
        self.assertEqual(tail(text, lines=2), "line 98\nline 99")
        self.assertEqual(tail(b""), "(nothing)")
        self.assertTrue(tail("x" * 5000, chars=10).startswith("..."))


class ConditionsTests(SynchronousTestCase):
    def test_a_cancelled_wait_leaves_its_list(self) -> None:
        """At its deadline a waiter is forgotten: a later check does not fire it."""
        conditions = Conditions()
        holds: List[bool] = [False]
        d = conditions.when(lambda: holds[0], "it did not hold", within=1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        holds[0] = True
        conditions.check()  # must not raise AlreadyCalledError

    def test_fires_when_the_condition_holds(self) -> None:
        conditions = Conditions()
        holds: List[bool] = [False]
        d = conditions.when(lambda: holds[0], "it did not hold")
        self.assertNoResult(d)
        holds[0] = True
        conditions.check()
        self.assertIsNone(self.successResultOf(d))


class ClientTests(SynchronousTestCase):
    def client(self) -> Client:
        client = Client("client 1 of port 4242")
        client.makeConnection(StringTransport())
        return client

    def test_wait_fails_at_once_when_the_connection_closes_first(self) -> None:
        client = self.client()
        d = client.wait_for(10)
        client.dataReceived(b"abc")
        client.connectionLost(None)
        failure = self.failureResultOf(d, AssertionError)
        self.assertEqual(
            str(failure.value),
            "client 1 of port 4242 was closed after 3 of the 10 bytes it waited for",
        )

    def test_wait_after_the_close_fails_at_once(self) -> None:
        client = self.client()
        client.connectionLost(None)
        self.failureResultOf(client.wait_for(1), AssertionError)

    def test_wait_for_bytes_already_here(self) -> None:
        client = self.client()
        client.dataReceived(b"abcdef")
        self.assertEqual(self.successResultOf(client.wait_for(4)), b"abcdef")

    def test_when_closed(self) -> None:
        client = self.client()
        d: Any = client.when_closed()
        client.dataReceived(b"xy")
        client.connectionLost(None)
        self.assertEqual(self.successResultOf(d), b"xy")
        self.assertEqual(self.successResultOf(client.closed), b"xy")
