"""
The relay without sockets: pairing, replacement, stream resets, back-pressure.
"""

from __future__ import annotations

from typing import Tuple

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, Mode
from aws_localproxy.protocol.wire import Message, encode_message
from aws_localproxy.tunnelservice.apishapes import tunnel_shape
from aws_localproxy.tunnelservice.handshake import Grant
from tests.fakes.peer_link import FakePeerLink
from tests.support.helpers import CLIENT_TOKEN, registry_and_relay


class RelayTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock, self.registry, self.relay = registry_and_relay(self)

    def pair(
        self, client_token: str = CLIENT_TOKEN
    ) -> Tuple[object, object, FakePeerLink, FakePeerLink]:
        tunnel = self.registry.open_tunnel(["ssh"])
        source_grant = self.registry.authorize(
            "source", [tunnel.slot(Mode.SOURCE).access_token], [client_token]
        )
        destination_grant = self.registry.authorize(
            "destination", [tunnel.slot(Mode.DESTINATION).access_token], []
        )
        source, destination = FakePeerLink(), FakePeerLink()
        self.relay.attach(source_grant, source)
        self.relay.attach(destination_grant, destination)
        return source_grant, destination_grant, source, destination

    def test_replacement(self) -> None:
        tunnel = self.registry.open_tunnel(["ssh"])
        token = tunnel.slot(Mode.SOURCE).access_token
        old, new, destination = FakePeerLink(), FakePeerLink(), FakePeerLink()
        self.relay.attach(self.registry.authorize("source", [token], [CLIENT_TOKEN]), old)
        self.relay.attach(
            self.registry.authorize(
                "destination", [tunnel.slot(Mode.DESTINATION).access_token], []
            ),
            destination,
        )
        start = Message(type=Message.STREAM_START, streamId=3, serviceId="ssh")
        grant = self.registry.authorize("source", [token], [CLIENT_TOKEN])
        self.relay.relay(grant, encode_message(start), [start])
        self.relay.attach(grant, new)
        self.assertEqual(old.closed, [(1000, "Replaced by a new connection")])
        reset = destination.messages()[-1]
        self.assertEqual(
            (reset.type, reset.streamId, reset.serviceId), (Message.STREAM_RESET, 3, "ssh")
        )
        self.assertEqual(new.messages()[0].type, Message.SERVICE_IDS)
        self.assertEqual(len(new.messages()), 1)
        # The old connection going away later does not disconnect the new one.
        self.relay.detach(grant, old)
        self.assertIs(tunnel.slot(Mode.SOURCE).peer, new)

    def test_reset_stream_forgotten(self) -> None:
        tunnel = self.registry.open_tunnel(["ssh"])
        grant = self.registry.authorize("source", [tunnel.slot(Mode.SOURCE).access_token], [])
        self.relay.relay(
            grant, b"", [Message(type=Message.STREAM_START, streamId=3, serviceId="ssh")]
        )
        self.assertEqual(tunnel.active_streams, {"ssh": 3})
        self.relay.relay(
            grant, b"", [Message(type=Message.STREAM_RESET, streamId=2, serviceId="ssh")]
        )
        self.assertEqual(tunnel.active_streams, {"ssh": 3})
        self.relay.relay(
            grant, b"", [Message(type=Message.STREAM_RESET, streamId=3, serviceId="ssh")]
        )
        self.assertEqual(tunnel.active_streams, {})

    def test_relayed_in_order(self) -> None:
        source_grant, _, source, destination = self.pair()
        for i in range(5):
            self.relay.relay(source_grant, b"record %d" % i, [])
        self.assertEqual(destination.sent[1:], [b"record %d" % i for i in range(5)])
        self.assertEqual(len(source.sent), 1)  # SERVICE_IDS only

    def test_v1_gets_no_service_ids(self) -> None:
        tunnel = self.registry.open_tunnel(["ssh"])
        grant = self.registry.authorize("source", [tunnel.slot(Mode.SOURCE).access_token], [])
        peer = FakePeerLink(SUBPROTOCOL_V1)
        self.relay.attach(grant, peer)
        self.assertEqual(peer.sent, [])

    def test_closed_since_the_handshake(self) -> None:
        tunnel = self.registry.open_tunnel(["ssh"])
        grant = self.registry.authorize("source", [tunnel.slot(Mode.SOURCE).access_token], [])
        self.registry.close_tunnel(tunnel.tunnel_id)
        peer = FakePeerLink()
        self.assertFalse(self.relay.attach(grant, peer))
        self.assertEqual(peer.closed, [(1000, "Tunnel is closed")])

    def test_other_peer(self) -> None:
        source_grant, destination_grant, source, destination = self.pair()
        self.assertIs(self.relay.other_peer(source_grant, source), destination)
        self.assertIs(self.relay.other_peer(destination_grant, destination), source)
        self.assertIsNone(self.relay.other_peer(source_grant, FakePeerLink()))

    def test_back_pressure(self) -> None:
        """A full peer pauses the other one until it drains."""
        source_grant, destination_grant, source, destination = self.pair()
        self.relay.send_buffer_full(destination_grant, destination)
        self.assertTrue(source.paused)
        self.assertFalse(destination.paused)
        self.relay.send_buffer_drained(destination_grant, destination)
        self.assertFalse(source.paused)

    def test_new_peer_starts_paused_behind_a_full_one(self) -> None:
        source_grant, destination_grant, source, destination = self.pair()
        self.relay.send_buffer_full(destination_grant, destination)
        again = self.registry.authorize("source", [source_grant.slot.access_token], [CLIENT_TOKEN])
        new_source = FakePeerLink()
        self.relay.attach(again, new_source)
        self.assertTrue(new_source.paused)

    def test_replaced_full_peer_releases_the_other(self) -> None:
        """
        A full peer that is replaced no longer holds the other side: the
        new connection takes the data now (regression: the other side stayed
        paused until the old connection's close finished, and the old
        connection's buffer events kept pausing it).
        """
        source_grant, destination_grant, source, destination = self.pair()
        self.relay.send_buffer_full(source_grant, source)
        self.assertTrue(destination.paused)
        again = self.registry.authorize("source", [source_grant.slot.access_token], [CLIENT_TOKEN])
        self.relay.attach(again, FakePeerLink())
        self.assertFalse(destination.paused)
        # The old connection's buffer filling again changes nothing.
        self.relay.send_buffer_drained(source_grant, source)
        self.relay.send_buffer_full(source_grant, source)
        self.assertFalse(destination.paused)

    def test_two_full_peers_are_independent(self) -> None:
        """One full peer draining does not resume a side another full peer holds."""
        source_grant, destination_grant, source, destination = self.pair()
        self.relay.send_buffer_full(source_grant, source)
        again = self.registry.authorize("source", [source_grant.slot.access_token], [CLIENT_TOKEN])
        new_source = FakePeerLink()
        self.relay.attach(again, new_source)
        self.relay.send_buffer_full(again, new_source)
        self.relay.detach(source_grant, source)
        self.assertTrue(destination.paused)
        self.relay.send_buffer_drained(again, new_source)
        self.assertFalse(destination.paused)

    def test_detached_full_peer_releases_the_other(self) -> None:
        source_grant, destination_grant, source, destination = self.pair()
        self.relay.send_buffer_full(destination_grant, destination)
        self.relay.detach(destination_grant, destination)
        self.assertFalse(source.paused)

    def test_violation(self) -> None:
        source_grant, _, source, _ = self.pair()
        self.relay.violation(source_grant, source, 1008, "bad")
        self.assertEqual(source.closed, [(1008, "bad")])
        self.assertIsNone(source_grant.slot.peer)
        self.assertEqual(self.relay.violations, [(source_grant.tunnel.tunnel_id, "source", "bad")])


class RelayStateTests(unittest.TestCase):
    """What DescribeTunnel and the service's log show of attaches, detaches and violations."""

    def setUp(self) -> None:
        self.clock, self.registry, self.relay = registry_and_relay(self)
        self.tunnel = self.registry.open_tunnel(["ssh", "web"])

    def grant(self, mode: Mode, client_token: str = CLIENT_TOKEN) -> Grant:
        return self.registry.authorize(
            mode.value, [self.tunnel.slot(mode).access_token], [client_token]
        )

    def test_timestamps(self) -> None:
        """Attach and detach stamp the slot and the tunnel with the time."""
        grant = self.grant(Mode.SOURCE)
        peer = FakePeerLink()
        self.clock.advance(5)
        self.assertTrue(self.relay.attach(grant, peer))
        shape = tunnel_shape(self.tunnel)
        self.assertEqual(
            shape["sourceConnectionState"], {"status": "CONNECTED", "lastUpdatedAt": 1005}
        )
        self.assertEqual(shape["lastUpdatedAt"], 1005)
        self.clock.advance(5)
        self.relay.detach(grant, peer)
        shape = tunnel_shape(self.tunnel)
        self.assertEqual(
            shape["sourceConnectionState"], {"status": "DISCONNECTED", "lastUpdatedAt": 1010}
        )
        self.assertEqual(shape["lastUpdatedAt"], 1010)

    def test_service_ids_sent(self) -> None:
        """A V2/V3 peer is told the tunnel's services on attach."""
        peer = FakePeerLink()
        self.relay.attach(self.grant(Mode.DESTINATION), peer)
        (message,) = peer.messages()
        self.assertEqual(
            (message.type, list(message.availableServiceIds)),
            (Message.SERVICE_IDS, ["ssh", "web"]),
        )

    def test_replacement_resets_every_stream(self) -> None:
        """A replaced source's streams are all reset towards the destination, each whole."""
        source, destination = FakePeerLink(), FakePeerLink()
        grant = self.grant(Mode.SOURCE)
        self.relay.attach(grant, source)
        self.relay.attach(self.grant(Mode.DESTINATION, "e" * 32), destination)
        starts = [
            Message(type=Message.STREAM_START, streamId=3, serviceId="ssh"),
            Message(type=Message.STREAM_START, streamId=8, serviceId="web"),
        ]
        self.relay.relay(grant, b"", starts)
        destination.sent.clear()
        self.relay.attach(self.grant(Mode.SOURCE), FakePeerLink())
        self.assertEqual(
            sorted((m.type, m.serviceId, m.streamId) for m in destination.messages()),
            [(Message.STREAM_RESET, "ssh", 3), (Message.STREAM_RESET, "web", 8)],
        )

    def test_logged(self) -> None:
        """Connects, replacements, disconnects and violations are each one line."""
        tunnel_id = self.tunnel.tunnel_id
        grant = self.grant(Mode.SOURCE)
        old, new = FakePeerLink(), FakePeerLink()
        with capturedLogs() as events:
            self.relay.attach(grant, old)
            self.relay.attach(self.grant(Mode.SOURCE), new)
            self.relay.detach(grant, new)
            destination = FakePeerLink()
            destination_grant = self.grant(Mode.DESTINATION, "e" * 32)
            self.relay.attach(destination_grant, destination)
            self.relay.violation(destination_grant, destination, 1008, "bad record")
        self.assertEqual(
            [formatEvent(event) for event in events],
            [
                "source connected to tunnel %s" % (tunnel_id,),
                "Replacing the source connection of tunnel %s" % (tunnel_id,),
                "source connected to tunnel %s" % (tunnel_id,),
                "source disconnected from tunnel %s" % (tunnel_id,),
                "destination connected to tunnel %s" % (tunnel_id,),
                "Closing the destination connection of tunnel %s: bad record" % (tunnel_id,),
                "destination disconnected from tunnel %s" % (tunnel_id,),
            ],
        )


class BackPressureCycleTests(unittest.TestCase):
    """Back-pressure that comes and goes, and peers that come and go while it holds."""

    def setUp(self) -> None:
        self.clock, self.registry, self.relay = registry_and_relay(self, now=0)
        tunnel = self.registry.open_tunnel(["ssh"])
        self.tokens = {mode: tunnel.slot(mode).access_token for mode in Mode}
        self.source_grant = self.registry.authorize(
            "source", [self.tokens[Mode.SOURCE]], [CLIENT_TOKEN]
        )
        self.destination_grant = self.registry.authorize(
            "destination", [self.tokens[Mode.DESTINATION]], ["e" * 32]
        )
        self.source, self.destination = FakePeerLink(), FakePeerLink()
        self.relay.attach(self.source_grant, self.source)
        self.relay.attach(self.destination_grant, self.destination)

    def test_full_again_pauses_again(self) -> None:
        for _ in range(3):
            self.relay.send_buffer_full(self.destination_grant, self.destination)
            self.assertTrue(self.source.paused)
            self.relay.send_buffer_drained(self.destination_grant, self.destination)
            self.assertFalse(self.source.paused)

    def test_detached_full_source_releases_the_destination(self) -> None:
        self.relay.send_buffer_full(self.source_grant, self.source)
        self.assertTrue(self.destination.paused)
        self.relay.detach(self.source_grant, self.source)
        self.assertFalse(self.destination.paused)
        self.assertFalse(self.source.paused)

    def test_new_peer_behind_a_full_one_resumes_when_it_drains(self) -> None:
        self.relay.send_buffer_full(self.destination_grant, self.destination)
        again = self.registry.authorize("source", [self.tokens[Mode.SOURCE]], [CLIENT_TOKEN])
        new_source = FakePeerLink()
        self.relay.attach(again, new_source)
        self.assertTrue(new_source.paused)
        self.relay.send_buffer_drained(self.destination_grant, self.destination)
        self.assertFalse(new_source.paused)
