"""
The foreign peer of the end-to-end tests (L{tests.support.foreignpeer}) models the
peers it stands for: its record framing, and a V1 destination that ignores
what V1 does not know and takes every StreamStart as a new stream.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from aws_localproxy._proto.Message_pb2 import Message
from aws_localproxy.tunnelservice.testing import start_tunnel_service
from tests.support import tunnelclient
from tests.support.deadlines import EVENT, deadline
from tests.support.e2e import Apps, Collector, listen
from tests.support.foreignpeer import ForeignPeer, RecordReader, encode
from tests.support.helpers import PROJECT_ROOT, child_environ, run_child, wait_until


class IndependenceTests(unittest.TestCase):
    @inlineCallbacks
    def test_loads_none_of_our_proxy(self) -> Any:
        """
        The peer is written from the guides, not from our proxy: importing it
        in a fresh interpreter loads only the generated protobuf module of this
        package, none of the tunnel, session, scheduler, pacing or WebSocket code.
        """
        script = (
            "import sys, tests.support.foreignpeer; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('aws_localproxy'))))"
        )
        code, output, errors = yield run_child(
            [sys.executable, "-c", script], child_environ(), path=PROJECT_ROOT
        )
        self.assertEqual(code, 0, errors.decode(errors="replace"))
        loaded = set(output.decode().split())
        self.assertIn("aws_localproxy._proto.Message_pb2", loaded)
        self.assertEqual(
            loaded - {"aws_localproxy", "aws_localproxy._proto", "aws_localproxy._version"},
            {"aws_localproxy._proto.Message_pb2"},
        )


class RecordTests(unittest.TestCase):
    def test_round_trip_split_anywhere(self) -> None:
        messages = [
            Message(type=Message.STREAM_START, streamId=1, serviceId="SSH1", connectionId=1),
            Message(type=Message.DATA, streamId=1, payload=b"x" * 300),
        ]
        data = b"".join(encode(m) for m in messages)
        self.assertEqual(data[:2], b"\x00\x0c")
        for cut in range(len(data) + 1):
            reader = RecordReader()
            self.assertEqual(reader.feed(data[:cut]) + reader.feed(data[cut:]), messages)


class V1DestinationTests(unittest.TestCase):
    @inlineCallbacks
    def test_ignores_connection_ids_and_restarts_on_stream_start(self) -> Any:
        running = yield deadline(
            start_tunnel_service(reactor, self.mktemp()),
            EVENT,
            "the local tunnel service did not start",
        )
        self.addCleanup(running.stop)
        apps = Apps(Collector)
        app_port = yield listen(self, apps)
        _, source_token, destination_token = running.open_tunnel(["SSH1"])
        destination = ForeignPeer(
            reactor,
            running,
            "destination",
            destination_token,
            version=1,
            destinations={"SSH1": app_port},
        )
        self.addCleanup(destination.stop)
        yield destination.start()
        source = yield tunnelclient.connect(reactor, running, token=source_token)
        self.addCleanup(tunnelclient.close_client, source)

        def send(kind: int, stream: int, connection: int, payload: bytes = b"") -> None:
            message = Message(type=kind, streamId=stream, serviceId="SSH1", connectionId=connection)
            if payload:
                message.payload = payload
            source.send_records(encode(message))

        send(Message.STREAM_START, 1, 1)
        send(Message.DATA, 1, 1, b"a")
        send(Message.CONNECTION_START, 1, 2)
        send(Message.DATA, 1, 2, b"b")
        send(Message.CONNECTION_RESET, 1, 1)
        yield wait_until(
            lambda: apps.made and bytes(apps.made[0].received) == b"ab",
            what="the V1 destination did not write both connections' bytes to one application",
            state=apps.summary,
        )
        self.assertEqual(len(apps.made), 1)
        self.assertFalse(apps.made[0].lost)
        send(Message.STREAM_START, 2, 1)
        send(Message.DATA, 2, 1, b"c")
        send(Message.DATA, 1, 1, b"stale")
        yield wait_until(
            lambda: len(apps.made) == 2 and bytes(apps.made[1].received) == b"c",
            what="the V1 destination did not take the second StreamStart as a new stream",
            state=apps.summary,
        )
        yield apps.made[0].when_closed()
        self.assertEqual(bytes(apps.made[0].received), b"ab")
        # The application closes: a StreamReset without service ID or connection ID.
        apps.made[1].transport.loseConnection()
        messages = yield source.wait_messages(2)
        reset = messages[1]
        self.assertEqual(
            (reset.type, reset.streamId, reset.serviceId, reset.connectionId),
            (Message.STREAM_RESET, 2, "", 0),
        )
