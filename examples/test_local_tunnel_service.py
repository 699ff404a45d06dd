"""
Testing an application against the local tunnel service, with trial:

    python -m twisted.trial examples/test_local_tunnel_service.py

Each test gets its own tunnel service on 127.0.0.1 (a port the system
picks, its own CA), opens a tunnel in-process and runs both local proxies
next to the code under test.  Nothing leaves the machine.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from aws_localproxy import ClosedTunnel, LocalProxyService, Mode, ProxyConfig
from aws_localproxy.tunnelservice.testing import start_tunnel_service


class Upper(Protocol):
    """The application under test: answers in upper case."""

    def dataReceived(self, data):
        self.transport.write(data.upper())


class Client(Protocol):
    def __init__(self, expected):
        self.expected = expected
        self.received = b""
        self.done = Deferred()

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= self.expected:
            self.transport.loseConnection()

    def connectionLost(self, reason=None):
        self.done.callback(self.received)


class ApplicationThroughTunnelTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        self.service = yield start_tunnel_service(reactor, self.mktemp())
        self.addCleanup(self.service.stop)

    def proxy(self, mode, token, **embedding):
        config = ProxyConfig(
            mode=mode,
            access_token=token,
            endpoint_host=self.service.host,
            endpoint_port=self.service.port,
            capath=self.service.capath,
        )
        proxy = LocalProxyService(config, reactor, **embedding)
        proxy.startService()
        self.addCleanup(proxy.stopService)
        return proxy

    @inlineCallbacks
    def test_answer_comes_back_through_the_tunnel(self):
        tunnel_id, source_token, destination_token = self.service.open_tunnel(["APP"])
        closed = []
        destination = self.proxy(
            Mode.DESTINATION,
            destination_token,
            destination_factories={"APP": Factory.forProtocol(Upper)},
            on_closed=closed.append,
        )
        connected = yield destination.connected
        self.assertEqual(connected.service_ids, ("APP",))
        self.assertEqual(connected.subprotocol, "aws.iot.securetunneling-3.0")

        source = self.proxy(Mode.SOURCE, source_token)
        yield source.connected
        port = yield source.listening_port("APP")
        client = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port), Client(len(b"hello"))
        )
        client.transport.write(b"hello")
        self.assertEqual((yield client.done), b"HELLO")

        # CloseTunnel: the destination hears why, and ends with exit code 0.
        self.service.close_tunnel(tunnel_id)
        self.assertEqual((yield destination.when_finished), 0)
        self.assertEqual(len(closed), 1)
        self.assertIsInstance(closed[0], ClosedTunnel)
        self.assertTrue(closed[0].closed_by_service)
        self.assertEqual(closed[0].service_ids, ("APP",))
