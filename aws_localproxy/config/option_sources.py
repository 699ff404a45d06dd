# -*- test-case-name: tests.config.test_option_sources -*-
"""
Where option values come from: the command line, the ``--config`` file, the environment.

The first value found wins, in that order, as in the reference.  The result
says where each value came from, so a message can tell the user which of
two conflicting values was given where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Dict, Mapping, Optional

from twisted.python import usage

from aws_localproxy.config.config_dir import ConfigFileError, parse_options_file
from aws_localproxy.config.validation import check_path, parse_verbosity, truthy

__all__ = [
    "MergedOptions",
    "merge_sources",
    "where",
    "ENVIRONMENT",
    "ENV_ACCESS_TOKEN",
    "ENV_CLIENT_TOKEN",
    "ENV_CLIENT_TOKEN_FILE",
    "ENV_ENDPOINT",
    "ENV_REGION",
]

ENV_ACCESS_TOKEN = "AWSIOT_TUNNEL_ACCESS_TOKEN"
ENV_CLIENT_TOKEN = "AWSIOT_TUNNEL_CLIENT_TOKEN"
ENV_CLIENT_TOKEN_FILE = "AWSIOT_TUNNEL_CLIENT_TOKEN_FILE"
ENV_ENDPOINT = "AWSIOT_TUNNEL_ENDPOINT"
ENV_REGION = "AWSIOT_TUNNEL_REGION"

#: Option name -> environment variable, the lowest-priority source.
ENVIRONMENT: Mapping[str, str] = {
    "access-token": ENV_ACCESS_TOKEN,
    "client-token": ENV_CLIENT_TOKEN,
    "client-token-file": ENV_CLIENT_TOKEN_FILE,
    "proxy-endpoint": ENV_ENDPOINT,
    "region": ENV_REGION,
}

#: Options a ``--config`` file may name but that are not taken from it.
_IGNORED_IN_FILE = ("help", "version", "export-default-settings", "config")


@dataclass
class MergedOptions:
    """
    @ivar values: option name -> value (text; C{True} for a flag that is on).
    @ivar sources: option name -> ``cli``, ``config`` or ``env``.
    @ivar verbosity: the ``-v`` level from the file, when the command line had none.
    """

    values: Dict[str, object] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)
    verbosity: Optional[int] = None


def _from_command_line(command_line: Mapping[str, object], flags: Collection[str]) -> MergedOptions:
    merged = MergedOptions()
    for key, value in command_line.items():
        if key in flags:
            if value:
                merged.values[key] = True
        elif value is not None:
            merged.values[key] = value
    merged.sources = {key: "cli" for key in merged.values}
    return merged


def _add_config_file(
    merged: MergedOptions, path: str, known: Collection[str], flags: Collection[str]
) -> None:
    try:
        pairs = parse_options_file(path)
    except ConfigFileError as e:
        raise usage.UsageError(str(e)) from None
    seen: set[str] = set()
    for name, value in pairs:
        if name not in known:
            raise usage.UsageError(f"unrecognised option '{name}'")
        if name in seen:
            raise usage.UsageError(f"option '--{name}' cannot be specified more than once")
        seen.add(name)
        if name in _IGNORED_IN_FILE or name in merged.values:
            continue
        if name in flags:
            if truthy(name, value):
                merged.values[name] = True
        else:
            if name == "verbose":
                # The reference ignores this; honouring it is what users expect.
                merged.verbosity = parse_verbosity(value)
            merged.values[name] = value
        merged.sources[name] = "config"


def merge_sources(
    command_line: Mapping[str, object],
    environ: Mapping[str, str],
    *,
    known: Collection[str],
    flags: Collection[str],
) -> MergedOptions:
    """
    The command line's values, then the ``--config`` file's, then the
    environment's (L{ENVIRONMENT}): the first value found wins.

    @param command_line: the parsed options (C{None} when not given, C{False}
        for a flag that is off).
    @param known: every option name a ``--config`` file may use.
    @param flags: the names of the flags (``name = true`` in a file).
    @raise usage.UsageError: the file is unreadable or malformed, or names an
        unknown option or one twice.
    """
    merged = _from_command_line(command_line, flags)
    if "config" in merged.values:
        path = check_path(str(merged.values["config"]), "--config")
        _add_config_file(merged, path, known, flags)
    for name, variable in ENVIRONMENT.items():
        if name not in merged.values and variable in environ:
            merged.values[name] = environ[variable]
            merged.sources[name] = "env"
    return merged


def where(sources: Mapping[str, str], name: str) -> str:
    """Where option C{name} was given, for a message: "on the command line", "in the --config file", ..."""
    return {
        "cli": "on the command line",
        "config": "in the --config file",
        "env": f"by {ENVIRONMENT.get(name, '')}",
    }.get(sources.get(name, ""), "")
