"""
The tunnel registry without sockets: tokens, lifetimes, rotation, persistence.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.apishapes import tunnel_shape
from aws_localproxy.tunnelservice.handshake import HandshakeRejected
from aws_localproxy.tunnelservice.model import InvalidTunnel, TunnelNotFound, token_digest
from aws_localproxy.tunnelservice.registry import TunnelRegistry
from aws_localproxy.tunnelservice.store import SQLiteTunnelStore
from tests.fakes.peer_link import FakePeerLink
from tests.support.helpers import CLIENT_TOKEN, registry_and_relay


class RegistryTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock, self.registry, self.relay = registry_and_relay(self)

    def test_expiry(self) -> None:
        """After maxLifetimeTimeoutMinutes the tunnel closes both WebSockets."""
        tunnel = self.registry.open_tunnel(["ssh"], max_lifetime_minutes=2)
        peer = FakePeerLink()
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
        peer = FakePeerLink()
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


def log_texts(events: list) -> list:
    return [formatEvent(event) for event in events]


OTHER_CLIENT_TOKEN = "d" * 32


class OpenTunnelTests(unittest.TestCase):
    """OpenTunnel's values, defaults and validation, as DescribeTunnel shows them."""

    def setUp(self) -> None:
        self.clock, self.registry, _ = registry_and_relay(self)

    def test_defaults(self) -> None:
        """ARN in us-east-1 of account 123456789012, 720 minutes, both slots disconnected since now."""
        tunnel = self.registry.open_tunnel()
        shape = tunnel_shape(tunnel)
        self.assertEqual(
            shape["tunnelArn"], "arn:aws:iot:us-east-1:123456789012:tunnel/" + tunnel.tunnel_id
        )
        self.assertEqual(shape["timeoutConfig"], {"maxLifetimeTimeoutMinutes": 720})
        self.assertEqual((shape["createdAt"], shape["lastUpdatedAt"]), (1000, 1000))
        for state in ("sourceConnectionState", "destinationConnectionState"):
            self.assertEqual(shape[state], {"status": "DISCONNECTED", "lastUpdatedAt": 1000})
        self.assertNotIn("destinationConfig", shape)
        self.assertNotIn("description", shape)
        self.assertEqual(shape["tags"], [])
        self.clock.advance(720 * 60 - 1)
        self.assertEqual(tunnel.status, "OPEN")
        self.clock.advance(1)
        self.assertEqual(tunnel.status, "CLOSED")

    def test_region_and_account(self) -> None:
        registry = TunnelRegistry(self.clock, region="eu-west-1", account_id="000000000042")
        self.addCleanup(registry.stop)
        tunnel = registry.open_tunnel()
        self.assertEqual(
            tunnel.tunnel_arn, "arn:aws:iot:eu-west-1:000000000042:tunnel/" + tunnel.tunnel_id
        )
        self.assertEqual((registry.region, registry.account_id), ("eu-west-1", "000000000042"))

    def test_destination_config(self) -> None:
        """Services imply a destination config unless told otherwise; the thing name goes with it."""
        with_services = self.registry.open_tunnel(["ssh", "web"], thing_name="thing")
        self.assertEqual(
            tunnel_shape(with_services)["destinationConfig"],
            {"services": ["ssh", "web"], "thingName": "thing"},
        )
        told_not = self.registry.open_tunnel(["ssh"], has_destination_config=False)
        self.assertNotIn("destinationConfig", tunnel_shape(told_not))
        told_so = self.registry.open_tunnel([], has_destination_config=True)
        self.assertEqual(tunnel_shape(told_so)["destinationConfig"], {"services": []})

    def test_description_and_tags_copied(self) -> None:
        tags = [{"key": "k", "value": "v"}]
        tunnel = self.registry.open_tunnel(description="d", tags=tags)
        tags[0]["value"] = "changed"
        shape = tunnel_shape(tunnel)
        self.assertEqual((shape["description"], shape["tags"]), ("d", [{"key": "k", "value": "v"}]))

    def test_lifetime_limits_inclusive(self) -> None:
        """1 and 720 minutes are accepted; 0 and 721 refused with the API's message."""
        self.assertEqual(self.registry.open_tunnel([], 1).max_lifetime_minutes, 1)
        self.assertEqual(self.registry.open_tunnel([], 720).max_lifetime_minutes, 720)
        for minutes in (0, 721):
            error = self.assertRaises(InvalidTunnel, self.registry.open_tunnel, [], minutes)
            self.assertEqual(str(error), "maxLifetimeTimeoutMinutes must be between 1 and 720")

    def test_logged(self) -> None:
        with capturedLogs() as events:
            tunnel = self.registry.open_tunnel(["ssh"], 5)
        self.assertIn(
            "Opened tunnel %s for services ['ssh'], lifetime 5 minutes" % (tunnel.tunnel_id,),
            log_texts(events),
        )

    def test_lookups(self) -> None:
        """By ID and ARN among several; unknown ones name what was looked for."""
        one, two = self.registry.open_tunnel(), self.registry.open_tunnel()
        self.assertIs(self.registry.get(two.tunnel_id), two)
        self.assertIs(self.registry.by_arn(one.tunnel_arn), one)
        self.assertIs(self.registry.by_arn(two.tunnel_arn), two)
        self.assertEqual(
            str(self.assertRaises(TunnelNotFound, self.registry.get, "nope")),
            "Tunnel nope not found",
        )
        self.assertEqual(
            str(self.assertRaises(TunnelNotFound, self.registry.by_arn, "arn:nope")),
            "Resource arn:nope not found",
        )

    def test_list_newest_first(self) -> None:
        """ListTunnels: newest first (by ID within one instant), filtered by thing name."""
        old = self.registry.open_tunnel(thing_name="a")
        self.clock.advance(1)
        same = [self.registry.open_tunnel(thing_name="b") for _ in range(3)]
        self.clock.advance(1)
        new = self.registry.open_tunnel(thing_name="a")
        expected = [new] + sorted(same, key=lambda t: t.tunnel_id, reverse=True) + [old]
        self.assertEqual(self.registry.list_tunnels(), expected)
        self.assertEqual(self.registry.list_tunnels("a"), [new, old])
        self.assertEqual(self.registry.list_tunnels("none"), [])

    def test_tag_and_untag(self) -> None:
        """TagResource replaces a key's value and adds new keys in order; UntagResource drops keys."""
        tunnel = self.registry.open_tunnel(tags=[{"key": "a", "value": "1"}])
        self.registry.tag(
            tunnel.tunnel_arn,
            [{"key": "b", "value": "2"}, {"key": "a", "value": "3"}, {"key": "b", "value": "4"}],
        )
        self.assertEqual(tunnel.tags, [{"key": "a", "value": "3"}, {"key": "b", "value": "4"}])
        self.registry.untag(tunnel.tunnel_arn, ["a", "zz"])
        self.assertEqual(tunnel.tags, [{"key": "b", "value": "4"}])
        self.assertRaises(TunnelNotFound, self.registry.tag, "arn:nope", [])
        self.assertRaises(TunnelNotFound, self.registry.untag, "arn:nope", [])


class StateWaiterTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock, self.registry, self.relay = registry_and_relay(self, now=0)
        self.tunnel = self.registry.open_tunnel(["ssh"])

    def test_fires_on_the_state_waited_for(self) -> None:
        """A waiter fires once its slot reaches its state; the others keep waiting."""
        tunnel_id = self.tunnel.tunnel_id
        already = self.registry.wait_for_state(tunnel_id, Mode.SOURCE, "DISCONNECTED")
        self.assertTrue(already.called)
        fired: list = []
        self.registry.wait_for_state(tunnel_id, Mode.SOURCE, "CONNECTED").addCallback(
            lambda _: fired.append("source up")
        )
        self.registry.wait_for_state(tunnel_id, Mode.DESTINATION, "CONNECTED").addCallback(
            lambda _: fired.append("destination up")
        )
        grant = self.registry.authorize("source", [self.tunnel.slot(Mode.SOURCE).access_token], [])
        peer = FakePeerLink()
        self.relay.attach(grant, peer)
        self.assertEqual(fired, ["source up"])
        self.registry.wait_for_state(tunnel_id, Mode.SOURCE, "DISCONNECTED").addCallback(
            lambda _: fired.append("source down")
        )
        self.assertEqual(fired, ["source up"])
        self.relay.detach(grant, peer)
        self.assertEqual(fired, ["source up", "source down"])
        self.registry.state_changed()
        self.assertEqual(fired, ["source up", "source down"])
        self.assertEqual(len(self.registry._state_waiters), 1)

    def test_closing_fires_disconnected(self) -> None:
        grant = self.registry.authorize("source", [self.tunnel.slot(Mode.SOURCE).access_token], [])
        self.relay.attach(grant, FakePeerLink())
        down = self.registry.wait_for_state(self.tunnel.tunnel_id, Mode.SOURCE, "DISCONNECTED")
        self.registry.close_tunnel(self.tunnel.tunnel_id)
        self.assertTrue(down.called)


class RotateTests(unittest.TestCase):
    """RotateTunnelAccessToken: new tokens for the slots named, nothing else changes."""

    def setUp(self) -> None:
        self.clock, self.registry, self.relay = registry_and_relay(self)
        self.tunnel = self.registry.open_tunnel(
            ["ssh"], thing_name="thing", max_lifetime_minutes=10
        )

    def token(self, mode: Mode) -> str:
        return self.tunnel.slot(mode).access_token

    def test_closed_tunnel(self) -> None:
        self.registry.close_tunnel(self.tunnel.tunnel_id)
        error = self.assertRaises(
            TunnelNotFound, self.registry.rotate, self.tunnel.tunnel_id, [Mode.SOURCE]
        )
        self.assertEqual(str(error), "Tunnel %s is closed" % (self.tunnel.tunnel_id,))

    def test_only_the_named_slots(self) -> None:
        """The other slot keeps its token, client token and connection."""
        destination = self.token(Mode.DESTINATION)
        peer = FakePeerLink()
        self.relay.attach(
            self.registry.authorize("destination", [destination], [CLIENT_TOKEN]), peer
        )
        self.registry.rotate(self.tunnel.tunnel_id, [Mode.SOURCE])
        self.assertEqual(self.token(Mode.DESTINATION), destination)
        self.assertEqual(peer.closed, [])
        self.registry.authorize("destination", [destination], [CLIENT_TOKEN])

    def test_slot_is_new(self) -> None:
        """A spent token or a bound client token is forgotten: the new token takes any client."""
        self.registry.authorize("source", [self.token(Mode.SOURCE)], [])
        self.registry.authorize("destination", [self.token(Mode.DESTINATION)], [CLIENT_TOKEN])
        self.registry.rotate(self.tunnel.tunnel_id, [Mode.SOURCE, Mode.DESTINATION])
        self.registry.authorize("source", [self.token(Mode.SOURCE)], [])
        self.registry.authorize("destination", [self.token(Mode.DESTINATION)], [OTHER_CLIENT_TOKEN])

    def test_timestamps_and_lifetime(self) -> None:
        """lastUpdatedAt of the tunnel (and of a slot whose peer it closed) is now; the expiry stays."""
        peer = FakePeerLink()
        self.relay.attach(self.registry.authorize("source", [self.token(Mode.SOURCE)], []), peer)
        self.clock.advance(10)
        self.registry.rotate(self.tunnel.tunnel_id, [Mode.SOURCE, Mode.DESTINATION])
        shape = tunnel_shape(self.tunnel)
        self.assertEqual(shape["lastUpdatedAt"], 1010)
        self.assertEqual(
            shape["sourceConnectionState"], {"status": "DISCONNECTED", "lastUpdatedAt": 1010}
        )
        # No peer was connected: the destination's state did not change.
        self.assertEqual(shape["destinationConnectionState"]["lastUpdatedAt"], 1000)
        self.clock.advance(590)
        self.assertEqual(self.tunnel.status, "CLOSED")

    def test_destination_config(self) -> None:
        """Services given: they, and the thing name given with them, replace the old ones."""
        self.registry.rotate(self.tunnel.tunnel_id, [Mode.SOURCE])
        self.assertEqual(
            tunnel_shape(self.tunnel)["destinationConfig"],
            {"services": ["ssh"], "thingName": "thing"},
        )
        self.registry.rotate(self.tunnel.tunnel_id, [Mode.DESTINATION], services=["web"])
        self.assertEqual(tunnel_shape(self.tunnel)["destinationConfig"], {"services": ["web"]})
        bare = self.registry.open_tunnel()
        self.registry.rotate(
            bare.tunnel_id, [Mode.DESTINATION], services=("a", "b"), thing_name="t"
        )
        self.assertEqual(
            tunnel_shape(bare)["destinationConfig"], {"services": ["a", "b"], "thingName": "t"}
        )

    def test_index_holds_live_tokens_only(self) -> None:
        """Rotations leave no entries behind in the token index."""
        before = len(self.registry._by_token)
        for _ in range(50):
            self.registry.rotate(self.tunnel.tunnel_id, [Mode.SOURCE, Mode.DESTINATION])
        self.assertEqual(len(self.registry._by_token), before)
        self.assertEqual(
            self.registry.find_token(self.token(Mode.SOURCE)), (self.tunnel, Mode.SOURCE)
        )

    def test_logged(self) -> None:
        with capturedLogs() as events:
            self.registry.rotate(self.tunnel.tunnel_id, [Mode.SOURCE, Mode.DESTINATION])
        self.assertIn(
            "Rotated the ['source', 'destination'] access tokens of tunnel %s"
            % (self.tunnel.tunnel_id,),
            log_texts(events),
        )


class CloseTunnelTests(unittest.TestCase):
    """CloseTunnel, with and without delete, and what a closed tunnel's tokens still do."""

    def setUp(self) -> None:
        self.clock, self.registry, self.relay = registry_and_relay(self)
        self.tunnel = self.registry.open_tunnel(["ssh"])
        self.source_token = self.tunnel.slot(Mode.SOURCE).access_token

    def reason(self, **kwargs: Any) -> Any:
        error = self.assertRaises(HandshakeRejected, self.registry.authorize, **kwargs)
        return error.status, error.reason

    def test_peers_closed_with_reason(self) -> None:
        peer = FakePeerLink()
        self.relay.attach(self.registry.authorize("source", [self.source_token], []), peer)
        self.tunnel.active_streams["ssh"] = 1
        self.clock.advance(5)
        with capturedLogs() as events:
            self.registry.close_tunnel(self.tunnel.tunnel_id)
        self.assertEqual(peer.closed, [(1000, "Tunnel closed")])
        self.assertEqual(self.tunnel.active_streams, {})
        shape = tunnel_shape(self.tunnel)
        self.assertEqual((shape["status"], shape["lastUpdatedAt"]), ("CLOSED", 1005))
        self.assertEqual(
            shape["sourceConnectionState"], {"status": "DISCONNECTED", "lastUpdatedAt": 1005}
        )
        self.assertEqual(shape["destinationConnectionState"]["lastUpdatedAt"], 1000)
        self.assertIn(
            "Closed tunnel %s: Tunnel closed" % (self.tunnel.tunnel_id,), log_texts(events)
        )

    def test_closed_tokens_answer_closed(self) -> None:
        """A closed tunnel's token is refused as closed (403), not as unknown."""
        self.registry.close_tunnel(self.tunnel.tunnel_id)
        self.assertEqual(
            self.reason(mode_value="source", access_tokens=[self.source_token], client_tokens=[]),
            (403, "Tunnel is closed"),
        )

    def test_twice(self) -> None:
        """Closing a closed tunnel changes nothing and closes no peer again."""
        peer = FakePeerLink()
        self.relay.attach(self.registry.authorize("source", [self.source_token], []), peer)
        self.registry.close_tunnel(self.tunnel.tunnel_id)
        self.clock.advance(5)
        self.registry.close_tunnel(self.tunnel.tunnel_id, reason="again")
        self.assertEqual(peer.closed, [(1000, "Tunnel closed")])
        self.assertEqual(self.tunnel.last_updated_at, 1000)

    def test_delete_forgets_tokens(self) -> None:
        """With delete the tunnel and its tokens are gone: unknown token (401), unknown ID."""
        self.registry.close_tunnel(self.tunnel.tunnel_id)
        self.registry.close_tunnel(self.tunnel.tunnel_id, delete=True)
        self.assertEqual(
            self.reason(mode_value="source", access_tokens=[self.source_token], client_tokens=[]),
            (401, "Invalid access token"),
        )
        self.assertEqual(self.registry._by_token, {})
        self.assertRaises(TunnelNotFound, self.registry.get, self.tunnel.tunnel_id)

    def test_client_token_freed_by_close(self) -> None:
        """A client token bound in a closed tunnel may be used by another tunnel (not 409)."""
        self.registry.authorize("source", [self.source_token], [CLIENT_TOKEN])
        other = self.registry.open_tunnel()
        other_token = other.slot(Mode.SOURCE).access_token
        self.assertEqual(
            self.reason(
                mode_value="source", access_tokens=[other_token], client_tokens=[CLIENT_TOKEN]
            ),
            (409, "Client token already in use"),
        )
        self.registry.close_tunnel(self.tunnel.tunnel_id)
        grant = self.registry.authorize("source", [other_token], [CLIENT_TOKEN])
        self.assertEqual(grant.client_token, CLIENT_TOKEN)
        # The closed tunnel still refuses its own pair as closed.
        self.assertEqual(
            self.reason(
                mode_value="source", access_tokens=[self.source_token], client_tokens=[CLIENT_TOKEN]
            ),
            (403, "Tunnel is closed"),
        )


class RestoreTests(unittest.TestCase):
    def test_slots_disconnected_since_restart(self) -> None:
        """Restored slots are disconnected since the restart; the restore is logged with a count."""
        path = self.mktemp()
        clock = Clock()
        clock.advance(1000)
        store = SQLiteTunnelStore(path)
        first = TunnelRegistry(clock, store=store)
        tunnel = first.open_tunnel(["ssh"])
        first.open_tunnel()
        first.stop()
        store.close()
        clock.advance(30)
        store = SQLiteTunnelStore(path)
        self.addCleanup(store.close)
        second = TunnelRegistry(clock, store=store)
        self.addCleanup(second.stop)
        with capturedLogs() as events:
            second.load()
        self.assertIn("Restored 2 tunnels from the state file", log_texts(events))
        shape = tunnel_shape(second.get(tunnel.tunnel_id))
        self.assertEqual(
            shape["sourceConnectionState"], {"status": "DISCONNECTED", "lastUpdatedAt": 1030}
        )
        self.assertEqual(shape["createdAt"], 1000)

    def test_rotation_and_tags_saved(self) -> None:
        path = self.mktemp()
        clock = Clock()
        store = SQLiteTunnelStore(path)
        first = TunnelRegistry(clock, store=store)
        tunnel = first.open_tunnel(["ssh"])
        old = tunnel.slot(Mode.SOURCE).access_token
        first.rotate(tunnel.tunnel_id, [Mode.SOURCE])
        first.tag(tunnel.tunnel_arn, [{"key": "k", "value": "v"}, {"key": "gone", "value": "x"}])
        first.untag(tunnel.tunnel_arn, ["gone"])
        first.stop()
        store.close()
        store = SQLiteTunnelStore(path)
        self.addCleanup(store.close)
        second = TunnelRegistry(clock, store=store)
        second.load()
        self.addCleanup(second.stop)
        self.assertIsNone(second.find_token(old))
        self.assertIsNotNone(second.find_token(tunnel.slot(Mode.SOURCE).access_token))
        self.assertEqual(second.get(tunnel.tunnel_id).tags, [{"key": "k", "value": "v"}])
