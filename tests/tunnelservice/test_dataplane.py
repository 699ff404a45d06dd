"""
The data plane of the local tunnel service, over real TLS sockets on 127.0.0.1:
handshakes, SERVICE_IDS, relaying, the protocol rules, replacement and close.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from aws_localproxy.adapters.sockets import TCP_NOTSENT_LOWAT
from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V2, SUBPROTOCOL_V3
from aws_localproxy.protocol.wire import Message, control_message, encode_data, encode_message
from aws_localproxy.tunnelservice.dataplane import NOT_SENT_LOW_WATER
from aws_localproxy.tunnelservice.testing import start_tunnel_service
from tests.support import tunnelclient
from tests.support.helpers import service_client

CLIENT_TOKEN = "0123456789abcdef-0123456789abcdef"
OTHER_CLIENT_TOKEN = "fedcba9876543210-fedcba9876543210"


class ServiceTestCase(unittest.TestCase):
    """A running service (TLS, its own CA in a temporary directory) per test."""

    use_tls = True

    @inlineCallbacks
    def setUp(self) -> Any:
        self.running = yield start_tunnel_service(reactor, self.mktemp(), use_tls=self.use_tls)
        self.addCleanup(self.running.stop)

    def connect(self, **kwargs: Any) -> Any:
        return service_client(self, self.running, **kwargs)

    @inlineCallbacks
    def pair(self, services: Any = ("ssh",), **kwargs: Any) -> Any:
        """A tunnel with a connected source and destination."""
        tunnel_id, source_token, destination_token = self.running.open_tunnel(list(services))
        source = yield self.connect(mode="source", token=source_token, **kwargs)
        destination = yield self.connect(mode="destination", token=destination_token, **kwargs)
        self.assertTrue(source.opened and destination.opened)
        yield source.wait_messages(1)
        yield destination.wait_messages(1)
        return tunnel_id, source, destination


def stream_start(stream_id: int = 1, service_id: str = "ssh", connection_id: int = 1) -> bytes:
    return control_message(
        Message.STREAM_START,
        stream_id=stream_id,
        service_id=service_id,
        connection_id=connection_id,
    )


class HandshakeTests(ServiceTestCase):
    """The upgrade request is checked before the upgrade, with the real service's statuses."""

    @inlineCallbacks
    def assertRefused(self, status: int, **kwargs: Any) -> Any:
        client = yield self.connect(**kwargs)
        self.assertFalse(client.opened)
        self.assertEqual(client.status, status, client.status_reason)
        return client

    @inlineCallbacks
    def test_bad_path(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        yield self.assertRefused(400, token=source_token, resource="/other?local-proxy-mode=source")
        yield self.assertRefused(
            400, token=source_token, resource="/tunnel/x?local-proxy-mode=source"
        )

    @inlineCallbacks
    def test_bad_mode(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        yield self.assertRefused(400, token=source_token, resource="/tunnel?local-proxy-mode=both")
        yield self.assertRefused(400, token=source_token, resource="/tunnel")

    @inlineCallbacks
    def test_missing_token(self) -> Any:
        self.running.open_tunnel(["ssh"])
        yield self.assertRefused(401)

    @inlineCallbacks
    def test_wrong_token(self) -> Any:
        self.running.open_tunnel(["ssh"])
        yield self.assertRefused(401, token="not-a-token")

    @inlineCallbacks
    def test_token_of_the_other_mode(self) -> Any:
        _, source_token, destination_token = self.running.open_tunnel(["ssh"])
        yield self.assertRefused(403, mode="destination", token=source_token)
        yield self.assertRefused(403, mode="source", token=destination_token)

    @inlineCallbacks
    def test_two_access_token_values(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        yield self.assertRefused(400, token=source_token, headers={"Access-Token": source_token})

    @inlineCallbacks
    def test_header_and_cookie(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        yield self.assertRefused(
            400, token=source_token, headers={"Cookie": "awsiot-tunnel-token=" + source_token}
        )

    @inlineCallbacks
    def test_cookie(self) -> Any:
        """A browser sends the token as the awsiot-tunnel-token cookie."""
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        client = yield self.connect(headers={"Cookie": "a=b; awsiot-tunnel-token=" + source_token})
        self.assertTrue(client.opened)

    @inlineCallbacks
    def test_invalid_client_token(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        yield self.assertRefused(400, token=source_token, client_token="too-short")

    @inlineCallbacks
    def test_no_known_subprotocol(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        yield self.assertRefused(400, token=source_token, protocols=["chat"])

    @inlineCallbacks
    def test_closed_tunnel(self) -> Any:
        tunnel_id, source_token, _ = self.running.open_tunnel(["ssh"])
        self.running.close_tunnel(tunnel_id)
        client = yield self.assertRefused(403, token=source_token)
        self.assertEqual(client.status_reason, "Tunnel is closed")

    @inlineCallbacks
    def test_channel_id(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        client = yield self.connect(token=source_token)
        self.assertEqual(len(client.response_headers["channel-id"]), 32)

    @inlineCallbacks
    def test_best_subprotocol(self) -> Any:
        """The newest subprotocol the client offers is selected, whatever the order."""
        for offered, expected in [
            ([SUBPROTOCOL_V1, SUBPROTOCOL_V3, SUBPROTOCOL_V2], SUBPROTOCOL_V3),
            (["chat", SUBPROTOCOL_V1, SUBPROTOCOL_V2], SUBPROTOCOL_V2),
            ([SUBPROTOCOL_V1], SUBPROTOCOL_V1),
        ]:
            _, source_token, _ = self.running.open_tunnel(["ssh"])
            client = yield self.connect(token=source_token, protocols=offered)
            self.assertEqual(client.subprotocol, expected)

    @inlineCallbacks
    def test_token_spent_without_client_token(self) -> Any:
        """Without a client token the access token works once."""
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        first = yield self.connect(token=source_token)
        self.assertTrue(first.opened)
        yield tunnelclient.close_client(first)
        second = yield self.assertRefused(403, token=source_token)
        self.assertEqual(second.status_reason, "Access token already used")

    @inlineCallbacks
    def test_client_token_binds(self) -> Any:
        """Once used with a client token, the access token refuses other client tokens."""
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        first = yield self.connect(token=source_token, client_token=CLIENT_TOKEN)
        self.assertTrue(first.opened)
        yield self.assertRefused(403, token=source_token, client_token=OTHER_CLIENT_TOKEN)
        yield self.assertRefused(403, token=source_token)


class ServiceIdsTests(ServiceTestCase):
    @inlineCallbacks
    def test_service_ids_sent(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh", "http"])
        client = yield self.connect(token=source_token)
        (message,) = yield client.wait_messages(1)
        self.assertEqual(message.type, Message.SERVICE_IDS)
        self.assertEqual(list(message.availableServiceIds), ["ssh", "http"])

    @inlineCallbacks
    def test_empty_service_ids(self) -> Any:
        """A tunnel without services still sends SERVICE_IDS: a local proxy waits for it."""
        _, source_token, _ = self.running.open_tunnel([])
        client = yield self.connect(token=source_token, protocols=[SUBPROTOCOL_V2])
        (message,) = yield client.wait_messages(1)
        self.assertEqual(message.type, Message.SERVICE_IDS)
        self.assertEqual(list(message.availableServiceIds), [])

    @inlineCallbacks
    def test_v1_gets_no_service_ids(self) -> Any:
        tunnel_id, source_token, destination_token = self.running.open_tunnel(["ssh"])
        source = yield self.connect(token=source_token, protocols=[SUBPROTOCOL_V1])
        destination = yield self.connect(
            mode="destination", token=destination_token, protocols=[SUBPROTOCOL_V1]
        )
        source.send_records(control_message(Message.STREAM_START, stream_id=1))
        (message,) = yield destination.wait_messages(1)
        self.assertEqual(message.type, Message.STREAM_START)
        self.assertEqual(source.messages, [])


class RelayTests(ServiceTestCase):
    @inlineCallbacks
    def test_both_ways_in_order(self) -> Any:
        _, source, destination = yield self.pair()
        source.send_records(stream_start())
        for i in range(20):
            source.send_records(*encode_data("ssh", 1, 1, b"to-destination %d" % i))
        messages = yield destination.wait_messages(22)
        self.assertEqual(messages[1].type, Message.STREAM_START)
        self.assertEqual(
            [m.payload for m in messages[2:]], [b"to-destination %d" % i for i in range(20)]
        )
        destination.send_records(*encode_data("ssh", 1, 1, b"reply"))
        messages = yield source.wait_messages(2)
        self.assertEqual(messages[1].payload, b"reply")

    @inlineCallbacks
    def test_records_split_across_messages(self) -> Any:
        """A record split over two WebSocket messages arrives whole."""
        _, source, destination = yield self.pair()
        record = stream_start() + encode_data("ssh", 1, 1, b"x" * 1000)[0]
        source.send_records(record[:7])
        source.send_records(record[7:])
        messages = yield destination.wait_messages(3)
        self.assertEqual(messages[2].payload, b"x" * 1000)

    @inlineCallbacks
    def test_large_data(self) -> Any:
        """Full-size DATA records, two per WebSocket message, go through unchanged."""
        _, source, destination = yield self.pair()
        payload = bytes(range(256)) * 504  # 129024 bytes: two 64512-byte records
        records = encode_data("ssh", 1, 1, payload)
        self.assertEqual(len(records), 2)
        source.send_records(stream_start())
        source.send_records(*records)
        messages = yield destination.wait_messages(4)
        self.assertEqual(b"".join(m.payload for m in messages[2:]), payload)
        self.assertTrue(all(len(frame) <= 131076 for frame in destination.frames))

    @inlineCallbacks
    def test_data_without_peer_is_dropped(self) -> Any:
        tunnel_id, source_token, destination_token = self.running.open_tunnel(["ssh"])
        source = yield self.connect(token=source_token)
        source.send_records(stream_start())
        yield source.wait_messages(1)
        destination = yield self.connect(mode="destination", token=destination_token)
        source.send_records(*encode_data("ssh", 1, 1, b"after"))
        messages = yield destination.wait_messages(2)
        self.assertEqual(messages[1].payload, b"after")


class RuleTests(ServiceTestCase):
    """A client that breaks the protocol is closed with a reason, and the service logs why."""

    @inlineCallbacks
    def assertClosedFor(self, client: Any, code: int, reason: str) -> Any:
        was_clean, got_code, got_reason = yield client.when_closed()
        self.assertEqual((got_code, got_reason), (code, reason))
        self.assertIn(reason, [v[2] for v in self.running.violations])

    @inlineCallbacks
    def test_text_frame(self) -> Any:
        _, source, _ = yield self.pair()
        source.sendMessage(b"hello", isBinary=False)
        yield self.assertClosedFor(source, 1003, "Text frames are not supported")

    @inlineCallbacks
    def test_frame_too_large(self) -> Any:
        _, source, _ = yield self.pair()
        source.sendMessage(b"\x00" * 131077, isBinary=True)
        was_clean, code, reason = yield source.when_closed()
        self.assertEqual(code, 1009)
        self.assertEqual(
            [v[2] for v in self.running.violations], ["Frame or message exceeds the size limit"]
        )

    @inlineCallbacks
    def test_payload_too_large(self) -> Any:
        _, source, _ = yield self.pair()
        message = Message(type=Message.DATA, streamId=1, serviceId="ssh", payload=b"x" * 64513)
        body = message.SerializeToString()
        source.send_records(len(body).to_bytes(2, "big") + body)
        yield self.assertClosedFor(
            source, 1008, "payload of 64513 bytes exceeds the maximum of 64512"
        )

    @inlineCallbacks
    def test_stream_start_from_destination(self) -> Any:
        _, _, destination = yield self.pair()
        destination.send_records(stream_start())
        yield self.assertClosedFor(
            destination, 1008, "STREAM_START may not be sent by a destination"
        )

    @inlineCallbacks
    def test_service_ids_from_client(self) -> Any:
        _, source, _ = yield self.pair()
        source.send_records(control_message(Message.SERVICE_IDS, available_service_ids=["ssh"]))
        yield self.assertClosedFor(source, 1008, "SERVICE_IDS may only be sent by the service")

    @inlineCallbacks
    def test_session_reset_from_client(self) -> Any:
        _, _, destination = yield self.pair()
        destination.send_records(control_message(Message.SESSION_RESET))
        yield self.assertClosedFor(
            destination, 1008, "SESSION_RESET may only be sent by the service"
        )

    @inlineCallbacks
    def test_unknown_service_id(self) -> Any:
        _, source, _ = yield self.pair()
        source.send_records(stream_start(service_id="telnet"))
        yield self.assertClosedFor(source, 1008, "Service ID 'telnet' is not in the tunnel")

    @inlineCallbacks
    def test_violation_not_relayed(self) -> Any:
        """Nothing of an offending message reaches the other peer."""
        _, source, destination = yield self.pair()
        source.send_records(stream_start(), stream_start(service_id="telnet"))
        yield source.when_closed()
        self.assertEqual(len(destination.messages), 1)

    @inlineCallbacks
    def test_missing_stream_id(self) -> Any:
        _, source, _ = yield self.pair()
        source.send_records(
            encode_message(Message(type=Message.DATA, serviceId="ssh", payload=b"x"))
        )
        yield self.assertClosedFor(source, 1008, "DATA needs a stream ID")


class LifecycleTests(ServiceTestCase):
    @inlineCallbacks
    def test_close_tunnel_closes_both(self) -> Any:
        tunnel_id, source, destination = yield self.pair()
        self.running.close_tunnel(tunnel_id)
        for client in (source, destination):
            was_clean, code, reason = yield client.when_closed()
            self.assertEqual((was_clean, code, reason), (True, 1000, "Tunnel closed"))

    @inlineCallbacks
    def test_connection_state(self) -> Any:
        tunnel_id, source_token, _ = self.running.open_tunnel(["ssh"])
        self.assertEqual(self.running.connection_state(tunnel_id, "source"), "DISCONNECTED")
        source = yield self.connect(token=source_token, client_token=CLIENT_TOKEN)
        self.assertEqual(self.running.connection_state(tunnel_id, "source"), "CONNECTED")
        self.assertEqual(self.running.connection_state(tunnel_id, "destination"), "DISCONNECTED")
        yield tunnelclient.close_client(source)
        yield self.running.wait_for_state(tunnel_id, "source", "DISCONNECTED")

    @inlineCallbacks
    def test_replacement_resets_streams(self) -> Any:
        """A source that reconnects with its client token replaces the old one; the
        destination gets StreamReset for the stream it had."""
        tunnel_id, source_token, destination_token = self.running.open_tunnel(["ssh"])
        old = yield self.connect(token=source_token, client_token=CLIENT_TOKEN)
        destination = yield self.connect(mode="destination", token=destination_token)
        old.send_records(stream_start(stream_id=7))
        yield destination.wait_messages(2)
        new = yield self.connect(token=source_token, client_token=CLIENT_TOKEN)
        self.assertTrue(new.opened)
        messages = yield destination.wait_messages(3)
        self.assertEqual(messages[2].type, Message.STREAM_RESET)
        self.assertEqual((messages[2].streamId, messages[2].serviceId), (7, "ssh"))
        was_clean, code, reason = yield old.when_closed()
        self.assertEqual(reason, "Replaced by a new connection")
        self.assertEqual(self.running.connection_state(tunnel_id, "source"), "CONNECTED")
        new.send_records(stream_start(stream_id=8))
        messages = yield destination.wait_messages(4)
        self.assertEqual(messages[3].streamId, 8)

    @inlineCallbacks
    def test_drop_and_reconnect(self) -> Any:
        """drop_connections aborts without a close frame; the client token reconnects."""
        tunnel_id, source_token, destination_token = self.running.open_tunnel(["ssh"])
        source = yield self.connect(token=source_token, client_token=CLIENT_TOKEN)
        destination = yield self.connect(
            mode="destination", token=destination_token, client_token=OTHER_CLIENT_TOKEN
        )
        source.send_records(stream_start())
        yield destination.wait_messages(2)
        self.running.drop_connections(tunnel_id, "source")
        was_clean, code, reason = yield source.when_closed()
        self.assertFalse(was_clean)
        yield self.running.wait_for_state(tunnel_id, "source", "DISCONNECTED")
        self.assertEqual(self.running.connection_state(tunnel_id, "destination"), "CONNECTED")
        again = yield self.connect(token=source_token, client_token=CLIENT_TOKEN)
        self.assertTrue(again.opened)
        messages = yield destination.wait_messages(3)
        self.assertEqual(messages[2].type, Message.STREAM_RESET)

    @inlineCallbacks
    def test_drop_both(self) -> Any:
        tunnel_id, source, destination = yield self.pair()
        self.running.drop_connections(tunnel_id)
        yield source.when_closed()
        yield destination.when_closed()
        yield self.running.wait_for_state(tunnel_id, "source", "DISCONNECTED")
        yield self.running.wait_for_state(tunnel_id, "destination", "DISCONNECTED")


class PlainTests(ServiceTestCase):
    """--no-tls serves the same data plane over ws://."""

    use_tls = False

    @inlineCallbacks
    def test_relay(self) -> Any:
        self.assertEqual(self.running.api_url, "http://" + self.running.endpoint)
        _, source, destination = yield self.pair()
        source.send_records(stream_start())
        messages = yield destination.wait_messages(2)
        self.assertEqual(messages[1].type, Message.STREAM_START)


def server_side(running: Any, mode: str) -> Any:
    """The service's protocol of the (only) live connection of C{mode}."""
    for protocol in running._factory.connections:
        grant = protocol._grant
        if grant is not None and grant.slot.mode.value == mode:
            return protocol
    raise AssertionError("no %s connection" % (mode,))


class SocketTests(ServiceTestCase):
    @inlineCallbacks
    def test_not_sent_low_water(self) -> Any:
        """Data-plane sockets keep at most 32 KiB unsent in the kernel (Linux)."""
        if TCP_NOTSENT_LOWAT is None:
            raise unittest.SkipTest("no TCP_NOTSENT_LOWAT on this system")
        yield self.pair()
        handle = server_side(self.running, "source").transport.transport.getHandle()
        self.assertEqual(
            handle.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT), NOT_SENT_LOW_WATER
        )


class ClosingTests(ServiceTestCase):
    @inlineCallbacks
    def test_drop_of_a_peer_that_does_not_read(self) -> Any:
        """
        A client that sends a close frame and stops reading never answers
        the TLS close_notify: the service's graceful drop is aborted after
        the drop timeout instead of keeping the connection for good.
        """
        self.running._factory.drop_timeout = 0.3
        _, source, _ = yield self.pair(options={"closeHandshakeTimeout": 30})
        protocol = server_side(self.running, "source")
        source.transport.pauseProducing()
        source.sendClose()
        gone = self.running._factory.wait_gone(protocol)
        yield tunnelclient.within(reactor, gone, 3)
        source.transport.resumeProducing()
