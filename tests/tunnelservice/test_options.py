"""
The local tunnel service's choices that the AWS service may make differently,
each both ways: stream resets when a peer re-attaches, the SERVICE_IDS of a
tunnel without services, re-framing, and pongs that wait behind data.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3
from aws_localproxy.protocol.wire import Message, control_message, encode_data
from aws_localproxy.tunnelservice.relay import RelayOptions
from aws_localproxy.tunnelservice.tap import Options, makeService
from aws_localproxy.tunnelservice.testing import start_tunnel_service
from tests.support.helpers import service_client, wait_until

CLIENT_TOKEN = "0123456789abcdef-0123456789abcdef"


def stream_start(stream_id: int = 1, service_id: str = "ssh") -> bytes:
    return control_message(
        Message.STREAM_START, stream_id=stream_id, service_id=service_id, connection_id=1
    )


class _Service(unittest.TestCase):
    """A service started with C{self.options} (keyword arguments of start_tunnel_service)."""

    options: Any = {}

    @inlineCallbacks
    def start(self, **options: Any) -> Any:
        self.running = yield start_tunnel_service(reactor, self.mktemp(), **options)
        self.addCleanup(self.running.stop)

    def connect(self, **kwargs: Any) -> Any:
        return service_client(self, self.running, **kwargs)


class ResetOnReattachTests(_Service):
    """A source that reconnects: the destination hears of its old stream or not."""

    @inlineCallbacks
    def reattach(self) -> Any:
        tunnel_id, source_token, destination_token = self.running.open_tunnel(["ssh"])
        old = yield self.connect(token=source_token, client_token=CLIENT_TOKEN)
        destination = yield self.connect(mode="destination", token=destination_token)
        old.send_records(stream_start(stream_id=7))
        yield destination.wait_messages(2)
        new = yield self.connect(token=source_token, client_token=CLIENT_TOKEN)
        yield new.wait_messages(1)
        # A marker behind whatever the re-attach sent the destination.
        new.send_records(stream_start(stream_id=8))
        messages = yield destination.wait_messages(3)
        while messages[-1].streamId != 8:
            messages = yield destination.wait_messages(len(messages) + 1)
        return [(m.type, m.streamId) for m in messages[1:]]

    @inlineCallbacks
    def test_reset_by_default(self) -> Any:
        yield self.start()
        seen = yield self.reattach()
        self.assertEqual(
            seen,
            [
                (Message.STREAM_START, 7),
                (Message.STREAM_RESET, 7),
                (Message.STREAM_START, 8),
            ],
        )

    @inlineCallbacks
    def test_no_reset(self) -> Any:
        yield self.start(reset_on_reattach=False)
        seen = yield self.reattach()
        self.assertEqual(seen, [(Message.STREAM_START, 7), (Message.STREAM_START, 8)])


class ServiceIdsWithoutServicesTests(_Service):
    @inlineCallbacks
    def service_ids(self) -> Any:
        _, source_token, _ = self.running.open_tunnel([])
        client = yield self.connect(token=source_token, protocols=[SUBPROTOCOL_V3])
        (message,) = yield client.wait_messages(1)
        self.assertEqual(message.type, Message.SERVICE_IDS)
        return list(message.availableServiceIds)

    @inlineCallbacks
    def test_empty(self) -> Any:
        yield self.start()
        ids = yield self.service_ids()
        self.assertEqual(ids, [])

    @inlineCallbacks
    def test_blank(self) -> Any:
        yield self.start(service_ids_without_services="blank")
        ids = yield self.service_ids()
        self.assertEqual(ids, [""])

    @inlineCallbacks
    def test_tunnel_with_services_unchanged(self) -> Any:
        yield self.start(service_ids_without_services="blank")
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        client = yield self.connect(token=source_token)
        (message,) = yield client.wait_messages(1)
        self.assertEqual(list(message.availableServiceIds), ["ssh"])

    def test_bad_value(self) -> None:
        self.assertRaises(ValueError, RelayOptions, service_ids_without_services="none")


class ReframeTests(_Service):
    """How the destination's frames are cut from what the source sent."""

    @inlineCallbacks
    def relay(self, records: List[bytes]) -> Any:
        """The source sends C{records} one WebSocket message each; fires with the frames."""
        _, source_token, destination_token = self.running.open_tunnel(["ssh"])
        source = yield self.connect(token=source_token)
        destination = yield self.connect(mode="destination", token=destination_token)
        yield source.wait_messages(1)
        yield destination.wait_messages(1)
        for record in records:
            source.send_records(record)
        yield destination.wait_messages(1 + len(records))
        # The first frame is SERVICE_IDS.
        return destination.frames[1:]

    def records(self) -> List[bytes]:
        data: List[bytes] = []
        for i in range(30):
            data.extend(encode_data("ssh", 1, 1, bytes([i]) * (300 + i)))
        return [stream_start(), *data]

    @inlineCallbacks
    def test_as_sent(self) -> Any:
        yield self.start()
        records = self.records()
        frames = yield self.relay(records)
        self.assertEqual(frames, records)

    @inlineCallbacks
    def test_cut_small(self) -> Any:
        """Frames of 100 bytes: records are cut across frames and still arrive whole."""
        yield self.start(reframe=100)
        records = self.records()
        frames = yield self.relay(records)
        self.assertEqual(b"".join(frames), b"".join(records))
        self.assertTrue(all(len(frame) <= 100 for frame in frames))
        self.assertGreater(len(frames), len(records))

    @inlineCallbacks
    def test_coalesced(self) -> Any:
        """Records sent in one write, one message each, arrive joined in fewer frames."""
        yield self.start(reframe=131076)
        records = self.records()
        _, source_token, destination_token = self.running.open_tunnel(["ssh"])
        source = yield self.connect(token=source_token)
        destination = yield self.connect(mode="destination", token=destination_token)
        yield source.wait_messages(1)
        yield destination.wait_messages(1)
        # Every message in one TCP write: the service reads them in one turn.
        source.transport.pauseProducing()
        for record in records:
            source.send_records(record)
        source.transport.resumeProducing()
        yield destination.wait_messages(1 + len(records))
        frames = destination.frames[1:]
        self.assertEqual(b"".join(frames), b"".join(records))
        self.assertLess(len(frames), len(records))

    def test_bad_value(self) -> Any:
        return self.assertFailure(
            start_tunnel_service(reactor, self.mktemp(), reframe=131077), ValueError
        )


class PongBehindDataTests(_Service):
    """
    The service answers a ping only once it has read it, and it reads a peer
    only while the other can take what it relays: a pong never overtakes the
    data sent before its ping.
    """

    @inlineCallbacks
    def test_pong_after_the_data_in_front(self) -> Any:
        yield self.start()
        _, source_token, destination_token = self.running.open_tunnel(["ssh"])
        source = yield self.connect(token=source_token)
        destination = yield self.connect(mode="destination", token=destination_token)
        yield source.wait_messages(1)
        yield destination.wait_messages(1)
        relayed: List[int] = []
        original = self.running.relay.relay

        def counting(grant: Any, data: bytes, messages: Any) -> None:
            relayed.append(len(data))
            original(grant, data, messages)

        self.running.relay.relay = counting  # type: ignore[method-assign]
        # The destination does not read: the service's queue towards it fills.
        destination.transport.pauseProducing()
        payload = b"p" * 60000
        record = b"".join(encode_data("ssh", 1, 1, payload))
        total = 0
        source.send_records(stream_start())
        total += len(stream_start())
        for _ in range(200):  # 12 MB, more than the sockets' buffers hold
            source.send_records(record)
            total += len(record)
        pong = source.ping(b"after the data")
        yield wait_until(lambda: self.running.relay._full)
        self.assertFalse(pong.called)
        seen_at_pong: List[int] = []
        pong.addCallback(lambda payload: seen_at_pong.append(sum(relayed)) or payload)
        destination.transport.resumeProducing()
        answer = yield pong
        self.assertEqual(answer, b"after the data")
        self.assertEqual(seen_at_pong, [total])


class CommandLineTests(unittest.TestCase):
    def settings_of(self, args: List[str]) -> Tuple[Any, Any, Any]:
        """The re-attach, empty-service-IDs and reframe settings of a service made from C{args}."""
        config = Options()
        config.parseOptions(args)
        service: Any = makeService(config, reactor)
        settings = service._settings
        return (
            settings["reset_on_reattach"],
            settings["service_ids_without_services"],
            settings["reframe"],
        )

    def test_defaults(self) -> None:
        self.assertEqual(self.settings_of([]), (True, "empty", 0))

    def test_values(self) -> None:
        self.assertEqual(
            self.settings_of(
                [
                    "--no-reset-on-reattach",
                    "--service-ids-without-services",
                    "blank",
                    "--reframe",
                    "4096",
                ]
            ),
            (False, "blank", 4096),
        )

    def test_bad_values(self) -> None:
        from twisted.python.usage import UsageError

        self.assertRaises(
            UsageError, Options().parseOptions, ["--service-ids-without-services", "x"]
        )
        self.assertRaises(UsageError, Options().parseOptions, ["--reframe", "131077"])
        self.assertRaises(UsageError, Options().parseOptions, ["--reframe", "-1"])
