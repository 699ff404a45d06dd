"""
L{aws_localproxy.proxy.service.LocalProxyService} from start to exit, on a
MemoryReactorClock: the exit code and the lines a user sees for every way a
proxy ends (a start that cannot work, a refused token, retries used up, a
fatal error, a stop, a fatal error during a stop, the end of ``--stdio``
including its WebSocket dropping mid-connection), the hooks an embedding
application gets, and what the proxy's settings change in its sessions.

The WebSocket is scripted: the service's endpoint is replaced by one whose
attempts the test plays (L{FakeEndpoint}), and the test reports the
WebSocket's events to the connector as Autobahn would, through the real
factory's C{events}.  Everything else is the proxy's own: its connector,
tunnel, local side and metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import stdio
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings import Settings
from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.wire import Message, decode_all
from aws_localproxy.proxy import service as service_module
from aws_localproxy.proxy.service import (
    STOP_FLUSH_TIMEOUT,
    ClosedTunnel,
    ConnectedTunnel,
    LocalProxyService,
    run_proxy,
)
from tests.fakes.endpoints import FakeEndpoint
from tests.fakes.peer import ctl, data, service_ids, summary
from tests.fakes.websocket import FakeProtocol, closed
from tests.support.logs import logs, texts

STOPPING = (1000, "local proxy stopping")
TOKEN = "c" * 40


def source_config(**changes: Any) -> ProxyConfig:
    values: Dict[str, Any] = dict(
        mode=Mode.SOURCE,
        access_token="t" * 8,
        endpoint_host="127.0.0.1",
        client_token=TOKEN,
    )
    values.update(changes)
    return ProxyConfig(**values)


def destination_config(**changes: Any) -> ProxyConfig:
    return source_config(mode=Mode.DESTINATION, **changes)


def settings(**changes: Any) -> Settings:
    return dataclasses.replace(Settings(), **changes)


def sent(protocol: FakeProtocol) -> List[tuple]:
    """Every message the proxy wrote to C{protocol}, as L{summary} tuples; then forgets them."""
    messages = [summary(m) for frame in protocol.sent for m in decode_all(frame)]
    protocol.sent.clear()
    return messages


class ListeningPort:
    """The port a L{GivenServerEndpoint} listens on."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listening = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", self.port)

    def stopListening(self) -> None:
        self.listening = False


class GivenServerEndpoint:
    """
    A server endpoint an application gives a source for one service ID;
    it listens at once on C{port} (or fails with C{error}).
    """

    def __init__(self, port: int = 40001, error: Optional[Exception] = None) -> None:
        self.port = ListeningPort(port)
        self.error = error
        self.factory: Any = None

    def listen(self, factory: Any) -> Deferred[Any]:
        if self.error is not None:
            return fail(self.error)
        self.factory = factory
        return succeed(self.port)

    def accept(self) -> Tuple[Protocol, StringTransport]:
        """A local client connects: its protocol and transport."""
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def __repr__(self) -> str:
        return "<given endpoint>"


class FakeStandardIO(StringTransport):
    """
    Standard input and output of a ``--stdio`` proxy: a transport whose
    close is reported to the protocol on the next reactor turn, as
    Twisted's C{StandardIO} does once stdout is flushed.
    """

    built: List["FakeStandardIO"] = []

    def __init__(self, protocol: Protocol, reactor: Any = None) -> None:
        super().__init__()
        self.protocol = protocol
        self.reactor = reactor
        FakeStandardIO.built.append(self)
        protocol.makeConnection(self)

    def loseConnection(self) -> None:
        if not self.disconnecting:
            super().loseConnection()
            self.reactor.callLater(0, self.protocol.connectionLost, Failure(ConnectionDone()))

    def end_of_input(self) -> None:
        """EOF on standard input."""
        self.protocol.readConnectionLost()  # type: ignore[attr-defined]


class Harness:
    """
    One proxy on a memory reactor whose attempts to reach the service the
    test scripts (L{FakeEndpoint}); the WebSocket's events are played to
    its connector through the factory the proxy built.
    """

    def __init__(self, test: SynchronousTestCase, config: ProxyConfig, **options: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        #: The (reactor, config) each endpoint was built with.
        self.endpoint_built: List[Tuple[Any, ProxyConfig]] = []

        def endpoint_for(reactor: Any, config: ProxyConfig) -> FakeEndpoint:
            self.endpoint_built.append((reactor, config))
            return self.endpoint

        test.patch(service_module, "websocket_endpoint", endpoint_for)
        FakeStandardIO.built = []
        test.patch(stdio, "StandardIO", FakeStandardIO)
        self.proxy = LocalProxyService(config, self.reactor, **options)
        self.codes: List[int] = []
        self.proxy.when_finished.addCallback(self.codes.append)

    def start(self, *attempts: object) -> None:
        """Start the proxy; C{attempts} are its first connect attempts' results."""
        self.endpoint.results = list(attempts)
        self.proxy.startService()

    def open(self, protocol: FakeProtocol, *ids: str, subprotocol: str = SUBPROTOCOL_V3) -> None:
        """The upgrade succeeded; the service sends SERVICE_IDS C{ids} (V1: none)."""
        protocol.state = FakeProtocol.STATE_OPEN
        protocol.factory.events.session_opened(protocol, subprotocol)
        if subprotocol != SUBPROTOCOL_V1:
            protocol.deliver(service_ids(*ids))

    def lose(self, protocol: FakeProtocol, **outcome: Any) -> None:
        """The WebSocket is gone (an unclean drop of an open one unless C{outcome} says)."""
        protocol.state = FakeProtocol.STATE_CLOSED
        protocol.factory.events.session_closed(protocol, closed(**outcome))


class StartTests(SynchronousTestCase):
    """A proxy that cannot start exits 1, saying why."""

    def test_client_token_file_unusable(self) -> None:
        path = self.mktemp() + "/missing/client-token"
        h = Harness(self, source_config(client_token=None, client_token_file=path))
        connected = h.proxy.connected
        with logs() as lines:
            h.start()
        self.assertEqual(h.codes, [1])
        self.assertEqual(
            texts(lines, LogLevel.critical),
            [f"Cannot create the client token file {path}: No such file or directory"],
        )
        self.assertEqual(h.endpoint_built, [])
        self.assertEqual(
            str(self.failureResultOf(connected, RuntimeError).value),
            "the local proxy ended (exit code 1)",
        )

    def test_endpoint_unusable(self) -> None:
        """A web proxy URL (or CA directory) that cannot be used: its error, exit 1."""
        proxy = LocalProxyService(source_config(web_proxy="http://[::1"), MemoryReactorClock())
        codes: List[int] = []
        proxy.when_finished.addCallback(codes.append)
        with logs() as lines:
            proxy.startService()
        self.assertEqual(codes, [1])
        self.assertEqual(
            texts(lines, LogLevel.critical), ["Invalid IPv6 address in URL: missing closing ']'"]
        )
        self.successResultOf(proxy.stopService())

    def test_connects_with_its_reactor_and_configuration(self) -> None:
        config = source_config()
        h = Harness(self, config)
        h.start()
        self.assertEqual(h.endpoint_built, [(h.reactor, config)])
        self.assertEqual(h.endpoint.attempts, 1)

    def test_the_configured_client_token_is_sent(self) -> None:
        """The client token of the configuration, as given, on every attempt."""
        secrets: List[str] = []
        h = Harness(self, source_config(), on_secret=secrets.append)
        protocol = FakeProtocol()
        h.start(protocol)
        self.assertEqual(h.proxy.client_token, TOKEN)
        self.assertEqual(protocol.factory.request_headers["client-token"], TOKEN)
        self.assertEqual(secrets, [])

    def test_a_made_up_client_token_is_a_secret(self) -> None:
        """Without one, the proxy makes one up and hands it to on_secret before sending it."""
        secrets: List[str] = []
        h = Harness(self, source_config(client_token=None), on_secret=secrets.append)
        self.assertIsNone(h.proxy.client_token)
        protocol = FakeProtocol()
        h.start(protocol)
        token = h.proxy.client_token
        assert token is not None
        self.assertEqual(secrets, [token])
        self.assertEqual(protocol.factory.request_headers["client-token"], token)


class ExitTests(SynchronousTestCase):
    """How a running proxy ends, as its exit code says."""

    def test_tunnel_closed_by_the_service(self) -> None:
        h = Harness(self, source_config())
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol)
        h.lose(protocol, was_clean=True, code=1000, reason="closed", closed_by_service=True)
        self.assertEqual(h.codes, [0])

    def test_token_refused(self) -> None:
        h = Harness(self, source_config())
        protocol = FakeProtocol()
        h.start(protocol)
        connected = h.proxy.connected
        h.lose(protocol, was_open=False, http_status=401, http_status_line="HTTP/1.1 401 No")
        self.assertEqual(h.codes, [1])
        self.assertEqual(
            str(self.failureResultOf(connected, RuntimeError).value),
            "the local proxy ended (exit code 1)",
        )

    def test_retries_from_the_settings(self) -> None:
        """websocket.connect_retry_count retries, websocket.retry_delay_ms apart, then exit 1."""
        h = Harness(
            self, source_config(settings=settings(ws_connect_retry_count=2, ws_retry_delay_ms=1500))
        )
        h.start()
        h.reactor.advance(1.499)
        self.assertEqual(h.endpoint.attempts, 1)
        h.reactor.advance(0.001)
        self.assertEqual(h.endpoint.attempts, 2)
        h.reactor.advance(1.5)
        self.assertEqual((h.endpoint.attempts, h.codes), (3, [1]))

    def test_drop_reconnects_at_once(self) -> None:
        h = Harness(self, source_config())
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol)
        h.lose(protocol)
        self.assertEqual((h.endpoint.attempts, h.codes), (2, []))

    def test_drop_without_reconnect(self) -> None:
        """websocket.reconnect_on_data_error false: a dropped session is the end, exit 1."""
        h = Harness(self, source_config(settings=settings(ws_reconnect_on_data_error=False)))
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol)
        h.lose(protocol)
        self.assertEqual((h.endpoint.attempts, h.codes), (1, [1]))

    def test_source_cannot_listen(self) -> None:
        """A listener that cannot be opened is fatal: exit 1, its error logged."""
        given = GivenServerEndpoint(error=CannotListenError("127.0.0.1", 22, OSError("in use")))
        h = Harness(
            self,
            source_config(settings=settings(tcp_connection_retry_count=0)),
            source_endpoints={"ssh": given},
        )
        protocol = FakeProtocol()
        h.start(protocol)
        with logs() as lines:
            h.open(protocol, "ssh")
        self.assertEqual(protocol.dropped, [True])
        self.assertEqual(
            texts(lines, LogLevel.critical),
            ["Source local proxy fails to listen on <given endpoint> for service id ssh"],
        )
        h.lose(protocol)
        self.assertEqual(h.codes, [1])

    def test_metrics_page_cannot_listen(self) -> None:
        """The metrics port cannot be opened: fatal, exit 1."""
        h = Harness(self, source_config(metrics_port=9100))

        def refuse(port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
            raise CannotListenError(interface, port, OSError("in use"))

        h.reactor.listenTCP = refuse  # type: ignore[method-assign]
        cancelled: List[bool] = []
        h.start(Deferred(lambda _: cancelled.append(True)))
        self.assertEqual((h.codes, cancelled), ([1], [True]))

    def test_a_failing_connector_still_exits_one(self) -> None:
        """
        Should the connector's end ever come as a failure (a bug), the proxy
        logs it and exits 1 all the same.
        """
        h = Harness(self, source_config())
        protocol = FakeProtocol()
        h.start(protocol)
        with logs() as lines:
            protocol.factory.events.finished.errback(RuntimeError("a bug"))
        self.assertEqual(h.codes, [1])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        (critical,) = texts(lines, LogLevel.critical)
        self.assertEqual(critical.splitlines()[0], "The local proxy failed")

    def test_listeners_closed_at_the_end(self) -> None:
        """A source's listeners close when the proxy ends (not only when it is stopped)."""
        given = GivenServerEndpoint()
        h = Harness(self, source_config(), source_endpoints={"ssh": given})
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        self.assertTrue(given.port.listening)
        h.lose(protocol, was_clean=True, code=1000, closed_by_service=True)
        self.assertEqual(h.codes, [0])
        self.assertFalse(given.port.listening)


class StopTests(SynchronousTestCase):
    """stopService: what a SIGTERM or an embedding application's stop does."""

    def test_resets_then_close_frame_then_exit_zero(self) -> None:
        """
        An open session's connections are reset, the close frame follows
        once that is written (at most STOP_FLUSH_TIMEOUT seconds), the stop
        completes once the WebSocket is closed: exit 0.
        """
        given = GivenServerEndpoint()
        h = Harness(self, source_config(), source_endpoints={"ssh": given})
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        client, client_transport = given.accept()
        scheduler = h.proxy.tunnel.scheduler  # type: ignore[union-attr]
        assert scheduler is not None
        scheduler.pauseProducing()  # the WebSocket takes nothing for now
        client.dataReceived(b"last bytes")
        self.assertEqual([m[0] for m in sent(protocol)], ["STREAM_START"])
        stopped = h.proxy.stopService()
        self.assertNoResult(stopped)
        self.assertFalse(given.port.listening)
        h.reactor.advance(STOP_FLUSH_TIMEOUT - 0.001)
        self.assertEqual(protocol.closed_with, [])
        scheduler.resumeProducing()
        self.assertEqual([m[0] for m in sent(protocol)], ["DATA", "STREAM_RESET"])
        self.assertTrue(client_transport.disconnecting)
        self.assertEqual(protocol.closed_with, [STOPPING])
        self.assertNoResult(stopped)
        h.lose(protocol, was_clean=True, code=1000)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(h.codes, [0])

    def test_flush_bound(self) -> None:
        """A WebSocket that takes nothing: the close frame goes after STOP_FLUSH_TIMEOUT."""
        given = GivenServerEndpoint()
        h = Harness(self, source_config(), source_endpoints={"ssh": given})
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        given.accept()[0].dataReceived(b"never sent")
        h.proxy.tunnel.scheduler.pauseProducing()  # type: ignore[union-attr]
        h.proxy.stopService()
        h.reactor.advance(STOP_FLUSH_TIMEOUT - 0.001)
        self.assertEqual(protocol.closed_with, [])
        h.reactor.advance(0.001)
        self.assertEqual(protocol.closed_with, [STOPPING])

    def test_stop_while_connecting(self) -> None:
        """Stopped before any session: the attempt is cancelled, exit 0, nothing more."""
        h = Harness(self, source_config())
        cancelled: List[bool] = []
        h.start(Deferred(lambda _: cancelled.append(True)))
        connected = h.proxy.connected
        self.assertIsNone(self.successResultOf(h.proxy.stopService()))
        self.assertEqual((h.codes, cancelled), ([0], [True]))
        self.failureResultOf(connected, RuntimeError)
        h.reactor.advance(60)
        self.assertEqual(h.endpoint.attempts, 1)

    def test_stop_racing_a_reconnect(self) -> None:
        """
        The session dropped and the proxy is reconnecting when it is
        stopped: the reconnect is abandoned, exit 0, no attempt follows.
        """
        h = Harness(self, source_config())
        protocol = FakeProtocol()
        cancelled: List[bool] = []
        h.start(protocol, Deferred(lambda _: cancelled.append(True)))
        h.open(protocol)
        h.lose(protocol)
        self.assertEqual(h.endpoint.attempts, 2)
        self.successResultOf(h.proxy.stopService())
        self.assertEqual((h.codes, cancelled), ([0], [True]))
        h.reactor.advance(60)
        self.assertEqual(h.endpoint.attempts, 2)

    def test_stop_while_waiting_to_retry_after_a_drop(self) -> None:
        h = Harness(self, source_config())
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol)
        h.lose(protocol)  # the reconnect is refused: a retry is timed
        self.successResultOf(h.proxy.stopService())
        self.assertEqual(h.codes, [0])
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_fatal_error_during_the_stop(self) -> None:
        """
        A fatal error while the stop waits for the last resets (here: the
        service's SERVICE_IDS cannot work) is not turned into a clean exit:
        the stop completes, the exit code is 1.
        """
        given = GivenServerEndpoint()
        h = Harness(self, source_config(), source_endpoints={"ssh": given})
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        given.accept()[0].dataReceived(b"pending")
        h.proxy.tunnel.scheduler.pauseProducing()  # type: ignore[union-attr]
        stopped = h.proxy.stopService()
        with logs() as lines:
            protocol.factory.events.fail(RuntimeError("Cannot serve metrics"))
        self.assertEqual(texts(lines, LogLevel.critical), ["Cannot serve metrics"])
        self.assertEqual((protocol.dropped, protocol.closed_with), ([True], []))
        h.lose(protocol)
        self.successResultOf(stopped)
        self.assertEqual(h.codes, [1])


class StdioTests(SynchronousTestCase):
    """
    How a ``--stdio`` proxy (``ssh -o ProxyCommand``) ends, as the exit
    code ssh sees says: 0 once its connection ended and what was read was
    sent; 1 when the WebSocket dropped while the connection was open (a
    reconnect cannot carry it over: ssh must not take the cut for a clean
    end).  The reference has no --stdio; its connections are reset when
    the WebSocket drops, the nearest to this.
    """

    def started(self, **changes: Any) -> Tuple[Harness, FakeProtocol, FakeStandardIO]:
        h = Harness(self, source_config(stdio=True, **changes))
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        (standard_io,) = FakeStandardIO.built
        ((kind, service_id, self.stream_id, _),) = sent(protocol)
        self.assertEqual((kind, service_id), ("STREAM_START", "ssh"))
        return h, protocol, standard_io

    def test_eof_sends_the_rest_then_exits_zero(self) -> None:
        h, protocol, standard_io = self.started()
        standard_io.protocol.dataReceived(b"the last line\n")
        standard_io.end_of_input()
        self.assertEqual(
            [(m[0], m[-1]) if m[0] == "DATA" else m[0] for m in sent(protocol)],
            [("DATA", b"the last line\n"), "STREAM_RESET"],
        )
        self.assertEqual(protocol.closed_with, [])
        h.reactor.advance(0)  # stdout closed
        h.reactor.advance(0)  # the end is taken, out of the tunnel's call
        self.assertEqual(protocol.closed_with, [STOPPING])
        h.lose(protocol, was_clean=True, code=1000)
        self.assertEqual(h.codes, [0])

    def test_eof_waits_for_a_full_websocket(self) -> None:
        """The WebSocket takes nothing for now: the close frame waits for the last bytes."""
        h, protocol, standard_io = self.started()
        scheduler = h.proxy.tunnel.scheduler  # type: ignore[union-attr]
        scheduler.pauseProducing()
        standard_io.protocol.dataReceived(b"the last line\n")
        standard_io.end_of_input()
        h.reactor.advance(0)
        h.reactor.advance(0)
        self.assertEqual((protocol.closed_with, protocol.sent), ([], []))
        scheduler.resumeProducing()
        self.assertEqual([m[0] for m in sent(protocol)], ["DATA", "STREAM_RESET"])
        self.assertEqual(protocol.closed_with, [STOPPING])

    def test_peer_reset_exits_zero(self) -> None:
        h, protocol, standard_io = self.started()
        protocol.deliver(
            data("ssh", self.stream_id, 1, b"bye\n")
            + ctl(Message.STREAM_RESET, "ssh", self.stream_id)
        )
        self.assertEqual(standard_io.value(), b"bye\n")
        h.reactor.advance(0)
        h.reactor.advance(0)
        self.assertEqual(protocol.closed_with, [STOPPING])
        h.lose(protocol, was_clean=True, code=1000)
        self.assertEqual(h.codes, [0])

    def test_websocket_drop_mid_connection_exits_one(self) -> None:
        """The WebSocket drops with the connection open: stdout closed, exit 1, one line why."""
        h, protocol, standard_io = self.started()
        with logs() as lines:
            h.lose(protocol)  # reconnects at once (refused: nothing scripted)
            self.assertTrue(standard_io.disconnecting)
            self.assertEqual(h.codes, [])
            h.reactor.advance(0)
            h.reactor.advance(0)
        self.assertEqual(h.codes, [1])
        self.assertEqual(
            texts(lines, LogLevel.critical),
            ["The tunnel's session ended while the --stdio connection was open"],
        )
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        self.assertEqual(h.endpoint.attempts, 2)

    def test_websocket_drop_without_reconnect_exits_one(self) -> None:
        h, protocol, standard_io = self.started(settings=settings(ws_reconnect_on_data_error=False))
        h.lose(protocol)
        h.reactor.advance(0)
        h.reactor.advance(0)
        self.assertEqual((h.codes, h.endpoint.attempts), ([1], 1))
        self.assertTrue(standard_io.disconnecting)

    def test_websocket_drop_while_the_reconnect_is_under_way(self) -> None:
        """The reconnect's attempt is under way when the end is taken: cancelled, exit 1."""
        h, protocol, standard_io = self.started()
        cancelled: List[bool] = []
        h.endpoint.results = [Deferred(lambda _: cancelled.append(True))]
        h.lose(protocol)
        h.reactor.advance(0)
        h.reactor.advance(0)
        self.assertEqual((h.codes, cancelled), ([1], [True]))


class HookTests(SynchronousTestCase):
    """What an embedding application hears of each session."""

    def test_connected_and_closed_for_each_session(self) -> None:
        connects: List[ConnectedTunnel] = []
        closes: List[ClosedTunnel] = []
        given = GivenServerEndpoint()
        h = Harness(
            self,
            source_config(),
            source_endpoints={"ssh": given},
            on_connected=connects.append,
            on_closed=closes.append,
        )
        first, second = FakeProtocol(), FakeProtocol()
        h.start(first, second)
        connected = h.proxy.connected
        h.open(first, "ssh")
        h.lose(first, reason="ping timeout")
        h.open(second, "ssh")
        h.lose(second, was_clean=True, code=1000, reason="closed", closed_by_service=True)
        self.assertEqual(
            [(c.subprotocol, c.service_ids, c.endpoints, c.session) for c in connects],
            [
                (SUBPROTOCOL_V3, ("ssh",), {"ssh": "<given endpoint>"}, 1),
                (SUBPROTOCOL_V3, ("ssh",), {"ssh": "<given endpoint>"}, 2),
            ],
        )
        self.assertIs(self.successResultOf(connected), connects[0])
        self.assertEqual(
            [
                (c.subprotocol, c.service_ids, c.reason, c.code, c.closed_by_service, c.session)
                for c in closes
            ],
            [
                (SUBPROTOCOL_V3, ("ssh",), "ping timeout", 1006, False, 1),
                (SUBPROTOCOL_V3, ("ssh",), "closed", 1000, True, 2),
            ],
        )

    def test_v1_session(self) -> None:
        """A V1 service names no service IDs: the configured one is the session's."""
        connects: List[ConnectedTunnel] = []
        h = Harness(self, source_config(service_map={"": "5555"}), on_connected=connects.append)
        protocol = FakeProtocol()
        protocol.websocket_protocol_in_use = SUBPROTOCOL_V1
        h.start(protocol)
        h.open(protocol, subprotocol=SUBPROTOCOL_V1)
        self.assertEqual([(c.subprotocol, c.session) for c in connects], [(SUBPROTOCOL_V1, 1)])

    def test_closed_before_its_service_ids(self) -> None:
        """A session that ended before its SERVICE_IDS, first or later, has none."""
        closes: List[ClosedTunnel] = []
        h = Harness(self, source_config(), on_closed=closes.append)
        first, second, third = FakeProtocol(), FakeProtocol(), FakeProtocol()
        h.start(first, second, third)
        for protocol, ids in [(first, None), (second, "ssh"), (third, None)]:
            protocol.state = FakeProtocol.STATE_OPEN
            protocol.factory.events.session_opened(protocol, SUBPROTOCOL_V3)
            if ids is not None:
                protocol.deliver(service_ids(ids))
            h.lose(protocol, reason="gone")
        self.assertEqual(
            [(c.subprotocol, c.service_ids, c.reason, c.session) for c in closes],
            [("", (), "gone", 1), (SUBPROTOCOL_V3, ("ssh",), "gone", 2), ("", (), "gone", 3)],
        )

    def test_failing_connected_hook(self) -> None:
        """An application's hook that raises is logged; the proxy carries on."""

        def hook(connected: ConnectedTunnel) -> None:
            raise ValueError("the application's bug")

        h = Harness(self, source_config(), on_connected=hook)
        protocol = FakeProtocol()
        h.start(protocol)
        connected = h.proxy.connected
        with logs() as lines:
            h.open(protocol, "ssh")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        (critical,) = texts(lines, LogLevel.critical)
        self.assertEqual(critical.splitlines()[0], "The on_connected hook failed")
        self.assertEqual(self.successResultOf(connected).service_ids, ("ssh",))
        self.assertEqual((protocol.dropped, h.codes), ([], []))


class LocalSideTests(SynchronousTestCase):
    """A source's listeners and a destination's services, as an application reaches them."""

    def test_source_listeners(self) -> None:
        given = GivenServerEndpoint(port=40007)
        h = Harness(self, source_config(), source_endpoints={"ssh": given})
        protocol = FakeProtocol()
        h.start(protocol)
        port = h.proxy.listening_port("ssh")
        address = h.proxy.listening_address("ssh")
        self.assertEqual(h.proxy.bound_ports(), {})
        h.open(protocol, "ssh")
        self.assertEqual(self.successResultOf(port), 40007)
        self.assertEqual(self.successResultOf(address), IPv4Address("TCP", "127.0.0.1", 40007))
        self.assertEqual(h.proxy.bound_ports(), {"ssh": 40007})

    def test_only_a_running_source_listens(self) -> None:
        for proxy in [
            LocalProxyService(source_config(), MemoryReactorClock()),
            LocalProxyService(destination_config(service_map={"ssh": "22"}), MemoryReactorClock()),
        ]:
            for method in (proxy.listening_port, proxy.listening_address):
                error = self.assertRaises(RuntimeError, method, "ssh")
                self.assertEqual(str(error), "only a running source local proxy listens")
            self.assertEqual(proxy.bound_ports(), {})

    def test_destination_factory_serves_a_stream(self) -> None:
        """
        A destination's service ID served by a factory in this process (no
        TCP port): a stream's start makes a protocol of that factory, joined
        to the proxy through a socket pair the reactor adopts.
        """
        made: List[Protocol] = []

        class Served(Protocol):
            def connectionMade(self) -> None:
                made.append(self)

        h = Harness(
            self, destination_config(), destination_factories={"ssh": Factory.forProtocol(Served)}
        )

        def adopt(descriptor: int, family: int, factory: Any) -> None:
            factory.buildProtocol(None).makeConnection(StringTransport())

        h.reactor.adoptStreamConnection = adopt  # type: ignore[method-assign]
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        self.assertEqual(made, [])
        protocol.deliver(ctl(Message.STREAM_START, "ssh", 1, 1))
        self.assertEqual(len(made), 1)
        self.assertEqual((h.reactor.tcpClients, h.codes), ([], []))

    def test_misplaced_endpoints(self) -> None:
        """Endpoints for the other mode, or for --stdio, are refused at once, saying so."""
        reactor = MemoryReactorClock()
        for config, options, message in [
            (
                source_config(),
                {"destination_factories": {"ssh": Factory()}},
                "destination factories and endpoints need a destination local proxy",
            ),
            (
                source_config(),
                {"destination_endpoints": {"ssh": object()}},
                "destination factories and endpoints need a destination local proxy",
            ),
            (
                destination_config(),
                {"source_endpoints": {"ssh": object()}},
                "source endpoints need a source local proxy",
            ),
            (
                source_config(stdio=True),
                {"source_endpoints": {"ssh": object()}},
                "source endpoints cannot be used with stdio",
            ),
        ]:
            error = self.assertRaises(ValueError, LocalProxyService, config, reactor, **options)
            self.assertEqual(str(error), message)
        LocalProxyService(destination_config(), reactor, destination_endpoints={"a": object()})
        LocalProxyService(source_config(), reactor, source_endpoints={"a": object()})
        LocalProxyService(source_config(stdio=True), reactor)


class RunProxyTests(SynchronousTestCase):
    def test_runs_until_the_end_and_stops_at_shutdown(self) -> None:
        """
        run_proxy starts the proxy (its made-up client token told to
        on_secret first), stops it before the reactor shuts down, and fires
        with the exit code.
        """
        reactor = MemoryReactorClock()
        endpoint = FakeEndpoint()
        cancelled: List[bool] = []
        endpoint.results = [Deferred(lambda _: cancelled.append(True))]
        built: List[Any] = []

        def endpoint_for(reactor: Any, config: ProxyConfig) -> FakeEndpoint:
            built.append(reactor)
            return endpoint

        self.patch(service_module, "websocket_endpoint", endpoint_for)
        secrets: List[str] = []
        finished = run_proxy(reactor, source_config(client_token=None), on_secret=secrets.append)
        self.assertEqual((endpoint.attempts, len(secrets), built), (1, 1, [reactor]))
        self.assertNoResult(finished)
        ((stop, args, kwargs),) = reactor.triggers["before"]["shutdown"]
        stop(*args, **kwargs)
        self.assertEqual((self.successResultOf(finished), cancelled), (0, [True]))


class SettingsTests(SynchronousTestCase):
    """What the proxy's settings change in its sessions, as the peer or a local client sees it."""

    def source(self, **changes: Any) -> Tuple[Harness, FakeProtocol, GivenServerEndpoint]:
        given = GivenServerEndpoint()
        h = Harness(self, source_config(**changes), source_endpoints={"ssh": given})
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        return h, protocol, given

    def first_connection(self, protocol: FakeProtocol, given: GivenServerEndpoint) -> Protocol:
        """
        A first local connection, to which the peer answers (so it is known
        to take several connections a stream); what was sent is forgotten.
        """
        client, _ = given.accept()
        ((_, _, stream_id, _),) = sent(protocol)
        protocol.deliver(data("ssh", stream_id, 1, b"hello"))
        return client

    def test_max_active_connections(self) -> None:
        h, protocol, given = self.source(settings=settings(tcp_max_active_connections=1))
        self.first_connection(protocol, given)
        _, second = given.accept()
        self.assertTrue(second.disconnecting)
        self.assertEqual(sent(protocol), [])

    def test_max_payload_size(self) -> None:
        """message.max_payload_size: what a local client sends goes in DATA of at most that."""
        h, protocol, given = self.source(settings=settings(max_payload_size=1000))
        client, _ = given.accept()
        client.dataReceived(b"x" * 2500)
        self.assertEqual([len(m[-1]) for m in sent(protocol) if m[0] == "DATA"], [1000, 1000, 500])

    def test_forced_peer_version(self) -> None:
        """-y 2: the peer is spoken to in V2's format (no connection IDs)."""
        from aws_localproxy.protocol.constants import PeerVersion

        h, protocol, given = self.source(peer_version=PeerVersion.V2)
        given.accept()[0].dataReceived(b"x")
        self.assertEqual([m[3] for m in sent(protocol)], [0, 0])

    def test_config_dir_maps_service_ids(self) -> None:
        """--config-dir files map the service IDs the tunnel has to local endpoints."""
        connects: List[ConnectedTunnel] = []
        h = Harness(
            self,
            destination_config(config_files=(("dir/a.ini", "ssh = 2222\n"),)),
            on_connected=connects.append,
        )
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        self.assertEqual([c.endpoints for c in connects], [{"ssh": "2222"}])

    def test_websocket_write_buffer_size(self) -> None:
        """
        websocket.write_buffer_size: a local connection whose bytes wait for
        the WebSocket up to that much is no longer read.
        """
        h, protocol, given = self.source(settings=settings(ws_write_buffer_size=100))
        client, transport = given.accept()
        h.proxy.tunnel.scheduler.pauseProducing()  # type: ignore[union-attr]
        client.dataReceived(b"x" * 99)
        self.assertEqual(transport.producerState, "producing")
        client.dataReceived(b"x")
        self.assertEqual(transport.producerState, "paused")

    def test_records_ready_together_share_a_frame(self) -> None:
        h, protocol, given = self.source()
        first = self.first_connection(protocol, given)
        second = given.accept()[0]
        scheduler = h.proxy.tunnel.scheduler  # type: ignore[union-attr]
        scheduler.pauseProducing()
        sent(protocol)
        first.dataReceived(b"a")
        second.dataReceived(b"b")
        scheduler.resumeProducing()
        (frame,) = protocol.sent
        self.assertEqual([m.payload for m in decode_all(frame)], [b"a", b"b"])

    def test_paced_with_pings(self) -> None:
        """The WebSocket is paced: pings follow the bytes they measure."""
        given = GivenServerEndpoint()
        h = Harness(self, source_config(), source_endpoints={"ssh": given})
        protocol = FakeProtocol()
        pings: List[bytes] = []
        protocol.send_ping = pings.append  # type: ignore[method-assign]
        h.start(protocol)
        h.open(protocol, "ssh")
        client = given.accept()[0]
        for _ in range(64):
            client.dataReceived(b"x" * 16384)
            if pings:
                break
        self.assertTrue(pings)

    def test_a_full_local_connection_pauses_the_websocket(self) -> None:
        """
        tcp.write_buffer_size: a local client that takes no more stops the
        WebSocket being read; the pause shows in the metrics.
        """
        h, protocol, given = self.source(settings=settings(tcp_write_buffer_size=16))
        client, _ = given.accept()
        ((_, _, stream_id, _),) = sent(protocol)
        client.pauseProducing()  # its socket's send buffer is full
        protocol.deliver(data("ssh", stream_id, 1, b"x" * 16))
        self.assertEqual(protocol.reading_paused_calls, [True])
        h.reactor.advance(2.0)
        self.assertEqual(h.proxy.metrics().paused_seconds, 2.0)
        client.resumeProducing()
        self.assertEqual(protocol.reading_paused_calls, [True, False])


class MetricsTests(SynchronousTestCase):
    def test_snapshot(self) -> None:
        given = GivenServerEndpoint()
        h = Harness(self, source_config(), source_endpoints={"ssh": given})
        self.assertEqual((h.proxy.metrics().mode, h.proxy.metrics().sessions), ("source", 0))
        first, second = FakeProtocol(), FakeProtocol()
        h.start(first, second)
        h.reactor.advance(3.0)
        h.open(first, "ssh")
        given.accept()[0].dataReceived(b"12345")
        h.lose(first)
        h.reactor.advance(2.0)
        h.open(second, "ssh")
        metrics = h.proxy.metrics()
        self.assertEqual(
            (metrics.mode, metrics.session_up, metrics.sessions, metrics.reconnects),
            ("source", True, 2, 1),
        )
        self.assertEqual(metrics.last_state_change, 5.0)
        self.assertEqual(metrics.services["ssh"].bytes_sent, 5)

    def test_page(self) -> None:
        """--metrics-port: the page listens on --metrics-address and serves this proxy's figures."""
        h = Harness(self, source_config(metrics_port=9100, metrics_address="127.0.0.2"))
        protocol = FakeProtocol()
        h.start(protocol)
        h.open(protocol, "ssh")
        ((port, site, _, interface),) = [s for s in h.reactor.tcpServers if s[0] == 9100]
        self.assertEqual((port, interface), (9100, "127.0.0.2"))
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # (Its idle timer runs on the global reactor: closing the connection cancels it.)
        channel.connectionLost(Failure(ConnectionDone()))
        page = transport.value().decode()
        self.assertTrue(page.startswith("HTTP/1.1 200 OK\r\n"), page)
        self.assertIn('\nlocalproxy_session_up{mode="source"} 1.0\n', page)
        self.assertIn('\nlocalproxy_sessions_total{mode="source"} 1.0\n', page)

    def test_registry_built_once(self) -> None:
        proxy = LocalProxyService(source_config(), MemoryReactorClock())
        registry = proxy.metrics_registry
        self.assertIs(proxy.metrics_registry, registry)
        names = [family.name for family in registry.collect()]
        self.assertIn("localproxy_session_up", names)

    def test_default_reactor(self) -> None:
        """Without a reactor, the proxy is built on Twisted's global one (not started here)."""
        proxy = LocalProxyService(source_config())
        self.assertEqual((proxy.metrics().mode, proxy.metrics().paused_seconds), ("source", 0.0))
