"""
Tests for aws_localproxy.config.regions: the service endpoint of a region
(overrides and the China partition included) and the endpoint grammar.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.regions import (
    EndpointError,
    ServiceEndpoint,
    endpoint_for_region,
    parse_endpoint,
)
from aws_localproxy.config.settings import Settings


class RegionTests(SynchronousTestCase):
    def test_region(self) -> None:
        self.assertEqual(
            endpoint_for_region("us-east-1"),
            ServiceEndpoint("data.tunneling.iot.us-east-1.amazonaws.com", 443),
        )

    def test_china(self) -> None:
        self.assertEqual(
            endpoint_for_region("cn-north-1").host, "data.tunneling.iot.cn-north-1.amazonaws.com.cn"
        )
        self.assertEqual(
            endpoint_for_region("cn-northwest-1").host,
            "data.tunneling.iot.cn-northwest-1.amazonaws.com.cn",
        )

    def test_override_with_port_and_format(self) -> None:
        settings = Settings(
            endpoint_format="t.%s.example", region_endpoint_overrides={"lab-1": "Lab.Example:8443"}
        )
        self.assertEqual(
            endpoint_for_region("lab-1", settings), ServiceEndpoint("lab.example", 8443)
        )
        self.assertEqual(
            endpoint_for_region("us-east-2", settings), ServiceEndpoint("t.us-east-2.example", 443)
        )

    def test_endpoints(self) -> None:
        self.assertEqual(parse_endpoint("Host.Example"), ServiceEndpoint("host.example", 443))
        self.assertEqual(parse_endpoint("host:8443"), ServiceEndpoint("host", 8443))
        self.assertEqual(parse_endpoint("[::1]"), ServiceEndpoint("::1", 443))
        self.assertEqual(parse_endpoint("[::1]:8443"), ServiceEndpoint("::1", 8443))
        self.assertEqual(
            parse_endpoint("ws://127.0.0.1:9000/"), ServiceEndpoint("127.0.0.1", 9000, False)
        )
        self.assertEqual(parse_endpoint("ws://localhost"), ServiceEndpoint("localhost", 80, False))
        self.assertEqual(parse_endpoint("wss://localhost"), ServiceEndpoint("localhost", 443, True))

    def test_bad_endpoints(self) -> None:
        for bad in (
            "host:",
            "host:0",
            "host:65536",
            "host:44x",
            "::1",
            "[::1",
            "[nothost]:1",
            "[::1]x",
            ":443",
        ):
            e = self.assertRaises(EndpointError, parse_endpoint, bad)
            self.assertTrue(str(e).startswith("Invalid endpoint specified: "), bad)
