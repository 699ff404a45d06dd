"""
Tests for L{aws_localproxy.protocol.peer_format} on its own: the format a
session speaks to its peer, and its one fall-back from V3 to V2.  How a
tunnel meets each version is in L{tests.protocol.test_tunnel_versions} and
L{tests.protocol.test_tunnel_peers}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import PeerVersion
from aws_localproxy.protocol.peer_format import PeerFormat
from aws_localproxy.protocol.wire import Message, decode_all


class PeerFormatTests(SynchronousTestCase):
    """The format object on its own: the fall-back happens once, and only from V3."""

    def test_fall_back_once(self) -> None:
        peer_format = PeerFormat(PeerVersion.V3)
        self.assertTrue(peer_format.fall_back_to_v2())
        self.assertIs(peer_format.version, PeerVersion.V2)
        self.assertFalse(peer_format.fall_back_to_v2())
        for version in (PeerVersion.V2, PeerVersion.V1):
            other = PeerFormat(version)
            self.assertFalse(other.fall_back_to_v2())
            self.assertIs(other.version, version)

    def test_control_without_connection_id(self) -> None:
        """A control record built without a connection ID carries none."""
        (message,) = decode_all(PeerFormat(PeerVersion.V3).control(Message.STREAM_RESET, "ssh", 3))
        self.assertEqual((message.serviceId, message.streamId, message.connectionId), ("ssh", 3, 0))
