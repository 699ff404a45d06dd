"""
Coverage-guided fuzzing (atheris) of the frame decoder and the tunnel's dispatch.

Each input is a byte stream from the peer, cut into WebSocket payloads by
its first byte.  The decoder may only raise L{WireError}; the tunnel (a V3
destination with one connection open) only the two L{TunnelError}s, after
which the session is ended and every local connection must be closed once.
Run with C{tox -e fuzz}, or by hand::

    python fuzz/fuzz_tunnel.py fuzz/corpus -max_total_time=60
"""

from __future__ import annotations

import os
import sys

import atheris

with atheris.instrument_imports():
    from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode
    from aws_localproxy.protocol.errors import TunnelError
    from aws_localproxy.protocol.wire import MessageDecoder, WireError

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aws_localproxy.protocol.wire import Message  # noqa: E402
from tests.fakes.local import FakeLocalSide  # noqa: E402
from tests.fakes.peer import FakePeer, ctl, service_ids  # noqa: E402
from tests.fakes.tunnel import PeerTunnel  # noqa: E402


def payloads(data: bytes) -> list[bytes]:
    if not data:
        return []
    step = data[0] % 17 + 1
    body = data[1:]
    return [body[i : i + step] for i in range(0, len(body), step)]


def test_one_input(data: bytes) -> None:
    decoder = MessageDecoder()
    try:
        for payload in payloads(data):
            decoder.feed(payload)
    except WireError:
        pass

    for mode in (Mode.DESTINATION, Mode.SOURCE):
        local = FakeLocalSide()
        tunnel = PeerTunnel(mode, FakePeer(), local, service_map={"ssh": "22", "web": "80"})
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("ssh", "web"))
        if mode is Mode.DESTINATION:
            tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        try:
            for payload in payloads(data):
                tunnel.data_received(payload)
        except TunnelError:
            pass
        tunnel.session_ended()
        for _, connection in local.connections:
            assert connection.close_calls == 1, connection.name


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
