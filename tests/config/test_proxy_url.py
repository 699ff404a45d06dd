"""
Tests for aws_localproxy.config.proxy_url: the proxy URL grammar, the environment, NO_PROXY.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.proxy_url import (
    ProxyURL,
    ProxyURLError,
    bypass_proxy,
    no_proxy_from_environment,
    parse_proxy_url,
    proxy_from_environment,
)


class ParseProxyURLTests(SynchronousTestCase):
    """parse_proxy_url: the reference's grammar, its bugs fixed."""

    def assertError(self, text: str, message: str) -> None:
        with self.assertRaises(ProxyURLError) as caught:
            parse_proxy_url(text)
        self.assertIn(message, str(caught.exception))

    def test_reference_happy_cases(self) -> None:
        """The reference's Url.cpp happy cases (for the schemes we support) parse alike."""
        url = parse_proxy_url("http://user:12345@server.com:90")
        self.assertEqual(
            (url.scheme, url.host, url.port, url.credentials),
            ("http", "server.com", 90, ("user", "12345")),
        )
        url = parse_proxy_url("http://user:password@server.com:3129")
        self.assertEqual(
            (url.host, url.port, url.credentials), ("server.com", 3129, ("user", "password"))
        )

    def test_percent_decoded_credentials(self) -> None:
        """Credentials are percent-decoded, '+' is a space, as in the reference."""
        url = parse_proxy_url("http://user:F%40o%3Ao%21B%23ar+%24@server.com:109")
        self.assertEqual(url.credentials, ("user", "F@o:o!B#ar $"))
        url = parse_proxy_url("http://us%3Aer%40x:p@server.com")
        self.assertEqual(url.credentials, ("us:er@x", "p"))

    def test_unencoded_at_in_password(self) -> None:
        """The credentials end at the last '@', as in the reference."""
        url = parse_proxy_url("http://user:p@ss/word@proxy:8080")
        self.assertEqual(
            (url.credentials, url.host, url.port), (("user", "p@ss/word"), "proxy", 8080)
        )

    def test_no_scheme_is_http(self) -> None:
        """Without 'scheme://' the URL is http and the host is whole (U1 fixed)."""
        url = parse_proxy_url("proxy:3128")
        self.assertEqual((url.scheme, url.host, url.port), ("http", "proxy", 3128))
        url = parse_proxy_url("u:p@proxy.example.com:8080")
        self.assertEqual(
            (url.scheme, url.host, url.port, url.credentials),
            ("http", "proxy.example.com", 8080, ("u", "p")),
        )

    def test_scheme_and_host_lower_case(self) -> None:
        """Scheme and host are lower-cased; credentials are not."""
        url = parse_proxy_url("HTTPS://User:PassWord@Proxy.Example.COM:8443")
        self.assertEqual(
            (url.scheme, url.host, url.credentials),
            ("https", "proxy.example.com", ("User", "PassWord")),
        )

    def test_default_ports(self) -> None:
        """No port, or port 0, gives 3128 for http and https, 1080 for SOCKS5."""
        for text, port in [
            ("http://proxy", 3128),
            ("http://proxy:", 3128),
            ("http://proxy:0", 3128),
            ("https://proxy", 3128),
            ("socks5://proxy", 1080),
            ("socks5h://proxy", 1080),
        ]:
            url = parse_proxy_url(text)
            self.assertEqual(url.port, port, text)
            self.assertTrue(url.port_defaulted, text)
        self.assertFalse(parse_proxy_url("http://proxy:80").port_defaulted)

    def test_ipv6(self) -> None:
        """IPv6 literals in brackets, with or without a port; the host has no brackets."""
        self.assertEqual(parse_proxy_url("http://[::1]:8080").host, "::1")
        url = parse_proxy_url("https://[2001:db8::1]:443")
        self.assertEqual(
            (url.host, url.port, url.authority), ("2001:db8::1", 443, "[2001:db8::1]:443")
        )
        url = parse_proxy_url("http://[fe80::1]")
        self.assertEqual((url.host, url.port), ("fe80::1", 3128))

    def test_ipv6_errors(self) -> None:
        """A missing ']', a bad address or junk after ']' is an error; unbracketed IPv6 too."""
        self.assertError("http://[::1:8080", "Invalid IPv6 address in URL: missing closing ']'")
        self.assertError("http://[zz::1]:80", "Invalid IPv6 address in URL")
        self.assertError("http://[::1]x:80", "Unexpected text after the IPv6 address")
        self.assertError("http://::1:8080", "put an IPv6 address in brackets")

    def test_trailing_slash_ignored(self) -> None:
        """'http://proxy:3128/' and 'http://proxy/' work; the '/' is not part of the host (U1)."""
        self.assertEqual(parse_proxy_url("http://proxy:3128/").authority, "proxy:3128")
        self.assertEqual(parse_proxy_url("http://proxy/").authority, "proxy:3128")

    def test_path_rejected(self) -> None:
        """Any other path, query or fragment is rejected with its own message."""
        for text in ["http://proxy/x", "http://proxy:3128/path", "http://proxy?a=b", "http://p#f"]:
            self.assertError(text, "Unexpected path in web proxy URL")

    def test_reference_invalid_cases(self) -> None:
        """The reference's invalid URLs fail with its messages."""
        self.assertError("://server.com", "Invalid URL, missing protocol")
        self.assertError(
            "http://@server.com:3128",
            "Empty authentication, if you don't need to authentication information, remove `@`",
        )
        self.assertError(
            "http://user@server.com:3128",
            "Missing the colon between the username and password in URL.",
        )
        for text in [
            "http://:@server.com:3128",
            "http://:1@server.com:3128",
            "http://1:@server.com:3128",
        ]:
            self.assertError(
                text, "Invalid authentication format, missing either username or password."
            )
        self.assertError("http://server.com:abs", "Failed to parse the port")
        self.assertError("http://server.com:70000", "Failed to parse the port")
        self.assertError("http://server.com:99999", "out of range")
        self.assertError("http://:3128", "Missing HTTP host address")
        self.assertError("http://", "Missing HTTP host address")

    def test_unsupported_scheme(self) -> None:
        """Schemes other than http, https, socks5, socks5h are rejected by name."""
        self.assertError("tcp://user:x@server.com:109", "Unsupported protocol: 'tcp'")
        self.assertError("socks4://server.com", "Unsupported protocol")

    def test_bad_host(self) -> None:
        """A host with characters no host name has is rejected."""
        self.assertError("http://pro xy:3128", "Invalid web proxy host name")

    def test_percent_decoding_errors(self) -> None:
        """'%' needs two hex digits (stricter than the reference); %00 is rejected."""
        for raw, message in [
            ("%%", "Invalid URL token"),
            ("%%41", "Invalid Hex number"),
            ("%", "Invalid URL token"),
            ("%gh", "Invalid Hex number"),
            ("%h1", "Invalid Hex number"),
            ("%x2", "Invalid Hex number"),
            ("121fad%1", "Invalid URL token"),
            ("%1g", "Invalid Hex number"),
            ("%+1", "Invalid Hex number"),
            ("%00", "encoded null byte (%00) is not allowed"),
            ("abc%00def", "encoded null byte (%00) is not allowed"),
        ]:
            self.assertError(f"http://user:{raw}@proxy", message)

    def test_percent_decoding_reference_vector(self) -> None:
        """The reference's long url_decode vector decodes the same."""
        raw = (
            "%24%20%26%20%3C%20%3E%20%3F%20%3B%20%23%20%3A%20%3D%20%2C%20%22%20%27%20~%20%2B%20%25"
        )
        url = parse_proxy_url(f"http://u:{raw}@proxy")
        self.assertEqual(url.password, "$ & < > ? ; # : = , \" ' ~ + %")
        self.assertEqual(parse_proxy_url("http://u:%40fasdbla@p").password, "@fasdbla")

    def test_utf8_credentials(self) -> None:
        """Percent-encoded UTF-8 decodes to text; invalid UTF-8 is an error."""
        self.assertEqual(parse_proxy_url("http://u:%C3%A9t%C3%A9@p").password, "été")
        self.assertError("http://u:%C3@p", "not valid UTF-8")

    def test_password_never_shown(self) -> None:
        """repr and str of a ProxyURL never contain the password or user name."""
        url = parse_proxy_url("http://alice:s3cr3t-pw@proxy:3128")
        for text in (repr(url), str(url)):
            self.assertNotIn("s3cr3t-pw", text)
            self.assertNotIn("alice", text)
        self.assertEqual(str(url), "http://***:***@proxy:3128")
        self.assertEqual(str(parse_proxy_url("proxy")), "http://proxy:3128")

    def test_invalid_object_cannot_exist(self) -> None:
        """ProxyURL itself refuses an unsupported scheme."""
        self.assertRaises(ValueError, ProxyURL, scheme="ftp", host="h", port=1)

    def test_error_is_value_error(self) -> None:
        """ProxyURLError is a ValueError whose message is the reason (U3 fixed)."""
        with self.assertRaises(ValueError) as caught:
            parse_proxy_url("http://server.com:abs")
        self.assertEqual(str(caught.exception), "Failed to parse the port: 'abs' is not a number")


class EnvironmentTests(SynchronousTestCase):
    """proxy_from_environment / no_proxy_from_environment."""

    def test_lower_case_wins(self) -> None:
        """https_proxy is used over HTTPS_PROXY."""
        env = {"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2"}
        self.assertEqual(proxy_from_environment(env), "http://a:1")

    def test_upper_case(self) -> None:
        """HTTPS_PROXY is used when https_proxy is not set."""
        self.assertEqual(proxy_from_environment({"HTTPS_PROXY": "http://b:2"}), "http://b:2")

    def test_empty_lower_case_masks(self) -> None:
        """An empty https_proxy means no proxy, even with HTTPS_PROXY set (as the reference)."""
        self.assertIsNone(proxy_from_environment({"https_proxy": "", "HTTPS_PROXY": "http://b"}))

    def test_nothing(self) -> None:
        """No variable, no proxy; HTTP_PROXY and ALL_PROXY are not read."""
        self.assertIsNone(proxy_from_environment({}))
        self.assertIsNone(
            proxy_from_environment({"HTTP_PROXY": "x", "ALL_PROXY": "y", "http_proxy": "z"})
        )

    def test_no_proxy(self) -> None:
        """no_proxy over NO_PROXY, with the same 'set wins' rule."""
        self.assertEqual(no_proxy_from_environment({"no_proxy": "a", "NO_PROXY": "b"}), "a")
        self.assertEqual(no_proxy_from_environment({"NO_PROXY": "b"}), "b")
        self.assertIsNone(no_proxy_from_environment({"no_proxy": "", "NO_PROXY": "b"}))
        self.assertIsNone(no_proxy_from_environment({}))


class BypassProxyTests(SynchronousTestCase):
    """bypass_proxy: NO_PROXY as curl and most tools read it."""

    def test_empty(self) -> None:
        """No list, or an empty one, bypasses nothing."""
        self.assertFalse(bypass_proxy("example.com", None))
        self.assertFalse(bypass_proxy("example.com", ""))
        self.assertFalse(bypass_proxy("example.com", " , "))

    def test_star(self) -> None:
        """'*' alone bypasses every host."""
        self.assertTrue(bypass_proxy("anything.example", "*"))
        self.assertTrue(bypass_proxy("10.1.2.3", "foo, *"))

    def test_suffix(self) -> None:
        """A name matches itself and subdomains, with or without a leading dot or '*.'."""
        for entry in ["amazonaws.com", ".amazonaws.com", "*.amazonaws.com"]:
            self.assertTrue(bypass_proxy("data.tunneling.iot.us-east-1.amazonaws.com", entry))
            self.assertFalse(bypass_proxy("notamazonaws.com", entry), entry)
        self.assertTrue(bypass_proxy("amazonaws.com", "amazonaws.com"))

    def test_case_and_trailing_dot(self) -> None:
        """Case and a trailing dot do not matter."""
        self.assertTrue(bypass_proxy("Data.Example.COM.", "example.com"))
        self.assertTrue(bypass_proxy("data.example.com", "EXAMPLE.COM."))

    def test_list_separators(self) -> None:
        """Entries are separated by commas and/or spaces."""
        self.assertTrue(bypass_proxy("b.example", "a.example, b.example"))
        self.assertTrue(bypass_proxy("b.example", "a.example b.example"))
        self.assertFalse(bypass_proxy("c.example", "a.example,b.example"))

    def test_port_entries(self) -> None:
        """host:port entries match that port only."""
        self.assertTrue(bypass_proxy("localhost", "localhost:8443", 8443))
        self.assertFalse(bypass_proxy("localhost", "localhost:8443", 443))
        self.assertTrue(bypass_proxy("::1", "[::1]:8443", 8443))
        self.assertFalse(bypass_proxy("::1", "[::1]:8443", 443))

    def test_ip_literals(self) -> None:
        """IP literals match exactly, IPv6 in any spelling, with or without brackets."""
        self.assertTrue(bypass_proxy("127.0.0.1", "localhost,127.0.0.1"))
        self.assertFalse(bypass_proxy("127.0.0.2", "127.0.0.1"))
        self.assertTrue(bypass_proxy("::1", "0:0:0:0:0:0:0:1"))
        self.assertTrue(bypass_proxy("[::1]", "::1"))
        self.assertFalse(bypass_proxy("1.2.3.4", "2.3.4"))

    def test_cidr(self) -> None:
        """A CIDR block matches the addresses in it, and never a name."""
        self.assertTrue(bypass_proxy("10.20.30.40", "10.0.0.0/8"))
        self.assertFalse(bypass_proxy("11.0.0.1", "10.0.0.0/8"))
        self.assertTrue(bypass_proxy("fd00::5", "fd00::/8"))
        self.assertFalse(bypass_proxy("ten.example", "10.0.0.0/8"))
        self.assertFalse(bypass_proxy("10.0.0.1", "not/a/cidr"))
