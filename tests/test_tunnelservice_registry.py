"""
The tunnel registry without sockets: tokens, lifetimes, rotation, persistence.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial import unittest

from aws_localproxy.constants import Mode
from aws_localproxy.tunnelservice.apishapes import tunnel_shape
from aws_localproxy.tunnelservice.handshake import HandshakeRejected
from aws_localproxy.tunnelservice.model import InvalidTunnel, TunnelNotFound, token_digest
from aws_localproxy.tunnelservice.registry import TunnelRegistry
from aws_localproxy.tunnelservice.relay import Relay
from aws_localproxy.tunnelservice.store import SQLiteTunnelStore
from tests.test_tunnelservice_relay import CLIENT_TOKEN, FakePeer


class RegistryTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.registry = TunnelRegistry(self.clock)
        self.relay = Relay(self.clock, self.registry.state_changed)
        self.addCleanup(self.registry.stop)

    def test_expiry(self) -> None:
        """After maxLifetimeTimeoutMinutes the tunnel closes both WebSockets."""
        tunnel = self.registry.open_tunnel(["ssh"], max_lifetime_minutes=2)
        peer = FakePeer()
        grant = self.registry.authorize("source", [tunnel.slot(Mode.SOURCE).access_token], [])
        self.relay.attach(grant, peer)
        self.clock.advance(119)
        self.assertEqual(tunnel.status, "OPEN")
        self.clock.advance(1)
        self.assertEqual(tunnel.status, "CLOSED")
        self.assertEqual(peer.closed, [(1000, "Tunnel lifetime expired")])
        self.assertEqual(tunnel_shape(tunnel)["sourceConnectionState"]["status"], "DISCONNECTED")

    def test_lifetime_bounds(self) -> None:
        self.assertRaises(InvalidTunnel, self.registry.open_tunnel, [], 0)
        self.assertRaises(InvalidTunnel, self.registry.open_tunnel, [], 721)

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

    def test_indexed_by_digest(self) -> None:
        """The token index holds digests, never the tokens themselves."""
        tunnel = self.registry.open_tunnel()
        token = tunnel.slot(Mode.SOURCE).access_token
        self.assertNotIn(token, self.registry._by_token)
        self.assertIn(token_digest(token), self.registry._by_token)
        self.assertEqual(self.registry.find_token(token), (tunnel, Mode.SOURCE))
        self.assertIsNone(self.registry.find_token(token[:-1]))

    def test_rotate_frees_the_slot(self) -> None:
        tunnel = self.registry.open_tunnel(["ssh"])
        old_token = tunnel.slot(Mode.SOURCE).access_token
        peer = FakePeer()
        self.relay.attach(self.registry.authorize("source", [old_token], []), peer)
        self.registry.rotate(tunnel.tunnel_id, [Mode.SOURCE])
        self.assertEqual(peer.closed, [(1000, "Access token rotated")])
        self.assertIsNone(self.registry.find_token(old_token))
        new_token = tunnel.slot(Mode.SOURCE).access_token
        self.registry.authorize("source", [new_token], [])

    def test_unknown(self) -> None:
        self.assertRaises(TunnelNotFound, self.registry.get, "nope")
        self.assertRaises(TunnelNotFound, self.registry.by_arn, "arn:nope")


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
        self.assertEqual(tunnel_shape(restored)["description"], "kept")
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
        self.assertRaises(TunnelNotFound, second.get, deleted.tunnel_id)
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
