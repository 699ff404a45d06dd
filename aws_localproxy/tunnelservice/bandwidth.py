# -*- test-case-name: tests.tunnelservice.test_bandwidth -*-
"""
The per-tunnel bandwidth cap (``--bandwidth-limit``), enforced by not reading.

The AWS tunneling service caps each tunnel per direction (documented: 800
KB/s); what it counts is every byte a peer sends, ping and pong frames
included.  The local proxy estimates how much is queued ahead of it from
WebSocket ping/pong round trips, so the cap must behave like a slow TCP
link: bytes wait in the sender's socket (and the kernel buffers), not in
the service.  A ping that arrives behind data is then read, and answered,
only after that data, exactly as a real bottleneck behaves.

So the cap is a token bucket per sending peer: every byte read from the
peer spends a token; when the bucket is in debt, reading that peer's
transport pauses (L{ReadGate}) and a reactor timer resumes it once the
bucket has refilled.  At most one read chunk is taken beyond the allowance
(the debt), never buffered: it is relayed at once; reads are kept small
(L{read_size}) so that the debt, and each pause, stays short.
"""

from __future__ import annotations

from typing import Optional, Set

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime

#: The bucket holds this many seconds of the limit: the burst a peer may
#: send at full speed after being idle.  Small, so that a rate measured
#: over 50 ms intervals (the local proxy's pacer) sees the limit, not bursts.
BURST_SECONDS = 0.015

#: ...but at least this many bytes.
MIN_BURST = 4096

#: A throttled peer's socket is read this many seconds of the limit at a
#: time (L{read_size}), so that reading is smooth: small reads, short pauses.
READ_SECONDS = 0.01


def read_size(rate: float) -> int:
    """How many bytes a throttled peer's socket is read at a time (2 KiB to 64 KiB)."""
    return int(min(64 * 1024, max(2048, rate * READ_SECONDS)))


def socket_transport(transport: object) -> object:
    """The TCP transport under C{transport} (through TLS, the wrapped one)."""
    inner = getattr(transport, "transport", None)
    return inner if inner is not None and hasattr(inner, "bufferSize") else transport


class TokenBucket:
    """
    Bytes per second with a bounded burst, and debt: L{spend} never refuses
    (the bytes were already read), it reports how long until the debt is
    repaid.
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: Optional[float] = None) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self._clock = clock
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(MIN_BURST, rate * BURST_SECONDS))
        self._tokens = self.burst
        self._updated = clock.seconds()

    @property
    def tokens(self) -> float:
        """The current balance (negative: debt)."""
        self._refill()
        return self._tokens

    def spend(self, count: int) -> float:
        """Take C{count} tokens; return the seconds until the balance is back at zero."""
        self._refill()
        self._tokens -= count
        return self.wait()

    def wait(self) -> float:
        """Seconds until the balance is no longer negative (0 if it is not)."""
        self._refill()
        return -self._tokens / self.rate if self._tokens < 0 else 0.0

    def _refill(self) -> None:
        now = self._clock.seconds()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now


class ReadGate:
    """
    Pauses a transport's reading while any reason holds: the other peer's
    send buffer is full (back-pressure) or this peer's bandwidth bucket is
    in debt.  Each reason pauses and resumes on its own, so one lifting does
    not resume a transport the other still holds.
    """

    def __init__(self, producer: IPushProducer) -> None:
        self._producer = producer
        self._reasons: Set[str] = set()

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def holds(self, reason: str) -> bool:
        return reason in self._reasons

    def pause(self, reason: str) -> None:
        if not self._reasons:
            self._producer.pauseProducing()
        self._reasons.add(reason)

    def release(self) -> None:
        """Drop every reason: the connection is closing and must read its peer's close."""
        if self._reasons:
            self._reasons.clear()
            self._producer.resumeProducing()

    def resume(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons:
            self._producer.resumeProducing()


class BandwidthThrottle:
    """
    One peer's side of the cap: L{received} charges the bytes read; when the
    bucket is in debt the peer's L{ReadGate} is paused until it has refilled.
    """

    REASON = "bandwidth"

    def __init__(self, gate: ReadGate, bucket: TokenBucket, clock: IReactorTime) -> None:
        self._gate = gate
        self._bucket = bucket
        self._clock = clock
        self._timer: Optional[IDelayedCall] = None

    def received(self, count: int) -> None:
        """C{count} bytes were read from the peer."""
        wait = self._bucket.spend(count)
        if wait > 0 and self._timer is None:
            self._gate.pause(self.REASON)
            self._timer = self._clock.callLater(wait, self._refilled)

    def _refilled(self) -> None:
        self._timer = None
        wait = self._bucket.wait()
        if wait > 0:
            # Float rounding: not quite there yet.
            self._timer = self._clock.callLater(wait, self._refilled)
            return
        self._gate.resume(self.REASON)

    def stop(self) -> None:
        """The connection is gone: cancel the timer."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
