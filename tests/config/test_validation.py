"""
Tests for aws_localproxy.config.validation: each rule on its own, with the message
the console script prints (the checklist's order is tests.config.test_build's).
"""

from __future__ import annotations

import os

from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.client_token import generate_client_token
from aws_localproxy.config.validation import (
    ConfigurationError,
    bind_address,
    check_access_token,
    check_capath,
    check_client_token,
    check_client_token_file,
    check_path,
    check_proxy_endpoint_text,
    check_region,
    parse_metrics_address,
    parse_metrics_port,
    parse_mode,
    parse_verbosity,
    peer_version,
    truthy,
)
from aws_localproxy.protocol.constants import Mode, PeerVersion


class _Rules(SynchronousTestCase):
    def assertMessage(
        self, error_type: type, message: str, function: object, *args: object
    ) -> None:
        e = self.assertRaises(error_type, function, *args)
        self.assertEqual(str(e), message)


class FlagAndVerbosityTests(_Rules):
    def test_truthy(self) -> None:
        for text in ("", "1", "TRUE", " yes ", "on"):
            self.assertTrue(truthy("stdio", text), text)
        for text in ("0", "false", "No", "off"):
            self.assertFalse(truthy("stdio", text), text)
        self.assertMessage(
            usage.UsageError,
            "the argument ('maybe') for option '--stdio' is invalid",
            truthy,
            "stdio",
            "maybe",
        )

    def test_verbosity(self) -> None:
        self.assertEqual(parse_verbosity("0"), 0)
        self.assertEqual(parse_verbosity(" 3 "), 3)
        self.assertEqual(parse_verbosity("99"), 6)
        for bad in ("-1", "x", "65536", "٣"):
            self.assertMessage(
                usage.UsageError,
                f"the argument ('{bad}') for option '--verbose' is invalid",
                parse_verbosity,
                bad,
            )


class PathTests(_Rules):
    def test_path(self) -> None:
        self.assertEqual(check_path("/etc/x", "--capath"), "/etc/x")
        self.assertMessage(
            ConfigurationError, "Path cannot be empty (--capath)", check_path, "", "--capath"
        )
        self.assertMessage(
            ConfigurationError,
            "Path exceeds maximum allowed length (-c)",
            check_path,
            "a" * 4097,
            "-c",
        )
        self.assertMessage(
            ConfigurationError, "Path contains invalid null byte (-c)", check_path, "a\0b", "-c"
        )

    def test_capath(self) -> None:
        self.assertIsNone(check_capath(None))
        directory = self.mktemp()
        os.mkdir(directory)
        self.assertEqual(check_capath(directory), directory)
        missing = directory + "/nope"
        self.assertMessage(
            ConfigurationError,
            f"CA directory does not exist or is not a directory: {missing} (--capath)",
            check_capath,
            missing,
        )

    def test_client_token_file(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "token")
        self.assertIsNone(check_client_token_file(path))
        token = generate_client_token()
        with open(path, "w") as f:
            f.write(token + "\n")
        self.assertEqual(check_client_token_file(path), token)
        self.assertMessage(
            ConfigurationError,
            f"Directory of the client token file does not exist: {directory}/no (--client-token-file)",
            check_client_token_file,
            os.path.join(directory, "no", "token"),
        )
        with open(path, "w") as f:
            f.write("short\n")
        e = self.assertRaises(ConfigurationError, check_client_token_file, path)
        self.assertTrue(str(e).endswith(" (--client-token-file)"), str(e))


class TokenTests(_Rules):
    def test_access_token(self) -> None:
        self.assertEqual(check_access_token("abc"), "abc")
        for token, message in [
            ("", "Access token cannot be empty (--access-token)"),
            ("a" * 4097, "Access token exceeds maximum allowed length (--access-token)"),
            ("a\nb", "Access token contains invalid control characters (--access-token)"),
            ("a\x7f", "Access token contains invalid control characters (--access-token)"),
            ("é", "Access token contains non-ASCII characters (--access-token)"),
        ]:
            self.assertMessage(ConfigurationError, message, check_access_token, token)
        self.assertEqual(check_access_token("a" * 4096), "a" * 4096)

    def test_client_token(self) -> None:
        good = "a-" * 16
        self.assertEqual(check_client_token(good), good)
        self.assertEqual(check_client_token("b" * 128), "b" * 128)
        for token, message in [
            ("a" * 31, "Client token must be between 32 and 128 characters (--client-token)"),
            ("a" * 129, "Client token must be between 32 and 128 characters (--client-token)"),
            ("a" * 31 + "\t", "Client token contains invalid control characters (--client-token)"),
            (
                "a" * 31 + "_",
                "Client token must contain only letters, digits and hyphens (--client-token)",
            ),
        ]:
            self.assertMessage(ConfigurationError, message, check_client_token, token)


class ServiceAddressTests(_Rules):
    def test_region(self) -> None:
        self.assertEqual(check_region("us-east-1"), "us-east-1")
        for region, message in [
            ("", "Region cannot be empty (--region)"),
            ("a" * 65, "Region exceeds maximum allowed length (--region)"),
            (
                "US-EAST-1",
                "Region must contain only lowercase letters, numbers, and hyphens (--region)",
            ),
            (
                # "$" matched before a final newline: this one was accepted.
                "us-east-1\n",
                "Region must contain only lowercase letters, numbers, and hyphens (--region)",
            ),
        ]:
            self.assertMessage(ConfigurationError, message, check_region, region)

    def test_proxy_endpoint(self) -> None:
        self.assertEqual(check_proxy_endpoint_text("wss://[::1]:443/"), "wss://[::1]:443/")
        for text, message in [
            ("", "Proxy endpoint cannot be empty (--proxy-endpoint)"),
            ("a" * 254, "Proxy endpoint exceeds maximum allowed length (--proxy-endpoint)"),
            ("host/path", "Proxy endpoint contains invalid characters (--proxy-endpoint)"),
            ("https://host", "Proxy endpoint contains invalid characters (--proxy-endpoint)"),
        ]:
            self.assertMessage(ConfigurationError, message, check_proxy_endpoint_text, text)


class ModeAndAddressTests(_Rules):
    def test_mode(self) -> None:
        self.assertIsNone(parse_mode(None))
        self.assertEqual(parse_mode("src"), Mode.SOURCE)
        self.assertEqual(parse_mode("destination"), Mode.DESTINATION)
        self.assertMessage(
            usage.UsageError,
            "Mode value is wrong! Allowed values are: src, dst, source, destination (--mode/-m: 'SRC')",
            parse_mode,
            "SRC",
        )

    def test_peer_version(self) -> None:
        self.assertEqual(peer_version(None), PeerVersion.V3)
        self.assertEqual(peer_version("V1"), PeerVersion.V1)
        self.assertEqual(peer_version("V2"), PeerVersion.V2)
        with capturedLogs() as events:
            self.assertEqual(peer_version("V9"), PeerVersion.V3)
        self.assertIn("assuming default protocol V3", events[0]["log_format"])

    def test_bind_address(self) -> None:
        self.assertIsNone(bind_address(None))
        self.assertIsNone(bind_address(""))
        self.assertEqual(bind_address("[::1]"), "::1")
        self.assertEqual(bind_address("127.0.0.1"), "127.0.0.1")
        self.assertMessage(
            ConfigurationError,
            "Bind address exceeds maximum allowed length (--local-bind-address)",
            bind_address,
            "a" * 254,
        )
        self.assertMessage(
            ConfigurationError,
            "Bind address contains invalid characters (--local-bind-address)",
            bind_address,
            "a b",
        )

    def test_metrics(self) -> None:
        self.assertEqual(parse_metrics_port(" 0 "), 0)
        self.assertEqual(parse_metrics_port("65535"), 65535)
        for bad in ("65536", "-1", "x"):
            self.assertMessage(
                usage.UsageError,
                f"the argument ('{bad}') for option '--metrics-port' is invalid",
                parse_metrics_port,
                bad,
            )
        self.assertEqual(parse_metrics_address("[::1]"), "::1")
        self.assertEqual(parse_metrics_address(" localhost "), "localhost")
        for bad in ("", "a b", "a" * 254):
            self.assertMessage(
                usage.UsageError,
                f"the argument ('{bad}') for option '--metrics-address' is invalid",
                parse_metrics_address,
                bad,
            )
