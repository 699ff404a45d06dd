# -*- test-case-name: tests.config.test_settings -*-
"""
The fine-grained settings of the reference (``tunneling.proxy.*``), with its defaults.

Attribute names are the reference's keys without the ``tunneling.proxy.``
prefix, dots turned into underscores and the section kept as a prefix
(``websocket.ping_period_ms`` -> C{ws_ping_period_ms}, ``tcp.*`` -> C{tcp_*},
``message.*`` -> C{max_payload_size}, C{max_message_size}, ...).  Two settings
exist only here (extensions, not exported): C{ws_pong_timeout_ms} and
C{ws_open_handshake_timeout_ms}.

The JSON document of ``--settings-json`` / ``--export-default-settings`` is
L{aws_localproxy.config.settings_json}'s; its keys (L{DOCUMENT_KEYS}) are here,
because every message about a setting names it by its document key.  A
L{Settings} is validated when it is built, so an unusable one (a payload
larger than a message, an unknown subprotocol, ...) cannot exist.

The buffer settings and what reads them at run time:

  - ``tcp.read_buffer_size`` (C{tcp_read_buffer_size}): the most bytes one
    read of a local socket returns: the local connection's TCP transport's
    C{bufferSize}, rounded down to whole DATA payloads (L{whole_payloads});
  - ``tcp.write_buffer_size`` (C{tcp_write_buffer_size}): how much tunnel
    data a local connection may hold before the WebSocket stops being read;
  - ``websocket.write_buffer_size`` (C{ws_write_buffer_size}): how many
    bytes read from one local connection may wait to be sent before that
    socket stops being read (the connection's outbound lane);
  - ``websocket.read_buffer_size`` (C{ws_read_buffer_size}): the most bytes
    one read of the service connection returns: the WebSocket connection's
    TCP transport's C{bufferSize};
  - ``websocket.max_frame_size`` (C{ws_max_frame_size}): ``SO_RCVBUF`` and
    ``SO_SNDBUF`` of the service connection's socket, as in the reference,
    but only when set to another value than the default
    (L{Settings.service_socket_buffer_size}): left alone, the kernel sizes
    those buffers itself, which is faster on long fat links;
  - ``message.data_frame_max_size``: unused, as in the reference (the
    records' sizes are C{max_payload_size} and C{max_message_size}); a
    value other than the default is warned about (L{inert_settings}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Tuple

from aws_localproxy.protocol.constants import SUBPROTOCOLS
from aws_localproxy.protocol.wire import Limits

__all__ = [
    "Settings",
    "SettingsError",
    "LocalSockets",
    "whole_payloads",
    "DEFAULT_REGION_ENDPOINT_OVERRIDES",
    "KEY_PREFIX",
    "DOCUMENT_KEYS",
    "OVERRIDES_KEY",
    "inert_settings",
]

DEFAULT_REGION_ENDPOINT_OVERRIDES: Mapping[str, str] = {
    "cn-north-1": "data.tunneling.iot.cn-north-1.amazonaws.com.cn",
    "cn-northwest-1": "data.tunneling.iot.cn-northwest-1.amazonaws.com.cn",
}

#: The prefix of every key in the document.
KEY_PREFIX = "tunneling.proxy."


class SettingsError(ValueError):
    """A settings document or value cannot be used; the message names the key."""


@dataclass(frozen=True)
class Settings:
    """One value per reference setting; defaults are the reference's."""

    default_bind_address: str = "localhost"
    endpoint_format: str = "data.tunneling.iot.%s.amazonaws.com"
    region_endpoint_overrides: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_REGION_ENDPOINT_OVERRIDES)
    )
    data_length_size: int = 2
    data_frame_max_size: int = 65538
    max_payload_size: int = 64512
    max_message_size: int = 65536
    tcp_connection_retry_count: int = 5
    tcp_connection_retry_delay_ms: int = 2500
    tcp_read_buffer_size: int = 131076
    tcp_write_buffer_size: int = 131076
    tcp_max_active_connections: int = 128
    ws_ping_period_ms: int = 20000
    ws_retry_delay_ms: int = 2500
    ws_connect_retry_count: int = -1
    ws_reconnect_on_data_error: bool = True
    ws_subprotocol: str = "aws.iot.securetunneling-3.0"
    ws_max_frame_size: int = 131076
    ws_write_buffer_size: int = 131076
    ws_read_buffer_size: int = 131076
    #: Extension: a ping unanswered for this long means the service is gone.
    ws_pong_timeout_ms: int = 10000
    #: Extension: the WebSocket opening handshake must finish within this.
    ws_open_handshake_timeout_ms: int = 30000

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise SettingsError(problem)

    @property
    def service_socket_buffer_size(self) -> int | None:
        """
        ``SO_RCVBUF``/``SO_SNDBUF`` for the service connection's socket, or
        C{None} to leave the kernel's own sizing (the default).
        """
        if self.ws_max_frame_size == _default("ws_max_frame_size"):
            return None
        return self.ws_max_frame_size

    @property
    def limits(self) -> Limits:
        """The codec limits these settings imply."""
        return Limits(
            max_message_size=self.max_message_size, max_payload_size=self.max_payload_size
        )

    @property
    def local_sockets(self) -> LocalSockets:
        """What the ``tcp.*`` settings tell every local side."""
        return LocalSockets(
            backlog_limit=self.tcp_write_buffer_size,
            read_size=whole_payloads(self.tcp_read_buffer_size, self.max_payload_size),
            retry_count=self.tcp_connection_retry_count,
            retry_delay=self.tcp_connection_retry_delay_ms / 1000,
        )


def whole_payloads(read_size: int, max_payload_size: int) -> int:
    """
    C{read_size} rounded down to a whole number of DATA payloads, when it
    holds at least one.

    A read becomes records of at most C{max_payload_size} bytes; with the
    defaults (131,076 and 64,512) a full read would make two full records
    and one of 2,052 bytes, which costs as much to frame, send and parse
    as a full one.  129,024 bytes make exactly two.
    """
    if read_size <= max_payload_size:
        return read_size
    return read_size - read_size % max_payload_size


@dataclass(frozen=True)
class LocalSockets:
    """
    How a local side (source, destination, stdio) treats its local sockets.

    @ivar backlog_limit: tunnel bytes a local connection may hold unsent
        before the tunnel stops reading for it (``tcp.write_buffer_size``).
    @ivar read_size: the most bytes one read of a local socket takes
        (``tcp.read_buffer_size``); C{None}: Twisted's default.
    @ivar retry_count: how many times a source retries a failed listen or a
        destination a failed connect (negative: for ever).
    @ivar retry_delay: seconds between those attempts.
    """

    backlog_limit: int = Settings.tcp_write_buffer_size
    read_size: int | None = None
    retry_count: int = Settings.tcp_connection_retry_count
    retry_delay: float = Settings.tcp_connection_retry_delay_ms / 1000


def _default(attribute: str) -> Any:
    return Settings.__dataclass_fields__[attribute].default


#: (document key, attribute, why it does nothing here) for settings that are
#: read but cannot mean anything in this proxy.
_INERT: Tuple[Tuple[str, str, str], ...] = (
    (
        "message.data_frame_max_size",
        "data_frame_max_size",
        "no record has this size (they are bounded by message.max_payload_size and message.max_size);"
        " the reference does not use it either",
    ),
)


def inert_settings(settings: Settings) -> List[str]:
    """
    A message for each setting that is set to another value than its
    default although it has no effect here, for a warning.
    """
    messages = []
    for document_key, attribute, why in _INERT:
        value = getattr(settings, attribute)
        if value != _default(attribute):
            messages.append(
                f"The setting {KEY_PREFIX}{document_key} ({value}) has no effect: {why}"
            )
    return messages


# --- the document's keys --------------------------------------------------------

#: (document key below ``tunneling.proxy.``, attribute, exported?) in the
#: reference's export order; the unexported ones are read but never written.
DOCUMENT_KEYS: Tuple[Tuple[str, str, bool], ...] = (
    ("default_bind_address", "default_bind_address", True),
    ("endpoint_format", "endpoint_format", False),
    ("message.data_length_size", "data_length_size", True),
    ("message.data_frame_max_size", "data_frame_max_size", True),
    ("message.max_payload_size", "max_payload_size", True),
    ("message.max_size", "max_message_size", True),
    ("tcp.connection_retry_count", "tcp_connection_retry_count", True),
    ("tcp.connection_retry_delay_ms", "tcp_connection_retry_delay_ms", True),
    ("tcp.read_buffer_size", "tcp_read_buffer_size", True),
    ("tcp.write_buffer_size", "tcp_write_buffer_size", False),
    ("tcp.max_active_connections", "tcp_max_active_connections", True),
    ("websocket.ping_period_ms", "ws_ping_period_ms", True),
    ("websocket.retry_delay_ms", "ws_retry_delay_ms", True),
    ("websocket.connect_retry_count", "ws_connect_retry_count", True),
    ("websocket.reconnect_on_data_error", "ws_reconnect_on_data_error", True),
    ("websocket.subprotocol", "ws_subprotocol", True),
    ("websocket.max_frame_size", "ws_max_frame_size", True),
    ("websocket.write_buffer_size", "ws_write_buffer_size", True),
    ("websocket.read_buffer_size", "ws_read_buffer_size", True),
    ("websocket.pong_timeout_ms", "ws_pong_timeout_ms", False),
    ("websocket.open_handshake_timeout_ms", "ws_open_handshake_timeout_ms", False),
)

OVERRIDES_KEY = "region_endpoint_overrides"


def _problems(settings: Settings) -> List[str]:
    """Every rule a usable Settings must follow, as messages naming the key."""
    problems: List[str] = []

    def key(attribute: str) -> str:
        for document_key, name, _ in DOCUMENT_KEYS:
            if name == attribute:
                return KEY_PREFIX + document_key
        return KEY_PREFIX + attribute

    positive = (
        "data_frame_max_size",
        "max_payload_size",
        "max_message_size",
        "tcp_read_buffer_size",
        "tcp_write_buffer_size",
        "tcp_max_active_connections",
        "ws_ping_period_ms",
        "ws_max_frame_size",
        "ws_write_buffer_size",
        "ws_read_buffer_size",
        "ws_open_handshake_timeout_ms",
    )
    for name in positive:
        if getattr(settings, name) < 1:
            problems.append(f"{key(name)} must be a positive number, not {getattr(settings, name)}")
    for name in ("tcp_connection_retry_delay_ms", "ws_retry_delay_ms", "ws_pong_timeout_ms"):
        if getattr(settings, name) < 0:
            problems.append(f"{key(name)} must not be negative, not {getattr(settings, name)}")
    for name in ("tcp_connection_retry_count", "ws_connect_retry_count"):
        if getattr(settings, name) < -1:
            problems.append(
                f"{key(name)} must be -1 (retry forever) or more, not {getattr(settings, name)}"
            )
    if settings.data_length_size != 2:
        problems.append(
            f"{key('data_length_size')} must be 2 (the protocol's length prefix),"
            f" not {settings.data_length_size}"
        )
    if settings.max_message_size > 65536:
        # The reference's ceiling; the 2-byte length prefix cannot describe more.
        problems.append(
            f"{key('max_message_size')} must be at most 65536, not {settings.max_message_size}"
        )
    if settings.max_payload_size > settings.max_message_size:
        problems.append(
            f"{key('max_payload_size')} ({settings.max_payload_size}) must not be larger than"
            f" {key('max_message_size')} ({settings.max_message_size})"
        )
    if settings.ws_subprotocol not in SUBPROTOCOLS:
        problems.append(
            f"{key('ws_subprotocol')} must be one of {', '.join(SUBPROTOCOLS)},"
            f" not {settings.ws_subprotocol!r}"
        )
    if settings.endpoint_format.count("%s") != 1:
        problems.append(
            f"{key('endpoint_format')} must contain %s exactly once: {settings.endpoint_format!r}"
        )
    if not settings.default_bind_address:
        problems.append(f"{key('default_bind_address')} cannot be empty")
    for region, host in settings.region_endpoint_overrides.items():
        if not isinstance(host, str) or not host:
            problems.append(f"{KEY_PREFIX}{OVERRIDES_KEY}.{region} must be a non-empty host name")
    return problems
