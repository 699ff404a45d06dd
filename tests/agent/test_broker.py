"""Broker URLs and the TLS options built for them."""

from __future__ import annotations

import os

from twisted.trial.unittest import TestCase

from aws_localproxy.agent.broker import (
    BROKER_FILE_OPTIONS,
    BrokerConfigError,
    broker_endpoint,
    broker_parameters,
    client_tls_options,
    parse_broker_url,
)
from aws_localproxy.tunnelservice.certs import ensure_certificates
from tests.support.agent import issue_client_certificate


class BrokerOptionsTests(TestCase):
    def test_rows(self) -> None:
        """One row per option, no default, each with the help text given for it."""
        rows = broker_parameters(broker="B", ca="C", cert="T", key="K")
        self.assertEqual(
            rows,
            [
                ["mqtt-broker", None, None, "B"],
                ["mqtt-ca", None, None, "C"],
                ["mqtt-cert", None, None, "T"],
                ["mqtt-key", None, None, "K"],
            ],
        )

    def test_both_commands(self) -> None:
        """localproxy-agent and localtunnel take the broker and its files by the same names."""
        from aws_localproxy.agent.options import AgentOptions
        from aws_localproxy.tunnelservice.tap import Options

        for options in (AgentOptions, Options):
            names = [row[0] for row in options.optParameters]
            start = names.index("mqtt-broker")
            self.assertEqual(names[start : start + 4], ["mqtt-broker", *BROKER_FILE_OPTIONS])


class BrokerURLTests(TestCase):
    def test_forms(self) -> None:
        plain = parse_broker_url("mqtt://broker.local")
        self.assertEqual((plain.host, plain.port, plain.use_tls), ("broker.local", 1883, False))
        tls = parse_broker_url("MQTTS://abc-ats.iot.us-east-1.amazonaws.com")
        self.assertEqual((tls.port, tls.use_tls, tls.offers_alpn), (8883, True, False))
        self.assertTrue(parse_broker_url("mqtts://iot.example:443").offers_alpn)
        self.assertTrue(parse_broker_url("mqtts://iot.example:8883", alpn=True).offers_alpn)
        v6 = parse_broker_url("mqtt://[::1]:1884/")
        self.assertEqual((v6.host, v6.port, v6.url), ("::1", 1884, "mqtt://[::1]:1884"))

    def test_refused(self) -> None:
        for url, message in [
            ("tcp://h", "mqtt:// or mqtts://"),
            ("h:1883", "mqtt:// or mqtts://"),
            ("mqtt://", "no host"),
            ("mqtt://h:0", "invalid broker port"),
            ("mqtt://h:99999", "invalid broker URL"),
            ("mqtt://u:p@h", "credentials"),
            ("mqtt://h/path", "path"),
        ]:
            with self.assertRaises(BrokerConfigError) as caught:
                parse_broker_url(url)
            self.assertIn(message, str(caught.exception))
        self.assertRaises(
            BrokerConfigError, parse_broker_url, "mqtt://h", cert_file="c", key_file="k"
        )
        self.assertRaises(BrokerConfigError, parse_broker_url, "mqtts://h", cert_file="c")


class TLSOptionsTests(TestCase):
    def setUp(self) -> None:
        self.files = ensure_certificates(self.mktemp())

    def test_client_certificate_and_alpn(self) -> None:
        paths = issue_client_certificate(self.files.cert_dir, "dev1", self.mktemp())
        broker = parse_broker_url(
            "mqtts://localhost:443",
            ca_file=self.files.ca_file,
            cert_file=paths["cert"],
            key_file=paths["key"],
        )
        options = client_tls_options(broker)
        self.assertIsNotNone(options)
        self.assertIsNotNone(broker_endpoint(object(), broker))

    def test_unreadable_and_mismatched_files(self) -> None:
        missing = parse_broker_url("mqtts://h", ca_file=os.path.join(self.mktemp(), "none.pem"))
        self.assertRaises(BrokerConfigError, client_tls_options, missing)
        one = issue_client_certificate(self.files.cert_dir, "one", self.mktemp())
        two = issue_client_certificate(self.files.cert_dir, "two", self.mktemp())
        mismatched = parse_broker_url("mqtts://h", cert_file=one["cert"], key_file=two["key"])
        with self.assertRaises(BrokerConfigError):
            client_tls_options(mismatched)
        no_cert = parse_broker_url("mqtts://h", ca_file=one["key"])
        self.assertRaises(BrokerConfigError, client_tls_options, no_cert)
