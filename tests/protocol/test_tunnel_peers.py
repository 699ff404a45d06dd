"""
Tests for how a L{Tunnel} finds its peer's version (docs/compatibility.md,
"How the peer's version is found"): scripted conversations between our
tunnel and a peer that behaves as the V1, V2 or V3 protocol guide says,
without C{-y}.

The peers here are written from the guides, not from our rules:

 - a V1 peer knows neither service IDs nor connection IDs: it ignores those
   fields, sends none, has one stream at a time, and ignores message types
   it does not know (ConnectionStart, ConnectionReset);
 - a V2 peer keeps a stream per service ID, sends no connection ID, and
   answers a ConnectionStart or ConnectionReset with a StreamReset (the V3
   guide, "Backward compatibility between V2 and V3");
 - a V3 peer numbers connections and answers with their IDs.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.interfaces import TunnelConnection, Wait
from aws_localproxy.protocol.wire import Message, MessageDecoder, control_message, encode_message
from tests.fakes.local import FakeLocalConnection, FakeLocalSide
from tests.fakes.peer import FakePeer, ctl, data, service_ids, summary
from tests.fakes.tunnel import PeerTunnel, make_tunnel
from tests.support.logs import logs, texts

# -- the peer -----------------------------------------------------------------------


class App:
    """One application connection a guide peer opened (its local service's end)."""

    def __init__(self, service_id: str, stream_id: int, connection_id: int) -> None:
        self.service_id = service_id
        self.stream_id = stream_id
        self.connection_id = connection_id
        self.received = b""
        self.closed = False

    def __repr__(self) -> str:
        return "<App %r stream=%d conn=%d %r%s>" % (
            self.service_id,
            self.stream_id,
            self.connection_id,
            self.received,
            " closed" if self.closed else "",
        )


class GuidePeer:
    """
    A destination local proxy of one protocol version, as its guide describes
    it: what it does with each message our source sends, and what it sends
    back when its applications write or close.
    """

    def __init__(self, version: int) -> None:
        self.version = version
        self.decoder = MessageDecoder()
        #: What it sends, to be delivered to our tunnel.
        self.out: List[bytes] = []
        #: Every application connection it opened, oldest first.
        self.apps: List[App] = []
        #: (service ID as it keys streams) -> current stream ID.
        self.streams: Dict[str, int] = {}
        #: (service key, stream, connection ID) -> open application connection.
        self.open: Dict[Tuple[str, int, int], App] = {}

    # -- what it receives ----------------------------------------------------

    def receive(self, payload: bytes) -> None:
        for message in self.decoder.feed(payload):
            self._handle(message)

    def _key(self, message: Message) -> str:
        return "" if self.version == 1 else message.serviceId

    def _connection_id(self, message: Message) -> int:
        return message.connectionId if self.version == 3 else 0

    def _close_stream(self, key: str) -> None:
        for triple in [t for t in self.open if t[0] == key]:
            self.open.pop(triple).closed = True
        self.streams.pop(key, None)

    def _handle(self, message: Message) -> None:
        key = self._key(message)
        kind = message.type
        if kind == Message.STREAM_START:
            # A new stream replaces the current one (the guides).
            self._close_stream(key)
            self.streams[key] = message.streamId
            self._connect(message.serviceId, key, message.streamId, self._connection_id(message))
        elif kind == Message.DATA:
            if self.streams.get(key) != message.streamId:
                return
            app = self.open.get((key, message.streamId, self._connection_id(message)))
            if app is not None:
                app.received += message.payload
        elif kind == Message.STREAM_RESET:
            if self.streams.get(key) == message.streamId:
                self._close_stream(key)
        elif kind in (Message.CONNECTION_START, Message.CONNECTION_RESET):
            if self.version == 1:
                return  # a type it does not know: ignored
            if self.version == 2:
                # Not understood: the V2 peer ends the stream.
                stream_id = self.streams.get(key)
                if stream_id is not None:
                    self._close_stream(key)
                    self.out.append(
                        control_message(
                            Message.STREAM_RESET, stream_id=stream_id, service_id=message.serviceId
                        )
                    )
                return
            if self.streams.get(key) != message.streamId:
                return
            if kind == Message.CONNECTION_START:
                self._connect(message.serviceId, key, message.streamId, message.connectionId)
            else:
                app = self.open.pop((key, message.streamId, message.connectionId), None)
                if app is not None:
                    app.closed = True

    def _connect(self, service_id: str, key: str, stream_id: int, connection_id: int) -> None:
        app = App(service_id, stream_id, connection_id)
        self.apps.append(app)
        self.open[(key, stream_id, connection_id)] = app

    # -- what its applications do ----------------------------------------------

    def _fields(self, app: App) -> dict:
        return {
            "serviceId": "" if self.version == 1 else app.service_id,
            "streamId": app.stream_id,
            "connectionId": app.connection_id if self.version == 3 else 0,
        }

    def reply(self, app: App, payload: bytes) -> None:
        """The application writes C{payload}."""
        assert not app.closed, "a closed application connection does not write"
        self.out.append(
            encode_message(Message(type=Message.DATA, payload=payload, **self._fields(app)))
        )

    def hang_up(self, app: App) -> None:
        """The application closes its connection."""
        key = "" if self.version == 1 else app.service_id
        self.open.pop((key, app.stream_id, app.connection_id), None)
        app.closed = True
        fields = self._fields(app)
        if self.version == 3:
            kind = Message.CONNECTION_RESET
        else:
            kind = Message.STREAM_RESET
            fields["connectionId"] = 0
            self.streams.pop(key, None)
        self.out.append(
            control_message(
                kind,
                stream_id=fields["streamId"],
                service_id=fields["serviceId"],
                connection_id=fields["connectionId"],
            )
        )


class Client:
    """A client of our source's listener, and what became of it."""

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        self.local = FakeLocalConnection(service_id)
        self.connection: Optional[TunnelConnection] = None
        self.wait: Optional[Wait] = None
        self.refused = False

    def send(self, payload: bytes) -> None:
        assert self.connection is not None, "a held connection is not read"
        self.connection.data_received(payload)

    def hang_up(self) -> None:
        if self.connection is not None:
            self.connection.connection_lost()
        else:
            self.wait = None  # the I/O side forgets it


class Conversation:
    """
    Our source tunnel, the I/O side's holding (as L{SourceSide} does it,
    without sockets or clock) and a guide peer, relayed by an in-memory service.
    """

    def __init__(
        self,
        peer_version: int,
        tunnel_services: Tuple[str, ...],
        service_map: Dict[str, str],
        configured: PeerVersion = PeerVersion.V3,
    ) -> None:
        self.peer = GuidePeer(peer_version)
        self.sent: List[bytes] = []
        #: Every record our tunnel sent, delivered or not.
        self.history: List[bytes] = []
        self.tunnel = PeerTunnel(
            Mode.SOURCE,
            self,  # type: ignore[arg-type]
            FakeLocalSide(),
            service_map=service_map,
            peer_version=configured,
        )
        self.waiting: List[Client] = []
        self.tunnel.waiting_may_start = self.offer_waiting
        self.tunnel.session_started(SUBPROTOCOL_V3)
        self.tunnel.data_received(service_ids(*tunnel_services))

    # FakePeer's part: the tunnel's scheduler sends its records here.
    def send_record(self, record: bytes) -> None:
        self.sent.append(record)
        self.history.append(record)

    def connect(self, service_id: str) -> Client:
        client = Client(service_id)
        self._offer(client)
        return client

    def _offer(self, client: Client) -> None:
        answer = self.tunnel.local_connection_offered(client.service_id, client.local)
        if isinstance(answer, Wait):
            client.wait = answer
            if client not in self.waiting:
                self.waiting.append(client)
            return
        if client in self.waiting:
            self.waiting.remove(client)
        client.wait = None
        if answer is None:
            client.refused = True
            client.local.close()
        else:
            client.connection = answer

    def offer_waiting(self) -> None:
        for client in list(self.waiting):
            if client.wait is not None:
                self._offer(client)
            else:
                self.waiting.remove(client)

    def pump(self) -> None:
        """Deliver everything both sides sent, until both are quiet."""
        while self.sent or self.peer.out:
            sent, self.sent = self.sent, []
            for record in sent:
                self.peer.receive(record)
            out, self.peer.out = self.peer.out, []
            for record in out:
                self.tunnel.data_received(record)


ONE = ("SSH",)
ONE_MAP = {"SSH": "5555"}
NONE_MAP = {"": "5555"}


class FirstConnectionTests(SynchronousTestCase):
    """The first connection works with every version, whatever the tunnel's shape."""

    def check(self, peer_version: int, services: Tuple[str, ...], service_map: Dict[str, str]):
        talk = Conversation(peer_version, services, service_map)
        service_id = next(iter(service_map))
        client = talk.connect(service_id)
        client.send(b"hello")
        talk.pump()
        (app,) = talk.peer.apps
        self.assertEqual(app.received, b"hello")
        talk.peer.reply(app, b"welcome")
        talk.pump()
        self.assertEqual(client.local.data, b"welcome")
        client.send(b"more")
        talk.pump()
        self.assertEqual(app.received, b"hellomore")
        client.hang_up()
        talk.pump()
        self.assertTrue(app.closed)
        return talk

    def test_v1_one_service(self) -> None:
        """
        Part 5(a): a V1 destination on a tunnel with one service answers without
        a service ID; the answer reaches the client (it was dropped: a hang).
        """
        self.check(1, ONE, ONE_MAP)

    def test_v1_no_service(self) -> None:
        self.check(1, (), NONE_MAP)

    def test_v2_one_service(self) -> None:
        self.check(2, ONE, ONE_MAP)

    def test_v2_no_service(self) -> None:
        self.check(2, (), NONE_MAP)

    def test_v3_one_service(self) -> None:
        talk = self.check(3, ONE, ONE_MAP)
        self.assertEqual(talk.tunnel.peer_version, PeerVersion.V3)

    def test_v3_no_service(self) -> None:
        self.check(3, (), NONE_MAP)


class SilentFirstConnectionTests(SynchronousTestCase):
    """
    Part 5(b): a first client that connects and leaves without a byte (a port
    probe), then a real one.  The probe's end must reach every version of
    peer, or the next client's bytes go into the probe's application connection.
    """

    def check(self, peer_version: int, services: Tuple[str, ...], service_map: Dict[str, str]):
        talk = Conversation(peer_version, services, service_map)
        service_id = next(iter(service_map))
        probe = talk.connect(service_id)
        probe.hang_up()
        talk.pump()
        client = talk.connect(service_id)
        self.assertIsNotNone(client.connection)
        client.send(b"real request")
        talk.pump()
        first, second = talk.peer.apps
        self.assertEqual((first.received, first.closed), (b"", True))
        self.assertEqual(second.received, b"real request")
        talk.peer.reply(second, b"real answer")
        talk.pump()
        self.assertEqual(client.local.data, b"real answer")
        self.assertEqual(probe.local.data, b"")
        return talk

    def test_v1_one_service(self) -> None:
        self.check(1, ONE, ONE_MAP)

    def test_v1_no_service(self) -> None:
        """On main the probe's ConnectionReset is ignored and the bytes go to its app."""
        self.check(1, (), NONE_MAP)

    def test_v2_one_service(self) -> None:
        self.check(2, ONE, ONE_MAP)

    def test_v3_one_service(self) -> None:
        self.check(3, ONE, ONE_MAP)

    def test_stream_reset_logged(self) -> None:
        """The probe's end is a StreamReset, and the log says why."""
        talk = Conversation(3, ONE, ONE_MAP)
        probe = talk.connect("SSH")
        with logs() as captured:
            probe.hang_up()
        self.assertEqual(
            [summary(m) for m in MessageDecoder().feed(b"".join(talk.history))],
            # The reset names the connection as the start did: aws-c-iot takes a
            # message without one, after a start with one, for another version's
            # and reconnects its WebSocket.
            [("STREAM_START", "SSH", 1, 1), ("STREAM_RESET", "SSH", 1, 1)],
        )
        self.assertIn(
            "The peer has not shown its version yet: ending the stream of service id SSH "
            "with a stream reset, which every version understands",
            texts(captured, LogLevel.info),
        )


class SecondConnectionTests(SynchronousTestCase):
    """A second connection while the first is open waits until the peer shows its version."""

    def test_v3_burst(self) -> None:
        """
        A browser opens six connections at once towards a V3 peer: the first
        starts, five wait unread; the first answer shows V3 and all start.
        """
        talk = Conversation(3, ONE, ONE_MAP)
        clients = [talk.connect("SSH") for _ in range(6)]
        self.assertIsNotNone(clients[0].connection)
        self.assertEqual(
            [c.connection is None and c.wait is not None for c in clients[1:]], [True] * 5
        )
        clients[0].send(b"GET /0")
        talk.pump()
        (app0,) = talk.peer.apps
        talk.peer.reply(app0, b"200 /0")
        talk.pump()
        self.assertEqual(talk.waiting, [])
        for index, client in enumerate(clients[1:], 1):
            assert client.connection is not None
            client.send(b"GET /%d" % index)
        talk.pump()
        self.assertEqual(len(talk.peer.apps), 6)
        for index, app in enumerate(talk.peer.apps):
            self.assertEqual(app.received, b"GET /%d" % index)
            self.assertFalse(app.closed)
            talk.peer.reply(app, b"200 /%d" % index)
        talk.pump()
        self.assertEqual(clients[0].local.data, b"200 /0200 /0")
        for index, client in enumerate(clients[1:], 1):
            self.assertEqual(client.local.data, b"200 /%d" % index)
        sent = [summary(m) for m in MessageDecoder().feed(b"".join(talk.history))]
        self.assertEqual(
            [s[:4] for s in sent if s[0] != "DATA"],
            [("STREAM_START", "SSH", 1, 1)]
            + [("CONNECTION_START", "SSH", 1, n) for n in range(2, 7)],
        )

    def check_older(self, peer_version: int) -> None:
        talk = Conversation(peer_version, ONE, ONE_MAP)
        first = talk.connect("SSH")
        second = talk.connect("SSH")
        self.assertIsNotNone(second.wait)
        first.send(b"one")
        talk.pump()
        (app,) = talk.peer.apps
        with logs() as captured:
            talk.peer.reply(app, b"answer")
            talk.pump()
        # The V1/V2 rule: one connection at a time; the second is refused, the first goes on.
        self.assertTrue(second.refused)
        self.assertIn(
            "Refusing connection for service id SSH: simultaneous connections are not "
            "enabled towards a V2 peer",
            texts(captured, LogLevel.warn),
        )
        self.assertEqual(first.local.data, b"answer")
        self.assertEqual((app.received, app.closed), (b"one", False))
        self.assertEqual(len(talk.peer.apps), 1)

    def test_v1_second_refused(self) -> None:
        self.check_older(1)

    def test_v2_second_refused(self) -> None:
        """A V2 peer would end the whole stream on a ConnectionStart: none is sent."""
        self.check_older(2)

    def test_starts_when_the_first_ends(self) -> None:
        """
        The peer never shows its version, but the first connection ends: the
        waiting one starts a stream of its own, which every version takes.
        """
        for peer_version in (1, 2, 3):
            talk = Conversation(peer_version, ONE, ONE_MAP)
            first = talk.connect("SSH")
            second = talk.connect("SSH")
            first.hang_up()
            assert second.connection is not None
            second.send(b"second")
            talk.pump()
            one, two = talk.peer.apps
            self.assertEqual((one.received, one.closed), (b"", True))
            self.assertEqual((two.received, two.closed, two.stream_id), (b"second", False, 2))

    def test_waits_while_the_peer_is_silent(self) -> None:
        """A silent first connection keeps the others waiting (the I/O side's bound ends it)."""
        talk = Conversation(3, ONE, ONE_MAP)
        talk.connect("SSH")
        second = talk.connect("SSH")
        talk.pump()
        assert second.wait is not None
        self.assertIn("has not yet shown", second.wait.reason)
        self.assertEqual(len(talk.peer.apps), 1)

    def test_connection_reset_shows_v3(self) -> None:
        """A ConnectionReset with a connection ID shows V3 as well as DATA does."""
        talk = Conversation(3, ONE, ONE_MAP)
        first = talk.connect("SSH")
        second = talk.connect("SSH")
        talk.pump()
        talk.peer.hang_up(talk.peer.apps[0])
        talk.pump()
        self.assertTrue(first.local.closed)
        self.assertIsNotNone(second.connection)
        self.assertEqual(talk.tunnel.peer_version, PeerVersion.V3)

    def test_other_services_do_not_wait(self) -> None:
        """Each service's first connection starts its own stream at once."""
        talk = Conversation(3, ("SSH", "WEB"), {"SSH": "5555", "WEB": "8080"})
        self.assertIsNotNone(talk.connect("SSH").connection)
        self.assertIsNotNone(talk.connect("WEB").connection)

    def test_forced_format_never_waits(self) -> None:
        """-y V2 forces the format: a second connection is refused at once, as before."""
        talk = Conversation(2, ONE, ONE_MAP, configured=PeerVersion.V2)
        talk.connect("SSH")
        self.assertTrue(talk.connect("SSH").refused)

    def test_next_session_presumes_again(self) -> None:
        """What a session learnt ends with it: the peer may have changed."""
        talk = Conversation(3, ONE, ONE_MAP)
        first = talk.connect("SSH")
        first.send(b"x")
        talk.pump()
        talk.peer.reply(talk.peer.apps[0], b"y")
        talk.pump()
        self.assertIsNotNone(talk.connect("SSH").connection)
        talk.tunnel.session_ended()
        talk.tunnel.session_started(SUBPROTOCOL_V3)
        talk.tunnel.data_received(service_ids("SSH"))
        talk.connect("SSH")
        self.assertIsNotNone(talk.connect("SSH").wait)


class SeveralServicesTests(SynchronousTestCase):
    """A V1 peer on a tunnel with several services: one clear error line, no hang."""

    def test_source(self) -> None:
        talk = Conversation(1, ("SSH", "WEB"), {"SSH": "5555", "WEB": "8080"})
        client = talk.connect("SSH")
        client.send(b"hi")
        talk.pump()
        with logs() as captured:
            talk.peer.reply(talk.peer.apps[0], b"from v1")
            talk.peer.reply(talk.peer.apps[0], b"again")
            talk.pump()
        errors = texts(captured, LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn("a V1 peer can only use a tunnel with one service", errors[0])
        self.assertIn("(SSH, WEB)", errors[0])
        # The client is not left waiting: its stream is reset, its socket closed.
        self.assertTrue(client.local.closed)
        self.assertTrue(talk.peer.apps[0].closed)

    def test_destination(self) -> None:
        tunnel, sent = destination({"SSH": "22", "WEB": "80"}, ("SSH", "WEB"))
        with logs() as captured:
            tunnel.data_received(ctl(Message.STREAM_START, "", 1, 0))
        errors = texts(captured, LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn("a V1 peer can only use a tunnel with one service", errors[0])
        self.assertEqual(sent.take(), [("STREAM_RESET", "", 1, 0)])


# -- our destination with a V1 source (the console's browser SSH) ---------------------


def destination(service_map: Dict[str, str], services: Tuple[str, ...]):

    tunnel, peer, local = make_tunnel(Mode.DESTINATION, service_map)
    tunnel.session_started(SUBPROTOCOL_V3)
    tunnel.data_received(service_ids(*services))
    tunnel.local = local  # type: ignore[attr-defined]
    return tunnel, peer


class V1SourceTests(SynchronousTestCase):
    """
    Part 5(c): a V1 source sends no service ID and no connection ID; on a
    tunnel with one service it means that service (the V2 guide).
    """

    def check(self, service_map: Dict[str, str], services: Tuple[str, ...]) -> None:
        tunnel, peer = destination(service_map, services)
        local = tunnel.local  # type: ignore[attr-defined]
        tunnel.data_received(ctl(Message.STREAM_START, "", 1, 0) + data("", 1, 0, b"SSH-2.0-c"))
        ((server, app),) = local.connections
        self.assertEqual(app.data, b"SSH-2.0-c")
        server.data_received(b"SSH-2.0-s")
        server.connection_lost()
        # Replies carry no service ID either: the service closes a stream started
        # without one when a message of it carries one (the V2 guide).
        self.assertEqual(
            peer.take(), [("DATA", "", 1, 0, b"SSH-2.0-s"), ("STREAM_RESET", "", 1, 0)]
        )
        # The next stream works the same.
        tunnel.data_received(ctl(Message.STREAM_START, "", 2, 0) + data("", 2, 0, b"again"))
        self.assertEqual(local.connections[-1][1].data, b"again")

    def test_one_named_service(self) -> None:
        """-d SSH1=22 on a tunnel opened with services=SSH1."""
        self.check({"SSH1": "22"}, ("SSH1",))

    def test_one_service_v1_map(self) -> None:
        """-d 22 on a tunnel opened with services=SSH1."""
        self.check({"": "22"}, ("SSH1",))

    def test_no_service(self) -> None:
        """-d 22 on a tunnel without services."""
        self.check({"": "22"}, ())

    def test_v3_source_unchanged(self) -> None:
        """A source that names the service is answered with it, connection IDs and all."""
        tunnel, peer = destination({"SSH1": "22"}, ("SSH1",))
        local = tunnel.local  # type: ignore[attr-defined]
        tunnel.data_received(ctl(Message.STREAM_START, "SSH1", 1, 1))
        ((server, _),) = local.connections
        server.data_received(b"x")
        self.assertEqual(peer.take(), [("DATA", "SSH1", 1, 1, b"x")])


class RoutingTests(SynchronousTestCase):
    """What an empty service ID is routed to."""

    def test_service_messages_keep_their_meaning(self) -> None:
        """A late SERVICE_IDS without a service ID still sets the session up again."""
        talk = Conversation(3, ONE, ONE_MAP)
        client = talk.connect("SSH")
        talk.tunnel.data_received(service_ids("SSH"))
        self.assertTrue(client.local.closed)


class AnnouncementTests(SynchronousTestCase):
    """
    Our destination shows a V3 source at once that it speaks V3 (an empty DATA
    of the stream's first connection), so that our source's next connections
    need not wait for an application that does not speak first.
    """

    def destination(self) -> Tuple[PeerTunnel, FakePeer, FakeLocalSide]:

        tunnel, peer, local = make_tunnel(Mode.DESTINATION, {"SSH1": "22"}, announce_version=True)
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("SSH1"))
        return tunnel, peer, local

    def test_v3_start_announced(self) -> None:
        tunnel, peer, _ = self.destination()
        tunnel.data_received(ctl(Message.STREAM_START, "SSH1", 1, 1))
        self.assertEqual(peer.take(), [("DATA", "SSH1", 1, 1, b"")])
        tunnel.data_received(ctl(Message.CONNECTION_START, "SSH1", 1, 2))
        self.assertEqual(peer.take(), [], "once a stream is enough")

    def test_older_starts_not_announced(self) -> None:
        """A V1 or V2 source (no connection ID) is sent nothing it would not send."""
        for start in (ctl(Message.STREAM_START, "SSH1", 1, 0), ctl(Message.STREAM_START, "", 1)):
            tunnel, peer, _ = self.destination()
            tunnel.data_received(start)
            self.assertEqual(peer.take(), [])

    def test_failed_connect_not_announced(self) -> None:
        tunnel, peer, local = self.destination()
        local.fail_synchronously = True
        tunnel.data_received(ctl(Message.STREAM_START, "SSH1", 1, 1))
        self.assertNotIn(("DATA", "SSH1", 1, 1, b""), peer.take())

    def test_our_source_learns_at_once(self) -> None:
        """Our source and our destination: the second connection starts without a byte."""
        destination, dpeer, dlocal = self.destination()
        talk = Conversation(3, ("SSH1",), {"SSH1": "5555"})
        first = talk.connect("SSH1")
        second = talk.connect("SSH1")
        self.assertIsNotNone(second.wait)
        for record in talk.sent:
            destination.data_received(record)
        talk.sent.clear()
        for record in dpeer.records:
            talk.tunnel.data_received(record)
        self.assertIsNotNone(second.connection)
        self.assertEqual((first.local.data, first.local.closed), (b"", False))
        self.assertEqual(talk.tunnel.peer_version, PeerVersion.V3)
        for record in talk.sent:
            destination.data_received(record)
        self.assertEqual([c.connection_id for c, _ in dlocal.connections], [1, 2])
