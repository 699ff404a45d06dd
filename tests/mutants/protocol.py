"""
Mutants of the outbound scheduler and its pacer (protocol/scheduler.py,
protocol/pacing.py): where a ping goes, an expired rate, the scheduler as
the WebSocket's producer, a lane's turns and back-pressure, odd pongs.
"""

from tests.support.mutation import Mutant

MUTANTS = (
    Mutant(
        name="scheduler-ping-before-its-frame",
        path="aws_localproxy/protocol/scheduler.py",
        find="        if not self._frame_limit or ping is not None:\n            self._flush()",
        replace="        if not self._frame_limit:\n            self._flush()",
        tests=("tests.protocol.test_scheduler_pacing.PingPlacementTests",),
        why="with records batched into frames a ping leaves before the bytes it covers: its "
        "pong opens the window for bytes the service has not read",
    ),
    Mutant(
        name="pacing-rate-never-expires",
        path="aws_localproxy/protocol/pacing.py",
        find="        while rates[0][0] < now - self.MEMORY:",
        replace="        while rates[0][1] < now - self.MEMORY:",
        tests=("tests.protocol.test_pacing_memory",),
        why="a path that slows down keeps its old fast window: the queue in front of the "
        "service grows and interactive bytes wait behind it",
    ),
    Mutant(
        name="pacing-pong-for-latest-ping-leaves-earlier",
        path="aws_localproxy/protocol/pacing.py",
        find="            if ping_seq == seq:",
        replace="            if ping_seq != seq:",
        tests=("tests.protocol.test_pacing_pings",),
        why="a service that answers only the latest ping leaves it waiting: pacing turns off "
        "as stalled and the round trip reported is wrong",
    ),
    Mutant(
        name="scheduler-writes-on-after-pause",
        path="aws_localproxy/protocol/scheduler.py",
        find="            while not self._paused and not self._closed:",
        replace="            while not self._closed:",
        tests=("tests.protocol.test_scheduler_producer",),
        why="the scheduler ignores the WebSocket transport's pause and fills the buffer the "
        "pause protects",
    ),
    Mutant(
        name="lane-resumes-reading-at-once",
        path="aws_localproxy/protocol/scheduler.py",
        find="        if self._reading_paused and self.queued <= self._scheduler.lane_limit // 2:",
        replace="        if self._reading_paused:",
        tests=("tests.protocol.test_scheduler_producer",),
        why="a full lane resumes its socket after one record: the lane bound no longer bounds",
    ),
    Mutant(
        name="lane-backlog-takes-a-turn-per-read",
        path="aws_localproxy/protocol/scheduler.py",
        find="        if not self._in_ring and not scheduler._closed:",
        replace="        if not scheduler._closed:",
        tests=("tests.protocol.test_scheduler_lanes",),
        why="a bulk connection whose backlog came in many reads takes a turn per read: an "
        "echo beside it waits behind all of them",
    ),
    Mutant(
        name="scheduler-stall-timer-armed-once",
        path="aws_localproxy/protocol/scheduler.py",
        find="    def _stall_timer_fired(self) -> None:\n        self._stall_call = None",
        replace="    def _stall_timer_fired(self) -> None:\n        self._stall_call = self._stall_call",
        tests=("tests.protocol.test_scheduler_pacing.ShutWindowTests",),
        why="after one stall the window waits for pongs alone: a transfer whose pongs sit "
        "behind unread data stops for good",
    ),
)
