# -*- test-case-name: tests.test_validation -*-
"""
The single rules the local proxy's option values must follow, one function each.

Every function here is pure apart from logging: it takes the text of one
option (and the option's name, for the message), returns the value to use
and raises L{ConfigurationError} with the reference's message when the rule
is broken.  L{aws_localproxy.buildconfig} runs them in the reference's order.

Two kinds of failure, as in the reference: L{usage.UsageError} for a wrong
command line (the console script prints it with a "Try --help" line), and
L{ConfigurationError} (a subclass) for a value that breaks a rule (the
console script logs it at ``fatal``).
"""

from __future__ import annotations

import os
import re
from typing import Dict, Optional

from twisted.logger import Logger
from twisted.python import usage

from aws_localproxy.constants import Mode, PeerVersion
from aws_localproxy.endpoints import EndpointError as LocalEndpointError
from aws_localproxy.endpoints import (
    is_description,
    parse_destination_endpoint,
    parse_source_endpoint,
)
from aws_localproxy.regions import strip_scheme

__all__ = [
    "ConfigurationError",
    "truthy",
    "check_path",
    "parse_port_mapping",
    "parse_verbosity",
    "check_access_token",
    "check_client_token",
    "check_region",
    "check_proxy_endpoint_text",
    "parse_mode",
    "peer_version",
    "bind_address",
    "check_capath",
    "check_service_id",
    "check_client_token_file",
    "parse_metrics_port",
    "parse_metrics_address",
    "MODES",
]

log = Logger()

MAX_PATH = 4096
MAX_TOKEN = 4096
MAX_HOST = 253
MAX_REGION = 64
MAX_SERVICE_ID = 128
HOST_CHARS = re.compile(r"^[a-zA-Z0-9.:\[\]-]+$")
_REGION_CHARS = re.compile(r"^[a-z0-9-]+$")
# The reference rejects "." although AWS accepts service names like host names: allowed here.
_SERVICE_ID_CHARS = re.compile(r"^[a-zA-Z0-9._-]+$")
# What the AWS tunneling service accepts; the reference does not check it.
_CLIENT_TOKEN_CHARS = re.compile(r"^[a-zA-Z0-9-]+$")

MODES = {
    "src": Mode.SOURCE,
    "source": Mode.SOURCE,
    "dst": Mode.DESTINATION,
    "destination": Mode.DESTINATION,
}
_PEER_VERSIONS = {"V1": PeerVersion.V1, "V2": PeerVersion.V2, "V3": PeerVersion.V3}

_WRONG_FORMAT = "Wrong format for the port mappings! Example: SSH1=5555,SSH2=6666."


class ConfigurationError(usage.UsageError):
    """
    A value breaks one of the reference's rules (a "runtime error" there, not
    a parse error): the console script logs it at ``fatal`` rather than
    printing usage help.
    """


def truthy(name: str, value: str) -> bool:
    """A flag's value in a ``--config`` file: empty, 1/true/yes/on or 0/false/no/off."""
    lowered = value.strip().lower()
    if lowered in ("", "1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise usage.UsageError(f"the argument ('{value}') for option '--{name}' is invalid")


def parse_verbosity(value: str) -> int:
    """``-v`` text to a level 0..6 (larger numbers mean 6, as in the reference)."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise usage.UsageError(f"the argument ('{value}') for option '--verbose' is invalid")
    return min(int(text), 6)


def check_path(path: str, option: str) -> str:
    """The reference's path rule (non-empty, at most 4096 characters, no NUL), for the option named C{option}."""
    if not path:
        raise ConfigurationError(f"Path cannot be empty ({option})")
    if len(path) > MAX_PATH:
        raise ConfigurationError(f"Path exceeds maximum allowed length ({option})")
    if "\0" in path:
        raise ConfigurationError(f"Path contains invalid null byte ({option})")
    return path


def _reject(option: str, reason: str) -> ConfigurationError:
    log.warn("SECURITY: Rejected input for '{field}': {reason}", field=option, reason=reason)
    return ConfigurationError(f"{reason} ({option})")


# --- -s / -d mappings -------------------------------------------------------------


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
    """One mapping endpoint (see L{aws_localproxy.endpoints}); returns it normalised."""
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


def check_service_id(service_id: str, option: str) -> str:
    """A service ID: at most 128 of letters, digits, ``.``, ``-`` and ``_``."""
    if len(service_id) > MAX_SERVICE_ID:
        raise _reject(option, "Service ID exceeds maximum allowed length")
    if not _SERVICE_ID_CHARS.match(service_id):
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


# --- tokens and the service's address -------------------------------------------------


def _has_control_characters(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def check_access_token(token: str) -> str:
    """The access token: non-empty, at most 4096 printable ASCII characters."""
    if not token:
        raise ConfigurationError("Access token cannot be empty (--access-token)")
    if len(token) > MAX_TOKEN:
        raise ConfigurationError("Access token exceeds maximum allowed length (--access-token)")
    if _has_control_characters(token):
        raise ConfigurationError(
            "Access token contains invalid control characters (--access-token)"
        )
    if not token.isascii():
        raise ConfigurationError("Access token contains non-ASCII characters (--access-token)")
    return token


def check_client_token(token: str) -> str:
    """The client token in the AWS tunneling service's format: 32 to 128 of ``[a-zA-Z0-9-]``."""
    if not 32 <= len(token) <= 128:
        raise ConfigurationError(
            "Client token must be between 32 and 128 characters (--client-token)"
        )
    if _has_control_characters(token):
        raise ConfigurationError(
            "Client token contains invalid control characters (--client-token)"
        )
    if not _CLIENT_TOKEN_CHARS.match(token):
        raise ConfigurationError(
            "Client token must contain only letters, digits and hyphens (--client-token)"
        )
    return token


def check_region(region: str) -> str:
    """``-r``: lower-case letters, digits and hyphens, at most 64."""
    if not region:
        raise ConfigurationError("Region cannot be empty (--region)")
    if len(region) > MAX_REGION:
        raise ConfigurationError("Region exceeds maximum allowed length (--region)")
    if not _REGION_CHARS.match(region):
        raise ConfigurationError(
            "Region must contain only lowercase letters, numbers, and hyphens (--region)"
        )
    return region


def check_proxy_endpoint_text(text: str) -> str:
    """``-e``'s characters and length (its meaning is L{aws_localproxy.regions.parse_endpoint}'s)."""
    if not text:
        raise ConfigurationError("Proxy endpoint cannot be empty (--proxy-endpoint)")
    if len(text) > MAX_HOST:
        raise ConfigurationError("Proxy endpoint exceeds maximum allowed length (--proxy-endpoint)")
    rest, _ = strip_scheme(text)
    if not HOST_CHARS.match(rest):
        raise ConfigurationError("Proxy endpoint contains invalid characters (--proxy-endpoint)")
    return text


# --- mode, peer version, local addresses ---------------------------------------------------


def parse_mode(text: Optional[str]) -> Optional[Mode]:
    """``-m``: src, dst, source or destination; C{None} when not given."""
    if text is None:
        return None
    if text not in MODES:
        raise usage.UsageError(
            f"Mode value is wrong! Allowed values are: src, dst, source, destination (--mode/-m: '{text}')"
        )
    return MODES[text]


def peer_version(value: Optional[str]) -> PeerVersion:
    """``-y``: V1 or V2 for older peers; anything else means V3 (with a warning, as the reference)."""
    if value is None:
        return PeerVersion.V3
    if value in ("V1", "V2"):
        log.info("setting source protocol to {version}", version=value)
    elif value != "V3":
        log.warn("unknown value for destination-client-type, assuming default protocol V3.")
    return _PEER_VERSIONS.get(value, PeerVersion.V3)


def bind_address(value: Optional[str]) -> Optional[str]:
    """``-b``: a host name or address; ``[v6]`` loses its brackets (listening APIs take the bare literal)."""
    if not value:
        return None
    if len(value) > MAX_HOST:
        raise ConfigurationError(
            "Bind address exceeds maximum allowed length (--local-bind-address)"
        )
    if not HOST_CHARS.match(value):
        raise ConfigurationError("Bind address contains invalid characters (--local-bind-address)")
    if value.startswith("[") and value.endswith("]"):
        return value[1:-1]
    return value


def check_capath(capath: Optional[str]) -> Optional[str]:
    """``-c``: an existing directory of hashed CA certificates."""
    if capath is None:
        return None
    check_path(capath, "--capath")
    if not os.path.isdir(capath):
        raise ConfigurationError(
            f"CA directory does not exist or is not a directory: {capath} (--capath)"
        )
    return capath


def _invalid_argument(option: str, value: str) -> usage.UsageError:
    return usage.UsageError(f"the argument ('{value}') for option '--{option}' is invalid")


def parse_metrics_port(value: str) -> int:
    """``--metrics-port``: 0 (the system picks one) to 65535, in the words of the parser's typed options."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise _invalid_argument("metrics-port", value)
    return int(text)


def parse_metrics_address(value: str) -> str:
    """``--metrics-address``: an address or host name to listen on; ``[v6]`` loses its brackets."""
    text = value.strip()
    if not text or len(text) > MAX_HOST or not HOST_CHARS.match(text):
        raise _invalid_argument("metrics-address", value)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text


def check_client_token_file(path: str) -> Optional[str]:
    """
    ``--client-token-file``: a usable path whose directory exists; a file
    already there must hold a valid client token (read now, so a bad one
    fails at start-up).

    @return: the token stored there, or C{None} when the file does not exist yet.
    """
    from aws_localproxy.clienttoken import ClientTokenFileError, read_client_token

    check_path(path, "--client-token-file")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"Directory of the client token file does not exist: {directory} (--client-token-file)"
        )
    try:
        return read_client_token(path)
    except ClientTokenFileError as e:
        raise ConfigurationError(f"{e} (--client-token-file)") from None
