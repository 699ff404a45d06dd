# -*- test-case-name: tests.protocol.test_scheduler -*-
"""
The outbound scheduler: what the WebSocket sends next.

Every local connection has a L{Lane}: the bytes read from it, waiting to be
sent as DATA.  The scheduler sends control records first (a connection's
start always precedes its data, because its lane is empty when the start is
queued), then DATA round-robin: one record of at most one quantum from each
lane in turn, so an interactive connection waits behind at most one quantum
of each busy one, never behind another's whole backlog.  A lane's closing
record (its reset) is sent after its last byte.

Below the scheduler little may wait: it is the WebSocket transport's
producer, so it stops when Twisted's write buffer fills, and the socket's
unsent kernel buffer is kept small by the connector (C{TCP_NOTSENT_LOWAT}).
With a L{Pacer} it also stops when the tunneling service has not read
enough of what was sent, and sizes its quantum to the measured rate.  Such
a stop never depends on a pong alone: the scheduler then arms a timer on
the session's clock for the moment the pacer would call the ping stalled,
and is told when inbound flow control stops reading the WebSocket (then no
pong can come, and the pacer steps aside).  The timer is cancelled when the
session ends.

Each lane is bounded: when it holds C{lane_limit} bytes, reading its local
socket pauses (that connection only), and resumes when half has been sent.

Lanes and control records may carry a tag (the tunnel uses a service's
stream: service ID and stream ID).  L{OutboundScheduler.withdraw} drops
whatever is still queued under a tag: a destination whose source starts a
stream again under the same ID must not send the old stream's last bytes
and resets after the new StreamStart, where they would name the new
stream's connections.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Hashable, Iterable, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from aws_localproxy.protocol.interfaces import ReadControl
from aws_localproxy.protocol.pacing import Pacer
from aws_localproxy.protocol.wire import DataFields

__all__ = ["Lane", "OutboundScheduler", "OutboundSettings", "DEFAULT_LANE_LIMIT"]

#: Bytes a lane holds before its local socket stops being read
#: (the reference's ``websocket.write_buffer_size`` default).
DEFAULT_LANE_LIMIT = 131076


class Lane:
    """One local connection's bytes on their way to the tunnel."""

    __slots__ = (
        "_scheduler",
        "fields",
        "_chunks",
        "queued",
        "_final",
        "closing",
        "_reader",
        "_reading_paused",
        "_in_ring",
        "_counters",
        "tag",
    )

    def __init__(
        self,
        scheduler: OutboundScheduler,
        fields: DataFields,
        reader: ReadControl,
        counters: Optional[Any] = None,
        tag: Optional[Hashable] = None,
    ) -> None:
        self._scheduler = scheduler
        #: What L{OutboundScheduler.withdraw} knows the lane by (its stream), if anything.
        self.tag = tag
        #: Where the bytes written to this lane and the DATA records made from
        #: them are counted (an object with C{bytes_sent} and C{messages_sent},
        #: e.g. the service's counters), if anywhere.
        self._counters = counters
        #: The connection's fixed DATA fields (replaced if the peer format changes).
        self.fields = fields
        self._chunks: Deque[bytes | memoryview] = deque()
        self.queued = 0
        self._final: Optional[bytes] = None
        self.closing = False
        self._reader = reader
        self._reading_paused = False
        self._in_ring = False

    def write(self, data: bytes) -> None:
        """Bytes read from the local socket, to be sent in order."""
        if self.closing or not data:
            return
        size = len(data)
        if self._counters is not None:
            self._counters.bytes_sent += size
        self._chunks.append(data)
        queued = self.queued = self.queued + size
        scheduler = self._scheduler
        if queued >= scheduler.lane_limit and not self._reading_paused:
            self._reading_paused = True
            self._reader.pause_reading()
        # The scheduler's turn, without another call in between (see _wake).
        if not self._in_ring and not scheduler._closed:
            self._in_ring = True
            scheduler._ring.append(self)
        scheduler._pump()

    def finish(self, final: Optional[bytes]) -> None:
        """No more data: send C{final} (if any) after everything queued, then forget the lane."""
        if self.closing:
            return
        self.closing = True
        self._final = final
        self._scheduler._wake(self)

    def abort(self, final: Optional[bytes]) -> None:
        """The peer reset the connection: drop what is queued, send C{final} now."""
        self._chunks.clear()
        self.queued = 0
        self._scheduler._drop(self)
        self.closing = True
        if final is not None:
            self._scheduler.control(final, self.tag)
        else:
            self._scheduler._tell_if_idle()

    # -- for the scheduler ---------------------------------------------------------

    def _next_record(self, limit: int) -> bytes:
        """One DATA record of at most C{limit} payload bytes from the front of the queue."""
        return b"".join(self._next_parts(limit)[0])

    def _next_parts(self, limit: int) -> tuple[list[bytes | memoryview], int]:
        """
        L{_next_record}'s pieces, unjoined (the scheduler joins a whole frame
        at once), and the record's size.
        """
        if self._counters is not None:
            self._counters.messages_sent += 1
        chunks = self._chunks
        queued = self.queued
        if queued <= limit:
            # Everything queued makes the record (usually one read's bytes).
            self.queued = 0
            first = chunks.popleft()
            if not chunks:
                return self.fields.record_parts((first,), queued)
            parts = [first, *chunks]
            chunks.clear()
            return self.fields.record_parts(parts, queued)
        first = chunks[0]
        size = len(first)
        if size > limit:
            view = memoryview(first)
            chunks[0] = view[limit:]
            self.queued -= limit
            return self.fields.record_parts((view[:limit],), limit)
        chunks.popleft()
        parts = [first]
        total = size
        while chunks and total < limit:
            following = chunks[0]
            room = limit - total
            if len(following) <= room:
                parts.append(chunks.popleft())
                total += len(following)
            else:
                view = memoryview(following)
                parts.append(view[:room])
                chunks[0] = view[room:]
                total = limit
        self.queued -= total
        return self.fields.record_parts(parts, total)

    def _sent_some(self) -> None:
        if self._reading_paused and self.queued <= self._scheduler.lane_limit // 2:
            self._reading_paused = False
            self._reader.resume_reading()

    def _take_final(self) -> Optional[bytes]:
        final, self._final = self._final, None
        return final


@implementer(IPushProducer)
class OutboundScheduler:
    """
    One session's outbound queue.  C{send} writes one record as one binary
    WebSocket message; C{send_ping} (with a pacer) sends a ping frame.
    """

    def __init__(
        self,
        send: Callable[[bytes], None],
        *,
        pacer: Optional[Pacer] = None,
        send_ping: Optional[Callable[[bytes], None]] = None,
        lane_limit: int = DEFAULT_LANE_LIMIT,
        max_payload: int = 64512,
        frame_limit: int = 0,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        self._send = send
        #: Where the stall timer runs (the session's reactor); without one a
        #: shut window waits for the next event (tests of ordering only).
        self._clock = clock
        self._stall_call: Optional[IDelayedCall] = None
        #: Records ready at the same time share a WebSocket frame up to this
        #: size (0: one record per frame).  Every frame costs a masker, a
        #: header and a parse in each proxy and in the service; the service's
        #: frames may hold two full records.
        self._frame_limit = frame_limit
        self._frame: list[bytes | memoryview] = []
        self._frame_size = 0
        self._pacer = pacer
        self._send_ping = send_ping
        self.lane_limit = lane_limit
        self._max_payload = max_payload
        #: Control records (and drained DATA), each with its tag.
        self._controls: Deque[Tuple[bytes, Optional[Hashable]]] = deque()
        self._ring: Deque[Lane] = deque()
        self._paused = False
        self._pumping = False
        self._closed = False
        #: Records and bytes (records, prefix included) sent so far, for metrics.
        self.records_sent = 0
        self.bytes_sent = 0
        self._idle_waiters: list[Deferred[None]] = []

    # -- what the tunnel uses --------------------------------------------------------

    def open_lane(
        self,
        fields: DataFields,
        reader: ReadControl,
        counters: Optional[Any] = None,
        tag: Optional[Hashable] = None,
    ) -> Lane:
        """A new connection's lane; its DATA records are counted in C{counters}."""
        return Lane(self, fields, reader, counters, tag)

    def control(self, record: bytes, tag: Optional[Hashable] = None) -> None:
        """A control record: sent before any DATA still queued."""
        if self._closed:
            return
        self._controls.append((record, tag))
        self._pump()

    def withdraw(self, tag: Hashable) -> None:
        """
        Drop every record still queued under C{tag}: control records, and the
        bytes and closing records of lanes that are closing.  A lane still
        open keeps its bytes (its connection is live; the tunnel closes it
        first).  What was already handed to the WebSocket is gone for good.
        """
        controls = self._controls
        kept = [item for item in controls if item[1] != tag]
        if len(kept) != len(controls):
            controls.clear()
            controls.extend(kept)
        for lane in list(self._ring):
            if lane.tag == tag and lane.closing:
                lane._chunks.clear()
                lane.queued = 0
                lane._final = None
                self._drop(lane)
        self._tell_if_idle()

    def drain(self, lanes: Iterable[Lane]) -> None:
        """
        Put everything C{lanes} hold, and everything any other lane holds, in
        front of the next control record: a stream reset must follow every
        byte of the stream's connections, those closing too (their lanes are
        no longer in the service's table).  Stream resets are rare; the
        momentary loss of round-robin is the price of exact order.
        """
        given = list(lanes)
        others = [lane for lane in self._ring if lane not in given]
        for lane in given + others:
            while lane.queued:
                self._controls.append((lane._next_record(self._max_payload), lane.tag))
            self._drop(lane)
            final = lane._take_final()
            if final is not None:
                self._controls.append((final, lane.tag))
        self._pump()

    @property
    def idle(self) -> bool:
        """Nothing is left to write: no control record, no lane with bytes or a reset."""
        return not self._controls and not self._ring and not self._frame

    def when_idle(self) -> Deferred[None]:
        """
        Fires once everything queued now and later is written to the
        WebSocket (L{idle}), or the session is over: a stopping proxy closes
        the WebSocket only after its last resets.
        """
        waiter: Deferred[None] = Deferred(self._forget_waiter)
        if self._closed or self.idle:
            waiter.callback(None)
        else:
            self._idle_waiters.append(waiter)
        return waiter

    def _forget_waiter(self, waiter: Deferred[None]) -> None:
        """A waiter was cancelled (e.g. its timeout passed)."""
        if waiter in self._idle_waiters:
            self._idle_waiters.remove(waiter)

    def _tell_if_idle(self) -> None:
        """Records were dropped, not written: if they were the last, say so now."""
        if self._idle_waiters and self.idle:
            self._tell_idle()

    def _tell_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    @property
    def last_rtt(self) -> Optional[float]:
        """The last pacing ping's round trip to the service, in seconds (C{None} before one)."""
        return self._pacer.last_rtt if self._pacer is not None else None

    @property
    def queued(self) -> int:
        """DATA bytes waiting in every lane."""
        return sum(lane.queued for lane in self._ring)

    def close(self) -> None:
        """The session is over: nothing more is sent."""
        self._closed = True
        call, self._stall_call = self._stall_call, None
        if call is not None and call.active():
            call.cancel()
        self._controls.clear()
        self._ring.clear()
        self._frame, self._frame_size = [], 0
        self._tell_idle()

    # -- feedback from below ---------------------------------------------------------

    def pauseProducing(self) -> None:
        """The WebSocket transport's buffer is full."""
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        self.close()

    def pong(self, payload: bytes) -> bool:
        """A pong from the service; C{True} if it answered the pacer's ping."""
        pacer = self._pacer
        if pacer is None or not pacer.is_ours(payload):
            return False
        pacer.on_pong(payload)
        self._pump()
        return True

    def reading_paused(self, paused: bool) -> None:
        """
        Inbound flow control stopped (or resumed) reading the WebSocket.
        While it is stopped no pong can arrive, so the pacer's window must
        not wait for one: the pacer steps aside and TCP back-pressure alone
        applies.  Without this, a full local connection whose application
        waits to write back (an echo) would wait for our own window, which
        waits for a pong we are not reading: a deadlock broken only by the
        stall timer, every time.
        """
        pacer = self._pacer
        if pacer is None or pacer.deaf == paused:
            return
        pacer.deaf = paused
        if paused:
            self._pump()

    def _stall_timer_fired(self) -> None:
        self._stall_call = None
        self._pump()

    def _arm_stall_timer(self, pacer: Pacer) -> None:
        """The window stopped the scheduler: wake up when the pacer would call it stalled."""
        if self._clock is None or self._stall_call is not None:
            return
        delay = pacer.stall_in()
        if delay is not None:
            self._stall_call = self._clock.callLater(delay, self._stall_timer_fired)

    # -- the loop --------------------------------------------------------------------

    def _wake(self, lane: Lane) -> None:
        if not lane._in_ring and not self._closed:
            lane._in_ring = True
            self._ring.append(lane)
        self._pump()

    def _drop(self, lane: Lane) -> None:
        if lane._in_ring:
            lane._in_ring = False
            self._ring.remove(lane)

    def _pump(self) -> None:
        """
        Send what may be sent now: control records first, then one record
        from each lane in turn, while the WebSocket takes them and the pacer
        lets them go; then the frame being built.  Runs for every write of
        a local connection, so it is written out as one loop.
        """
        if self._pumping or self._paused or self._closed:
            return
        self._pumping = True
        try:
            controls, ring, pacer = self._controls, self._ring, self._pacer
            max_payload = self._max_payload
            while not self._paused and not self._closed:
                if controls:
                    record = controls.popleft()[0]
                    self._emit([record], len(record))
                    continue
                if not ring:
                    break
                if pacer is None or pacer.free > 0:
                    lane = ring.popleft()  # (an open window lets every lane send)
                else:
                    allowed = self._next_allowed(pacer)
                    if allowed is None:
                        self._window_shut(pacer)
                        break
                    lane = allowed
                lane._in_ring = False
                if not lane.queued:
                    final = lane._take_final()
                    if final is not None:
                        self._emit([final], len(final))
                    continue
                limit = max_payload
                if pacer is not None and pacer.quantum < limit:
                    limit = pacer.quantum
                parts, size = lane._next_parts(limit)
                if lane.queued or lane.closing:
                    lane._in_ring = True
                    ring.append(lane)
                self._emit(parts, size)
                if lane._reading_paused:
                    lane._sent_some()
            if self._frame:
                self._flush()
        finally:
            self._pumping = False
        if self._idle_waiters and self.idle:
            self._tell_idle()

    def _window_shut(self, pacer: Pacer) -> None:
        """
        The pacer lets no lane send: send the frame built so far, a ping for
        the bytes no ping covers yet, and wake up when the pacer would call
        the ping stalled.
        """
        self._flush()
        ping = pacer.uncovered_ping()
        if ping is not None and self._send_ping is not None:
            self._send_ping(ping)
        self._arm_stall_timer(pacer)

    def _next_allowed(self, pacer: Pacer) -> Optional[Lane]:
        """
        The first lane in turn that may send now, taken off the ring: one with
        only its closing record left, or one the pacer lets send; or C{None}.
        """
        ring = self._ring
        for index, lane in enumerate(ring):
            if not lane.queued or pacer.allowance(lane.queued) > 0:
                del ring[index]
                return lane
        return None

    def _emit(self, parts: list[bytes | memoryview], size: int) -> None:
        """
        Add one record (C{parts}, C{size} bytes in all) to the frame being
        built; send the frame first if it would overflow.  The pacer counts
        the record at once (the window must see bytes still in the frame),
        and a ping it asks for goes out right after the frame that holds the
        bytes it covers.
        """
        if self._frame and self._frame_size + size > self._frame_limit:
            self._flush()
        self._frame += parts
        self._frame_size += size
        self.records_sent += 1
        ping = self._pacer.on_sent(size) if self._pacer is not None else None
        if not self._frame_limit or ping is not None:
            self._flush()
        if ping is not None and self._send_ping is not None:
            self._send_ping(ping)

    def _flush(self) -> None:
        """Send the frame being built as one WebSocket message."""
        frame = self._frame
        if not frame:
            return
        size = self._frame_size
        self._frame, self._frame_size = [], 0
        # (A frame of one record that is one bytes object is that object: join copies nothing.)
        self._send(b"".join(frame))
        self.bytes_sent += size


@dataclass(frozen=True)
class OutboundSettings:
    """
    How each session's L{OutboundScheduler} is built.  The wiring gives
    them to the tunnel once; the tunnel builds one scheduler per session
    (L{Tunnel.link_opened<aws_localproxy.protocol.tunnel.Tunnel.link_opened>}),
    which lives and dies with its WebSocket.

    @ivar clock: the reactor: the pacer's time and the stall timer.  Without
        one there is no pacing (a test of ordering alone).
    @ivar pacing: pace to what the service reads (L{Pacer}).
    @ivar lane_limit: bytes a lane holds before its local socket stops being read.
    @ivar frame_limit: records ready at the same time share a WebSocket frame
        up to this size (0: a frame each).
    """

    clock: Optional[IReactorTime] = None
    pacing: bool = True
    lane_limit: int = DEFAULT_LANE_LIMIT
    frame_limit: int = 0

    def scheduler(
        self, send: Callable[[bytes], None], send_ping: Callable[[bytes], None], max_payload: int
    ) -> OutboundScheduler:
        """A new session's scheduler, writing records with C{send} and pings with C{send_ping}."""
        clock = self.clock
        return OutboundScheduler(
            send,
            pacer=Pacer(clock.seconds) if self.pacing and clock is not None else None,
            send_ping=send_ping,
            lane_limit=self.lane_limit,
            max_payload=max_payload,
            frame_limit=self.frame_limit,
            clock=clock,
        )
