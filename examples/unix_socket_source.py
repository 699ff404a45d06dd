"""
A source local proxy whose service ID "SSH1" is a Unix socket, not a TCP port.

Local clients connect to the socket's path (file permissions decide who
may); any IStreamServerEndpoint works the same way (a systemd-activated
socket, TCP on another interface).  From the command line the same is
``localproxy -s SSH1=unix:/run/ssh1.sock``.

To run as written, the example brings its own local tunnel service and a
destination that echoes (served in-process), then talks through the socket.
"""

import os
import tempfile

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol

from aws_localproxy import LocalProxyService, Mode, ProxyConfig
from aws_localproxy.tunnelservice.testing import start_tunnel_service


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class Ask(Protocol):
    """Sends a line, waits for the same number of bytes back."""

    def __init__(self, line):
        self.line = line
        self.received = b""
        self.answered = Deferred()

    def connectionMade(self):
        self.transport.write(self.line)

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= len(self.line):
            self.transport.loseConnection()
            self.answered.callback(self.received)


async def main(reactor):
    directory = tempfile.mkdtemp()
    service = await start_tunnel_service(reactor, os.path.join(directory, "certs"))
    tunnel_id, source_token, destination_token = service.open_tunnel(["SSH1"])

    def config(mode, token):
        return ProxyConfig(
            mode=mode,
            access_token=token,
            endpoint_host=service.host,
            endpoint_port=service.port,
            capath=service.capath,
        )

    destination = LocalProxyService(
        config(Mode.DESTINATION, destination_token),
        reactor,
        destination_factories={"SSH1": Factory.forProtocol(Echo)},
    )
    destination.startService()
    await destination.connected

    path = os.path.join(directory, "ssh1.sock")
    source = LocalProxyService(
        config(Mode.SOURCE, source_token),
        reactor,
        source_endpoints={"SSH1": UNIXServerEndpoint(reactor, path)},
    )
    source.startService()
    await source.connected
    address = await source.listening_address("SSH1")
    print("SSH1 listens on", address.name.decode())

    client = await connectProtocol(UNIXClientEndpoint(reactor, path), Ask(b"ping through a Unix socket\n"))
    print((await client.answered).decode(), end="")

    await source.stopService()
    await destination.stopService()
    await service.stop()


if __name__ == "__main__":
    task.react(main)
