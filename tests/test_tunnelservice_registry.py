"""
The tunnel registry without sockets: token rules, expiry, replacement, persistence.
"""

from __future__ import annotations

import os
from typing import List, Tuple

from twisted.internet.task import Clock
from twisted.trial import unittest

from aws_localproxy.constants import SUBPROTOCOL_V3, Mode
from aws_localproxy.tunnelservice.registry import ApiError, HandshakeRejected, TunnelRegistry
from aws_localproxy.tunnelservice.rules import violation
from aws_localproxy.tunnelservice.store import SQLiteTunnelStore
from aws_localproxy.wire import Message, decode_all, encode_message

CLIENT_TOKEN = "c" * 32


class FakePeer:
    """A L{PeerLink} that records what the registry does to it."""

    def __init__(self, subprotocol: str = SUBPROTOCOL_V3) -> None:
        self.subprotocol = subprotocol
        self.sent: List[bytes] = []
        self.closed: List[Tuple[int, str]] = []
        self.aborted = False

    def send_frames(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def abort(self) -> None:
        self.aborted = True

    def messages(self) -> List[Message]:
        return decode_all(b"".join(self.sent))


class RegistryTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.registry = TunnelRegistry(self.clock)
        self.addCleanup(self.registry.stop)

    def test_expiry(self) -> None:
        """After maxLifetimeTimeoutMinutes the tunnel closes both WebSockets."""
        tunnel = self.registry.open_tunnel(["ssh"], max_lifetime_minutes=2)
        peer = FakePeer()
        grant = self.registry.authorize("source", [tunnel.slot(Mode.SOURCE).access_token], [])
        self.registry.attach(grant, peer)
        self.clock.advance(119)
        self.assertEqual(tunnel.status, "OPEN")
        self.clock.advance(1)
        self.assertEqual(tunnel.status, "CLOSED")
        self.assertEqual(peer.closed, [(1000, "Tunnel lifetime expired")])
        self.assertEqual(tunnel.describe()["sourceConnectionState"]["status"], "DISCONNECTED")

    def test_lifetime_bounds(self) -> None:
        self.assertRaises(ApiError, self.registry.open_tunnel, [], 0)
        self.assertRaises(ApiError, self.registry.open_tunnel, [], 721)

    def test_tokens_are_distinct_and_long(self) -> None:
        tokens = set()
        for _ in range(20):
            tunnel = self.registry.open_tunnel()
            tokens.update(slot.access_token for slot in tunnel.slots.values())
        self.assertEqual(len(tokens), 40)
        self.assertTrue(all(len(t) >= 64 and "," not in t for t in tokens))

    def test_client_token_unique_across_tunnels(self) -> None:
        one = self.registry.open_tunnel()
        two = self.registry.open_tunnel()
        self.registry.authorize("source", [one.slot(Mode.SOURCE).access_token], [CLIENT_TOKEN])
        error = self.assertRaises(
            HandshakeRejected,
            self.registry.authorize,
            "source",
            [two.slot(Mode.SOURCE).access_token],
            [CLIENT_TOKEN],
        )
        self.assertEqual(error.status, 409)

    def test_replacement(self) -> None:
        tunnel = self.registry.open_tunnel(["ssh"])
        token = tunnel.slot(Mode.SOURCE).access_token
        old, new, destination = FakePeer(), FakePeer(), FakePeer()
        self.registry.attach(self.registry.authorize("source", [token], [CLIENT_TOKEN]), old)
        self.registry.attach(
            self.registry.authorize(
                "destination", [tunnel.slot(Mode.DESTINATION).access_token], []
            ),
            destination,
        )
        start = Message(type=Message.STREAM_START, streamId=3, serviceId="ssh")
        grant = self.registry.authorize("source", [token], [CLIENT_TOKEN])
        self.registry.relay(grant, encode_message(start), [start])
        self.registry.attach(grant, new)
        self.assertEqual(old.closed, [(1000, "Replaced by a new connection")])
        reset = destination.messages()[-1]
        self.assertEqual((reset.type, reset.streamId, reset.serviceId), (Message.STREAM_RESET, 3, "ssh"))
        self.assertEqual(new.messages()[0].type, Message.SERVICE_IDS)
        self.assertEqual(len(new.messages()), 1)
        # The old connection going away later does not disconnect the new one.
        self.registry.detach(grant, old)
        self.assertIs(tunnel.slot(Mode.SOURCE).peer, new)

    def test_reset_stream_forgotten(self) -> None:
        tunnel = self.registry.open_tunnel(["ssh"])
        grant = self.registry.authorize("source", [tunnel.slot(Mode.SOURCE).access_token], [])
        self.registry.relay(grant, b"", [Message(type=Message.STREAM_START, streamId=3, serviceId="ssh")])
        self.assertEqual(tunnel.active_streams, {"ssh": 3})
        self.registry.relay(grant, b"", [Message(type=Message.STREAM_RESET, streamId=2, serviceId="ssh")])
        self.assertEqual(tunnel.active_streams, {"ssh": 3})
        self.registry.relay(grant, b"", [Message(type=Message.STREAM_RESET, streamId=3, serviceId="ssh")])
        self.assertEqual(tunnel.active_streams, {})


class RulesTests(unittest.TestCase):
    def test_allowed(self) -> None:
        for mode, message in [
            (Mode.SOURCE, Message(type=Message.STREAM_START, streamId=1, serviceId="a")),
            (Mode.DESTINATION, Message(type=Message.DATA, streamId=1, serviceId="a", payload=b"x")),
            (Mode.SOURCE, Message(type=Message.STREAM_START, streamId=1)),  # V1: no service ID
            (Mode.DESTINATION, Message(type=Message.CONNECTION_RESET, streamId=1, connectionId=2)),
        ]:
            self.assertIsNone(violation(mode, message, ["a"]))

    def test_refused(self) -> None:
        for mode, message in [
            (Mode.SOURCE, Message()),
            (Mode.SOURCE, Message(type=Message.SERVICE_IDS)),
            (Mode.SOURCE, Message(type=Message.SESSION_RESET)),
            (Mode.DESTINATION, Message(type=Message.STREAM_START, streamId=1)),
            (Mode.SOURCE, Message(type=Message.DATA, serviceId="a")),
            (Mode.SOURCE, Message(type=Message.DATA, streamId=1, serviceId="b")),
        ]:
            self.assertIsNotNone(violation(mode, message, ["a"]), message)


class PersistenceTests(unittest.TestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        self.clock = Clock()
        self.clock.advance(1000)

    def registry(self) -> TunnelRegistry:
        store = SQLiteTunnelStore(self.path)
        self.addCleanup(store.close)
        registry = TunnelRegistry(self.clock, store=store)
        registry.load()
        self.addCleanup(registry.stop)
        return registry

    def test_restart_keeps_tunnels(self) -> None:
        first = self.registry()
        tunnel = first.open_tunnel(["ssh"], max_lifetime_minutes=10, description="kept")
        first.authorize("source", [tunnel.slot(Mode.SOURCE).access_token], [CLIENT_TOKEN])
        spent = first.open_tunnel()
        first.authorize("source", [spent.slot(Mode.SOURCE).access_token], [])
        deleted = first.open_tunnel()
        first.close_tunnel(deleted.tunnel_id, delete=True)
        first.stop()
        self.assertEqual(os.stat(self.path).st_mode & 0o077, 0)

        second = self.registry()
        restored = second.get(tunnel.tunnel_id)
        self.assertEqual(restored.describe()["description"], "kept")
        self.assertEqual(restored.services, ["ssh"])
        # The client token binding and the spent token survive.
        second.authorize("source", [tunnel.slot(Mode.SOURCE).access_token], [CLIENT_TOKEN])
        self.assertRaises(
            HandshakeRejected,
            second.authorize,
            "source",
            [spent.slot(Mode.SOURCE).access_token],
            [],
        )
        self.assertRaises(ApiError, second.get, deleted.tunnel_id)
        # The lifetime still counts from the creation.
        self.clock.advance(600)
        self.assertEqual(restored.status, "CLOSED")

    def test_expired_while_stopped(self) -> None:
        first = self.registry()
        tunnel = first.open_tunnel(max_lifetime_minutes=1)
        first.stop()
        self.clock.advance(120)
        second = self.registry()
        self.clock.advance(0)
        self.assertEqual(second.get(tunnel.tunnel_id).status, "CLOSED")
