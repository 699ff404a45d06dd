"""
Tests for aws_localproxy.config.local_endpoints: the local endpoint grammar of sources and
destinations, and the endpoints built from it (on a MemoryReactor).
"""

from __future__ import annotations

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config import local_endpoints as endpoints
from aws_localproxy.config.local_endpoints import (
    DestinationEndpoint,
    EndpointError,
    SourceEndpoint,
    client_endpoint_types,
    is_description,
    parse_destination_endpoint,
    parse_source_endpoint,
    server_endpoint_types,
)


def _factory() -> Factory:
    return Factory.forProtocol(Protocol)


class TypeNameTests(SynchronousTestCase):
    def test_names_come_from_twisted_and_plugins(self) -> None:
        """Every installed parser plugin's prefix counts, and the built-in tcp/unix/ssl."""
        servers = server_endpoint_types()
        clients = client_endpoint_types()
        self.assertTrue({"tcp", "unix", "ssl"} <= servers)
        self.assertTrue({"tcp", "unix", "ssl"} <= clients)
        for plugin in getPlugins(IStreamServerEndpointStringParser):
            self.assertIn(plugin.prefix.lower(), servers)
        for plugin in getPlugins(IStreamClientEndpointStringParserWithReactor):
            self.assertIn(plugin.prefix.lower(), clients)
        self.assertTrue({"tcp6", "systemd", "tls", "stdio"} <= servers)
        self.assertNotIn("tcp6", clients)

    def test_is_description(self) -> None:
        for text in (
            "unix:/run/x.sock",
            "tcp:5555",
            "TCP:5555",
            "tcp6:5555",
            "tls:example:443",
            " tcp:1",
        ):
            self.assertTrue(is_description(text), text)
        for text in (
            "5555",
            "127.0.0.1:22",
            "localhost:22",
            "[::1]:22",
            "fe80::1:22",
            "/run/x.sock",
            "tcp",
            "tcp=5555",
            "example.com:80",
            "unknown:1",
            ":22",
            "tc p:1",
        ):
            self.assertFalse(is_description(text), text)


class SourceReferenceFormTests(SynchronousTestCase):
    def test_port(self) -> None:
        self.assertEqual(parse_source_endpoint("5555"), SourceEndpoint("5555", port=5555))
        self.assertEqual(parse_source_endpoint("0").port, 0)
        self.assertEqual(parse_source_endpoint("65535").port, 65535)
        self.assertEqual(parse_source_endpoint(" 22 ").port, 22)

    def test_address_is_ignored(self) -> None:
        endpoint = parse_source_endpoint("127.0.0.1:5555")
        self.assertEqual(
            (endpoint.text, endpoint.port, endpoint.description), ("127.0.0.1:5555", 5555, None)
        )
        self.assertEqual(parse_source_endpoint("::1:6000").port, 6000)

    def test_errors(self) -> None:
        for bad in ("ssh", "70000", "65536", "", "host:", "5555x", "-1", "unknown:abc"):
            e = self.assertRaises(EndpointError, parse_source_endpoint, bad)
            self.assertEqual(str(e), f"Invalid listen port in port mapping: {bad}")
        self.assertIsInstance(EndpointError("x"), ValueError)

    def test_listens_on_the_bind_address(self) -> None:
        reactor = MemoryReactor()
        endpoint = parse_source_endpoint("5555").server_endpoint(reactor, "127.0.0.1")
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        endpoint.listen(_factory())
        port, _, _, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (5555, "127.0.0.1"))

    def test_ipv6_bind_address(self) -> None:
        reactor = MemoryReactor()
        endpoint = parse_source_endpoint("0").server_endpoint(reactor, "::1")
        self.assertIsInstance(endpoint, TCP6ServerEndpoint)
        endpoint.listen(_factory())
        self.assertEqual(reactor.tcpServers[0][0], 0)
        self.assertEqual(reactor.tcpServers[0][3], "::1")

    def test_unresolvable_bind_address(self) -> None:
        endpoint = parse_source_endpoint("5555")
        e = self.assertRaises(
            OSError, endpoint.server_endpoint, MemoryReactor(), "no such host.invalid"
        )
        self.assertIn("Could not resolve bind address: no such host.invalid", str(e))

    def test_describe(self) -> None:
        self.assertEqual(parse_source_endpoint("127.0.0.1:5555").describe(), "port 5555")


class SourceDescriptionTests(SynchronousTestCase):
    def test_unix(self) -> None:
        endpoint = parse_source_endpoint("unix:/run/ssh1.sock")
        self.assertEqual(
            endpoint, SourceEndpoint("unix:/run/ssh1.sock", description="unix:/run/ssh1.sock")
        )
        self.assertIsNone(endpoint.port)
        self.assertEqual(endpoint.describe(), "unix:/run/ssh1.sock")
        reactor = MemoryReactor()
        built = endpoint.server_endpoint(reactor, "127.0.0.1")
        self.assertIsInstance(built, UNIXServerEndpoint)
        built.listen(_factory())
        self.assertEqual(reactor.unixServers[0][0], "/run/ssh1.sock")

    def test_type_name_in_any_case(self) -> None:
        endpoint = parse_source_endpoint("TCP:5555")
        self.assertEqual((endpoint.text, endpoint.description), ("TCP:5555", "tcp:5555"))

    def test_tcp_with_interface(self) -> None:
        endpoint = parse_source_endpoint(r"tcp:5555:interface=\:\:1")
        reactor = MemoryReactor()
        endpoint.server_endpoint(reactor, "127.0.0.1").listen(_factory())
        self.assertEqual((reactor.tcpServers[0][0], reactor.tcpServers[0][3]), (5555, "::1"))

    def test_tcp_without_interface_listens_on_the_bind_address(self) -> None:
        """Twisted's default would be every interface; the proxy keeps listeners local."""
        reactor = MemoryReactor()
        parse_source_endpoint("tcp:5555").server_endpoint(reactor, "127.0.0.1").listen(_factory())
        self.assertEqual(reactor.tcpServers[0][3], "127.0.0.1")
        reactor = MemoryReactor()
        parse_source_endpoint("tcp6:0:backlog=7").server_endpoint(reactor, "::1").listen(_factory())
        port, _, backlog, interface = reactor.tcpServers[0]
        self.assertEqual((port, backlog, interface), (0, 7, "::1"))

    def test_ipv6_prefix_for_tcp6(self) -> None:
        description = parse_source_endpoint("tcp6:1")._with_interface("::1")
        self.assertEqual(description, r"tcp6:1:interface=\:\:1")

    def test_escaped_interface_keyword_is_seen(self) -> None:
        self.assertEqual(
            endpoints._keywords(r"tcp:1:interface=a\:b:backlog=3"), {"interface", "backlog"}
        )
        self.assertEqual(endpoints._keywords(r"unix:/a\=b"), set())

    def test_bad_descriptions(self) -> None:
        for bad, reason in (
            ("tcp:abc", "invalid literal for int()"),
            ("tcp:", "invalid literal for int()"),
            ("tcp:5555:bogus=1", "unexpected keyword argument 'bogus'"),
            ("ssl:443:privateKey=/nonexistent/key.pem", "No such file or directory"),
        ):
            e = self.assertRaises(EndpointError, parse_source_endpoint, bad)
            self.assertTrue(
                str(e).startswith(f"Invalid source endpoint description '{bad}': "), str(e)
            )
            self.assertIn(reason, str(e))

    def test_unescaped_ipv6_gets_a_hint(self) -> None:
        e = self.assertRaises(EndpointError, parse_source_endpoint, "tcp:5555:interface=::1")
        self.assertIn(r"must be written '\:', e.g. interface=\:\:1", str(e))

    def test_client_only_type(self) -> None:
        self.patch(endpoints, "server_endpoint_types", lambda: frozenset({"tcp"}))
        self.patch(endpoints, "client_endpoint_types", lambda: frozenset({"tcp", "conly"}))
        e = self.assertRaises(EndpointError, parse_source_endpoint, "conly:x")
        self.assertEqual(
            str(e),
            "Invalid source endpoint description 'conly:x': 'conly' is not a listening endpoint type "
            "(one of: tcp)",
        )

    def test_stdio_is_refused(self) -> None:
        e = self.assertRaises(EndpointError, parse_source_endpoint, "stdio:")
        self.assertIn("use --stdio", str(e))


class DestinationReferenceFormTests(SynchronousTestCase):
    def test_forms(self) -> None:
        cases = {
            "22": ("127.0.0.1", 22),
            "Example.COM:8080": ("example.com", 8080),
            "[::1]:22": ("::1", 22),
            "fe80::1:22": ("fe80::1", 22),
            " host:1 ": ("host", 1),
        }
        for text, (host, port) in cases.items():
            self.assertEqual(
                parse_destination_endpoint(text), DestinationEndpoint(text, host=host, port=port)
            )
        self.assertEqual(parse_destination_endpoint("22", "10.0.0.5").host, "10.0.0.5")

    def test_unix_path(self) -> None:
        endpoint = parse_destination_endpoint(" /run/App.sock ")
        self.assertEqual(endpoint.path, "/run/App.sock")
        self.assertEqual(endpoint.describe(), "Unix socket /run/App.sock")

    def test_errors(self) -> None:
        for bad in ("host", ":22", "[::1]22", "[::1", "example.com", ""):
            e = self.assertRaises(EndpointError, parse_destination_endpoint, bad)
            self.assertEqual(str(e), f"Invalid destination endpoint: {bad}")
        for bad in ("host:", "host:99999", "host:0", "[::1]:x", "0", "65536"):
            e = self.assertRaises(EndpointError, parse_destination_endpoint, bad)
            self.assertEqual(str(e), f"Invalid port in destination endpoint: {bad}")

    def test_describe(self) -> None:
        self.assertEqual(parse_destination_endpoint("22").describe(), "127.0.0.1:22")
        self.assertEqual(parse_destination_endpoint("[::1]:22").describe(), "[::1]:22")

    def test_hostname_endpoint(self) -> None:
        endpoint = parse_destination_endpoint("localhost:22").client_endpoint(MemoryReactor(), 7.5)
        self.assertIsInstance(endpoint, HostnameEndpoint)
        self.assertEqual(
            (endpoint._hostText, endpoint._port, endpoint._timeout), ("localhost", 22, 7.5)
        )

    def test_unix_endpoint(self) -> None:
        reactor = MemoryReactor()
        endpoint = parse_destination_endpoint("/run/app.sock").client_endpoint(reactor, 3)
        self.assertIsInstance(endpoint, UNIXClientEndpoint)
        endpoint.connect(_factory())
        path, _, timeout, _ = reactor.unixClients[0]
        self.assertEqual((path, timeout), ("/run/app.sock", 3))


class DestinationDescriptionTests(SynchronousTestCase):
    def test_unix(self) -> None:
        endpoint = parse_destination_endpoint("unix:/run/sshd.sock")
        self.assertEqual(endpoint.description, "unix:/run/sshd.sock")
        self.assertEqual((endpoint.host, endpoint.port, endpoint.path), (None, None, None))
        reactor = MemoryReactor()
        endpoint.client_endpoint(reactor, 30).connect(_factory())
        self.assertEqual(reactor.unixClients[0][0], "/run/sshd.sock")

    def test_tcp_keywords(self) -> None:
        endpoint = parse_destination_endpoint("tcp:host=example:port=80")
        self.assertEqual(endpoint.describe(), "tcp:host=example:port=80")
        reactor = MemoryReactor()
        endpoint.client_endpoint(reactor, 30).connect(_factory())
        host, port, _, timeout, _ = reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("example", 80, 30))

    def test_own_timeout_is_kept(self) -> None:
        reactor = MemoryReactor()
        parse_destination_endpoint("tcp:h:1:timeout=4").client_endpoint(reactor, 30).connect(
            _factory()
        )
        self.assertEqual(reactor.tcpClients[0][3], 4)

    def test_tls(self) -> None:
        self.assertEqual(
            parse_destination_endpoint("tls:example.com:443").description, "tls:example.com:443"
        )

    def test_bad_descriptions(self) -> None:
        for bad, reason in (
            ("tcp:example", "missing 1 required positional argument: 'port'"),
            ("tcp:h:p", "invalid literal for int()"),
            ("unix:path=/x:bogus=1", "unexpected keyword argument 'bogus'"),
        ):
            e = self.assertRaises(EndpointError, parse_destination_endpoint, bad)
            self.assertTrue(
                str(e).startswith(f"Invalid destination endpoint description '{bad}': "), str(e)
            )
            self.assertIn(reason, str(e))

    def test_server_only_type(self) -> None:
        e = self.assertRaises(EndpointError, parse_destination_endpoint, "tcp6:host:1")
        self.assertTrue(
            str(e).startswith(
                "Invalid destination endpoint description 'tcp6:host:1': 'tcp6' is not a "
                "connecting endpoint type (one of: "
            ),
            str(e),
        )
