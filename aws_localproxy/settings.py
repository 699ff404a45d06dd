# -*- test-case-name: tests.test_settings -*-
"""
The fine-grained settings of the reference (``tunneling.proxy.*``), with its defaults.

Attribute names are the reference's keys without the ``tunneling.proxy.``
prefix, dots turned into underscores and the section kept as a prefix
(``websocket.ping_period_ms`` -> C{ws_ping_period_ms}, ``tcp.*`` -> C{tcp_*},
``message.*`` -> C{max_payload_size}, C{max_message_size}, ...).  Two settings
exist only here (extensions, not exported): C{ws_pong_timeout_ms} and
C{ws_open_handshake_timeout_ms}.

The JSON document of ``--settings-json`` / ``--export-default-settings`` is the
reference's (a Boost property tree written as JSON, every value a string):
L{default_settings_document} writes it byte for byte, L{load_settings_json}
reads it (strings, numbers and booleans alike).  A L{Settings} is validated
when it is built, so an unusable one (a payload larger than a message, an
unknown subprotocol, ...) cannot exist.

The buffer settings and what reads them at run time:

  - ``tcp.read_buffer_size`` (C{tcp_read_buffer_size}): the most bytes one
    read of a local socket returns: the local connection's TCP transport's
    C{bufferSize};
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

import json
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, Tuple

from aws_localproxy.constants import SUBPROTOCOLS
from aws_localproxy.wire import Limits

__all__ = [
    "Settings",
    "SettingsError",
    "DEFAULT_REGION_ENDPOINT_OVERRIDES",
    "load_settings_json",
    "parse_settings_json",
    "default_settings_document",
    "export_default_settings",
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
_KEYS: Tuple[Tuple[str, str, bool], ...] = (
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

_OVERRIDES_KEY = "region_endpoint_overrides"


def _problems(settings: Settings) -> List[str]:
    """Every rule a usable Settings must follow, as messages naming the key."""
    problems: List[str] = []

    def key(attribute: str) -> str:
        for document_key, name, _ in _KEYS:
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
            problems.append(f"{KEY_PREFIX}{_OVERRIDES_KEY}.{region} must be a non-empty host name")
    return problems


# --- reading --------------------------------------------------------------------


def _to_int(document_key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise SettingsError(
            f"Invalid value for setting '{KEY_PREFIX}{document_key}': {value!r} is not an integer"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit():
            return int(text)
    raise SettingsError(
        f"Invalid value for setting '{KEY_PREFIX}{document_key}': {value!r} is not an integer"
    )


def _to_bool(document_key: str, value: Any) -> bool:
    # Boost's translator takes true/false and 1/0; JSON booleans come as such.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    raise SettingsError(
        f"Invalid value for setting '{KEY_PREFIX}{document_key}': {value!r} is not a boolean (true/false)"
    )


def _to_str(document_key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise SettingsError(
        f"Invalid value for setting '{KEY_PREFIX}{document_key}': {value!r} is not a string"
    )


# Field types are strings here (postponed annotations).
_CONVERTERS: Dict[str, Callable[[str, Any], Any]] = {
    "int": _to_int,
    "bool": _to_bool,
    "str": _to_str,
}
_TYPES = {f.name: str(f.type) for f in fields(Settings)}


def _lookup(tree: Mapping[str, Any], dotted: str) -> Tuple[bool, Any]:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def parse_settings_json(text: str, source: str = "<settings>") -> Settings:
    """
    Settings from the text of a ``--settings-json`` document.

    Missing keys keep their defaults and unknown keys are ignored, as in the
    reference.  Unlike the reference (which replaces the whole tree),
    the built-in China region overrides survive unless the document overrides
    those very regions.

    @raise SettingsError: malformed JSON, or a value that cannot be used (the
        message names the key).
    """
    try:
        document = json.loads(text)
    except ValueError as e:
        raise SettingsError(f"Malformed JSON in settings file {source}: {e}") from None
    if not isinstance(document, dict):
        raise SettingsError(
            f"Malformed settings file {source}: the top level must be a JSON object"
        )
    found, proxy = _lookup(document, "tunneling.proxy")
    if not found:
        return Settings()
    if not isinstance(proxy, dict):
        raise SettingsError(
            f"Malformed settings file {source}: 'tunneling.proxy' must be a JSON object"
        )

    values: Dict[str, Any] = {}
    for document_key, attribute, _ in _KEYS:
        present, raw = _lookup(proxy, document_key)
        if not present:
            continue
        if isinstance(raw, (dict, list)) or raw is None:
            raise SettingsError(
                f"Invalid value for setting '{KEY_PREFIX}{document_key}': expected a single value"
            )
        values[attribute] = _CONVERTERS[_TYPES[attribute]](document_key, raw)

    overrides = dict(DEFAULT_REGION_ENDPOINT_OVERRIDES)
    present, raw_overrides = _lookup(proxy, _OVERRIDES_KEY)
    if present:
        if not isinstance(raw_overrides, dict):
            raise SettingsError(
                f"Invalid value for setting '{KEY_PREFIX}{_OVERRIDES_KEY}': expected an object of region: host"
            )
        for region, host in raw_overrides.items():
            if not isinstance(host, str):
                raise SettingsError(
                    f"Invalid value for setting '{KEY_PREFIX}{_OVERRIDES_KEY}.{region}': {host!r} is not a host name"
                )
            overrides[region] = host
    values["region_endpoint_overrides"] = overrides
    return Settings(**values)


def load_settings_json(path: str) -> Settings:
    """
    Settings from a ``--settings-json`` file (see L{parse_settings_json}).

    @raise SettingsError: unreadable file, malformed JSON or a bad value.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SettingsError(f"Cannot read settings file {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SettingsError(f"Malformed settings file {path}: not UTF-8 text") from None
    return parse_settings_json(text, path)


# --- writing --------------------------------------------------------------------


def _exported_tree(settings: Settings) -> Dict[str, Any]:
    proxy: Dict[str, Any] = {}
    for document_key, attribute, exported in _KEYS:
        if not exported:
            continue
        value = getattr(settings, attribute)
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        node = proxy
        *sections, leaf = document_key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = text
    proxy[_OVERRIDES_KEY] = dict(settings.region_endpoint_overrides)
    return {"tunneling": {"proxy": proxy}}


def default_settings_document() -> str:
    """
    The reference's ``--export-default-settings`` document, byte for byte:
    4-space indents, every value a string, reference key order, trailing newline.
    """
    return json.dumps(_exported_tree(Settings()), indent=4, ensure_ascii=False) + "\n"


def export_default_settings(path: str) -> None:
    """
    Write L{default_settings_document} to C{path}, replacing the file.

    @raise OSError: the file cannot be written.
    """
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(default_settings_document())
