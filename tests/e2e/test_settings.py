"""
Settings that reach the sockets: ``websocket.read_buffer_size`` and
``websocket.max_frame_size`` change the service connection's TCP transport.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import inlineCallbacks

from aws_localproxy.adapters.sockets import tcp_transport_of
from tests.support.e2e import E2ETestCase, Echo, with_settings


class SocketSettingsTests(E2ETestCase):
    @inlineCallbacks
    def test_read_buffer_and_socket_buffers(self) -> Any:
        settings = with_settings(ws_read_buffer_size=262144, ws_max_frame_size=262144)
        port = yield self.listen(Echo)
        yield self.tunnel_pair({"echo": port}, settings=settings)
        protocol = self.source._connector.protocol  # type: ignore[union-attr]
        tcp = tcp_transport_of(protocol.transport)
        self.assertEqual(tcp.bufferSize, 262144)  # type: ignore[union-attr]
        handle = tcp.getHandle()  # type: ignore[union-attr]
        # Linux doubles what it is asked for, for its own bookkeeping.
        self.assertGreaterEqual(handle.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 262144)

    @inlineCallbacks
    def test_defaults_leave_twisted_and_the_kernel_alone(self) -> Any:
        port = yield self.listen(Echo)
        yield self.tunnel_pair({"echo": port})
        protocol = self.source._connector.protocol  # type: ignore[union-attr]
        tcp = tcp_transport_of(protocol.transport)
        self.assertEqual(tcp.bufferSize, 2**16)  # type: ignore[union-attr]
