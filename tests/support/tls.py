"""
TLS connections in memory for the tests of the TLS layer and of the
adapters on Twisted's and pyOpenSSL's private parts: a Twisted TLS client
joined to a Twisted TLS server through iosim, and two bare pyOpenSSL
connections joined through their memory BIOs.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

from OpenSSL import SSL
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.tunnelservice.certs import server_tls_options
from aws_localproxy.upstream.tls_options import service_tls_options
from tests.support.helpers import private_ca


def connect_in_memory(
    test: SynchronousTestCase,
    client: IProtocol,
    server: IProtocol,
    *,
    client_factory: Callable[..., TLSMemoryBIOFactory] = TLSMemoryBIOFactory,
    hostname: str = "localhost",
    wrap_creator: Callable[[Any], Any] = lambda creator: creator,
) -> Any:
    """
    C{client} over a TLS client built by C{client_factory} (verifying the
    server's certificate for C{hostname}; C{wrap_creator} may wrap its
    connection creator), joined in memory to C{server} over Twisted's TLS
    with a certificate of a new private CA; returns the iosim pump, flushed
    (the handshake done, or failed).
    """
    files = private_ca(test)
    clock = Clock()
    server_factory = TLSMemoryBIOFactory(
        server_tls_options(files), False, Factory.forProtocol(lambda: server), clock=clock
    )
    tls_client_factory = client_factory(
        wrap_creator(service_tls_options(hostname, files.capath)),
        True,
        Factory.forProtocol(lambda: client),
        clock=clock,
    )
    _, _, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None),
        lambda: tls_client_factory.buildProtocol(None),
        clock=clock,
    )
    pump.flush()
    return pump


def pyopenssl_pair(test: SynchronousTestCase) -> Tuple[SSL.Connection, SSL.Connection]:
    """
    A client and a server pyOpenSSL connection in memory-BIO mode, their
    handshake done by moving the bytes between their BIOs.
    """
    files = private_ca(test)
    server = SSL.Connection(server_tls_options(files).getContext(), None)
    server.set_accept_state()
    client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    client.set_connect_state()
    for _ in range(10):
        for connection in (client, server):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
        moved = move_bytes(client, server) + move_bytes(server, client)
        if not moved:
            break
    return client, server


def move_bytes(sender: SSL.Connection, receiver: SSL.Connection) -> int:
    """The ciphertext waiting in C{sender}'s send BIO, written into C{receiver}'s receive BIO."""
    moved = 0
    while True:
        try:
            data = sender.bio_read(65536)
        except SSL.WantReadError:
            return moved
        receiver.bio_write(data)
        moved += len(data)
