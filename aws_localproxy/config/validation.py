# -*- test-case-name: tests.config.test_validation -*-
"""
The single rules the local proxy's option values must follow, one function each.

Every function here is pure apart from logging: it takes the text of one
option (and the option's name, for the message), returns the value to use
and raises L{ConfigurationError} with the reference's message when the rule
is broken.  L{aws_localproxy.config.build} runs them in the reference's order.

Two kinds of failure, as in the reference: C{usage.UsageError} for a wrong
command line (the console script prints it with a "Try --help" line), and
L{ConfigurationError} (a subclass) for a value that breaks a rule (the
console script logs it at ``fatal``).
"""

from __future__ import annotations

import os
import re
from typing import Callable, Optional, Sequence, Tuple

from twisted.logger import Logger
from twisted.python import usage

from aws_localproxy.config.regions import strip_scheme
from aws_localproxy.protocol.constants import Mode, PeerVersion

__all__ = [
    "ConfigurationError",
    "truthy",
    "check_path",
    "parse_verbosity",
    "check_access_token",
    "check_client_token",
    "check_region",
    "is_region",
    "check_proxy_endpoint_text",
    "parse_mode",
    "peer_version",
    "bind_address",
    "check_capath",
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
HOST_CHARS = re.compile(r"^[a-zA-Z0-9.:\[\]-]+$")
_REGION_CHARS = re.compile(r"[a-z0-9-]+")
# What the AWS tunneling service accepts; the reference does not check it.
_CLIENT_TOKEN_CHARS = re.compile(r"^[a-zA-Z0-9-]+$")

MODES = {
    "src": Mode.SOURCE,
    "source": Mode.SOURCE,
    "dst": Mode.DESTINATION,
    "destination": Mode.DESTINATION,
}
_PEER_VERSIONS = {"V1": PeerVersion.V1, "V2": PeerVersion.V2, "V3": PeerVersion.V3}


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


# --- tokens and the service's address -------------------------------------------------


def _has_control_characters(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


#: A rule on an option's text: (is it broken?, what the message says).
_Rule = Tuple[Callable[[str], bool], str]


def _follows(value: str, option: str, rules: Sequence[_Rule]) -> str:
    """C{value} when it breaks none of C{rules}; the first one broken is raised, naming C{option}."""
    for broken, message in rules:
        if broken(value):
            raise ConfigurationError(f"{message} ({option})")
    return value


_ACCESS_TOKEN_RULES: Sequence[_Rule] = (
    (lambda token: not token, "Access token cannot be empty"),
    (lambda token: len(token) > MAX_TOKEN, "Access token exceeds maximum allowed length"),
    (_has_control_characters, "Access token contains invalid control characters"),
    (lambda token: not token.isascii(), "Access token contains non-ASCII characters"),
)

_CLIENT_TOKEN_RULES: Sequence[_Rule] = (
    (
        lambda token: not 32 <= len(token) <= 128,
        "Client token must be between 32 and 128 characters",
    ),
    (_has_control_characters, "Client token contains invalid control characters"),
    (
        lambda token: not _CLIENT_TOKEN_CHARS.match(token),
        "Client token must contain only letters, digits and hyphens",
    ),
)

_REGION_RULES: Sequence[_Rule] = (
    (lambda region: not region, "Region cannot be empty"),
    (lambda region: len(region) > MAX_REGION, "Region exceeds maximum allowed length"),
    (
        lambda region: not _REGION_CHARS.fullmatch(region),
        "Region must contain only lowercase letters, numbers, and hyphens",
    ),
)

_PROXY_ENDPOINT_RULES: Sequence[_Rule] = (
    (lambda text: not text, "Proxy endpoint cannot be empty"),
    (lambda text: len(text) > MAX_HOST, "Proxy endpoint exceeds maximum allowed length"),
    (
        lambda text: not HOST_CHARS.match(strip_scheme(text)[0]),
        "Proxy endpoint contains invalid characters",
    ),
)

_BIND_ADDRESS_RULES: Sequence[_Rule] = (
    (lambda value: len(value) > MAX_HOST, "Bind address exceeds maximum allowed length"),
    (lambda value: not HOST_CHARS.match(value), "Bind address contains invalid characters"),
)


def check_access_token(token: str) -> str:
    """The access token: non-empty, at most 4096 printable ASCII characters."""
    return _follows(token, "--access-token", _ACCESS_TOKEN_RULES)


def check_client_token(token: str) -> str:
    """The client token in the AWS tunneling service's format: 32 to 128 of ``[a-zA-Z0-9-]``."""
    return _follows(token, "--client-token", _CLIENT_TOKEN_RULES)


def check_region(region: str) -> str:
    """``-r``: lower-case letters, digits and hyphens, at most 64."""
    return _follows(region, "--region", _REGION_RULES)


def is_region(region: str) -> bool:
    """Whether C{region} is a region name as L{check_region} accepts it (for other messages)."""
    return not any(broken(region) for broken, _ in _REGION_RULES)


def check_proxy_endpoint_text(text: str) -> str:
    """``-e``'s characters and length (its meaning is L{aws_localproxy.config.regions.parse_endpoint}'s)."""
    return _follows(text, "--proxy-endpoint", _PROXY_ENDPOINT_RULES)


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
    _follows(value, "--local-bind-address", _BIND_ADDRESS_RULES)
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
    from aws_localproxy.config.client_token import ClientTokenFileError, read_client_token

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
