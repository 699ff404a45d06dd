"""
Tests for aws_localproxy.config.settings_json: the export document (the
reference's, byte for byte) and JSON import.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.settings import (
    DEFAULT_REGION_ENDPOINT_OVERRIDES,
    Settings,
    SettingsError,
)
from aws_localproxy.config.settings_json import (
    default_settings_document,
    export_default_settings,
    load_settings_json,
    parse_settings_json,
)
from tests.support.reference_settings import REFERENCE_DOCUMENT


def _doc(proxy: dict) -> str:
    return json.dumps({"tunneling": {"proxy": proxy}})


class ExportTests(SynchronousTestCase):
    def test_document_is_the_references(self) -> None:
        self.assertEqual(default_settings_document(), REFERENCE_DOCUMENT)

    def test_export_writes_the_document(self) -> None:
        path = self.mktemp()
        export_default_settings(path)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), REFERENCE_DOCUMENT)

    def test_export_to_missing_directory_raises(self) -> None:
        with self.assertRaises(OSError):
            export_default_settings(os.path.join(self.mktemp(), "nope", "x.json"))

    def test_round_trip(self) -> None:
        path = self.mktemp()
        export_default_settings(path)
        self.assertEqual(load_settings_json(path), Settings())


class LoadTests(SynchronousTestCase):
    def test_strings_numbers_and_booleans(self) -> None:
        settings = parse_settings_json(
            _doc(
                {
                    "tcp": {"read_buffer_size": 4096, "connection_retry_count": "-1"},
                    "websocket": {"reconnect_on_data_error": False, "ping_period_ms": "5000"},
                    "message": {"max_payload_size": "1000"},
                }
            )
        )
        self.assertEqual(settings.tcp_read_buffer_size, 4096)
        self.assertEqual(settings.tcp_connection_retry_count, -1)
        self.assertIs(settings.ws_reconnect_on_data_error, False)
        self.assertEqual(settings.ws_ping_period_ms, 5000)
        self.assertEqual(settings.max_payload_size, 1000)

    def test_boolean_spellings(self) -> None:
        for text, expected in (
            ("true", True),
            ("1", True),
            ("false", False),
            ("0", False),
            (1, True),
        ):
            settings = parse_settings_json(_doc({"websocket": {"reconnect_on_data_error": text}}))
            self.assertIs(settings.ws_reconnect_on_data_error, expected, text)

    def test_missing_keys_default_unknown_ignored(self) -> None:
        settings = parse_settings_json(_doc({"tcp": {"bogus": "1"}, "other": {"x": 1}}))
        self.assertEqual(settings, Settings())
        self.assertEqual(parse_settings_json("{}"), Settings())

    def test_unexported_keys_are_read(self) -> None:
        settings = parse_settings_json(
            _doc({"endpoint_format": "tunnel.%s.example", "tcp": {"write_buffer_size": "999"}})
        )
        self.assertEqual(settings.endpoint_format, "tunnel.%s.example")
        self.assertEqual(settings.tcp_write_buffer_size, 999)

    def test_china_overrides_survive(self) -> None:
        """The reference's bug: a document without overrides used to drop the cn regions."""
        settings = parse_settings_json(_doc({"tcp": {"read_buffer_size": "100"}}))
        self.assertEqual(
            dict(settings.region_endpoint_overrides), dict(DEFAULT_REGION_ENDPOINT_OVERRIDES)
        )

    def test_overrides_are_merged(self) -> None:
        settings = parse_settings_json(
            _doc(
                {
                    "region_endpoint_overrides": {
                        "cn-north-1": "x.example:8443",
                        "eu-x-1": "y.example",
                    }
                }
            )
        )
        self.assertEqual(settings.region_endpoint_overrides["cn-north-1"], "x.example:8443")
        self.assertEqual(settings.region_endpoint_overrides["eu-x-1"], "y.example")
        self.assertEqual(
            settings.region_endpoint_overrides["cn-northwest-1"],
            DEFAULT_REGION_ENDPOINT_OVERRIDES["cn-northwest-1"],
        )

    def test_bad_value_names_the_key(self) -> None:
        e = self.assertRaises(
            SettingsError, parse_settings_json, _doc({"tcp": {"read_buffer_size": "abc"}})
        )
        self.assertIn("tunneling.proxy.tcp.read_buffer_size", str(e))
        e = self.assertRaises(
            SettingsError,
            parse_settings_json,
            _doc({"websocket": {"reconnect_on_data_error": "maybe"}}),
        )
        self.assertIn("tunneling.proxy.websocket.reconnect_on_data_error", str(e))
        e = self.assertRaises(
            SettingsError, parse_settings_json, _doc({"message": {"max_size": 1.5}})
        )
        self.assertIn("tunneling.proxy.message.max_size", str(e))

    def test_malformed_json(self) -> None:
        e = self.assertRaises(SettingsError, parse_settings_json, "{ nope", "s.json")
        self.assertIn("Malformed JSON", str(e))
        self.assertIn("s.json", str(e))
        self.assertRaises(SettingsError, parse_settings_json, "[1, 2]")

    def test_unreadable_file(self) -> None:
        path = self.mktemp()
        e = self.assertRaises(SettingsError, load_settings_json, path)
        self.assertIn(path, str(e))

    def test_load_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(_doc({"default_bind_address": "0.0.0.0"}))
        self.assertEqual(load_settings_json(path).default_bind_address, "0.0.0.0")
