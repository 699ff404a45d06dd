"""Tests for aws_localproxy.config.settings and aws_localproxy.config.settings_json: defaults, validation, the export document and JSON import."""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.settings import (
    DEFAULT_REGION_ENDPOINT_OVERRIDES,
    LocalSockets,
    Settings,
    SettingsError,
    inert_settings,
    whole_payloads,
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


class ValidationTests(SynchronousTestCase):
    def test_defaults_are_valid(self) -> None:
        self.assertEqual(Settings().limits.max_payload_size, 64512)

    def test_payload_larger_than_message(self) -> None:
        e = self.assertRaises(SettingsError, Settings, max_payload_size=70000)
        self.assertIn("max_payload_size", str(e))
        e = self.assertRaises(
            SettingsError, parse_settings_json, _doc({"message": {"max_payload_size": "65537"}})
        )
        self.assertIn("tunneling.proxy.message.max_payload_size", str(e))

    def test_subprotocol(self) -> None:
        e = self.assertRaises(SettingsError, Settings, ws_subprotocol="aws.iot.securetunneling-9.0")
        self.assertIn("tunneling.proxy.websocket.subprotocol", str(e))
        for name in ("aws.iot.securetunneling-1.0", "aws.iot.securetunneling-2.0"):
            self.assertEqual(Settings(ws_subprotocol=name).ws_subprotocol, name)

    def test_positive_sizes(self) -> None:
        e = self.assertRaises(SettingsError, Settings, tcp_read_buffer_size=0)
        self.assertIn("tunneling.proxy.tcp.read_buffer_size", str(e))
        self.assertRaises(SettingsError, Settings, ws_ping_period_ms=-5)

    def test_retry_counts(self) -> None:
        self.assertEqual(Settings(ws_connect_retry_count=-1).ws_connect_retry_count, -1)
        self.assertRaises(SettingsError, Settings, tcp_connection_retry_count=-2)

    def test_length_prefix_must_be_two(self) -> None:
        self.assertRaises(SettingsError, Settings, data_length_size=4)

    def test_endpoint_format_needs_placeholder(self) -> None:
        self.assertRaises(SettingsError, Settings, endpoint_format="fixed.example")


class BufferSettingsTests(SynchronousTestCase):
    """The buffer settings the reference parses: each either reaches the runtime or is warned about."""

    def test_values_reach_the_settings(self) -> None:
        settings = parse_settings_json(
            _doc(
                {
                    "tcp": {"read_buffer_size": "4096"},
                    "websocket": {
                        "read_buffer_size": "8192",
                        "write_buffer_size": "16384",
                        "max_frame_size": "262144",
                    },
                }
            )
        )
        self.assertEqual(settings.tcp_read_buffer_size, 4096)
        self.assertEqual(settings.ws_read_buffer_size, 8192)
        self.assertEqual(settings.ws_write_buffer_size, 16384)
        self.assertEqual(settings.service_socket_buffer_size, 262144)

    def test_socket_buffers_left_to_the_kernel_by_default(self) -> None:
        self.assertIsNone(Settings().service_socket_buffer_size)
        self.assertIsNone(
            parse_settings_json(
                _doc({"websocket": {"max_frame_size": "131076"}})
            ).service_socket_buffer_size
        )

    def test_unused_setting_warned_about(self) -> None:
        self.assertEqual(inert_settings(Settings()), [])
        settings = parse_settings_json(_doc({"message": {"data_frame_max_size": "1000"}}))
        (message,) = inert_settings(settings)
        self.assertTrue(
            message.startswith(
                "The setting tunneling.proxy.message.data_frame_max_size (1000) has no effect: "
            ),
            message,
        )


class LocalSocketsTests(SynchronousTestCase):
    def test_from_the_tcp_settings(self) -> None:
        settings = Settings(
            tcp_write_buffer_size=999,
            tcp_read_buffer_size=4096,
            tcp_connection_retry_count=-1,
            tcp_connection_retry_delay_ms=250,
        )
        self.assertEqual(
            settings.local_sockets,
            LocalSockets(backlog_limit=999, read_size=4096, retry_count=-1, retry_delay=0.25),
        )

    def test_defaults_are_the_settings_defaults(self) -> None:
        default = Settings().local_sockets
        self.assertEqual(
            (LocalSockets().backlog_limit, LocalSockets().retry_count, LocalSockets().retry_delay),
            (default.backlog_limit, default.retry_count, default.retry_delay),
        )
        self.assertIsNone(LocalSockets().read_size)  # Twisted's own read size unless configured

    def test_reads_are_whole_payloads(self) -> None:
        """
        The default read (131,076 bytes) is cut to two full DATA payloads,
        not two and a 2 KiB one; a read smaller than a payload is left alone.
        """
        self.assertEqual(Settings().local_sockets.read_size, 2 * 64512)
        self.assertEqual(Settings(tcp_read_buffer_size=4096).local_sockets.read_size, 4096)
        self.assertEqual(
            Settings(tcp_read_buffer_size=3 * 64512).local_sockets.read_size, 3 * 64512
        )
        self.assertEqual(whole_payloads(200_000, 64512), 3 * 64512)
        self.assertEqual(whole_payloads(64512, 64512), 64512)
