"""
End to end through web proxies: TCP client -> source proxy -> web proxy ->
local tunnel service <- web proxy <- destination proxy -> TCP service.

Both local proxies reach the tunnel service only through the web proxy (each
test checks the proxy saw their two CONNECTs). The proxies are the small ones
of ``tests.support.proxies`` and Debian's tinyproxy and danted; a test that needs a
Debian proxy says which one it ran and is skipped only when the binary is
missing.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest

from aws_localproxy.config.settings import Settings
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.proxy.service import LocalProxyService
from aws_localproxy.tunnelservice.certs import ensure_certificates, server_tls_options
from tests.support.e2e import (
    TEST_SETTINGS,
    E2ETestCase,
    Echo,
    new_client_token,
    pattern_chunk,
    with_settings,
)
from tests.support.proxies import (
    DANTED,
    TINYPROXY,
    ConnectProxyFactory,
    Daemon,
    SOCKS5ProxyFactory,
    start_danted,
    start_tinyproxy,
)

#: Enough bytes to cross several TLS records and WebSocket messages each way.
PAYLOAD = pattern_chunk(0, 65536) + pattern_chunk(65536, 65536) + pattern_chunk(131072, 70000)


class WebProxyE2ETestCase(E2ETestCase):
    """Local proxies that take ``web_proxy``/``no_proxy`` and an endpoint host."""

    @inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def logged(self) -> List[str]:
        """Every log event so far, formatted."""
        return [formatEvent(e) or "" for e in self.events]

    def local_proxy(
        self,
        mode: Mode,
        token: str,
        service_map: Dict[str, str],
        *,
        endpoint_host: Optional[str] = None,
        settings: Settings = TEST_SETTINGS,
        **extra: Any,
    ) -> LocalProxyService:
        return self.proxy(
            mode,
            token,
            service_map,
            client_token=new_client_token(),
            endpoint_host=endpoint_host,
            settings=settings,
            **extra,
        )

    @inlineCallbacks
    def proxied_pair(self, web_proxy: str, **extra: Any) -> Any:
        """An echo service behind a tunnel whose two ends use ``web_proxy``; returns the source port."""
        echo_port = yield self.listen(Echo)
        _, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        destination = self.local_proxy(
            Mode.DESTINATION,
            destination_token,
            {"ssh": f"127.0.0.1:{echo_port}"},
            web_proxy=web_proxy,
            **extra,
        )
        yield self.connected(destination)
        source = self.local_proxy(Mode.SOURCE, source_token, {}, web_proxy=web_proxy, **extra)
        yield self.connected(source)
        port = yield self.listening(source, "ssh")
        return port

    @inlineCallbacks
    def source_exit_code(self, web_proxy: str, retry_count: int) -> Any:
        """
        The exit code of a source of a new tunnel that reaches the service
        only through ``web_proxy``, retrying the WebSocket ``retry_count`` times.
        """
        _, source_token, _ = self.tunnel_service.open_tunnel(["ssh"])
        source = self.local_proxy(
            Mode.SOURCE,
            source_token,
            {},
            web_proxy=web_proxy,
            settings=with_settings(ws_connect_retry_count=retry_count),
        )
        code = yield self.finished(source)
        return code

    @inlineCallbacks
    def assert_data_intact(self, source_port: int) -> Any:
        client = yield self.connect(source_port)
        client.transport.write(PAYLOAD)
        received = yield client.wait_for(len(PAYLOAD))
        self.assertEqual(len(received), len(PAYLOAD))
        self.assertTrue(received == PAYLOAD, "the bytes came back changed")

    @inlineCallbacks
    def listen_proxy(self, factory: Any, tls: bool = False) -> Any:
        if tls:
            files = ensure_certificates(os.path.dirname(self.tunnel_service.capath))
            endpoint: Any = SSL4ServerEndpoint(
                reactor, 0, server_tls_options(files), interface="127.0.0.1"
            )
        else:
            endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @property
    def service_authority(self) -> str:
        return f"{self.tunnel_service.host}:{self.tunnel_service.port}"

    @inlineCallbacks
    def daemon(self, start: Any, binary: str, *args: Any) -> Any:
        if not os.access(binary, os.X_OK):
            raise SkipTest(f"{binary} is not installed (apt-get install tinyproxy dante-server)")
        daemon: Daemon = yield start(reactor, self.mktemp(), *args)
        self.addCleanup(daemon.stop)
        return daemon


class HTTPConnectE2ETests(WebProxyE2ETestCase):
    @inlineCallbacks
    def test_own_proxy_without_auth(self) -> Any:
        """Through tests.support.proxies.ConnectProxyFactory without credentials: no Proxy-Authorization."""
        proxy = ConnectProxyFactory(reactor)
        proxy_port = yield self.listen_proxy(proxy)
        port = yield self.proxied_pair(f"http://127.0.0.1:{proxy_port}")
        yield self.assert_data_intact(port)
        self.assertEqual(proxy.connects, [self.service_authority] * 2)
        self.assertEqual(proxy.tunnels, 2)
        for headers in proxy.headers:
            self.assertEqual(headers.get("host"), self.service_authority)
            self.assertNotIn("proxy-authorization", headers)

    @inlineCallbacks
    def test_own_proxy_with_basic_auth(self) -> Any:
        """Percent-encoded credentials in the URL are decoded and sent as Basic auth."""
        proxy = ConnectProxyFactory(reactor, credentials=("tunnel user", "p@ss:w/rd%"))
        proxy_port = yield self.listen_proxy(proxy)
        port = yield self.proxied_pair(
            f"http://tunnel%20user:p%40ss%3Aw%2Frd%25@127.0.0.1:{proxy_port}"
        )
        yield self.assert_data_intact(port)
        self.assertEqual(proxy.tunnels, 2)
        for line in self.logged():
            self.assertNotIn("p@ss:w/rd%", line)
            self.assertNotIn("p%40ss", line)

    @inlineCallbacks
    def test_https_proxy(self) -> Any:
        """An https:// proxy: TLS to the proxy (checked against -c), the service's TLS inside it."""
        proxy = ConnectProxyFactory(reactor, credentials=("u", "pw"))
        proxy_port = yield self.listen_proxy(proxy, tls=True)
        port = yield self.proxied_pair(f"https://u:pw@127.0.0.1:{proxy_port}")
        yield self.assert_data_intact(port)
        self.assertEqual(proxy.connects, [self.service_authority] * 2)

    @inlineCallbacks
    def test_no_proxy_bypasses_the_proxy(self) -> Any:
        """With the service's host in NO_PROXY the proxy is configured but not used."""
        proxy = ConnectProxyFactory(reactor)
        proxy_port = yield self.listen_proxy(proxy)
        port = yield self.proxied_pair(
            f"http://127.0.0.1:{proxy_port}", no_proxy="example.com,127.0.0.0/8"
        )
        yield self.assert_data_intact(port)
        self.assertEqual(proxy.requests, [])

    @inlineCallbacks
    def test_tinyproxy_without_auth(self) -> Any:
        """Through Debian's tinyproxy (/usr/bin/tinyproxy), no credentials."""
        daemon = yield self.daemon(start_tinyproxy, TINYPROXY, self.tunnel_service.port)
        port = yield self.proxied_pair(f"http://127.0.0.1:{daemon.port}")
        yield self.assert_data_intact(port)
        self.assertEqual(daemon.log().count(f"CONNECT {self.service_authority} HTTP/1.1"), 2)

    @inlineCallbacks
    def test_tinyproxy_with_basic_auth(self) -> Any:
        """Through tinyproxy with BasicAuth: without credentials refused, with them through."""
        daemon = yield self.daemon(
            start_tinyproxy, TINYPROXY, self.tunnel_service.port, ("tunneluser", "s3cret")
        )
        port = yield self.proxied_pair(f"http://tunneluser:s3cret@127.0.0.1:{daemon.port}")
        yield self.assert_data_intact(port)
        self.assertEqual(daemon.log().count(f"CONNECT {self.service_authority} HTTP/1.1"), 2)
        code = yield self.source_exit_code(f"http://127.0.0.1:{daemon.port}", retry_count=0)
        self.assertEqual(code, 1)
        self.assertTrue(
            any("The web proxy requires authentication: 407" in line for line in self.logged())
        )


class HTTPConnectFailureE2ETests(WebProxyE2ETestCase):
    @inlineCallbacks
    def run_refused(self, proxy: ConnectProxyFactory, url_auth: str = "") -> Any:
        proxy_port = yield self.listen_proxy(proxy)
        code = yield self.source_exit_code(
            f"http://{url_auth}127.0.0.1:{proxy_port}", retry_count=1
        )
        return code

    @inlineCallbacks
    def test_407_without_credentials_retried_then_exit_1(self) -> Any:
        """407: one clear message per attempt, the WebSocket retry rules, exit 1 after 2 attempts."""
        proxy = ConnectProxyFactory(reactor, credentials=("u", "pw"))
        code = yield self.run_refused(proxy)
        self.assertEqual(code, 1)
        self.assertEqual(len(proxy.requests), 2)
        messages = [line for line in self.logged() if "Could not connect to proxy server" in line]
        self.assertEqual(
            messages,
            [
                "Could not connect to proxy server: The web proxy requires authentication:"
                " 407 Proxy Authentication Required (it asks for Basic); give them in the"
                " proxy URL as http://user:password@host:port"
            ]
            * 2,
        )

    @inlineCallbacks
    def test_407_wrong_credentials_not_logged(self) -> Any:
        """Rejected credentials are named as such; neither they nor their Base64 are logged."""
        proxy = ConnectProxyFactory(reactor, credentials=("u", "pw"))
        code = yield self.run_refused(proxy, "alice:Wr0ngPassw0rd@")
        self.assertEqual(code, 1)
        self.assertEqual(len(proxy.requests), 2)
        lines = self.logged()
        self.assertTrue(any("The web proxy rejected the credentials" in line for line in lines))
        for event in self.events:
            text = repr(event) + (formatEvent(event) or "")
            self.assertNotIn("Wr0ngPassw0rd", text)
            self.assertNotIn("V3IwbmdQYXNzdzByZA", text)  # base64 of the password part
            self.assertNotIn("YWxpY2U6V3IwbmdQYXNzdzByZA", text)

    @inlineCallbacks
    def test_502_retried_then_exit_1(self) -> Any:
        """A 5xx from the proxy is retried like a network error, then gives up."""
        proxy = ConnectProxyFactory(reactor, refuse_with=b"502 Bad Gateway")
        code = yield self.run_refused(proxy)
        self.assertEqual(code, 1)
        self.assertEqual(len(proxy.requests), 2)
        self.assertIn(
            "Could not connect to proxy server: The Web proxy server responded with 5xx"
            " to the HTTP CONNECT request: 502 Bad Gateway",
            self.logged(),
        )


class SOCKS5E2ETests(WebProxyE2ETestCase):
    @inlineCallbacks
    def test_own_socks5_resolves_locally(self) -> Any:
        """socks5://: the name is resolved here; the proxy gets an IPv4 address (type 1)."""
        proxy = SOCKS5ProxyFactory(reactor)
        proxy_port = yield self.listen_proxy(proxy)
        port = yield self.proxied_pair(
            f"socks5://127.0.0.1:{proxy_port}", endpoint_host="localhost"
        )
        yield self.assert_data_intact(port)
        self.assertEqual(proxy.requests, [(1, "127.0.0.1", self.tunnel_service.port)] * 2)
        self.assertEqual(proxy.methods_offered, [[0]] * 2)

    @inlineCallbacks
    def test_own_socks5h_resolves_at_the_proxy(self) -> Any:
        """socks5h://: the proxy gets the host name (address type 3)."""
        proxy = SOCKS5ProxyFactory(reactor)
        proxy_port = yield self.listen_proxy(proxy)
        port = yield self.proxied_pair(
            f"socks5h://127.0.0.1:{proxy_port}", endpoint_host="localhost"
        )
        yield self.assert_data_intact(port)
        self.assertEqual(proxy.requests, [(3, "localhost", self.tunnel_service.port)] * 2)

    @inlineCallbacks
    def test_own_socks5_with_auth(self) -> Any:
        """Username/password (RFC 1929) from the URL's percent-decoded credentials."""
        proxy = SOCKS5ProxyFactory(reactor, credentials=("sock user", "p@ss"))
        proxy_port = yield self.listen_proxy(proxy)
        port = yield self.proxied_pair(f"socks5://sock%20user:p%40ss@127.0.0.1:{proxy_port}")
        yield self.assert_data_intact(port)
        self.assertEqual(proxy.logins, ["sock user"] * 2)
        self.assertEqual(proxy.tunnels, 2)

    @inlineCallbacks
    def test_own_socks5_auth_rejected(self) -> Any:
        """Rejected SOCKS5 credentials: clear message, retries, exit 1."""
        proxy = SOCKS5ProxyFactory(reactor, credentials=("u", "right"))
        proxy_port = yield self.listen_proxy(proxy)
        code = yield self.source_exit_code(
            f"socks5://u:wrong@127.0.0.1:{proxy_port}", retry_count=1
        )
        self.assertEqual(code, 1)
        self.assertEqual(proxy.logins, ["u", "u"])
        self.assertIn(
            "Could not connect to proxy server: The SOCKS5 proxy rejected the credentials:"
            " check the user name and password in the proxy URL",
            self.logged(),
        )

    @inlineCallbacks
    def test_danted_socks5(self) -> Any:
        """Through Debian's Dante server (/usr/sbin/danted), socks5:// without authentication."""
        daemon = yield self.daemon(start_danted, DANTED)
        port = yield self.proxied_pair(f"socks5://127.0.0.1:{daemon.port}")
        yield self.assert_data_intact(port)
        target = f"127.0.0.1.{self.tunnel_service.port}"
        connects = [
            line
            for line in daemon.log().splitlines()
            if "tcp/connect [" in line and line.endswith(target)
        ]
        self.assertEqual(len(connects), 2, daemon.log())

    @inlineCallbacks
    def test_danted_socks5h(self) -> Any:
        """Through danted with socks5h://: Dante resolves the service's host name."""
        daemon = yield self.daemon(start_danted, DANTED)
        port = yield self.proxied_pair(
            f"socks5h://127.0.0.1:{daemon.port}", endpoint_host="localhost"
        )
        yield self.assert_data_intact(port)
        self.assertEqual(daemon.log().count("tcp/connect ["), 2, daemon.log())
