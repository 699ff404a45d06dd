# -*- test-case-name: tests.config.test_settings_json -*-
"""
The settings document of ``--settings-json`` and ``--export-default-settings``.

The document is the reference's: a Boost property tree written as JSON,
every value a string, below C{tunneling.proxy}.  L{default_settings_document}
writes it byte for byte, L{load_settings_json} reads it (strings, numbers and
booleans alike) into a validated L{Settings}.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Callable, Dict, Mapping, Tuple

from aws_localproxy.config.settings import (
    DEFAULT_REGION_ENDPOINT_OVERRIDES,
    DOCUMENT_KEYS,
    KEY_PREFIX,
    OVERRIDES_KEY,
    Settings,
    SettingsError,
)

__all__ = [
    "load_settings_json",
    "parse_settings_json",
    "default_settings_document",
    "export_default_settings",
]


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
    for document_key, attribute, _ in DOCUMENT_KEYS:
        present, raw = _lookup(proxy, document_key)
        if not present:
            continue
        if isinstance(raw, (dict, list)) or raw is None:
            raise SettingsError(
                f"Invalid value for setting '{KEY_PREFIX}{document_key}': expected a single value"
            )
        values[attribute] = _CONVERTERS[_TYPES[attribute]](document_key, raw)

    overrides = dict(DEFAULT_REGION_ENDPOINT_OVERRIDES)
    present, raw_overrides = _lookup(proxy, OVERRIDES_KEY)
    if present:
        if not isinstance(raw_overrides, dict):
            raise SettingsError(
                f"Invalid value for setting '{KEY_PREFIX}{OVERRIDES_KEY}': expected an object of region: host"
            )
        for region, host in raw_overrides.items():
            if not isinstance(host, str):
                raise SettingsError(
                    f"Invalid value for setting '{KEY_PREFIX}{OVERRIDES_KEY}.{region}': {host!r} is not a host name"
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
    for document_key, attribute, exported in DOCUMENT_KEYS:
        if not exported:
            continue
        value = getattr(settings, attribute)
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        node = proxy
        *sections, leaf = document_key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = text
    proxy[OVERRIDES_KEY] = dict(settings.region_endpoint_overrides)
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
