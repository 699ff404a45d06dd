"""
The receive fast path against Autobahn alone: the same bytes, the same result.

L{TunnelClientProtocol._binary_frames} takes plain binary frames without
Autobahn's parser.  It must never accept what Autobahn would refuse, nor
refuse, reorder or split what Autobahn would deliver.  Each example here is
one stream of server->client bytes -- data frames in all three length
forms, text frames (valid UTF-8 or not), fragmented messages with control
frames between their fragments, pings, pongs, closes, and frames RFC 6455
forbids (over the frame limit, lengths not in their shortest form, reserved
bits, masked server frames, reserved opcodes, fragmented or long control
frames, stray continuations) -- cut at random points into reads.  It is fed
to a L{TunnelClientProtocol} and to a plain Autobahn client protocol built
with the same options, and after every read both must have delivered the
same messages, written the same frames (pongs, close replies), failed the
session with the same close code, and agreed on whether the connection is
being dropped.
"""

from __future__ import annotations

import struct
from typing import Any, List, Optional, Tuple

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address

from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE, SUBPROTOCOLS
from aws_localproxy.upstream.websocket import TunnelClientProtocol
from tests.fakes.transport import TCPLikeTransport
from tests.fakes.websocket import NoPacer, RecordingEvents
from tests.support.payloads import unique_payload
from tests.support.websocket import WebSocketTestCase, client_frames

#: A message on whose delivery the application drops the connection (both
#: protocols), so that frames after it in the same read meet a closed session.
DROP = b"drop now"
#: How the pongs of the session's pacer start (L{PacerPongs}).
PACER_MAGIC = b"lpq1"


class PacerPongs(NoPacer):
    """
    A session's scheduler whose pacer takes the pongs that start with its
    magic (as the real pacer's do); every other pong is Autobahn's, as in
    the plain client, for which the pacer's are unsolicited pongs it ignores.
    """

    def pong(self, payload: bytes) -> bool:
        return payload.startswith(PACER_MAGIC)


class Events(RecordingEvents):
    """A pacer that takes its own pongs (L{PacerPongs}); DROP drops the connection."""

    protocol: Optional[TunnelClientProtocol] = None

    def __init__(self) -> None:
        super().__init__()
        self.outbound = PacerPongs()

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        self.protocol = protocol
        super().session_opened(protocol, subprotocol)

    def message_received(self, payload: bytes) -> None:
        super().message_received(payload)
        if payload == DROP:
            assert self.protocol is not None
            self.protocol.dropConnection(abort=True)


class PlainAutobahnClient(WebSocketClientProtocol):
    """Autobahn's client protocol with nothing of ours: it only records messages."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: List[bytes] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.delivered.append(payload)
        if payload == DROP:
            self.dropConnection(abort=True)


class Observed:
    """What one protocol did with the stream so far."""

    def __init__(self, protocol: Any, transport: TCPLikeTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.codes: List[int] = []
        fail = protocol._fail_connection

        def recording(code: int = 1001, reason: str = "going away") -> None:
            self.codes.append(code)
            fail(code, reason)

        protocol._fail_connection = recording

    def result(self, messages: List[bytes]) -> Tuple[Any, ...]:
        written = self.transport.value()
        return (
            list(messages),
            client_frames(written) if written else [],
            list(self.codes),
            self.transport.disconnecting,
        )


# -- frames -----------------------------------------------------------------------


def header(first: int, length: int, form: int, masked: bool = False) -> bytes:
    """A frame header with C{length} in the given form: 0 (7 bits), 16 or 64, minimal or not."""
    mask_bit = 0x80 if masked else 0
    if form == 0:
        return struct.pack("!BB", first, mask_bit | length)
    if form == 16:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    return struct.pack("!BBQ", first, mask_bit | 127, length)


def minimal_form(length: int) -> int:
    return 0 if length < 126 else 16 if length < 0x10000 else 64


def frame(first: int, payload: bytes, form: Optional[int] = None) -> bytes:
    return header(first, len(payload), minimal_form(len(payload)) if form is None else form) + (
        payload
    )


def payload_of(size: int, seed: int) -> bytes:
    """C{size} bytes in which no block repeats (a frame misread shows), the same for a seed."""
    return unique_payload(size, seed)


@st.composite
def binary_payloads(draw: st.DrawFn) -> bytes:
    """Sizes in each length form (the 64-bit form needs at least 64 KiB)."""
    size = draw(
        st.one_of(
            st.integers(0, 125),
            st.integers(126, 400),
            st.sampled_from([0xFFFF, 0x10000, MAX_WEBSOCKET_FRAME_SIZE]),
        )
    )
    return payload_of(size, draw(st.integers(0, 255)))[:size]


texts = st.one_of(
    st.text(max_size=40).map(lambda text: text.encode("utf-8")),
    st.sampled_from([b"\xff\xfe", b"caf\xc3", b"\xed\xa0\x80"]),  # not UTF-8
)

control_frames = st.one_of(
    st.binary(max_size=125).map(lambda payload: frame(0x89, payload)),  # ping
    st.binary(max_size=125).map(lambda payload: frame(0x8A, payload)),  # pong
    st.binary(max_size=121).map(lambda payload: frame(0x8A, PACER_MAGIC + payload)),  # pacer's
    st.tuples(st.sampled_from([1000, 1001, 1011, 4000]), st.binary(max_size=20)).map(
        lambda close: frame(0x88, struct.pack("!H", close[0]) + close[1])
    ),
    st.just(frame(0x88, b"")),
)


@st.composite
def fragmented(draw: st.DrawFn) -> bytes:
    """A message in fragments, control frames between them."""
    opcode = draw(st.sampled_from([0x1, 0x2]))
    pieces = draw(
        st.lists(texts if opcode == 0x1 else st.binary(max_size=300), min_size=2, max_size=4)
    )
    out = b""
    for index, piece in enumerate(pieces):
        fin = 0x80 if index == len(pieces) - 1 else 0
        out += frame(fin | (opcode if index == 0 else 0x0), piece)
        if draw(st.booleans()):
            out += draw(control_frames)
    return out


@st.composite
def forbidden(draw: st.DrawFn) -> bytes:
    """A frame RFC 6455 or this session's limits refuse."""
    kind = draw(
        st.sampled_from(
            [
                "oversize",
                "oversize-16M",
                "non-minimal-16",
                "non-minimal-64",
                "huge-64",
                "reserved-bits",
                "masked",
                "reserved-opcode",
                "long-control",
                "fragmented-control",
                "stray-continuation",
                "close-one-byte",
                "new-message-inside-fragments",
            ]
        )
    )
    small = draw(st.binary(max_size=8))
    if kind == "oversize":
        return header(0x82, MAX_WEBSOCKET_FRAME_SIZE + draw(st.integers(1, 1000)), 64) + small
    if kind == "oversize-16M":
        return header(0x82, 16 * 1024 * 1024, 64) + small
    if kind == "non-minimal-16":
        return header(0x82, len(small), 16) + small
    if kind == "non-minimal-64":
        size = draw(st.sampled_from([len(small), 200]))
        return header(0x82, size, 64) + payload_of(size, 7)[:size]
    if kind == "huge-64":
        return header(0x82, 1 << 63, 64) + small
    if kind == "reserved-bits":
        rsv = draw(st.integers(1, 7)) << 4
        return frame(rsv | draw(st.sampled_from([0x82, 0x81, 0x89, 0x02])), small)
    if kind == "masked":
        return (
            header(draw(st.sampled_from([0x82, 0x81, 0x89])), len(small), 0, masked=True)
            + b"\1\2\3\4"
            + small
        )
    if kind == "reserved-opcode":
        return frame(0x80 | draw(st.sampled_from([0x3, 0x7, 0xB, 0xF])), small)
    if kind == "long-control":
        return frame(draw(st.sampled_from([0x89, 0x8A])), b"p" * 126)
    if kind == "fragmented-control":
        return frame(0x09, small)
    if kind == "stray-continuation":
        return frame(0x80, small)
    if kind == "new-message-inside-fragments":
        return frame(0x02, small)  # its end is a boundary; a binary frame often follows
    return frame(0x88, b"\x03")  # a close with a one-byte body


valid_frames = st.one_of(
    # Mostly plain binary frames: the fast path is what is on trial.
    binary_payloads().map(lambda payload: frame(0x82, payload)),
    binary_payloads().map(lambda payload: frame(0x82, payload)),
    texts.map(lambda payload: frame(0x81, payload)),
    st.sampled_from([0x82, 0x81]).map(lambda first: frame(first, DROP)),
    fragmented(),
    control_frames,
)


@st.composite
def streams(draw: st.DrawFn) -> List[bytes]:
    """Valid frames, and in about half the streams one forbidden frame among them."""
    frames = draw(st.lists(valid_frames, min_size=1, max_size=6))
    if draw(st.booleans()):
        frames.insert(draw(st.integers(0, len(frames))), draw(forbidden()))
    return frames


binary_frames = binary_payloads().map(lambda payload: frame(0x82, payload))


@st.composite
def any_header(draw: st.DrawFn) -> bytes:
    """
    A frame whose header bits are drawn one by one -- FIN, RSV, opcode, mask
    bit, length form (minimal or not) and length (up to 2^63) -- the fields
    the fast path judges.  A declared length too large to send is followed
    by only a few bytes.
    """
    first = draw(
        st.one_of(
            st.integers(0, 255),
            st.integers(0, 7).map(lambda rsv: 0x82 | rsv << 4),
        )
    )
    masked = draw(st.booleans())
    form = draw(st.sampled_from([0, 16, 64]))
    if form == 0:
        length = draw(st.integers(0, 125))
    elif form == 16:
        length = draw(st.one_of(st.integers(0, 300), st.integers(0, 0xFFFF)))
    else:
        length = draw(
            st.one_of(
                st.integers(0, 300),
                st.sampled_from([0xFFFF, 0x10000, MAX_WEBSOCKET_FRAME_SIZE]),
                st.integers(MAX_WEBSOCKET_FRAME_SIZE + 1, 1 << 64 - 1),
            )
        )
    body = payload_of(length, first)[:length] if length <= MAX_WEBSOCKET_FRAME_SIZE else b"xyz"
    mask = b"\x01\x02\x03\x04" if masked else b""
    return header(first, length, form, masked=masked) + mask + body


@st.composite
def one_among_binary(draw: st.DrawFn) -> List[bytes]:
    """
    One frame of another kind among plain binary frames: the fast path
    reaches it wherever the reads are cut, so its choice to take the frame
    or to hand it to Autobahn is what is compared.
    """
    other = draw(
        st.one_of(
            any_header(),
            forbidden(),
            st.sampled_from([0x82, 0x81]).map(lambda first: frame(first, DROP)),
            control_frames,
            texts.map(lambda payload: frame(0x81, payload)),
            binary_payloads().map(lambda payload: frame(0x02, payload)),  # a first fragment
        )
    )
    before = draw(st.lists(binary_frames, max_size=2))
    after = draw(st.lists(binary_frames, min_size=1, max_size=2))
    return before + [other] + after


@st.composite
def reads(draw: st.DrawFn, frame_lists: st.SearchStrategy[List[bytes]]) -> List[bytes]:
    """
    One stream cut into reads: at frame boundaries (where the fast path
    starts a read between messages, or inside a fragmented one) and at
    random points (inside headers and payloads).
    """
    frames = draw(frame_lists)
    stream = b"".join(frames)
    boundaries = [sum(len(f) for f in frames[:index]) for index in range(1, len(frames))]
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=8))
    if boundaries:
        cuts += draw(st.lists(st.sampled_from(boundaries), max_size=len(boundaries)))
    cuts = sorted(set(cuts))
    pieces, last = [], 0
    for cut in cuts + [len(stream)]:
        pieces.append(stream[last:cut])
        last = cut
    return [piece for piece in pieces if piece]


class DifferentialTests(WebSocketTestCase):
    """The fast path and Autobahn alone agree on every stream."""

    def setUp(self) -> None:
        super().setUp()
        self.events = Events()

    def plain(self) -> Tuple[PlainAutobahnClient, TCPLikeTransport]:
        """An Autobahn client protocol with exactly our factory's protocol options."""
        ours = self.connect()[0].factory
        factory = WebSocketClientFactory(
            "wss://data.tunneling.iot.us-east-1.amazonaws.com/tunnel",
            protocols=list(SUBPROTOCOLS),
            reactor=self.clock,
        )
        for name in WebSocketClientProtocol.CONFIG_ATTRS:
            setattr(factory, name, getattr(ours, name))
        factory.protocol = PlainAutobahnClient
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 443))
        assert isinstance(protocol, PlainAutobahnClient)
        transport = TCPLikeTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def open_both(self) -> Tuple[Observed, Observed]:
        self.events.messages.clear()
        self.events.opened.clear()
        ours, our_transport = self.open()
        plain, plain_transport = self.plain()
        plain.dataReceived(self.accept(plain, SUBPROTOCOLS[-1]))  # type: ignore[arg-type]
        self.assertEqual(plain.state, plain.STATE_OPEN)
        plain_transport.clear()
        return Observed(ours, our_transport), Observed(plain, plain_transport)

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(reads(streams()))
    def test_same_messages_frames_and_close_code(self, pieces: List[bytes]) -> None:
        self.differential(pieces)

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(reads(one_among_binary()))
    def test_what_the_fast_path_meets(self, pieces: List[bytes]) -> None:
        self.differential(pieces)

    def differential(self, pieces: List[bytes]) -> None:
        """Feed both protocols the same reads; after each, both must have done the same."""
        ours, plain = self.open_both()
        for index, piece in enumerate(pieces):
            ours.protocol.dataReceived(piece)
            plain.protocol.dataReceived(piece)
            self.assertEqual(
                ours.result(self.events.messages),
                plain.result(plain.protocol.delivered),
                f"after read {index} of {[len(p) for p in pieces]}",
            )

    def test_each_forbidden_kind_fails_alike(self) -> None:
        """The forbidden frames one by one, after a good one, whole and byte by byte."""
        cases = [
            header(0x82, MAX_WEBSOCKET_FRAME_SIZE + 1, 64),
            header(0x82, 5, 16) + b"12345",
            header(0x82, 300, 64) + b"x" * 300,
            frame(0xC2, b"rsv1"),
            header(0x82, 3, 0, masked=True) + b"\0\0\0\0abc",
            frame(0x83, b"op3"),
            # A new message while a fragmented one is open (the cut between
            # the two frames is where the fast path could take over).
            frame(0x02, b"frag") + frame(0x82, b"new"),
        ]
        for case in cases:
            stream = frame(0x82, b"good") + case + frame(0x82, b"after")
            for pieces in (
                [stream],
                [stream[i : i + 1] for i in range(min(len(stream), 40))] + [stream[40:]],
            ):
                ours, plain = self.open_both()
                for piece in pieces:
                    ours.protocol.dataReceived(piece)
                    plain.protocol.dataReceived(piece)
                result = ours.result(self.events.messages)
                self.assertEqual(result, plain.result(plain.protocol.delivered), case[:12])
                self.assertEqual(result[0], [b"good"])
                self.assertEqual(len(result[2]), 1, case[:12])  # failed, with one code
                self.assertIn(result[2][0], (1002, 1009))
