"""
Transports for protocols under test.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport


class TCPLikeTransport(StringTransport):
    """
    A StringTransport whose C{unregisterProducer} accepts having no producer,
    as Twisted's TCP and TLS transports do (Autobahn and the web proxy
    endpoints unregister unconditionally when they drop a connection).
    """

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None
