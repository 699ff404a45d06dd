"""
Stateful fuzzing of the tunnel protocol object (Hypothesis).

A L{RuleBasedStateMachine} drives a source or destination L{Tunnel} (V1, V2
or V3 subprotocol, V2 or V3 configured format) with random interleavings of
peer messages (every type, stale, unknown and zero IDs, ignorable flags,
coalesced into one WebSocket payload and split at random points) and local
events (accepts, data, closes, failed connects, the scheduler paused and
resumed).  Whatever happens:

 - no exception escapes but the two L{TunnelError}s, after which the
   session is ended and a new one started, as the connector does;
 - every byte the peer sends reaches only a local connection of its own
   service, stream and connection (or the only connection, where a V2 peer
   sends none), whole and in order; DATA for a live connection is delivered;
 - every byte a local connection reads goes out in its own connection's DATA
   records, in order, never before that connection's start nor after its
   reset (a reset sent before a connection started is an older one's, as
   records reach the peer in order);
 - the tunnel's tables hold only open connections, never more than
   C{tcp.max_active_connections} per service; every local connection is
   closed exactly once by the end.

The CI run is a few seconds; C{HYPOTHESIS_PROFILE=fuzz} (C{tox -e fuzz})
runs many more examples.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aws_localproxy.protocol.constants import (
    SUBPROTOCOL_V1,
    SUBPROTOCOL_V2,
    SUBPROTOCOL_V3,
    Mode,
    PeerVersion,
)
from aws_localproxy.protocol.errors import TunnelError
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.wire import Message, control_message, decode_all
from tests.fakes.local import FakeLocalConnection, FakeLocalSide
from tests.fakes.peer import FakePeer, data
from tests.fakes.tunnel import PeerTunnel

settings.register_profile(
    "ci",
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=3000,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

SERVICE_IDS = ("ssh", "web")
_INBOUND = re.compile(rb"P([a-z]*)\.(\d+)\.(\d+)\.(\d+);")
_OUTBOUND = re.compile(rb"L(\d+)\.(\d+);")

_STARTS = (Message.STREAM_START, Message.CONNECTION_START)

# Weighted towards DATA, so connections live long enough to carry some.
MESSAGE_TYPES = (
    [Message.DATA] * 10
    + [Message.STREAM_START] * 2
    + [Message.CONNECTION_START] * 3
    + [Message.CONNECTION_RESET, Message.STREAM_RESET, Message.SESSION_RESET]
    + [Message.SERVICE_IDS, Message.UNKNOWN, 42]
)

message_specs = st.tuples(
    st.sampled_from(MESSAGE_TYPES),
    st.sampled_from(["ssh", "ssh", "ssh", "web", "web", "nope", ""]),
    # Stream ID: 0 (invalid), 1-3 (collide with real ones) or the service's current one.
    st.sampled_from([3, 4, 5, 6, 7, 8, 9, 1, 2, 0]),
    # Connection ID: 0 (what a V2 peer sends: a V3 session falls back for good), 1-4,
    # a live connection's, or the next one.
    st.sampled_from([3, 4, 5, 6, 7, 8, 9, 1, 2] * 3 + [0]),
    st.sampled_from([1, 2, 0]),  # ignorable unless 0 (only for UNKNOWN and unknown types)
    st.sampled_from(
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    ),  # SERVICE_IDS: 0 names the wrong services (fatal), else the right ones
)


class TrackedLocal(FakeLocalConnection):
    """A local connection that checks every write against the tunnel connection it belongs to."""

    def __init__(self, machine: "TunnelMachine", index: int) -> None:
        super().__init__("L%d" % (index,))
        self.machine = machine
        self.index = index
        self.tunnel_connection = None
        self.inbound_seqs: List[int] = []
        self.outbound_written = 0  # tokens written by the local application
        self.outbound_sent: List[int] = []  # token seqs seen in the peer's records
        self.reset_seen = False
        #: Where in the sent records this connection began: for a destination's,
        #: where the records stood when the peer's start arrived (L{TunnelMachine.new_local});
        #: for a source's, the position of its own StreamStart or ConnectionStart
        #: (L{TunnelMachine.check_outbound}), which may go out well after the
        #: accept, behind records queued earlier.  C{None} until then.
        self.born_at: Optional[int] = None
        #: The local application closed it (reported with connection_lost).
        self.lost = False

    @property
    def ends(self) -> int:
        """How many times it was closed: by the tunnel, or by its application."""
        return self.close_calls + int(self.lost)

    def write(self, data: bytes) -> None:
        assert not self.lost, "write to %s after it was lost" % (self.name,)
        super().write(data)
        self.machine.check_inbound(self, data)


class TunnelMachine(RuleBasedStateMachine):
    """One tunnel, many sessions."""

    def __init__(self) -> None:
        super().__init__()
        self.locals: List[TrackedLocal] = []
        #: Records already checked (or dropped with a broken session): with
        #: len(self.peer.records) it places a record, or a connection's birth,
        #: in the order the scheduler sent things.
        self.records_checked = 0
        self.seq = 0
        self.sessions = 0
        self.errors = 0

    # -- set-up ---------------------------------------------------------------------

    @initialize(
        mode=st.sampled_from([Mode.SOURCE, Mode.DESTINATION]),
        subprotocol=st.sampled_from(
            [SUBPROTOCOL_V3, SUBPROTOCOL_V3, SUBPROTOCOL_V2, SUBPROTOCOL_V1]
        ),
        version=st.sampled_from([PeerVersion.V3, PeerVersion.V3, PeerVersion.V3, PeerVersion.V2]),
        max_active=st.sampled_from([1, 3, 128]),
    )
    def set_up(self, mode: Mode, subprotocol: str, version: PeerVersion, max_active: int) -> None:
        self.mode = mode
        self.subprotocol = subprotocol
        self.v1 = subprotocol == SUBPROTOCOL_V1
        service_map = {"ssh": "22"} if self.v1 else {"ssh": "22", "web": "80"}
        self.ids = list(service_map)
        self.max_active = max_active
        self.peer = FakePeer()
        self.local_side = FakeLocalSide()
        machine = self

        def connect(connection):
            local = machine.new_local()
            local.tunnel_connection = connection
            machine.local_side.connections.append((connection, local))
            if machine.local_side.fail_synchronously:
                connection.connect_failed("refused")
            return local

        self.local_side.connect = connect  # type: ignore[method-assign]
        self.tunnel = PeerTunnel(
            mode,
            self.peer,
            self.local_side,
            service_map=service_map,
            peer_version=version,
            max_active_connections=max_active,
        )
        self.start_session()

    def new_local(self) -> TrackedLocal:
        local = TrackedLocal(self, len(self.locals))
        local.born_at = self.records_checked + len(self.peer.records)
        self.locals.append(local)
        return local

    def start_session(self) -> None:
        self.scheduler = OutboundScheduler(self.peer.send_record)
        self.tunnel.session_started(self.subprotocol, self.scheduler)
        self.sessions += 1
        if not self.v1:
            self.feed([control_message(Message.SERVICE_IDS, available_service_ids=self.ids)])
        self.check_outbound()

    def restart(self) -> None:
        self.tunnel.session_ended()
        for local in self.locals:
            assert local.ends == 1, "%s closed %d times" % (local.name, local.ends)
        self.start_session()

    def feed(self, payloads: List[bytes]) -> bool:
        """Feed payloads as the connector would; False if the session ended."""
        for payload in payloads:
            try:
                self.tunnel.data_received(payload)
            except TunnelError:
                self.errors += 1
                self.records_checked += len(self.peer.records)
                self.peer.records.clear()
                self.restart()
                return False
        return True

    # -- the peer ---------------------------------------------------------------------

    def resolve(
        self, message_type: int, service_id: str, stream_sel: int, connection_sel: int
    ) -> tuple[int, int]:
        """Stream and connection IDs from a spec's selectors, against the tunnel's state."""
        session = self.tunnel._session
        service = (
            None
            if session is None
            else session.services.get(
                session.format.route(service_id, session.service_ids, stream_message=True)
            )
        )
        current = service.stream_id if service is not None and service.stream_id else 1
        if stream_sel == 0:
            stream_id = 0
        elif stream_sel == 1:
            stream_id = 1 + current % 3  # another small one
        else:
            stream_id = current
        live = sorted(service.connections) if service is not None else []
        if connection_sel == 0:
            connection_id = 0
        elif connection_sel <= 2:
            connection_id = connection_sel * 2 - 1
        elif live and (connection_sel == 3 or connection_sel <= 6 and message_type not in _STARTS):
            connection_id = live[connection_sel % len(live)]
        else:
            connection_id = (max(live) if live else 0) + 1
        return stream_id, connection_id

    def build(self, spec) -> bytes:
        message_type, service_id, stream_sel, connection_sel, ignorable, ids_choice = spec
        stream_id, connection_id = self.resolve(
            message_type, service_id, stream_sel, connection_sel
        )
        if message_type == Message.DATA:
            self.seq += 1
            payload = b"P%s.%d.%d.%d;" % (service_id.encode(), stream_id, connection_id, self.seq)
            return data(service_id, stream_id, connection_id, payload)
        if message_type == Message.SERVICE_IDS:
            ids = ["wrong"] if ids_choice == 0 else self.ids
            return control_message(Message.SERVICE_IDS, available_service_ids=ids)
        return control_message(
            message_type,
            stream_id=stream_id,
            service_id=service_id,
            connection_id=connection_id,
            ignorable=bool(ignorable) and message_type in (Message.UNKNOWN, 42),
        )

    @rule(specs=st.lists(message_specs, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 400)))
    def peer_sends(self, specs, cuts) -> None:
        """Messages from the peer, coalesced into one stream and cut into WebSocket payloads."""
        expected = None
        if len(specs) == 1:
            expected = self.deliverable(specs[0])
        records = [self.build(spec) for spec in specs]
        stream = b"".join(records)
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        payloads = [stream[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
        before = None if expected is None else len(expected.inbound_seqs)
        if self.feed(payloads) and expected is not None:
            assert len(expected.inbound_seqs) == before + 1, "DATA for a live connection lost"
        self.check_outbound()

    def deliverable(self, spec) -> Optional[TrackedLocal]:
        """The local connection a lone V3 DATA message must reach, if the tunnel has one."""
        message_type, service_id, stream_sel, connection_sel, _, _ = spec
        stream_id, connection_id = self.resolve(
            message_type, service_id, stream_sel, connection_sel
        )
        session = self.tunnel._session
        if (
            message_type != Message.DATA
            or session is None
            or not session.ready
            or not session.format.multiplexed
            or not connection_id
        ):
            return None
        service = session.services.get(service_id)
        if service is None or service.stream_id != stream_id:
            return None
        connection = service.connections.get(connection_id)
        if connection is None or connection.local is None:
            return None
        return connection.local  # type: ignore[return-value]

    @rule(roll=st.sampled_from(range(5)))
    def websocket_drops(self, roll: int) -> None:
        """The WebSocket is gone (one time in five): the session ends and a new one starts."""
        if roll:
            return
        self.records_checked += len(self.peer.records)
        self.peer.records.clear()
        self.restart()

    # -- the local side --------------------------------------------------------------

    def live(self) -> List[TrackedLocal]:
        return [
            local
            for local in self.locals
            if local.tunnel_connection is not None and local.tunnel_connection.open
        ]

    @precondition(lambda self: self.mode is Mode.SOURCE)
    @rule(service=st.sampled_from(["ssh", "web", "nope"]))
    def local_accepts(self, service: str) -> None:
        local = TrackedLocal(self, len(self.locals))
        connection = self.tunnel.local_connection_accepted(service, local)
        if connection is not None:
            local.tunnel_connection = connection
            self.locals.append(local)
        self.check_outbound()

    @rule(index=st.integers(0, 100), count=st.integers(1, 3))
    def local_reads(self, index: int, count: int) -> None:
        live = self.live()
        if not live:
            return
        local = live[index % len(live)]
        for _ in range(count):
            local.tunnel_connection.data_received(
                b"L%d.%d;" % (local.index, local.outbound_written)
            )
            local.outbound_written += 1
        self.check_outbound()

    @rule(index=st.integers(0, 100))
    def local_closes(self, index: int) -> None:
        live = self.live()
        if live:
            local = live[index % len(live)]
            if not local.close_calls:
                local.lost = True
            local.tunnel_connection.connection_lost()
        self.check_outbound()

    @precondition(lambda self: self.mode is Mode.DESTINATION)
    @rule(index=st.integers(0, 100))
    def local_connect_fails(self, index: int) -> None:
        live = self.live()
        if live:
            live[index % len(live)].tunnel_connection.connect_failed("refused")
        self.check_outbound()

    @precondition(lambda self: self.mode is Mode.DESTINATION)
    @rule(fail=st.booleans())
    def connects_fail_synchronously(self, fail: bool) -> None:
        self.local_side.fail_synchronously = fail

    @rule(pause=st.booleans())
    def scheduler_pauses_or_resumes(self, pause: bool) -> None:
        """The WebSocket transport's buffer fills (the scheduler pauses) or drains."""
        if pause:
            self.scheduler.pauseProducing()
        else:
            self.scheduler.resumeProducing()
        self.check_outbound()

    # -- the checks ------------------------------------------------------------------

    def check_inbound(self, local: TrackedLocal, data: bytes) -> None:
        """A write to C{local}: one whole token of its own connection, the next in order."""
        match = _INBOUND.fullmatch(data)
        assert match, "a partial or foreign write %r to %s" % (data, local.name)
        service_id, stream_id, connection_id, seq = match.groups()
        connection = local.tunnel_connection
        assert connection is not None
        session = self.tunnel._session
        assert session is not None
        if session.format.version is not PeerVersion.V1:
            assert service_id.decode() == connection.service_id, (data, connection)
        assert int(stream_id) == connection.stream_id, (data, connection)
        if session.format.multiplexed and int(connection_id):
            assert int(connection_id) == connection.connection_id, (data, connection)
        if not session.format.multiplexed or not int(connection_id):
            # Only a service's single connection takes DATA without (usable) connection IDs.
            assert len(connection.service.connections) == 1, (data, connection)
        seq_number = int(seq)
        assert not local.inbound_seqs or local.inbound_seqs[-1] < seq_number
        local.inbound_seqs.append(seq_number)

    def check_outbound(self) -> None:
        """The records sent since the last check, against the local connections they carry."""
        by_index: Dict[int, TrackedLocal] = {local.index: local for local in self.locals}
        v1 = (
            self.tunnel._session is not None
            and self.tunnel._session.format.version is PeerVersion.V1
        )
        for position, record in enumerate(self.peer.records, self.records_checked):
            (message,) = decode_all(record)
            if message.type in _STARTS:
                self.source_connection_born(message, position, v1)
            elif message.type == Message.DATA and not message.payload:
                # A destination's announcement that it speaks V3: no bytes to own.
                assert self.mode is Mode.DESTINATION and message.connectionId, message
            elif message.type == Message.DATA:
                owners = set()
                for index, seq in _OUTBOUND.findall(message.payload):
                    local = by_index[int(index)]
                    owners.add(local)
                    assert local.born_at is not None, "DATA of %s before its start" % (local.name,)
                    assert not local.reset_seen, "DATA of %s after its reset" % (local.name,)
                    expected = len(local.outbound_sent)
                    assert int(seq) == expected, "%s: token %s, expected %d" % (
                        local.name,
                        seq,
                        expected,
                    )
                    local.outbound_sent.append(int(seq))
                assert (
                    b"".join(b"L%s.%s;" % pair for pair in _OUTBOUND.findall(message.payload))
                    == message.payload
                ), "a token was cut"
                assert len(owners) == 1, "one record, several connections"
                (owner,) = owners
                connection = owner.tunnel_connection
                assert message.streamId == connection.stream_id
                assert message.serviceId == ("" if v1 else connection.service_id)
                assert message.connectionId in (0, connection.connection_id)
            elif message.type in (Message.CONNECTION_RESET, Message.STREAM_RESET):
                # A connection ID the peer reused names the oldest connection that
                # has not been reset yet: one ConnectionReset ends one connection.
                single = message.type == Message.CONNECTION_RESET and message.connectionId
                for local in self.locals:
                    connection = local.tunnel_connection
                    if connection is None or connection.open or local.reset_seen:
                        continue
                    if local.born_at is None or local.born_at > position:
                        # Not started yet (a source's start still queued), or a later
                        # connection that reuses the IDs: a reset sent before a
                        # connection's start is about an older one (records reach
                        # the peer in order), however the IDs look.
                        continue
                    if self.names(message, connection, v1) and (
                        message.type == Message.STREAM_RESET
                        or message.connectionId in (0, connection.connection_id)
                    ):
                        local.reset_seen = True
                        if single:
                            break
        self.records_checked += len(self.peer.records)
        self.peer.records.clear()

    @staticmethod
    def names(message: Message, connection, v1: bool) -> bool:
        """Whether a record's service and stream IDs are C{connection}'s."""
        return (
            message.streamId == connection.stream_id
            # Only V1 messages carry no service ID; in V2/V3 an empty one
            # names an unknown service (a start the tunnel refused).
            and message.serviceId == ("" if v1 else connection.service_id)
        )

    def source_connection_born(self, message: Message, position: int, v1: bool) -> None:
        """
        A source sent a StreamStart or ConnectionStart at C{position}: the
        birth of the accepted connection it starts (a source does not
        repeat a service's stream and connection IDs in a tunnel's life).
        Only from there on can a reset with its IDs be its own: until then
        the scheduler may still send records queued before the accept, such
        as the answer to the peer's DATA of a stream the source had not
        started yet, which names the stream ID the source then takes.
        """
        assert self.mode is Mode.SOURCE, message
        for local in self.locals:
            connection = local.tunnel_connection
            if (
                local.born_at is None
                and connection is not None
                and self.names(message, connection, v1)
                and message.connectionId in (0, connection.connection_id)
            ):
                local.born_at = position
                return
        raise AssertionError("a start of no accepted connection: %r" % (message,))

    @invariant()
    def tables_hold_only_open_connections(self) -> None:
        session = getattr(self, "tunnel", None) and self.tunnel._session
        if not session:
            return
        for service in session.services.values():
            assert len(service.connections) <= self.max_active, service
            for connection_id, connection in service.connections.items():
                assert connection.open and connection.lane is not None, connection
                assert connection.connection_id == connection_id
            if not session.format.multiplexed:
                assert len(service.connections) <= 1, service

    @invariant()
    def closed_at_most_once(self) -> None:
        for local in self.locals:
            assert local.ends <= 1, local.name
            connection = local.tunnel_connection
            if local.ends:
                assert connection is None or not connection.open, local.name

    def teardown(self) -> None:
        if not hasattr(self, "tunnel"):
            return
        self.tunnel.session_ended()
        for local in self.locals:
            assert local.ends == 1, "%s closed %d times" % (local.name, local.ends)
        # What each local application sent went out in order, as a prefix.
        for local in self.locals:
            assert local.outbound_sent == list(range(len(local.outbound_sent)))


TunnelMachine.TestCase.settings = settings.get_profile(PROFILE)


class TunnelFuzzTests(TestCase):
    """Trial runs the Hypothesis state machine (its unittest TestCase's single test)."""

    def test_state_machine(self) -> None:
        case = TunnelMachine.TestCase("runTest")
        case.runTest()


#: Steps after which ssh's one local connection has a token queued behind a
#: full WebSocket transport (the scheduler is paused).
SSH_TOKEN_QUEUED = (
    ("local_accepts", dict(service="ssh")),
    ("scheduler_pauses_or_resumes", dict(pause=True)),
    ("local_reads", dict(index=0, count=1)),
)


class FoundExampleTests(SynchronousTestCase):
    """
    Examples the state machine found, replayed step by step through the
    same machine, so that they run in every CI run whatever Hypothesis draws.
    """

    def replay(self, machine: TunnelMachine, *steps: tuple) -> None:
        """Run each (rule, arguments) step, then the invariants, as Hypothesis does; then tear down."""
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            machine.tables_hold_only_open_connections()
            machine.closed_at_most_once()
        machine.teardown()

    def replay_on_a_v3_source(self, max_active: int, *steps: tuple) -> None:
        """
        L{replay} on a new machine set up as a source whose subprotocol and
        peer are both V3, with at most C{max_active} local connections.
        """
        self.replay(
            TunnelMachine(),
            (
                "set_up",
                dict(
                    mode=Mode.SOURCE,
                    subprotocol=SUBPROTOCOL_V3,
                    version=PeerVersion.V3,
                    max_active=max_active,
                ),
            ),
            *steps,
        )

    def test_source_reset_queued_before_a_later_stream_of_its_id(self) -> None:
        """
        Source, V3: while the WebSocket transport is full, the peer sends DATA
        for web's stream 1, which the source has not started: it is answered
        with that stream's StreamReset.  Then a local connection of web
        starts web's first stream, stream 1 too (the machine numbers streams
        from 1), reads a token and closes.  Sent in order: StreamReset,
        StreamStart, DATA, the connection's reset.  The first reset precedes
        the connection's start, so it cannot be the connection's; the model
        took it for it and reported "DATA of L0 after its reset".
        """
        self.replay_on_a_v3_source(
            128,
            ("scheduler_pauses_or_resumes", dict(pause=True)),
            # (type, service ID, stream: the current (none, so 1), connection: a new one, ...)
            ("peer_sends", dict(specs=[(Message.DATA, "web", 3, 3, 1, 1)], cuts=[])),
            ("local_accepts", dict(service="web")),
            ("local_reads", dict(index=0, count=1)),
            ("local_closes", dict(index=0)),
            ("scheduler_pauses_or_resumes", dict(pause=False)),
        )

    def test_late_service_ids_with_bytes_queued(self) -> None:
        """
        Source, V3: a connection's token is queued (the WebSocket transport
        is full) when the peer sends SERVICE_IDS again, which closes every
        connection, and DATA for that connection, which is answered with
        its ConnectionReset.  The queued token must not follow that reset
        ("DATA of L0 after its reset"; the unit tests are
        tests.protocol.test_tunnel_session.CloseAllTests).
        """
        self.replay_on_a_v3_source(
            1,
            *SSH_TOKEN_QUEUED,
            # SERVICE_IDS with the right IDs, then DATA of ssh's current stream
            # for its live connection (resolved before the SERVICE_IDS is handled).
            (
                "peer_sends",
                dict(
                    specs=[
                        (Message.SERVICE_IDS, "ssh", 3, 3, 1, 1),
                        (Message.DATA, "ssh", 3, 3, 1, 1),
                    ],
                    cuts=[],
                ),
            ),
            ("scheduler_pauses_or_resumes", dict(pause=False)),
        )

    def test_stream_reset_answer_with_bytes_queued(self) -> None:
        """
        Source, V3: a connection's token is queued (the WebSocket transport
        is full), the peer shows V3, the connection closes (its reset is
        queued after the token), and the peer sends DATA of the stream
        without a connection ID (a V2 peer), answered with the stream's
        StreamReset.  The token must not follow that reset ("DATA of L0
        after its reset"; the unit tests are in
        tests.protocol.test_tunnel_closes.UndeliverableDataTests).
        """
        self.replay_on_a_v3_source(
            1,
            *SSH_TOKEN_QUEUED,
            # DATA of the current stream for the live connection (shows V3).
            ("peer_sends", dict(specs=[(Message.DATA, "ssh", 3, 3, 1, 1)], cuts=[])),
            ("local_closes", dict(index=0)),
            # DATA of the current stream with connection ID 0.
            ("peer_sends", dict(specs=[(Message.DATA, "ssh", 3, 0, 1, 1)], cuts=[])),
            ("scheduler_pauses_or_resumes", dict(pause=False)),
        )
