"""
How far a record travels in the project's code, each way, through a whole
source proxy in memory (L{tests.support.loopback}): a real tunnel, its
WebSocket over the batching TLS layer, a local connection, and a stand-in
tunneling service over Twisted's TLS.

 - Inbound: TLS read -> WebSocket -> tunnel -> local connection's write;
 - outbound: local connection's read -> lane -> scheduler -> WebSocket frame
   -> TLS write.

The tests count the project's frames on the stack when the bytes are
written (a socket transport adds one: the write that sends at once,
C{aws_localproxy.adapters.sockets.write_now}) and the project's calls one
64-byte record takes, and hold them to their bounds: the connector is in
neither path, and a new hop on the data path must be a decision (raise the
figure here and say why), not an accident.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.wire import Message
from tests.support.loopback import Loopback, count_calls
from tests.support.payloads import unique_payload

#: At most this many of the project's frames on the stack at the write, each
#: way (in memory; on a socket one more): "about ten" with the socket's.
MOST_FRAMES = 9
#: The project's calls for one 64-byte record, each way (no more than now).
#: Inbound counts the TLS layer's C{dataReceived}, the project's own since it
#: writes a read into the receive BIO itself (it replaced Twisted's, and
#: pyOpenSSL's C{bio_write} with its argument checks and buffer pointer).
INBOUND_CALLS = 10
OUTBOUND_CALLS = 13

PAYLOAD = unique_payload(64, seed=1)


class DataPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.loop = Loopback(self)
        # One record each way first: the connection's stream starts, and the
        # peer shows it speaks V3 (what a session does once).
        self.loop.local.dataReceived(unique_payload(64, seed=2))
        self.loop.flush()
        self.loop.deliver_to_source(self.loop.service_sends(self.loop.data_from_peer(b"w")))
        self.loop.tls_writes.clear()
        self.loop.local_writes.clear()

    def test_inbound(self) -> None:
        """A record from the service reaches the local connection straight from the WebSocket."""
        ciphertext = self.loop.service_sends(self.loop.data_from_peer(PAYLOAD))
        total, own = count_calls(lambda: self.loop.deliver_to_source(ciphertext))
        self.assertEqual(self.loop.local_writes.writes, [PAYLOAD])
        (stack,) = self.loop.local_writes.stacks
        self.assertEqual(
            (stack[0], stack[-1]),
            (
                "local.connection.LocalStreamProtocol.write",
                "upstream.tls_layer.BatchingTLSTransport.dataReceived",
            ),
        )
        self.assertFalse([frame for frame in stack if "connector" in frame], stack)
        self.assertLessEqual(len(stack), MOST_FRAMES, stack)
        self.assertLessEqual(own, INBOUND_CALLS, f"{own} of the project's calls ({total} in all)")

    def test_outbound(self) -> None:
        """A local read reaches the TLS layer's write in the same call, as one DATA record."""
        total, own = count_calls(lambda: self.loop.local.dataReceived(PAYLOAD))
        (stack,) = self.loop.tls_writes.stacks
        self.assertEqual(
            (stack[0], stack[-1]),
            (
                "upstream.tls_layer.BatchingTLSTransport._flushSendBIO",
                "local.connection.LocalStreamProtocol.dataReceived",
            ),
        )
        self.assertFalse([frame for frame in stack if "connector" in frame], stack)
        self.assertLessEqual(len(stack), MOST_FRAMES, stack)
        self.assertLessEqual(own, OUTBOUND_CALLS, f"{own} of the project's calls ({total} in all)")
        self.loop.flush()
        last = self.loop.received_by_service()[-1]
        self.assertEqual((last.type, last.payload), (Message.DATA, PAYLOAD))
