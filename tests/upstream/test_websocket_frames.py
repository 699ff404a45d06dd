"""
The WebSocket's receive fast path under every way the service's frames can
be cut into reads, beyond tests/upstream/test_websocket.py: a header split
at every offset of every frame in a read (not only the first frame of a
read, and with a short remainder after it), each length form at its
boundaries, a pacer pong of the largest size, and the frames whose place in
the session is Autobahn's to judge (inside a fragmented message or a ping,
after the session's own close) -- and the limits the fast path applies when
the factory's options are not ours.

Each stream is checked read by read: after each read exactly the messages
and pacer pongs whose last byte has arrived are delivered (none early, none
late), and Autobahn's parser begins no frame the fast path should take.
"""

from __future__ import annotations

import struct
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE
from aws_localproxy.upstream.websocket import TunnelClientProtocol
from tests.fakes.websocket import NoPacer
from tests.support.payloads import digest, unique_payload
from tests.support.websocket import (
    WebSocketTestCase,
    client_frames,
    frames_autobahn_begins,
    server_frame,
)

PAYLOAD = unique_payload(MAX_WEBSOCKET_FRAME_SIZE + 200_000, seed=51)

#: One read's frames as the service sends them: (kind, payload), in every
#: length form and at each form's boundaries, with a pacer pong among them.
FRAMES: Sequence[Tuple[str, bytes]] = (
    ("message", b"\x00\x03abc"),
    ("pong", b"lpq1 0001"),
    ("message", PAYLOAD[:300]),
    ("message", b""),
    ("message", PAYLOAD[300 : 300 + 65_536]),
    ("message", PAYLOAD[70_000 : 70_000 + 126]),
    ("message", PAYLOAD[71_000 : 71_000 + 125]),
    ("pong", b"lpq1 " + PAYLOAD[72_000 : 72_000 + 120]),
    ("message", PAYLOAD[73_000 : 73_000 + 65_535]),
)


def encode(frames: Iterable[Tuple[str, bytes]]) -> Tuple[bytes, List[int], List[int]]:
    """The stream of C{frames}, where each frame starts, and where each ends."""
    stream, starts, ends = b"", [], []
    for kind, payload in frames:
        starts.append(len(stream))
        stream += server_frame(0x2 if kind == "message" else 0xA, payload)
        ends.append(len(stream))
    return stream, starts, ends


STREAM, STARTS, ENDS = encode(FRAMES)


def cuts_around(index: int) -> List[int]:
    """
    Where a read may end around frame C{index}: just before it, at every
    offset of its header (up to 14 bytes: the longest) and into its
    payload, and one byte before its end.
    """
    start, end = STARTS[index], ENDS[index]
    cuts = set(range(start - 1, min(start + 15, end)))
    cuts.add(end - 1)
    return sorted(cut for cut in cuts if 0 < cut < len(STREAM))


class RecordingPacer(NoPacer):
    """A session's outbound whose pacer takes the pongs C{takes} says it pinged for, and keeps them."""

    def __init__(self, takes: Callable[[bytes], bool] = lambda p: p.startswith(b"lpq1")) -> None:
        self.pongs: List[bytes] = []
        self.takes = takes

    def pong(self, payload: bytes) -> bool:
        self.pongs.append(payload)
        return self.takes(payload)


class FrameTestCase(WebSocketTestCase):
    def open_with_pacer(
        self, takes: Callable[[bytes], bool] = lambda p: p.startswith(b"lpq1")
    ) -> Tuple[TunnelClientProtocol, RecordingPacer, List[int]]:
        """An open session whose pacer takes C{takes}; the frames Autobahn's parser begins."""
        pacer = self.events.outbound = RecordingPacer(takes)
        protocol, _ = self.open()
        return protocol, pacer, frames_autobahn_begins(protocol)

    def failure_codes(self, protocol: TunnelClientProtocol) -> List[int]:
        """The close codes Autobahn fails C{protocol} with (it drops TCP: no close frame shows them)."""
        codes: List[int] = []
        fail = protocol._fail_connection

        def recording(code: int = 1001, reason: str = "going away") -> None:
            codes.append(code)
            fail(code, reason)

        protocol._fail_connection = recording  # type: ignore[method-assign]
        return codes


class SplitHeaderTests(FrameTestCase):
    """The stream of L{FRAMES} cut into two or three reads at every offset of every header."""

    def feed(
        self, protocol: TunnelClientProtocol, pacer: RecordingPacer, cuts: Sequence[int]
    ) -> None:
        """
        L{STREAM} in reads ending at C{cuts}: after each read, exactly the
        frames whose last byte has arrived are delivered, in order.
        """
        messages, pongs = len(self.events.messages), len(pacer.pongs)
        fed = 0
        for end in [*cuts, len(STREAM)]:
            protocol.dataReceived(STREAM[fed:end])
            fed = end
            complete = [FRAMES[i] for i, frame_end in enumerate(ENDS) if frame_end <= fed]
            self.assertEqual(
                (
                    [digest(m) for m in self.events.messages[messages:]],
                    [digest(p) for p in pacer.pongs[pongs:]],
                ),
                (
                    [digest(p) for kind, p in complete if kind == "message"],
                    [digest(p) for kind, p in complete if kind == "pong"],
                ),
                f"reads ending at {list(cuts)}: wrong frames after {fed} bytes",
            )

    def test_two_reads(self) -> None:
        protocol, pacer, seen = self.open_with_pacer()
        for index in range(len(FRAMES)):
            for cut in cuts_around(index):
                self.feed(protocol, pacer, [cut])
        self.assertEqual(seen, [])

    def test_three_reads_within_a_header(self) -> None:
        """A header split into three reads, whichever frame of the read it is."""
        protocol, pacer, seen = self.open_with_pacer()
        for index in range(len(FRAMES)):
            cuts = cuts_around(index)
            for first in cuts:
                for second in cuts:
                    if first < second:
                        self.feed(protocol, pacer, [first, second])
        self.assertEqual(seen, [])

    def test_three_reads_across_two_headers(self) -> None:
        """
        A read that starts inside one frame's header and ends inside the
        next one's: the second frame is not the first of its read, and
        only a few bytes of it are there.
        """
        protocol, pacer, seen = self.open_with_pacer()
        for index in range(len(FRAMES) - 1):
            for first in cuts_around(index):
                for second in cuts_around(index + 1):
                    if first < second:
                        self.feed(protocol, pacer, [first, second])
        self.assertEqual(seen, [])


class FastPathBoundaryTests(FrameTestCase):
    def test_frame_at_the_frame_limit_skips_autobahn(self) -> None:
        protocol, _, seen = self.open_with_pacer()
        message = PAYLOAD[:MAX_WEBSOCKET_FRAME_SIZE]
        protocol.dataReceived(server_frame(0x2, message))
        self.assertEqual([digest(m) for m in self.events.messages], [digest(message)])
        self.assertEqual(seen, [])

    def test_largest_pacer_pong_skips_autobahn(self) -> None:
        protocol, pacer, seen = self.open_with_pacer()
        pong = b"lpq1" + PAYLOAD[:121]
        protocol.dataReceived(server_frame(0xA, pong) + server_frame(0x2, b"after"))
        self.assertEqual((pacer.pongs, self.events.messages, seen), ([pong], [b"after"], []))

    def test_pong_with_a_16_bit_length_fails_with_1002(self) -> None:
        """
        A control frame may carry at most 125 bytes (RFC 6455 5.5): a pong
        with the 16-bit length form is Autobahn's to refuse, not a pong.
        """
        protocol, pacer, _ = self.open_with_pacer(lambda payload: True)
        codes = self.failure_codes(protocol)
        pong = b"lpq1" + PAYLOAD[:122]
        protocol.dataReceived(
            server_frame(0x2, b"ok") + struct.pack("!BBH", 0x8A, 126, len(pong)) + pong
        )
        self.assertEqual((self.events.messages, pacer.pongs, codes), ([b"ok"], [], [1002]))


class AutobahnsFramesTests(FrameTestCase):
    """Where a frame's meaning depends on Autobahn's state, Autobahn parses it."""

    def test_binary_frame_inside_a_fragmented_message_fails_with_1002(self) -> None:
        """A new message while a fragmented one is unfinished breaks RFC 6455 5.4."""
        protocol, _, _ = self.open_with_pacer()
        codes = self.failure_codes(protocol)
        protocol.dataReceived(server_frame(0x2, b"fra", final=False))
        protocol.dataReceived(server_frame(0x2, b"new") + server_frame(0x0, b"gme"))
        self.assertEqual((self.events.messages, codes), ([], [1002]))

    def test_ping_payload_that_looks_like_a_frame(self) -> None:
        """
        A ping whose payload arrives in a later read than its header: the
        payload is the ping's (answered in the pong), even when it reads
        like a binary frame.
        """
        protocol, transport = self.open()
        payload = server_frame(0x2, b"hello")
        protocol.dataReceived(struct.pack("!BB", 0x89, len(payload)))
        protocol.dataReceived(payload)
        self.assertEqual(self.events.messages, [])
        self.assertEqual(client_frames(transport.value()), [(0xA, payload)])

    def test_close_reply_after_the_message_that_closed(self) -> None:
        """
        The session closes on a message (the tunnel's CloseTunnel); the
        service's close reply comes in the same read, after it: Autobahn
        reads it, and the end is a clean close.
        """

        def receive(payload: bytes) -> None:
            self.events.messages.append(payload)
            if payload == b"last":
                protocol.sendClose(1000)

        self.events.receive = receive
        protocol, transport = self.open()
        protocol.dataReceived(
            server_frame(0x2, b"last") + server_frame(0x8, struct.pack("!H", 1000))
        )
        self.assertEqual(client_frames(transport.value()), [(0x8, struct.pack("!H", 1000))])
        outcome = self.lose(protocol)
        self.assertEqual((outcome.was_clean, outcome.code), (True, 1000))

    def test_pacer_pong_after_a_keepalive_pong(self) -> None:
        """
        The keep-alive's pong (refused by the pacer, then Autobahn's) and,
        in the same read, the pacer's pong between a message's fragments:
        the pacer gets its pong.
        """
        protocol, pacer, _ = self.open_with_pacer()
        protocol.dataReceived(
            server_frame(0xA, b"keepalive")
            + server_frame(0x2, b"fra", final=False)
            + server_frame(0xA, b"lpq1 ours")
            + server_frame(0x0, b"gme")
        )
        self.assertEqual(pacer.pongs, [b"keepalive", b"lpq1 ours"])
        self.assertEqual(self.events.messages, [b"fragme"])

    def test_pacer_pong_split_between_fragments(self) -> None:
        """A pacer pong Autobahn parses, its payload cut between reads: the pacer gets it whole."""
        protocol, pacer, _ = self.open_with_pacer()
        stream = (
            server_frame(0x2, b"fra", final=False)
            + server_frame(0xA, b"lpq1 twelve!")
            + server_frame(0x0, b"gme")
        )
        cut = stream.index(b"twelve")
        protocol.dataReceived(stream[:cut])
        protocol.dataReceived(stream[cut:])
        self.assertEqual(pacer.pongs, [b"lpq1 twelve!"])
        self.assertEqual(self.events.messages, [b"fragme"])


class LimitsTestCase(FrameTestCase):
    """The fast path takes only what Autobahn would, whatever limits the factory sets."""

    protocol_options: Dict[str, object] = {}


class SmallerMessageLimitTests(LimitsTestCase):
    protocol_options = {"maxMessagePayloadSize": 1000}

    def test_frame_over_the_message_limit_fails_with_1009(self) -> None:
        protocol, _, _ = self.open_with_pacer()
        codes = self.failure_codes(protocol)
        protocol.dataReceived(server_frame(0x2, b"ok") + server_frame(0x2, PAYLOAD[:2000]))
        self.assertEqual((self.events.messages, codes), ([b"ok"], [1009]))


class NoLimitsTests(LimitsTestCase):
    """0 is "no limit" to Autobahn: the fast path still takes frames, up to its own bound."""

    protocol_options = {"maxFramePayloadSize": 0, "maxMessagePayloadSize": 0}

    def test_frames_taken(self) -> None:
        protocol, _, seen = self.open_with_pacer()
        protocol.dataReceived(server_frame(0x2, PAYLOAD[:300]))
        self.assertEqual((self.events.messages, seen), ([PAYLOAD[:300]], []))


class NoFrameLimitTests(LimitsTestCase):
    protocol_options = {"maxFramePayloadSize": 0}

    def test_frame_over_the_usual_frame_limit_taken(self) -> None:
        protocol, _, seen = self.open_with_pacer()
        message = PAYLOAD[: MAX_WEBSOCKET_FRAME_SIZE + 100_000]
        protocol.dataReceived(server_frame(0x2, message))
        self.assertEqual([digest(m) for m in self.events.messages], [digest(message)])
        self.assertEqual(seen, [])
