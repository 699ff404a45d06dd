"""
The limits that keep the local tunnel service up: the connection cap, the
handshake deadline, head and body sizes, JSON validation, and a flood of
bad clients while a good one works.  Raw sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial import unittest

from aws_localproxy.protocol.wire import Message, control_message, encode_data
from aws_localproxy.tunnelservice import frontdoor
from aws_localproxy.tunnelservice.frontdoor import MAX_BODY, MAX_HEAD
from aws_localproxy.tunnelservice.testing import start_tunnel_service
from tests.support import tunnelclient
from tests.support.helpers import sleep, wait_until


class RawClient(Protocol):
    """Sends what it is told, keeps what it receives, tells when it is closed."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()
        self.is_closed = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.is_closed = True
        self.closed.callback(self.received)

    @property
    def status(self) -> Optional[int]:
        line = self.received.split(b"\r\n", 1)[0].split(b" ")
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None

    def json(self) -> Any:
        return json.loads(self.received.split(b"\r\n\r\n", 1)[1])


def api_request(target: str, body: bytes) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"X-Amz-Target: IoTSecuredTunneling.%s\r\n"
        b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n\r\n%s"
        % (target.encode(), len(body), body)
    )


class FrontDoorTestCase(unittest.TestCase):
    use_tls = False
    service_options: Dict[str, Any] = {}

    @inlineCallbacks
    def setUp(self) -> Any:
        self.running = yield start_tunnel_service(
            reactor, self.mktemp(), use_tls=self.use_tls, **self.service_options
        )
        self.addCleanup(self.running.stop)

    @inlineCallbacks
    def raw(self, data: bytes = b"", tls: bool = False) -> Any:
        endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", self.running.port, timeout=5)
        if tls:
            endpoint = wrapClientTLS(tunnelclient.client_tls(self.running.ca_file), endpoint)
        client = yield connectProtocol(endpoint, RawClient())
        self.addCleanup(self._close, client)
        if data:
            client.transport.write(data)
        return client

    def _close(self, client: RawClient) -> Any:
        if not client.is_closed:
            client.transport.abortConnection()
        return client.closed

    @inlineCallbacks
    def answer(self, data: bytes) -> Any:
        """Send C{data}; fires with the client once the service closed the connection."""
        client = yield self.raw(data)
        yield tunnelclient.within(reactor, client.closed, 5)
        return client

    @inlineCallbacks
    def api_error(self, target: str, body: Any) -> Any:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        client = yield self.answer(api_request(target, raw))
        self.assertEqual(client.status, 400, client.received[:200])
        return client.json()


class HeadAndBodyTests(FrontDoorTestCase):
    @inlineCallbacks
    def test_long_request_line(self) -> Any:
        client = yield self.answer(b"GET /" + b"a" * (MAX_HEAD + 10) + b" HTTP/1.1\r\n\r\n")
        self.assertEqual(client.status, 431)

    @inlineCallbacks
    def test_long_line_without_an_end(self) -> Any:
        """Answered as soon as the limit passes, not when the line ends."""
        client = yield self.answer(b"GET /" + b"a" * (MAX_HEAD + 10))
        self.assertEqual(client.status, 431)

    @inlineCallbacks
    def test_long_head(self) -> Any:
        headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 1000) for i in range(20))
        client = yield self.answer(b"GET /tunnel HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        self.assertEqual(client.status, 431)

    @inlineCallbacks
    def test_long_head_without_twisteds_count(self) -> Any:
        """Where Twisted no longer counts the head for us, twisted.web's own limit answers."""
        self.patch(frontdoor, "received_header_size", lambda channel: None)
        headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 1000) for i in range(20))
        client = yield self.answer(b"GET /tunnel HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        self.assertEqual(client.status, 400)

    @inlineCallbacks
    def test_garbage(self) -> Any:
        client = yield self.answer(b"\x16\x03\x01 not http at all\r\n\r\n")
        self.assertEqual(client.status, 400)

    @inlineCallbacks
    def test_body_too_large(self) -> Any:
        """413 from the Content-Length, before the body is sent."""
        client = yield self.answer(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: IoTSecuredTunneling.ListTunnels\r\n"
            b"Content-Length: %d\r\n\r\n{" % (MAX_BODY + 1,)
        )
        self.assertEqual(client.status, 413)

    @inlineCallbacks
    def test_chunked_body_too_large(self) -> Any:
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
        client = yield self.raw(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: IoTSecuredTunneling.ListTunnels\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(MAX_BODY // (64 * 1024) + 2):
            if client.is_closed:
                break
            client.transport.write(chunk)
        yield tunnelclient.within(reactor, client.closed, 5)
        self.assertEqual(client.status, 413)


class ValidationTests(FrontDoorTestCase):
    @inlineCallbacks
    def test_boolean_is_not_an_integer(self) -> Any:
        error = yield self.api_error(
            "OpenTunnel", {"timeoutConfig": {"maxLifetimeTimeoutMinutes": True}}
        )
        self.assertEqual(error["__type"], "ValidationException")
        error = yield self.api_error("ListTunnels", {"maxResults": True})
        self.assertEqual(error["__type"], "ValidationException")

    @inlineCallbacks
    def test_at_most_three_services(self) -> Any:
        error = yield self.api_error(
            "OpenTunnel", {"destinationConfig": {"services": ["a", "b", "c", "d"]}}
        )
        self.assertEqual(error["__type"], "ValidationException")

    @inlineCallbacks
    def test_long_ids_are_not_echoed(self) -> Any:
        long_name = "t" * 5000
        for target, body in [
            ("OpenTunnel", {"destinationConfig": {"services": ["a"], "thingName": long_name}}),
            ("OpenTunnel", {"destinationConfig": {"services": [long_name]}}),
            ("DescribeTunnel", {"tunnelId": long_name}),
            ("ListTunnels", {"thingName": long_name}),
            ("ListTagsForResource", {"resourceArn": long_name}),
        ]:
            error = yield self.api_error(target, body)
            self.assertEqual(error["__type"], "ValidationException", target)
            self.assertLess(len(error["message"]), 200, target)

    @inlineCallbacks
    def test_deeply_nested(self) -> Any:
        for body in [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000]:
            error = yield self.api_error("OpenTunnel", body)
            self.assertEqual(error["__type"], "SerializationException")
        error = yield self.api_error("OpenTunnel", {"tags": [[[[[[[[[[[[[]]]]]]]]]]]]]})
        self.assertEqual(error["__type"], "SerializationException")


class DeadlineTests(FrontDoorTestCase):
    use_tls = True
    service_options = {"handshake_deadline": 0.5}

    @inlineCallbacks
    def test_silent_client(self) -> Any:
        """No TLS handshake at all: closed at the deadline."""
        started = time.monotonic()
        client = yield self.raw()
        yield tunnelclient.within(reactor, client.closed, 3)
        self.assertGreater(time.monotonic() - started, 0.4)

    @inlineCallbacks
    def test_trickle_does_not_extend_it(self) -> Any:
        started = time.monotonic()
        client = yield self.raw()
        for byte in b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03":
            if client.is_closed:
                break
            client.transport.write(bytes([byte]))
            yield sleep(0.1)
        yield tunnelclient.within(reactor, client.closed, 3)
        self.assertLess(time.monotonic() - started, 1.5)

    @inlineCallbacks
    def test_an_open_tunnel_outlives_it(self) -> Any:
        _, source_token, _ = self.running.open_tunnel(["ssh"])
        client = yield tunnelclient.connect(reactor, self.running, token=source_token)
        self.addCleanup(tunnelclient.close_client, client)
        yield sleep(0.8)
        self.assertIsNone(client.close_info)


class ConnectionCapTests(FrontDoorTestCase):
    service_options = {"max_connections": 3}

    @inlineCallbacks
    def test_over_the_cap_is_closed(self) -> Any:
        _, source_token, destination_token = self.running.open_tunnel(["ssh"])
        source = yield tunnelclient.connect(reactor, self.running, token=source_token)
        self.addCleanup(tunnelclient.close_client, source)
        idle = yield self.raw()
        destination = yield tunnelclient.connect(
            reactor, self.running, mode="destination", token=destination_token
        )
        self.addCleanup(tunnelclient.close_client, destination)
        self.assertTrue(destination.opened)
        # Three open (two WebSockets, one HTTP): the next is closed at once.
        over = yield self.raw(b"GET / HTTP/1.1\r\n\r\n")
        yield tunnelclient.within(reactor, over.closed, 3)
        self.assertEqual(over.received, b"")
        self.assertEqual(self.running._site.refused_count, 1)
        # Below the cap again: served.
        idle.transport.abortConnection()
        yield idle.closed
        yield wait_until(lambda: len(self.running._site._channels) == 0, timeout=5.0, step=0.02)
        served = yield self.answer(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        self.assertEqual(served.status, 400)
        self.assertEqual(self.running._site.refused_count, 0)


class FloodTests(FrontDoorTestCase):
    """Bad handshakes and bad API calls in bulk do not stop a good client."""

    use_tls = True
    service_options = {"handshake_deadline": 1.0, "max_connections": 200}

    @inlineCallbacks
    def test_flood(self) -> Any:
        bad: List[Deferred[Any]] = []
        for i in range(40):
            bad.append(self.raw(b"GARBAGE %d\r\n\r\n" % i))  # not even TLS
            bad.append(self.raw())  # silent
        for body in [b"[" * 100_000, b"{", b'{"tunnelId": true}']:
            bad.append(self.raw(api_request("DescribeTunnel", body), tls=True))
        bad.append(self.raw(b"GET /" + b"a" * (MAX_HEAD + 10) + b"\r\n", tls=True))
        flooding = gatherResults(bad)
        for _ in range(10):
            client = yield tunnelclient.connect(
                reactor, self.running, token="not-a-token", mode="source"
            )
            self.assertEqual(client.status, 401)
        _, source_token, destination_token = self.running.open_tunnel(["ssh"])
        source = yield tunnelclient.connect(reactor, self.running, token=source_token)
        self.addCleanup(tunnelclient.close_client, source)
        destination = yield tunnelclient.connect(
            reactor, self.running, mode="destination", token=destination_token
        )
        self.addCleanup(tunnelclient.close_client, destination)
        yield source.wait_messages(1)
        source.send_records(
            control_message(Message.STREAM_START, stream_id=1, service_id="ssh", connection_id=1)
        )
        source.send_records(*encode_data("ssh", 1, 1, b"through the flood"))
        messages: List[Message] = yield tunnelclient.within(
            reactor, destination.wait_messages(3), 5
        )
        self.assertEqual(messages[2].payload, b"through the flood")
        clients: Tuple[RawClient, ...] = tuple((yield flooding))
        received = yield tunnelclient.within(reactor, gatherResults([c.closed for c in clients]), 5)
        api_answers = [c.status for c in clients[-4:]]
        self.assertEqual(api_answers, [400, 400, 400, 431], received[-4:])
