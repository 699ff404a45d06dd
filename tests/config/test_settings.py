"""
Tests for aws_localproxy.config.settings: defaults, validation, the buffer settings and
the local sockets' settings (some read from a document, as a user gives them).
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.settings import (
    LocalSockets,
    Settings,
    SettingsError,
    inert_settings,
    whole_payloads,
)
from aws_localproxy.config.settings_json import (
    parse_settings_json,
)


def _doc(proxy: dict) -> str:
    return json.dumps({"tunneling": {"proxy": proxy}})


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
