"""
Serve HTTP to a tunnel from this process, without a TCP port.

A destination local proxy answers the tunnel's service ID "WEB" with a
twisted.web Site in the same process.  To run as written, this example
brings its own local tunnel service and a source local proxy, then fetches
a page through the tunnel; against AWS, only the destination part is needed
(with the destination access token and region in ProxyConfig).
"""

import tempfile
import urllib.request

from twisted.internet import task, threads
from twisted.web import resource, server

from aws_localproxy import LocalProxyService, Mode, ProxyConfig
from aws_localproxy.tunnelservice.testing import start_tunnel_service


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello from inside the destination\n"


async def main(reactor):
    service = await start_tunnel_service(reactor, tempfile.mkdtemp())
    tunnel_id, source_token, destination_token = service.open_tunnel(["WEB"])

    def config(mode, token):
        return ProxyConfig(
            mode=mode,
            access_token=token,
            endpoint_host=service.host,
            endpoint_port=service.port,
            capath=service.capath,
        )

    site = server.Site(Hello())
    destination = LocalProxyService(
        config(Mode.DESTINATION, destination_token),
        reactor,
        destination_factories={"WEB": site},
    )
    destination.startService()
    await destination.connected

    source = LocalProxyService(config(Mode.SOURCE, source_token), reactor)
    source.startService()
    await source.connected
    port = await source.listening_port("WEB")

    url = f"http://127.0.0.1:{port}/"
    body = await threads.deferToThread(lambda: urllib.request.urlopen(url, timeout=10).read())
    print(body.decode(), end="")

    await source.stopService()
    await destination.stopService()
    await service.stop()


if __name__ == "__main__":
    task.react(main)
