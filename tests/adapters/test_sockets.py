"""
Tests for aws_localproxy.adapters.sockets: IP literals, and the socket options set
through a transport (through TLS too), on a connected TCP socket of
127.0.0.1 and on transports that have no TCP socket.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, List, Optional

from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters import sockets
from aws_localproxy.adapters.sockets import (
    TCP_NOTSENT_LOWAT,
    ip_address_of,
    set_no_delay,
    set_not_sent_low_water,
    set_socket_buffers,
    tcp_transport_of,
)


class _Transport:
    """A transport whose C{getHandle} is C{handle}, over C{transport} (as TLS is)."""

    def __init__(self, handle: object, transport: Optional[object] = None) -> None:
        self._handle = handle
        self.transport = transport

    def getHandle(self) -> object:
        return self._handle


class _NoDelay:
    def __init__(self, error: bool = False) -> None:
        self.calls: List[bool] = []
        self._error = error

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.calls.append(enabled)
        if self._error:
            raise OSError("not a socket any more")


class IPLiteralTests(SynchronousTestCase):
    def test_literals(self) -> None:
        self.assertEqual(ip_address_of("127.0.0.1"), ipaddress.ip_address("127.0.0.1"))
        self.assertEqual(ip_address_of("[::1]"), ipaddress.ip_address("::1"))
        self.assertEqual(ip_address_of("fe80::1%eth0"), ipaddress.ip_address("fe80::1"))

    def test_names(self) -> None:
        for name in ("localhost", "example.com", "", "1.2.3", "X1.2.3.4", "[X::1]"):
            self.assertIsNone(ip_address_of(name), name)


class NoDelayTests(SynchronousTestCase):
    def test_set_when_tcp(self) -> None:
        transport = _NoDelay()
        set_no_delay(transport)
        self.assertEqual(transport.calls, [True])

    def test_errors_and_other_transports_ignored(self) -> None:
        set_no_delay(_NoDelay(error=True))
        set_no_delay(StringTransport())


class SocketOptionTests(SynchronousTestCase):
    def tcp_socket(self) -> socket.socket:
        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname())
        self.addCleanup(client.close)
        accepted, _ = server.accept()
        self.addCleanup(accepted.close)
        return client

    def test_not_sent_low_water_through_tls(self) -> None:
        if TCP_NOTSENT_LOWAT is None:
            raise self.skipTest("no TCP_NOTSENT_LOWAT on this system")
        sock = self.tcp_socket()
        tls_over_tcp = _Transport(object(), transport=_Transport(sock))
        self.assertTrue(set_not_sent_low_water(tls_over_tcp, 16384))
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT), 16384)

    def test_socket_buffers(self) -> None:
        sock = self.tcp_socket()
        self.assertTrue(set_socket_buffers(_Transport(sock), 65536))
        # Linux doubles what it is given; either way it is at least the request.
        self.assertGreaterEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 65536)
        self.assertGreaterEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), 65536)

    def test_no_socket(self) -> None:
        for transport in (StringTransport(), _Transport(object()), object()):
            self.assertFalse(set_not_sent_low_water(transport))
            self.assertFalse(set_socket_buffers(transport, 65536))

    def test_handle_that_is_no_socket_over_nothing(self) -> None:
        """A transport whose handle is not a socket and that has nothing under it."""

        class Alone:
            def getHandle(self) -> object:
                return object()

        self.assertFalse(set_not_sent_low_water(Alone()))
        self.assertFalse(set_socket_buffers(Alone(), 65536))

    def test_system_without_not_sent_low_water(self) -> None:
        """Where the system has no TCP_NOTSENT_LOWAT, nothing is set and the caller hears so."""
        sock = self.tcp_socket()
        self.patch(sockets, "TCP_NOTSENT_LOWAT", None)
        self.assertFalse(set_not_sent_low_water(_Transport(sock), 16384))

    def test_datagram_socket_is_not_tcp(self) -> None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        self.assertFalse(set_not_sent_low_water(_Transport(udp)))
        self.assertFalse(set_socket_buffers(_Transport(udp), 65536))

    def test_closed_socket(self) -> None:
        sock = self.tcp_socket()
        sock.close()
        transport: Any = _Transport(sock)
        self.assertFalse(set_socket_buffers(transport, 65536))
        if TCP_NOTSENT_LOWAT is not None:
            self.assertFalse(set_not_sent_low_water(transport))


class _Descriptor(FileDescriptor):
    """A transport of the reactor's kind (what Twisted's TCP transports are)."""

    def __init__(self) -> None:
        super().__init__(reactor=MemoryReactor())


class _Layer:
    """A layer over C{transport}, as TLS is over TCP."""

    def __init__(self, transport: object) -> None:
        self.transport = transport


class TCPTransportTests(SynchronousTestCase):
    def test_the_transport_itself(self) -> None:
        tcp = _Descriptor()
        self.assertIs(tcp_transport_of(tcp), tcp)

    def test_through_layers(self) -> None:
        """Through TLS, and TLS over a web proxy's TLS: the TCP transport at the bottom."""
        tcp = _Descriptor()
        self.assertIs(tcp_transport_of(_Layer(tcp)), tcp)
        self.assertIs(tcp_transport_of(_Layer(_Layer(tcp))), tcp)

    def test_none(self) -> None:
        """Transports with no TCP transport under them: a test's, a layer over nothing."""
        for transport in (StringTransport(), object(), _Layer(None), _Layer(StringTransport())):
            self.assertIsNone(tcp_transport_of(transport), transport)
