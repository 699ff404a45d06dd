# -*- test-case-name: tests.protocol.test_pacing -*-
"""
Pacing: keep the queue in front of the tunneling service short.

The tunneling service caps each tunnel (800 KB/s by default).  A sender that
writes as fast as its socket takes bytes fills every buffer on the way --
its own kernel send buffer, the service's receive buffer, whatever the
service holds -- and an interactive byte sent behind that bulk data waits
seconds.  Round-robin between connections cannot help once the queue is
somewhere the proxy does not own, so the proxy must not build it.

The pacer does what delay-based congestion control does, with the only
feedback the service gives: WebSocket pings.  The service answers a ping
when it reads it, and it reads the stream in order, so a pong for a ping
sent after byte N says "the service has read N bytes", and its round trip
says how long bytes wait in front of it.  From those the pacer keeps

 - the smallest round trip seen lately (the path without a queue),
 - the fastest delivery rate seen lately (bytes the service read per second),

and lets at most C{rate x (min_rtt + TARGET_DELAY)} bytes be unread by the
service: the path's capacity plus about a millisecond of queue.  On loopback
without a cap that is hundreds of kilobytes; at 800 KB/s it is a few
kilobytes.  If the service stops answering pings (a peer that does not,
or a stalled service), pacing steps aside and TCP back-pressure alone
applies: the pacer never holds data on a guess.

Pacing must never wait for feedback the proxy itself can hold up.  A pong
travels in line behind the data the service sends us; a peer that does not
pace fills that line, and while our own inbound flow control has stopped
reading the WebSocket (a local connection is full) no pong can arrive at
all.  So the window also opens while reading is paused (L{deaf}), and a
ping unanswered for L{STALL} opens it by itself: the scheduler arms a timer
for that moment (L{stall_in}) whenever the window stops it, instead of
waiting for an event that may never come.

It has no I/O: the scheduler tells it what was sent, asks what may be sent,
and hands it pong payloads; time comes from a clock function.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Callable, Deque, Optional, Tuple

__all__ = ["Pacer"]

_PING = struct.Struct(">4sQ")
_MAGIC = b"lpq1"


class Pacer:
    """An ack clock made of WebSocket pings, and the window it allows."""

    #: How much queueing delay in front of the service the window allows.  At
    #: 4 ms an echo beside a bulk upload waited 10 ms at p99 on loopback and
    #: 20 ms through the 800 KB/s cap; at 1 ms, 4 and 9 ms, with the capped
    #: bulk still at the cap (see docs/architecture.md, "Pacing").
    TARGET_DELAY = 0.001
    #: The window never shrinks below this: two quanta at low rates, about
    #: 5 ms at the real service's 800 KB/s (8 KiB here doubled the capped echo's
    #: p50 and did not add throughput).
    MIN_WINDOW = 4 * 1024
    #: Before the first rate measurement.
    INITIAL_WINDOW = 256 * 1024
    #: Bytes sent without a ping in flight, at most (and at least, see L{ping_spacing}).
    MIN_PING_SPACING = 2 * 1024
    MAX_OUTSTANDING_PINGS = 8
    #: Pings are also at least this far apart in time: each costs a frame both
    #: ways in each proxy and in the service, and at full speed on loopback a
    #: byte count alone would ask for thousands a second.
    MIN_PING_INTERVAL = 0.002
    #: Rate samples span at least this long, so bursts do not look like bandwidth.
    RATE_INTERVAL = 0.050
    #: Rate and minimum RTT are forgotten after this long.
    MEMORY = 2.0
    #: A ping unanswered for this long means the service does not pong in line:
    #: stop pacing until it does.
    STALL = 0.5
    #: Time worth of data in one quantum at the measured rate.
    QUANTUM_TIME = 0.002
    MIN_QUANTUM = 2 * 1024
    MAX_QUANTUM = 64512
    #: A connection with no more than this queued may exceed the window: an
    #: interactive byte should not wait for a bulk connection's window.
    INTERACTIVE_CREDIT = 2 * 1024

    #: What the scheduler reads for every record, kept up to date by the
    #: pacer as its inputs change (plain attributes, not computed per read):
    #: bytes the window has room for (L{window} - L{in_flight}; at most 0 when shut),
    free: int
    #: the round-robin quantum (about L{QUANTUM_TIME} of data at L{rate}).
    quantum: int

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.sent = 0
        self.acked = 0
        self._pings: Deque[Tuple[int, float]] = deque()
        self._last_ping_at = 0
        self._last_ping_time = float("-inf")
        self.min_rtt: Optional[float] = None
        self._min_rtt_at = 0.0
        self.last_rtt: Optional[float] = None
        self._rates: Deque[Tuple[float, float]] = deque()
        self._mark: Optional[Tuple[float, int]] = None
        self.rate = None
        self.window = self.INITIAL_WINDOW
        #: Our side is not reading the WebSocket (inbound back-pressure): no
        #: pong can arrive, so the window must not wait for one.
        self.deaf = False

    # -- what the scheduler asks -------------------------------------------------

    @property
    def window(self) -> int:
        """Bytes that may be unread by the service: its capacity plus L{TARGET_DELAY} of queue."""
        return self._window

    @window.setter
    def window(self, window: int) -> None:
        self._window = window
        self.free = window - (self.sent - self.acked)
        self._ping_spacing = max(self.MIN_PING_SPACING, window // 4)

    @property
    def rate(self) -> Optional[float]:
        """The fastest rate the service was seen to read lately (bytes a second), if measured."""
        return self._rate

    @rate.setter
    def rate(self, rate: Optional[float]) -> None:
        self._rate = rate
        if rate is None:
            self.quantum = self.MAX_QUANTUM
        else:
            self.quantum = max(
                self.MIN_QUANTUM, min(self.MAX_QUANTUM, int(rate * self.QUANTUM_TIME))
            )

    @property
    def in_flight(self) -> int:
        """Bytes sent that the service has not yet been seen to read."""
        return self.sent - self.acked

    @property
    def stalled(self) -> bool:
        """A ping has been unanswered for longer than L{STALL}: pacing is off."""
        return bool(self._pings) and self._clock() - self._pings[0][1] >= self.STALL

    def stall_in(self) -> Optional[float]:
        """
        Seconds until L{stalled} turns true if no pong comes (0 if it is),
        or C{None} when no ping is waiting for its pong.
        """
        if not self._pings:
            return None
        return max(0.0, self._pings[0][1] + self.STALL - self._clock())

    def allowance(self, queued: int) -> int:
        """
        How many bytes a connection with C{queued} bytes waiting may send now
        (at least 1 means "send").
        """
        free = self.free
        if free > 0:
            return free
        # Bulk may overshoot the window by up to one quantum; a small write may go
        # beyond that by its credit.
        if queued <= self.INTERACTIVE_CREDIT and -free < self.quantum + self.INTERACTIVE_CREDIT:
            return queued
        if self.deaf or self.stalled:
            return self.MAX_QUANTUM
        return 0

    def on_sent(self, count: int) -> Optional[bytes]:
        """
        C{count} bytes of records went to the WebSocket.  Returns a ping
        payload to send after them, when one is due.
        """
        sent = self.sent = self.sent + count
        self.free -= count
        if sent - self._last_ping_at < self._ping_spacing:
            return None
        if len(self._pings) >= self.MAX_OUTSTANDING_PINGS:
            return None
        now = self._clock()
        if now - self._last_ping_time < self.MIN_PING_INTERVAL:
            return None
        return self._ping(now)

    def _ping(self, now: float) -> bytes:
        self._last_ping_at = self.sent
        self._last_ping_time = now
        self._pings.append((self.sent, now))
        return _PING.pack(_MAGIC, self.sent)

    def uncovered_ping(self) -> Optional[bytes]:
        """
        A ping for the bytes sent since the last one, when the window is
        shut and nothing else would ever open it: without it, a window that
        shrank below the bytes after the last ping would wait for a pong
        that was never asked for.
        """
        if self.sent <= self._last_ping_at or len(self._pings) >= self.MAX_OUTSTANDING_PINGS:
            return None
        return self._ping(self._clock())

    @property
    def ping_spacing(self) -> int:
        """Bytes sent between two pings, at least: a quarter of the window (L{MIN_PING_SPACING} or more)."""
        return self._ping_spacing

    # -- feedback ---------------------------------------------------------------

    @staticmethod
    def is_ours(payload: bytes) -> bool:
        """Whether a pong payload answers one of the pacer's pings."""
        return len(payload) == _PING.size and payload[:4] == _MAGIC

    def on_pong(self, payload: bytes) -> None:
        """The service read everything sent before the ping that C{payload} answers."""
        (_, seq) = _PING.unpack(payload)
        now = self._clock()
        sent_at = None
        while self._pings and self._pings[0][0] <= seq:
            ping_seq, sent_at = self._pings.popleft()
            if ping_seq == seq:
                break
        if sent_at is None or seq <= self.acked:
            return
        self.free += seq - self.acked
        self.acked = seq
        rtt = now - sent_at
        self.last_rtt = rtt
        if self.min_rtt is None or rtt <= self.min_rtt or now - self._min_rtt_at > self.MEMORY:
            self.min_rtt = rtt
            self._min_rtt_at = now
        self._sample_rate(now, seq)
        rate = self._rate
        if rate is not None:
            self.window = max(self.MIN_WINDOW, int(rate * (self.min_rtt + self.TARGET_DELAY)))

    def _sample_rate(self, now: float, acked: int) -> None:
        mark = self._mark
        if mark is None:
            self._mark = (now, acked)
            return
        interval = now - mark[0]
        if interval < self.RATE_INTERVAL:
            return
        self._mark = (now, acked)
        sample = (acked - mark[1]) / interval
        rates = self._rates
        while rates and rates[-1][1] <= sample:
            rates.pop()
        rates.append((now, sample))
        while rates[0][0] < now - self.MEMORY:
            rates.popleft()
        self.rate = rates[0][1]
