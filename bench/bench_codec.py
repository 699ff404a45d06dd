#!/usr/bin/env python
"""
Benchmark of the tunnel codec (aws_localproxy.protocol.wire) against the naive way.

Run from the project root:

    python bench/bench_codec.py            # about 15 s
    python bench/bench_codec.py --quick    # about 3 s, rougher figures

For each case it prints messages/s and MB/s (payload bytes for DATA, record
bytes for control messages) for the codec and for a baseline measured in the
same run, and the ratio codec/baseline (above 1 = the codec is faster).

Baselines, the obvious way to write it:
 - encode: ``struct.pack(">H", n) + Message(...).SerializeToString()``;
 - decode: append each WebSocket payload to a ``bytes`` buffer, then
   ``Message.ParseFromString(buf[2:2+n])`` and ``buf = buf[2+n:]`` per message.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from typing import Callable, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aws_localproxy.protocol.wire import (  # noqa: E402
    Message,
    MessageDecoder,
    control_message,
    encode_data,
)

PAYLOAD_SIZE = 64512
#: The service's largest WebSocket frame: DATA arrives up to this size per payload.
FRAME_SIZE = 131076


def measure(function: Callable[[], int], seconds: float) -> tuple[float, int]:
    """Run C{function} (which returns how many messages it handled) for about C{seconds}."""
    function()  # warm up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        count += function()
        now = time.perf_counter()
        if now >= deadline:
            return now - start, count


# -- encoders -------------------------------------------------------------------


def naive_encode_data(payload: bytes) -> List[bytes]:
    return [
        _prefix(
            Message(
                type=Message.DATA,
                streamId=1,
                serviceId="ssh",
                connectionId=1,
                payload=payload[i : i + PAYLOAD_SIZE],
            ).SerializeToString()
        )
        for i in range(0, len(payload), PAYLOAD_SIZE)
    ]


def _prefix(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def naive_control(stream_id: int) -> bytes:
    return _prefix(
        Message(
            type=Message.CONNECTION_START, streamId=stream_id, serviceId="ssh", connectionId=7
        ).SerializeToString()
    )


# -- decoders -------------------------------------------------------------------


class NaiveDecoder:
    """Buffer as bytes, re-sliced after every message."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> List[Message]:
        self.buf += data
        out = []
        while len(self.buf) >= 2:
            (n,) = struct.unpack(">H", self.buf[:2])
            if len(self.buf) < 2 + n:
                break
            message = Message()
            message.ParseFromString(self.buf[2 : 2 + n])
            out.append(message)
            self.buf = self.buf[2 + n :]
        return out


def frames(stream: bytes, size: int) -> List[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, rougher figures")
    args = parser.parse_args()
    seconds = 0.3 if args.quick else 1.2

    payload = os.urandom(PAYLOAD_SIZE)
    data_record = encode_data("ssh", 1, 1, payload)[0]
    # 40 full DATA records as the service would frame them: cut at 131076, so
    # most records straddle two payloads.
    data_frames = frames(data_record * 40, FRAME_SIZE)
    small_record = control_message(Message.CONNECTION_START, 5, "ssh", 7)
    # A frame filled with small records, as the service may aggregate them.
    small_per_frame = FRAME_SIZE // len(small_record)
    small_frames = [small_record * small_per_frame]

    def enc_data() -> int:
        encode_data("ssh", 1, 1, payload)
        return 1

    def enc_data_naive() -> int:
        naive_encode_data(payload)
        return 1

    def enc_small() -> int:
        for i in range(1, 101):
            control_message(Message.CONNECTION_START, i, "ssh", 7)
        return 100

    def enc_small_naive() -> int:
        for i in range(1, 101):
            naive_control(i)
        return 100

    def decoder_run(factory, chunks: List[bytes]) -> Callable[[], int]:
        def run() -> int:
            decoder = factory()
            n = 0
            for chunk in chunks:
                n += len(decoder.feed(chunk))
            return n

        return run

    cases = [
        ("encode 64 KB DATA", enc_data, enc_data_naive, PAYLOAD_SIZE),
        ("encode control message", enc_small, enc_small_naive, len(small_record)),
        (
            "decode 64 KB DATA (131076-byte frames)",
            decoder_run(MessageDecoder, data_frames),
            decoder_run(NaiveDecoder, data_frames),
            PAYLOAD_SIZE,
        ),
        (
            "decode control messages (%d per frame)" % (small_per_frame,),
            decoder_run(MessageDecoder, small_frames),
            decoder_run(NaiveDecoder, small_frames),
            len(small_record),
        ),
    ]

    # Both decoders must agree before their speed means anything.
    for _, ours, naive, _ in cases[2:]:
        assert ours() == naive()

    print("Python %s, protobuf backend: %s" % (sys.version.split()[0], _backend()))
    header = "%-42s %14s %10s %14s %10s %7s" % (
        "case",
        "codec msg/s",
        "codec MB/s",
        "naive msg/s",
        "naive MB/s",
        "ratio",
    )
    print(header)
    print("-" * len(header))
    for name, ours, naive, size in cases:
        ours_time, ours_count = measure(ours, seconds)
        naive_time, naive_count = measure(naive, seconds)
        ours_rate = ours_count / ours_time
        naive_rate = naive_count / naive_time
        print(
            "%-42s %14.0f %10.1f %14.0f %10.1f %6.2fx"
            % (
                name,
                ours_rate,
                ours_rate * size / 1e6,
                naive_rate,
                naive_rate * size / 1e6,
                ours_rate / naive_rate,
            )
        )


def _backend() -> str:
    try:
        from google.protobuf.internal import api_implementation

        return api_implementation.Type()
    except Exception:  # pragma: no cover - informational only
        return "unknown"


if __name__ == "__main__":
    main()
