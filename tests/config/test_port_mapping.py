"""Tests for aws_localproxy.config.port_mapping: the -s/-d grammar, its V1 form, descriptions and the reference's messages."""

from __future__ import annotations

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.port_mapping import check_service_id, parse_port_mapping
from aws_localproxy.config.validation import ConfigurationError


class PortMappingTests(SynchronousTestCase):
    def test_v1_forms(self) -> None:
        self.assertEqual(parse_port_mapping("5555", "s", source=True), {"": "5555"})
        self.assertEqual(
            parse_port_mapping("localhost:22", "d", source=False), {"": "localhost:22"}
        )
        self.assertEqual(
            parse_port_mapping("/run/app.sock", "d", source=False), {"": "/run/app.sock"}
        )

    def test_trailing_comma(self) -> None:
        e = self.assertRaises(ConfigurationError, parse_port_mapping, "5555,", "s", source=True)
        self.assertIn("Wrong format for the port mappings! Example: SSH1=5555,SSH2=6666.", str(e))

    def test_empty_side(self) -> None:
        e = self.assertRaises(ConfigurationError, parse_port_mapping, "SSH1=", "s", source=True)
        self.assertIn("Wrong format for the port mappings: SSH1= .Example: SSH1=5555", str(e))

    def test_commas_and_equals_merged(self) -> None:
        self.assertEqual(parse_port_mapping("A==1,,B=2", "s", source=True), {"A": "1", "B": "2"})

    def test_duplicate_first_wins(self) -> None:
        with capturedLogs() as events:
            self.assertEqual(parse_port_mapping("A=1,A=2", "s", source=True), {"A": "1"})
        self.assertTrue(any(e["log_format"].startswith("Duplicate mappings") for e in events))

    def test_service_id_rules(self) -> None:
        self.assertRaises(
            ConfigurationError, parse_port_mapping, "A" * 129 + "=1", "s", source=True
        )
        e = self.assertRaises(ConfigurationError, parse_port_mapping, "a b=1", "s", source=True)
        self.assertIn("Service ID must contain only", str(e))
        # "$" matched before a final newline: this one was accepted.
        e = self.assertRaises(ConfigurationError, check_service_id, "SSH\n", "-d")
        self.assertIn("Service ID must contain only", str(e))
        self.assertEqual(
            parse_port_mapping("host.example=1", "s", source=True), {"host.example": "1"}
        )

    def test_ports(self) -> None:
        for bad, reason in (
            ("0", "between 1 and 65535"),
            ("65536", "between 1 and 65535"),
            ("99999999999", "too large"),
        ):
            e = self.assertRaises(ConfigurationError, parse_port_mapping, bad, "s", source=True)
            self.assertIn(reason, str(e))
        self.assertEqual(parse_port_mapping("SSH1=05555", "s", source=True), {"SSH1": "5555"})

    def test_destination_hosts(self) -> None:
        self.assertEqual(parse_port_mapping("A=[::1]:22", "d", source=False), {"A": "[::1]:22"})
        for bad, reason in (
            ("A=bad_host:22", "invalid characters"),
            ("A=host:", "only digits"),
            ("A=example.com", "Invalid destination endpoint: example.com"),
            ("A=host:x", "only digits"),
            ("A=" + "h" * 254, "maximum allowed length"),
        ):
            e = self.assertRaises(ConfigurationError, parse_port_mapping, bad, "d", source=False)
            self.assertIn(reason, str(e))

    def test_descriptions(self) -> None:
        """Twisted endpoint descriptions, "=" and all, in both the V1 and the ID=ENDPOINT forms."""
        self.assertEqual(
            parse_port_mapping("SSH1=unix:/run/ssh1.sock", "s", source=True),
            {"SSH1": "unix:/run/ssh1.sock"},
        )
        self.assertEqual(
            parse_port_mapping(r"SSH1=tcp:5555:interface=\:\:1,B=6", "s", source=True),
            {"SSH1": r"tcp:5555:interface=\:\:1", "B": "6"},
        )
        self.assertEqual(
            parse_port_mapping("unix:/run/sshd.sock", "d", source=False),
            {"": "unix:/run/sshd.sock"},
        )
        self.assertEqual(
            parse_port_mapping("WEB=tcp:host=example:port=80", "d", source=False),
            {"WEB": "tcp:host=example:port=80"},
        )
        self.assertEqual(
            parse_port_mapping("tcp:host=example:port=80", "d", source=False),
            {"": "tcp:host=example:port=80"},
        )

    def test_bad_descriptions(self) -> None:
        with capturedLogs() as events:
            e = self.assertRaises(
                ConfigurationError, parse_port_mapping, "A=tcp:abc", "s", source=True
            )
        self.assertEqual(
            str(e),
            "Invalid source endpoint description 'tcp:abc': invalid literal for int() with base 10: 'abc'"
            " (source-listen-port)".replace("source-listen-port", "s"),
        )
        self.assertTrue(any(e["log_format"].startswith("SECURITY: Rejected input") for e in events))
        e = self.assertRaises(
            ConfigurationError, parse_port_mapping, "A=tcp6:h:1", "d", source=False
        )
        self.assertIn("'tcp6' is not a connecting endpoint type", str(e))
        e = self.assertRaises(ConfigurationError, parse_port_mapping, "A=1=2", "s", source=True)
        self.assertEqual(
            str(e), "Wrong format for the port mappings: A=1=2 .Example: SSH1=5555 (s)"
        )

    def test_source_needs_ports(self) -> None:
        self.assertRaises(
            ConfigurationError, parse_port_mapping, "A=localhost:22", "s", source=True
        )
        self.assertRaises(ConfigurationError, parse_port_mapping, "localhost", "s", source=True)
