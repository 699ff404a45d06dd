"""The notify message: topic, parsing, the rules, and what the local tunnel service encodes."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import TestCase

from aws_localproxy.agent.notification import (
    NotificationError,
    WrongClientMode,
    encode_notification,
    notify_topic,
    parse_notification,
)

TOKEN = "AQGAAXiL-destination-token-0123456789abcdef"


def payload(**fields: Any) -> bytes:
    body = {
        "clientAccessToken": TOKEN,
        "clientMode": "destination",
        "region": "eu-west-1",
        "services": ["SSH"],
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


class NotificationTests(TestCase):
    def test_topic(self) -> None:
        self.assertEqual(notify_topic("dev1"), "$aws/things/dev1/tunnels/notify")
        for bad in ("", "a/b", "+", "#", "x" * 129):
            self.assertRaises(ValueError, notify_topic, bad)

    def test_round_trip(self) -> None:
        parsed = parse_notification(encode_notification(TOKEN, "eu-west-1", ["SSH", "WEB"]))
        self.assertEqual(parsed.client_access_token, TOKEN)
        self.assertEqual(parsed.region, "eu-west-1")
        self.assertEqual(parsed.services, ("SSH", "WEB"))
        self.assertNotIn(TOKEN, repr(parsed))

    def test_the_real_services_shape(self) -> None:
        self.assertEqual(
            json.loads(encode_notification(TOKEN, "us-east-1", ["SSH"])),
            {
                "clientAccessToken": TOKEN,
                "clientMode": "destination",
                "region": "us-east-1",
                "services": ["SSH"],
            },
        )

    def test_no_services_is_allowed(self) -> None:
        self.assertEqual(parse_notification(payload(services=None)).services, ())

    def test_source_mode(self) -> None:
        self.assertRaises(WrongClientMode, parse_notification, payload(clientMode="source"))

    def test_bad(self) -> None:
        cases = {
            b"{": "not JSON",
            b"\xff\xfe": "not JSON",
            b"[]": "not a JSON object",
            payload(clientAccessToken=None): "has no clientAccessToken",
            payload(clientAccessToken=""): "clientAccessToken is empty",
            payload(clientAccessToken=5): "clientAccessToken is not a string",
            payload(clientAccessToken="a\nb"): "not a valid token",
            payload(clientMode=None): "has no clientMode",
            payload(region=None): "has no region",
            payload(region="EU WEST"): "region is not a region",
            payload(region="us-east-1\n"): "region is not a region",
            payload(region="a" * 65): "region is not a region",
            payload(services="SSH"): "not a list of strings",
            payload(services=[1]): "not a list of strings",
            payload(services=["a b"]): "invalid service ID",
            payload(services=["SSH\n"]): "invalid service ID",
            payload(services=["A" * 129]): "invalid service ID",
            payload(services=[""]): "invalid service ID",
            payload(services=["A", "A"]): "twice",
            payload(services=["A", "B", "C", "D"]): "at most 3",
            b" " * 70000: "too long",
        }
        for raw, message in cases.items():
            with self.assertRaises(NotificationError) as caught:
                parse_notification(raw)
            self.assertIn(message, str(caught.exception))
            self.assertNotIn(TOKEN, str(caught.exception))
