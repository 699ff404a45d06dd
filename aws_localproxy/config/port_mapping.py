# -*- test-case-name: tests.config.test_port_mapping -*-
"""
The grammar of ``-s`` and ``-d``: C{SSH1=5555,SSH2=6666}, a single V1 value, or
endpoint descriptions, to a service ID -> local endpoint mapping.

A rule that is broken is logged as a rejected input (the reference's
"SECURITY" warning) and raised as a L{ConfigurationError} naming the option.
What an endpoint means is L{aws_localproxy.config.local_endpoints}'s; here it is only
checked and normalised, with the reference's messages.
"""

from __future__ import annotations

import re
from typing import Dict

from twisted.logger import Logger

from aws_localproxy.config.local_endpoints import EndpointError as LocalEndpointError
from aws_localproxy.config.local_endpoints import (
    is_description,
    parse_destination_endpoint,
    parse_source_endpoint,
)
from aws_localproxy.config.validation import HOST_CHARS, MAX_HOST, ConfigurationError, check_path

__all__ = ["parse_port_mapping", "check_service_id", "is_service_id", "MAX_SERVICE_ID"]

log = Logger()

MAX_SERVICE_ID = 128
# The reference rejects "." although AWS accepts service names like host names: allowed here.
_SERVICE_ID_CHARS = re.compile(r"[a-zA-Z0-9._-]+")

_WRONG_FORMAT = "Wrong format for the port mappings! Example: SSH1=5555,SSH2=6666."


def _reject(option: str, reason: str) -> ConfigurationError:
    log.warn("SECURITY: Rejected input for '{field}': {reason}", field=option, reason=reason)
    return ConfigurationError(f"{reason} ({option})")


def _check_port(text: str, option: str) -> str:
    if not (text.isascii() and text.isdigit()):
        raise _reject(option, "Port must contain only digits")
    if int(text) > 2**31 - 1:
        raise _reject(option, "Port value is too large")
    if not 0 < int(text) < 65536:
        raise _reject(option, "Port must be between 1 and 65535")
    # Written as a number: "05555" would never match the listening port.
    return str(int(text))


def _check_description(text: str, option: str, *, source: bool) -> str:
    try:
        if source:
            parse_source_endpoint(text)
        else:
            parse_destination_endpoint(text)
    except LocalEndpointError as e:
        raise _reject(option, str(e)) from None
    return text


def _check_destination_host(text: str, option: str) -> str:
    if len(text) > MAX_HOST:
        raise _reject(option, "Bind address exceeds maximum allowed length")
    if not HOST_CHARS.match(text):
        raise _reject(option, "Bind address contains invalid characters")
    bracket = text.rfind("]")
    colon = text.rfind(":")
    if colon > bracket:
        host, port = text[:colon], text[colon + 1 :]
        if not host:
            raise _reject(option, f"Endpoint has no host: '{text}'")
        text = f"{host}:{_check_port(port, option)}"
    # What the reference's rules let through must also be usable by the destination.
    return _check_description(text, option, source=False)


def _check_endpoint(text: str, option: str, *, source: bool) -> str:
    """One mapping endpoint (see L{aws_localproxy.config.local_endpoints}); returns it normalised."""
    if not text:
        raise _reject(option, "Endpoint cannot be empty")
    if is_description(text):
        return _check_description(text, option, source=source)
    if text.isascii() and text.isdigit():
        return _check_port(text, option)
    if source:
        # A source only listens on a port; a host here used to pass and crash later.
        raise _reject(
            option, f"Source listen port must be a port number between 1 and 65535, not '{text}'"
        )
    if "/" in text:
        check_path(text, option)
        return text
    return _check_destination_host(text, option)


def is_service_id(text: str) -> bool:
    """Whether C{text} is a service ID: 1 to 128 of letters, digits, ``.``, ``-`` and ``_``."""
    return len(text) <= MAX_SERVICE_ID and _SERVICE_ID_CHARS.fullmatch(text) is not None


def check_service_id(service_id: str, option: str) -> str:
    """A service ID: at most 128 of letters, digits, ``.``, ``-`` and ``_``."""
    if len(service_id) > MAX_SERVICE_ID:
        raise _reject(option, "Service ID exceeds maximum allowed length")
    if not is_service_id(service_id):
        raise _reject(
            option,
            "Service ID must contain only alphanumeric characters, dots, hyphens, and underscores",
        )
    return service_id


def _split_piece(piece: str) -> list[str]:
    """``ID=ENDPOINT`` at its first run of ``=``; only a description may keep more ``=``."""
    parts = re.split(r"=+", piece, maxsplit=1)
    if len(parts) == 2 and "=" in parts[1] and not is_description(parts[1].strip()):
        return re.split(r"=+", piece)
    return parts


def parse_port_mapping(text: str, option: str, *, source: bool) -> Dict[str, str]:
    """
    ``-s``/``-d`` text to a service ID -> endpoint mapping.

    A single value without ``=`` (or a single endpoint description) is the
    V1 format, C{{"": endpoint}}; otherwise ``ID=ENDPOINT`` pieces separated
    by commas (runs of commas and of ``=`` count as one, as in the reference).

    @param option: the option's name, for messages.
    @param source: C{True} for ``-s``: endpoints must be ports or server descriptions.
    @raise ConfigurationError: the reference's messages, with the option named.
    """
    pieces = re.split(r",+", text)
    if len(pieces) == 1 and ("=" not in pieces[0] or is_description(pieces[0])):
        return {"": _check_endpoint(pieces[0].strip(), option, source=source)}
    mapping: Dict[str, str] = {}
    for piece in pieces:
        if not piece.strip():
            if len(pieces) > 1 and all("=" not in p for p in pieces):
                raise _reject(option, _WRONG_FORMAT)
            continue
        parts = _split_piece(piece)
        if len(parts) != 2:
            if len(parts) == 1:
                raise _reject(option, _WRONG_FORMAT)
            raise _reject(
                option, f"Wrong format for the port mappings: {piece} .Example: SSH1=5555"
            )
        service_id, endpoint = parts[0].strip(), parts[1].strip()
        if not service_id or not endpoint:
            raise _reject(
                option, f"Wrong format for the port mappings: {piece} .Example: SSH1=5555"
            )
        check_service_id(service_id, option)
        endpoint = _check_endpoint(endpoint, option, source=source)
        if service_id in mapping:
            log.warn(
                "Duplicate mappings, ignore. This mapping already exists: {service_id} : {endpoint}",
                service_id=service_id,
                endpoint=mapping[service_id],
            )
            continue
        mapping[service_id] = endpoint
    if not mapping:
        raise _reject(option, _WRONG_FORMAT)
    return mapping
