"""
Web proxies for the tests, on 127.0.0.1: small ones written here, and Debian's.

- ``ConnectProxyFactory``: an HTTP proxy that only does ``CONNECT``, with
  optional Basic authentication, over plain TCP or TLS. ``twisted.web.proxy``
  cannot tunnel (twisted/twisted #5581), so this one parses the request head
  itself and then relays bytes both ways with back-pressure.
- ``SOCKS5ProxyFactory``: a SOCKS5 server (RFC 1928) with "no authentication"
  or username/password (RFC 1929), ``CONNECT`` only, all three address types.
- ``start_tinyproxy`` / ``start_danted``: run ``/usr/bin/tinyproxy`` or
  ``/usr/sbin/danted`` in the foreground with a generated configuration on a
  free port; the returned ``Daemon`` stops them.

Each proxy records what it was asked, so a test can prove the proxy was
really used and what the client sent.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import struct
from typing import Any, Optional

from twisted.internet import error
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from tests.support.deadlines import START, scaled, tail
from tests.support.helpers import ChildProcess, free_port, sleep, stop_child

__all__ = [
    "ConnectProxyFactory",
    "SOCKS5ProxyFactory",
    "Daemon",
    "free_port",
    "start_tinyproxy",
    "start_danted",
    "TINYPROXY",
    "DANTED",
]

TINYPROXY = "/usr/bin/tinyproxy"
DANTED = "/usr/sbin/danted"

_MAX_HEAD = 64 * 1024


class _Relay(Protocol):
    """One side of a relay: what it reads goes to ``peer``, with back-pressure both ways."""

    def __init__(self, peer: Protocol) -> None:
        self.peer = peer

    def connectionMade(self) -> None:
        self.transport.registerProducer(self.peer.transport, True)
        self.peer.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        # The peer's transport has this one as its (maybe paused) producer:
        # unregister it, or loseConnection never closes (Twisted's producer trap).
        self.peer.transport.unregisterProducer()
        self.peer.transport.loseConnection()


class _Tunnel(Protocol):
    """The client side of a proxy, once the tunnel is up: relays to the target."""

    target: Optional[Protocol] = None

    def start_relay(self, target: _Relay, leftover: bytes) -> None:
        self.target = target
        if leftover:
            target.transport.write(leftover)
        self.transport.resumeProducing()

    def relay(self, data: bytes) -> None:
        if self.target is not None:
            self.target.transport.write(data)

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        if self.target is not None and self.target.transport is not None:
            self.target.transport.unregisterProducer()
            self.target.transport.loseConnection()

    def connect_target(self, host: str, port: int) -> Deferred[_Relay]:
        """Connect to the target; the client's reads are paused meanwhile."""
        self.transport.pauseProducing()
        reactor = self.factory.reactor  # type: ignore[attr-defined]
        endpoint = HostnameEndpoint(reactor, host, port, timeout=5)
        return endpoint.connect(Factory.forProtocol(lambda: _Relay(self)))


class _ConnectProxyProtocol(_Tunnel):
    factory: "ConnectProxyFactory"

    def connectionMade(self) -> None:
        self._buffer = b""
        self._done = False

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            self.relay(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD:
                self._answer(b"431 Request Header Fields Too Large")
            return
        self._done = True
        head, leftover = self._buffer[:end], self._buffer[end + 4 :]
        self._buffer = b""
        self._handle(head, leftover)

    def _answer(self, status: bytes, headers: bytes = b"") -> None:
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\n" + headers + b"Content-Length: 0\r\n\r\n"
        )
        self.transport.loseConnection()

    def _handle(self, head: bytes, leftover: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        factory = self.factory
        factory.requests.append(lines[0])
        factory.headers.append(headers)
        if len(parts) != 3 or parts[0] != "CONNECT":
            self._answer(b"405 Method Not Allowed")
            return
        if factory.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(factory.credentials).encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self._answer(
                    b"407 Proxy Authentication Required",
                    b'Proxy-Authenticate: Basic realm="tests"\r\n',
                )
                return
        if factory.refuse_with is not None:
            self._answer(factory.refuse_with)
            return
        authority = parts[1]
        host, _, port_text = authority.rpartition(":")
        host = host.strip("[]")
        factory.connects.append(authority)
        d = self.connect_target(host, int(port_text))

        def connected(target: _Relay) -> None:
            factory.tunnels += 1
            self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.start_relay(target, leftover)

        def failed(reason: Failure) -> None:
            self._answer(b"502 Bad Gateway")

        d.addCallbacks(connected, failed)


class ConnectProxyFactory(Factory):
    """
    An HTTP CONNECT proxy.

    ``credentials`` (user, password) makes it require ``Proxy-Authorization:
    Basic`` (407 otherwise); ``refuse_with`` (e.g. ``b"502 Bad Gateway"``)
    answers every authorised CONNECT with that status. It records each
    request line (``requests``), its headers (lower-case names), the
    authorities it connected (``connects``) and the tunnels it set up.
    """

    protocol = _ConnectProxyProtocol

    def __init__(
        self,
        reactor: Any,
        credentials: Optional[tuple[str, str]] = None,
        refuse_with: Optional[bytes] = None,
    ) -> None:
        self.reactor = reactor
        self.credentials = credentials
        self.refuse_with = refuse_with
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.connects: list[str] = []
        self.tunnels = 0


class _SOCKS5ProxyProtocol(_Tunnel):
    factory: "SOCKS5ProxyFactory"

    def connectionMade(self) -> None:
        self._buffer = b""
        self._state = "greeting"

    def dataReceived(self, data: bytes) -> None:
        if self._state == "relay":
            self.relay(data)
            return
        self._buffer += data
        while self._state not in ("relay", "connecting", "closed"):
            if not getattr(self, "_on_" + self._state)():
                return

    def _on_greeting(self) -> bool:
        if len(self._buffer) < 2 or len(self._buffer) < 2 + self._buffer[1]:
            return False
        count = self._buffer[1]
        methods = set(self._buffer[2 : 2 + count])
        self._buffer = self._buffer[2 + count :]
        self.factory.methods_offered.append(sorted(methods))
        wanted = 0x02 if self.factory.credentials is not None else 0x00
        if wanted not in methods:
            self.transport.write(b"\x05\xff")
            self._close()
            return False
        self.transport.write(bytes([5, wanted]))
        self._state = "auth" if wanted == 0x02 else "request"
        return True

    def _on_auth(self) -> bool:
        buf = self._buffer
        if len(buf) < 2 or len(buf) < 3 + buf[1] or len(buf) < 3 + buf[1] + buf[2 + buf[1]]:
            return False
        ulen = buf[1]
        user = buf[2 : 2 + ulen].decode("utf-8")
        plen = buf[2 + ulen]
        password = buf[3 + ulen : 3 + ulen + plen].decode("utf-8")
        self._buffer = buf[3 + ulen + plen :]
        self.factory.logins.append(user)
        if (user, password) != self.factory.credentials:
            self.transport.write(b"\x01\x01")
            self._close()
            return False
        self.transport.write(b"\x01\x00")
        self._state = "request"
        return True

    def _on_request(self) -> bool:
        buf = self._buffer
        if len(buf) < 5:
            return False
        atyp = buf[3]
        size = {1: 4, 4: 16, 3: 1 + buf[4]}.get(atyp)
        if size is None:
            self._reply(0x08)
            return False
        if len(buf) < 4 + size + 2:
            return False
        raw = buf[4 : 4 + size]
        (port,) = struct.unpack("!H", buf[4 + size : 6 + size])
        leftover = buf[6 + size :]
        self._buffer = b""
        if atyp == 3:
            host = raw[1:].decode("ascii")
        else:
            host = str(ipaddress.ip_address(raw))
        self.factory.requests.append((atyp, host, port))
        if buf[1] != 1:
            self._reply(0x07)
            return False
        if self.factory.reply_code:
            self._reply(self.factory.reply_code)
            return False
        self._state = "connecting"
        d = self.connect_target(host, port)

        def connected(target: _Relay) -> None:
            self.factory.tunnels += 1
            self._state = "relay"
            bound = target.transport.getHost()
            self.transport.write(
                b"\x05\x00\x00\x01" + socket.inet_aton(bound.host) + struct.pack("!H", bound.port)
            )
            self.start_relay(target, leftover)

        def failed(reason: Failure) -> None:
            self._reply(0x05)

        d.addCallbacks(connected, failed)
        return False

    def _reply(self, code: int) -> None:
        self.transport.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
        self._close()

    def _close(self) -> None:
        self._state = "closed"
        self.transport.loseConnection()


class SOCKS5ProxyFactory(Factory):
    """
    A SOCKS5 proxy: ``CONNECT`` to IPv4, IPv6 or a name (resolved here).

    With ``credentials`` it asks for username/password and rejects other
    logins; ``reply_code`` (non-zero) answers every CONNECT with that
    failure. Records the method lists offered, the user names tried, and
    ``requests`` as ``(address type, host, port)``.
    """

    protocol = _SOCKS5ProxyProtocol

    def __init__(
        self,
        reactor: Any,
        credentials: Optional[tuple[str, str]] = None,
        reply_code: int = 0,
    ) -> None:
        self.reactor = reactor
        self.credentials = credentials
        self.reply_code = reply_code
        self.methods_offered: list[list[int]] = []
        self.logins: list[str] = []
        self.requests: list[tuple[int, str, int]] = []
        self.tunnels = 0


# -- Debian's proxies -----------------------------------------------------------------------


class Daemon:
    """A proxy daemon started by a test: its port, log file, and ``stop()``."""

    def __init__(
        self, name: str, port: int, log_path: str, protocol: ChildProcess, transport: Any
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self._protocol = protocol
        self._transport = transport

    def log(self) -> str:
        """The daemon's log file and its console output so far."""
        text = ""
        if os.path.exists(self.log_path):
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        return text + self._protocol.output.decode("utf-8", "replace")

    def stop(self) -> Deferred[None]:
        """
        SIGTERM the daemon (it takes its children down) and wait until it has
        exited (killed after a while, and the wait fails saying so).
        """
        return stop_child(self._protocol, self._transport, "TERM")


@inlineCallbacks
def _start(reactor: Any, name: str, argv: list[str], port: int, log_path: str) -> Any:
    protocol = ChildProcess(name)
    transport = reactor.spawnProcess(protocol, argv[0], argv, env={"PATH": "/usr/bin:/bin"})
    daemon = Daemon(name, port, log_path, protocol, transport)
    # Wait until it accepts connections, or fail with its output: within
    # START seconds of the reactor's clock (not a count of probes, each of
    # which may take its whole connect timeout on a loaded machine).
    limit = scaled(START)
    end = reactor.seconds() + limit
    while not protocol.exited and reactor.seconds() < end:
        try:
            probe = yield TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1).connect(
                Factory.forProtocol(Protocol)
            )
        except error.ConnectError:
            yield sleep(0.05, reactor)
            continue
        probe.transport.abortConnection()
        return daemon
    exited = protocol.exited
    yield daemon.stop()
    raise AssertionError(
        f"{name} did not listen on port {port} within {limit:g} s"
        f"{' (it exited)' if exited else ''}; its log ends:\n{tail(daemon.log())}"
    )


def start_tinyproxy(
    reactor: IReactorCore,
    workdir: str,
    connect_port: int,
    credentials: Optional[tuple[str, str]] = None,
) -> Deferred[Daemon]:
    """
    Run tinyproxy in the foreground on a free port of 127.0.0.1.

    It allows CONNECT to ``connect_port`` only and, with ``credentials``,
    requires them (``BasicAuth``). Its log (level Connect: one
    ``Request ... CONNECT host:port`` line per request) is ``Daemon.log()``.
    """
    os.makedirs(workdir, exist_ok=True)
    port = free_port()
    log_path = os.path.join(workdir, "tinyproxy.log")
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 30",
        "MaxClients 50",
        "Allow 127.0.0.1",
        f"ConnectPort {connect_port}",
        "LogLevel Connect",
        f'LogFile "{log_path}"',
    ]
    if credentials is not None:
        lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
    config = os.path.join(workdir, "tinyproxy.conf")
    with open(config, "w") as f:
        f.write("\n".join(lines) + "\n")
    return _start(reactor, "tinyproxy", [TINYPROXY, "-d", "-c", config], port, log_path)


def start_danted(reactor: IReactorCore, workdir: str) -> Deferred[Daemon]:
    """
    Run Dante's danted in the foreground on a free port of 127.0.0.1.

    SOCKS5 without authentication (``socksmethod: none``: user/password
    would need system accounts), CONNECT from and to 127.0.0.0/8 only; one
    ``tcp/connect [`` log line per tunnel.
    """
    os.makedirs(workdir, exist_ok=True)
    port = free_port()
    log_path = os.path.join(workdir, "danted.log")
    privileges = ["user.privileged: root", "user.unprivileged: nobody"] if os.geteuid() == 0 else []
    config_text = "\n".join(
        [
            f"logoutput: {log_path}",
            f"internal: 127.0.0.1 port = {port}",
            "external: 127.0.0.1",
            "socksmethod: none",
            "clientmethod: none",
            *privileges,
            "client pass {",
            "  from: 127.0.0.0/8 to: 0.0.0.0/0",
            "  log: error connect disconnect",
            "}",
            "socks pass {",
            "  from: 127.0.0.0/8 to: 127.0.0.0/8",
            "  command: connect",
            "  log: error connect disconnect",
            "}",
        ]
    )
    config = os.path.join(workdir, "danted.conf")
    with open(config, "w") as f:
        f.write(config_text + "\n")
    return _start(reactor, "danted", [DANTED, "-f", config, "-N", "1"], port, log_path)
