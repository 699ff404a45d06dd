"""
The WebSocket ceiling: a bare Autobahn TLS WebSocket between two processes.

What any Python/Autobahn proxy could at most reach on this machine: one
TLS WebSocket hop carrying binary messages of 64 KiB (client frames masked,
with NVX when Autobahn has it), nothing else.  A tunnel has two such hops
and a TCP hop at each end, so it can only be slower.

``python bench/_wspipe.py server CERT_DIR`` listens on 127.0.0.1 (port
picked by the OS), prints ``PORT <n>``, and serves commands sent as text
messages: ``up N`` (it reads N bytes, then answers ``K``), ``down N`` (it
sends N bytes), anything binary otherwise is echoed back.

``python bench/_wspipe.py client PORT CA_FILE SERVER_PID OP...`` runs the
OPs in order (``up:N``, ``down:N``, ``echo:COUNT``) and prints one JSON
object: per OP the seconds it took (or the round trips), and the CPU seconds
the client and the server spent on it (the server's from /proc).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket import USES_NVX
from twisted.internet import defer, endpoints, reactor, ssl, task
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

MESSAGE = 64 * 1024
PAYLOAD = bytes(range(256)) * (MESSAGE // 256)
MAX_FRAME = 131076  # the tunnel's frame bound


def _options(factory: Any) -> None:
    factory.setProtocolOptions(
        maxFramePayloadSize=MAX_FRAME, autoFragmentSize=0, openHandshakeTimeout=30
    )


@implementer(IPushProducer)
class _Sender:
    """Sends C{size} bytes as 64 KiB binary messages as fast as the transport takes them."""

    def __init__(self, protocol: Any, size: int, done: Callable[[], None]) -> None:
        self.protocol = protocol
        self.left = size
        self.paused = False
        self.done = done
        protocol.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.left > 0:
            n = min(MESSAGE, self.left)
            self.left -= n
            self.protocol.sendMessage(PAYLOAD[:n] if n < MESSAGE else PAYLOAD, isBinary=True)
        if self.left == 0 and self.done is not None:
            done, self.done = self.done, None  # type: ignore[assignment]
            self.protocol.transport.unregisterProducer()
            done()

    def stopProducing(self) -> None:
        self.left = 0


class PipeServerProtocol(WebSocketServerProtocol):
    expecting = 0

    def onConnect(self, request: Any) -> None:
        self.transport.setTcpNoDelay(True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            command, arg = payload.decode().split()
            if command == "up":
                self.expecting = int(arg)
            elif command == "down":
                _Sender(self, int(arg), lambda: None)
            return
        if self.expecting:
            self.expecting -= len(payload)
            if self.expecting <= 0:
                self.expecting = 0
                self.sendMessage(b"K", isBinary=False)
        else:
            self.sendMessage(payload, isBinary=True)


class PipeClientProtocol(WebSocketClientProtocol):
    def onConnect(self, response: Any) -> None:
        self.transport.setTcpNoDelay(True)

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        waiter = self.factory.waiter
        if waiter is not None:
            waiter(payload, isBinary)


def _cpu(pid: Optional[int] = None) -> float:
    with open(f"/proc/{pid or os.getpid()}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@defer.inlineCallbacks
def _up(protocol: Any, factory: Any, count: int) -> Any:
    done: defer.Deferred[None] = defer.Deferred()
    started = time.perf_counter()
    factory.waiter = lambda payload, binary: done.callback(None)
    protocol.sendMessage(f"up {count}".encode(), isBinary=False)
    _Sender(protocol, count, lambda: None)
    yield done
    return time.perf_counter() - started


@defer.inlineCallbacks
def _down(protocol: Any, factory: Any, count: int) -> Any:
    done: defer.Deferred[None] = defer.Deferred()
    started = time.perf_counter()
    left = [count]

    def received(payload: bytes, binary: bool) -> None:
        left[0] -= len(payload)
        if left[0] <= 0 and not done.called:
            done.callback(None)

    factory.waiter = received
    protocol.sendMessage(f"down {count}".encode(), isBinary=False)
    yield done
    return time.perf_counter() - started


@defer.inlineCallbacks
def _echo(protocol: Any, factory: Any, count: int) -> Any:
    rtts: List[float] = []
    for _ in range(count + 5):  # the first five warm up
        one: defer.Deferred[None] = defer.Deferred()
        factory.waiter = lambda payload, binary, one=one: one.callback(None)
        sent = time.perf_counter()
        protocol.sendMessage(b"p" * 64, isBinary=True)
        yield one
        rtts.append(time.perf_counter() - sent)
    return rtts[5:]


_OPS = {"up": _up, "down": _down, "echo": _echo}


@defer.inlineCallbacks
def run_client(_reactor: Any, port: int, ca_file: str, server_pid: int, ops: List[str]) -> Any:
    with open(ca_file, "rb") as f:
        authority = ssl.Certificate.loadPEM(f.read())
    tls = ssl.optionsForClientTLS("localhost", trustRoot=authority)
    factory = WebSocketClientFactory(f"wss://localhost:{port}", reactor=_reactor)
    factory.protocol = PipeClientProtocol
    _options(factory)
    factory.setProtocolOptions(perMessageCompressionOffers=[])
    factory.opened = defer.Deferred()
    factory.waiter = None
    endpoint = endpoints.wrapClientTLS(tls, endpoints.TCP4ClientEndpoint(_reactor, "127.0.0.1", port))
    yield endpoint.connect(factory)
    protocol = yield factory.opened
    results: Dict[str, Any] = {"nvx": bool(USES_NVX)}
    for op in ops:
        name, arg = op.split(":")
        count = int(arg)
        before = (_cpu(), _cpu(server_pid))
        value = yield _OPS[name](protocol, factory, count)
        results[op] = {
            "value": value,
            "client_cpu": _cpu() - before[0],
            "server_cpu": _cpu(server_pid) - before[1],
        }
    print(json.dumps(results), flush=True)
    protocol.sendClose()


def run_server(cert_dir: str) -> None:
    with open(os.path.join(cert_dir, "server.pem"), "rb") as f:
        cert = f.read()
    with open(os.path.join(cert_dir, "server-key.pem"), "rb") as f:
        key = f.read()
    options = ssl.PrivateCertificate.loadPEM(cert + b"\n" + key).options()
    factory = WebSocketServerFactory(reactor=reactor)
    factory.protocol = PipeServerProtocol
    _options(factory)
    port = reactor.listenSSL(0, factory, options, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"PORT {port.getHost().port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


def main() -> None:
    if sys.argv[1] == "server":
        run_server(sys.argv[2])
    elif sys.argv[1] == "client":
        port, ca_file, server_pid = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
        task.react(run_client, [port, ca_file, server_pid, sys.argv[5:]])
    else:
        raise SystemExit("usage: _wspipe.py server CERT_DIR | client PORT CA_FILE SERVER_PID OP...")


if __name__ == "__main__":
    main()
