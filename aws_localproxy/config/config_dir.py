# -*- test-case-name: tests.config.test_config_dir -*-
"""
The two kinds of files the local proxy reads besides the settings JSON.

``--config FILE`` holds command-line options as ``name = value`` lines
(long option names without dashes, ``#`` comments), in Boost's config-file
syntax: L{parse_options_file}.

``--config-dir DIR`` (or ``./config`` when it exists) holds service ID
mappings, ``SSH1 = 22`` lines in INI files anywhere below the directory.  The
files are listed and read once at start-up (L{read_config_dir}); when the
service's SERVICE_IDS arrive, the tunnel asks L{make_lookup}'s function for
the endpoints of those IDs; the first file that has an ID wins.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from twisted.logger import Logger

from aws_localproxy.config.local_endpoints import (
    EndpointError,
    parse_destination_endpoint,
    parse_source_endpoint,
)
from aws_localproxy.protocol.service_ids import LookupEndpoints

__all__ = [
    "ConfigFileError",
    "ConfigDirError",
    "IniError",
    "parse_options_text",
    "parse_options_file",
    "default_config_dir",
    "list_config_files",
    "read_config_dir",
    "parse_ini",
    "make_lookup",
    "check_mapping_endpoints",
]

log = Logger()

ConfigFiles = Tuple[Tuple[str, str], ...]


class ConfigFileError(ValueError):
    """The ``--config`` file cannot be read or has a line that is not ``name = value``."""


class ConfigDirError(ValueError):
    """``--config-dir`` is not a non-empty directory."""


class IniError(ValueError):
    """A mapping file is not in INI format; the message says where."""


# --- --config ---------------------------------------------------------------------


def parse_options_text(text: str) -> List[Tuple[str, str]]:
    """
    The ``(name, value)`` pairs of a ``--config`` file, in order.

    As Boost does: ``#`` starts a comment anywhere on a line, names and values
    are trimmed, ``[section]`` prefixes the names that follow with
    ``section.`` (which no option has, so they are rejected by the caller).

    @raise ConfigFileError: a line without ``=`` or without a name.
    """
    pairs: List[Tuple[str, str]] = []
    prefix = ""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            prefix = line[1:-1].strip() + "."
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            raise ConfigFileError(
                f"the options configuration file contains an invalid line '{line}'"
            )
        pairs.append((prefix + name.strip(), value.strip()))
    return pairs


def parse_options_file(path: str) -> List[Tuple[str, str]]:
    """
    L{parse_options_text} of the file at C{path}.

    @raise ConfigFileError: unreadable (the reference's message) or malformed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        raise ConfigFileError(f"can not read options configuration file '{path}'") from None
    return parse_options_text(text)


# --- --config-dir -----------------------------------------------------------------


def _is_non_empty_dir(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def default_config_dir(cwd: Optional[str] = None) -> Optional[str]:
    """
    ``<cwd>/config`` if it is a non-empty directory, else C{None}.

    The reference's docs say "next to the binary" but it uses the working
    directory; so do we: a Python entry point has no useful binary directory.
    """
    candidate = os.path.join(cwd if cwd is not None else os.getcwd(), "config")
    return candidate if _is_non_empty_dir(candidate) else None


def list_config_files(directory: str) -> List[str]:
    """Every regular file below C{directory}, recursively, sorted so every run reads them in the same order."""
    found: List[str] = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if os.path.isfile(path):
                found.append(path)
    return found


def read_config_dir(
    config_dir: Optional[str],
    *,
    cwd: Optional[str] = None,
    read_contents: bool = True,
) -> ConfigFiles:
    """
    The ``(path, text)`` pairs of the mapping files.

    @param config_dir: ``--config-dir``; C{None} means ``<cwd>/config`` when
        that is a non-empty directory, and no files otherwise.
    @param read_contents: C{False} when ``-s``/``-d`` gave a mapping: the
        reference then lists the files but never reads them, so an unreadable
        file cannot matter (texts are empty).
    @raise ConfigDirError: C{config_dir} is given but is not a non-empty directory.
    """
    if config_dir is not None:
        if not _is_non_empty_dir(config_dir):
            raise ConfigDirError(f"Invalid configuration directory: {config_dir}")
        directory: Optional[str] = config_dir
    else:
        directory = default_config_dir(cwd)
    if directory is None:
        return ()
    result: List[Tuple[str, str]] = []
    for path in list_config_files(directory):
        log.info("Detect configuration files: ")
        log.info("{path}", path=path)
        text = ""
        if read_contents:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError as e:
                log.warn(
                    "Fail to read file: {path}. Error message: {error}. Ignore this file.",
                    path=path,
                    error=e.strerror or str(e),
                )
                continue
        result.append((path, text))
    return tuple(result)


def parse_ini(text: str) -> Dict[str, str]:
    """
    The top-level ``KEY=value`` pairs of an INI text, as Boost's INI parser reads them.

    Lines are trimmed; lines starting with ``;`` or ``#`` are comments; keys
    inside ``[sections]`` are not returned (the reference cannot find them).

    @raise IniError: a line without ``=``, an empty key, an unclosed section
        or a duplicate key or section (``line N: <what>``).
    """
    top: Dict[str, str] = {}
    sections: set[str] = set()
    current: Optional[Dict[str, str]] = top
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line[0] == "[":
            end = line.find("]")
            if end < 0:
                raise IniError(f"line {number}: unmatched '['")
            name = line[1:end].strip()
            if name in sections or name in top:
                raise IniError(f"line {number}: duplicate section name")
            sections.add(name)
            current = {}
            continue
        key, equals, value = line.partition("=")
        if not equals:
            raise IniError(f"line {number}: '=' character not found in line")
        key = key.strip()
        if not key:
            raise IniError(f"line {number}: key expected")
        assert current is not None
        if key in current:
            raise IniError(f"line {number}: duplicate key name")
        current[key] = value.strip()
    return top


def make_lookup(config_files: Iterable[Tuple[str, str]]) -> LookupEndpoints:
    """
    The C{lookup_endpoints} function of the tunnel for these mapping files.

    Files are parsed now, once: one that is not INI is skipped with the
    reference's two warnings.  The function returns, for the IDs asked, the
    endpoint from the first file (in order) that has each; IDs no file has are
    absent from the result (the tunnel decides what that means).
    """
    parsed: List[Tuple[str, Mapping[str, str]]] = []
    for path, text in config_files:
        try:
            parsed.append((path, parse_ini(text)))
        except IniError as e:
            log.warn(
                "Fail to parse {path} .Please make sure your file is in .ini format.", path=path
            )
            log.warn(
                "Error message from parsing: {error} .Continue to the next file.", error=str(e)
            )

    def lookup_endpoints(service_ids: Sequence[str]) -> Mapping[str, str]:
        found: Dict[str, str] = {}
        wanted = [sid for sid in dict.fromkeys(service_ids)]
        for path, mapping in parsed:
            for service_id in wanted:
                if service_id in found:
                    continue
                if service_id in mapping:
                    found[service_id] = mapping[service_id]
                else:
                    log.debug(
                        "Fail to read file: {path}. Error message: No such node ({service_id})."
                        " Ignore this file.",
                        path=path,
                        service_id=service_id,
                    )
            if len(found) == len(wanted):
                break
        return found

    return lookup_endpoints


def check_mapping_endpoints(config_files: Iterable[Tuple[str, str]], *, source: bool) -> List[str]:
    """
    Check every endpoint in the mapping files with the grammar of
    L{aws_localproxy.config.local_endpoints} (a source's or a destination's), and warn
    about each one that cannot be used.

    Which service IDs a tunnel has is known only once connected, so a bad
    value is not fatal here: it fails when a tunnel asks for that ID.  Files
    that are not INI are left to L{make_lookup}, which warns about them.

    @return: the warnings' texts, in file order.
    """
    problems: List[str] = []
    parse = parse_source_endpoint if source else parse_destination_endpoint
    for path, text in config_files:
        try:
            mapping = parse_ini(text)
        except IniError:
            continue
        for service_id, endpoint in mapping.items():
            try:
                parse(endpoint)
            except EndpointError as e:
                problem = f"Invalid endpoint for service id {service_id} in {path}: {e}"
                log.warn("{problem}", problem=problem)
                problems.append(problem)
    return problems
