# -*- test-case-name: tests.config.test_local_endpoints -*-
"""
What a service ID's local endpoint text means, for sources and destinations.

One grammar for every place a local endpoint is written (``-s``/``-d``,
``--config-dir`` mapping files, the values the tunnel looks up), so the
command line accepts exactly what the proxy can later listen on or connect
to.  A value is one of two things:

  - a I{Twisted endpoint description} when it contains a ``:`` and the part
    before the first ``:`` is the name of an installed Twisted endpoint type
    (server or client, e.g. ``tcp``, ``tcp6``, ``unix``, ``ssl``, ``tls``,
    ``systemd``; compared without regard to case): ``unix:/run/ssh1.sock``,
    ``tcp:5555:interface=::1``, ``tcp:host=example:port=80``.  A source's
    must be a server description (``serverFromString``), a destination's a
    client description (``clientFromString``); both are checked when parsed,
    so a bad one is an error at start-up, not when the first connection comes;
  - otherwise the reference's own forms: for a source ``[address:]port``
    (the port after the last ``:``, the address ignored, port 0 lets the
    system pick one), for a destination ``port`` (on the default host),
    ``host:port``, ``[v6]:port``, a bare IPv6 ``a:b::c:port``, or a path with
    a ``/`` (a Unix socket).

Parsing is pure; the endpoint builders take the reactor.
"""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass
from typing import Any, Callable, FrozenSet, List, Optional, Set, Tuple

from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)

# Twisted's endpoints module (and with it Twisted's TLS) is imported when an
# endpoint is built or a description checked, not with this module: the
# command line is parsed, and --help, --version or a mistake answered,
# without it.  Its constructors and string parsers are not annotated; the
# wrappers below give them the types used here.


def _server_from_string(reactor: Any, description: str) -> IStreamServerEndpoint:
    from twisted.internet.endpoints import serverFromString

    parse: Callable[[Any, str], IStreamServerEndpoint] = serverFromString
    return parse(reactor, description)


def _client_from_string(reactor: Any, description: str) -> IStreamClientEndpoint:
    from twisted.internet.endpoints import clientFromString

    parse: Callable[[Any, str], IStreamClientEndpoint] = clientFromString
    return parse(reactor, description)


def _tcp_server(reactor: Any, port: int, interface: str) -> IStreamServerEndpoint:
    """Twisted's TCP server endpoint on C{interface}, IPv6 when it is an IPv6 address."""
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

    endpoint_type: Callable[..., IStreamServerEndpoint] = (
        TCP6ServerEndpoint if ":" in interface else TCP4ServerEndpoint
    )
    return endpoint_type(reactor, port, interface=interface)


def _memory_reactor() -> Any:
    """
    A reactor that only records, to check a description without listening or
    connecting.  Imported when needed: C{twisted.internet.testing} brings
    trial with it, megabytes no running proxy should carry.
    """
    from twisted.internet.testing import MemoryReactor

    return MemoryReactor()  # type: ignore[no-untyped-call]


__all__ = [
    "EndpointError",
    "SourceEndpoint",
    "DestinationEndpoint",
    "parse_source_endpoint",
    "parse_destination_endpoint",
    "is_description",
    "server_endpoint_types",
    "client_endpoint_types",
    "DEFAULT_DESTINATION_HOST",
]

#: Where a destination's bare port goes, as in the reference.
DEFAULT_DESTINATION_HOST = "127.0.0.1"

#: Server description types that take ``interface=`` and get the bind
#: address when they do not name one, with the address family they prefer
#: (Twisted listens on an IPv4 or an IPv6 address with any of them).
_INTERFACE_TYPES = {
    "tcp": socket.AF_INET,
    "ssl": socket.AF_INET,
    "tcp6": socket.AF_INET6,
    "tls": socket.AF_INET6,
}


class EndpointError(ValueError):
    """An endpoint text is neither a valid reference form nor a valid description; the message says why."""


# --- which names are descriptions ----------------------------------------------------


@functools.lru_cache(maxsize=None)
def server_endpoint_types() -> FrozenSet[str]:
    """The endpoint type names ``serverFromString`` knows: Twisted's built-in ones and the installed plugins'."""
    from twisted.plugin import getPlugins

    from aws_localproxy.adapters.twisted_private import builtin_endpoint_types

    names = set(builtin_endpoint_types("server"))
    names.update(str(p.prefix).lower() for p in getPlugins(IStreamServerEndpointStringParser))
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def client_endpoint_types() -> FrozenSet[str]:
    """The endpoint type names ``clientFromString`` knows: Twisted's built-in ones and the installed plugins'."""
    from twisted.plugin import getPlugins

    from aws_localproxy.adapters.twisted_private import builtin_endpoint_types

    names = set(builtin_endpoint_types("client"))
    names.update(
        str(p.prefix).lower() for p in getPlugins(IStreamClientEndpointStringParserWithReactor)
    )
    return frozenset(names)


def _description_type(text: str) -> Optional[str]:
    """The lower-cased type name if C{text} is a Twisted endpoint description, else C{None}."""
    name, colon, _ = text.partition(":")
    if not colon or not name or not name.isascii() or not name.replace("_", "").isalnum():
        return None
    name = name.lower()
    if name in server_endpoint_types() or name in client_endpoint_types():
        return name
    return None


def is_description(text: str) -> bool:
    """Whether C{text} is written as a Twisted endpoint description (see the module docstring)."""
    return _description_type(text.strip()) is not None


def _normalised(text: str, kind: str) -> str:
    """The description with its type name lower-cased, as Twisted's parsers want it."""
    return kind + text[len(kind) :]


def _keywords(description: str) -> Set[str]:
    """The ``name=`` keywords of a description, with Twisted's ``\\`` escapes honoured."""
    keywords: Set[str] = set()
    current: List[str] = []
    in_value = False
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            current, in_value = [], False
        elif char == "=" and not in_value:
            keywords.add("".join(current))
            current, in_value = [], True
        else:
            current.append(char)
    return keywords


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _describe_error(description: str, error: BaseException) -> str:
    """Twisted's complaint about C{description}, with a hint for the usual mistake."""
    text = str(error)
    if isinstance(error, (KeyError, IndexError)) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if "::" in description.replace("\\:", ""):
        text += " (a ':' inside a value must be written '\\:', e.g. interface=\\:\\:1)"
    return text


# --- sources ---------------------------------------------------------------------------


def resolve_bind_address(address: str, prefer: int = socket.AF_INET) -> str:
    """
    The first passive address of C{address}, those of family C{prefer} first
    (``localhost`` -> ``127.0.0.1``, as the reference picks it).

    @raise OSError: the address does not resolve.
    """
    try:
        infos = socket.getaddrinfo(
            address, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise OSError(f"Could not resolve bind address: {address} -- {error}") from error
    ordered = sorted(infos, key=lambda info: info[0] != prefer)
    return str(ordered[0][4][0])


@dataclass(frozen=True)
class SourceEndpoint:
    """
    Where a source listens for one service ID.

    @ivar text: the value as configured, for logs.
    @ivar port: the port of a reference form (0: the system picks one);
        C{None} for a description.
    @ivar description: the Twisted server description (type name
        lower-cased); C{None} for a reference form.
    """

    text: str
    port: Optional[int] = None
    description: Optional[str] = None

    def server_endpoint(self, reactor: Any, bind_address: str) -> IStreamServerEndpoint:
        """
        The endpoint to listen on.  A reference form listens on C{bind_address}
        (resolved now, IPv4 first); a description is C{serverFromString}'s,
        except that a ``tcp``/``tcp6``/``ssl``/``tls`` description without
        ``interface=`` listens on C{bind_address} too (never on every
        interface by default).

        @raise OSError: C{bind_address} does not resolve.
        """
        if self.description is None:
            assert self.port is not None
            return _tcp_server(reactor, self.port, resolve_bind_address(bind_address))
        return _server_from_string(reactor, self._with_interface(bind_address))

    def _with_interface(self, bind_address: str) -> str:
        assert self.description is not None
        kind = self.description.partition(":")[0]
        prefer = _INTERFACE_TYPES.get(kind)
        if prefer is None or "interface" in _keywords(self.description):
            return self.description
        address = resolve_bind_address(bind_address, prefer)
        return f"{self.description}:interface={_escape(address)}"

    def describe(self) -> str:
        """For log lines: ``port 5555`` or the description."""
        if self.description is not None:
            return self.description
        return f"port {self.port}"


def parse_source_endpoint(text: str) -> SourceEndpoint:
    """
    A source's endpoint: ``[address:]port`` or a server description.

    @raise EndpointError: ``Invalid listen port in port mapping: <text>`` for
        a reference form without a port 0..65535; a message naming the
        description and Twisted's complaint for a bad description.
    """
    stripped = text.strip()
    kind = _description_type(stripped)
    if kind is not None:
        return SourceEndpoint(text, description=_check_server_description(stripped, kind))
    port_text = text.rsplit(":", 1)[-1].strip()
    if not port_text.isdigit() or int(port_text, 10) > 65535:
        raise EndpointError(f"Invalid listen port in port mapping: {text}")
    return SourceEndpoint(text, port=int(port_text, 10))


#: For messages: (the side, what its endpoints do, Twisted's word for them), by C{source}.
_SIDE_WORDS = {
    True: ("source", "listening", "server"),
    False: ("destination", "connecting", "client"),
}


def _check_description(text: str, kind: str, *, source: bool) -> str:
    """
    C{text} (of endpoint type C{kind}) normalised, once Twisted builds it as a
    listening (C{source}) or connecting endpoint.
    """
    side, verb, role = _SIDE_WORDS[source]
    kinds = server_endpoint_types() if source else client_endpoint_types()
    invalid = f"Invalid {side} endpoint description '{text}'"
    if kind not in kinds:
        raise EndpointError(
            f"{invalid}: '{kind}' is not a {verb} endpoint type (one of: {', '.join(sorted(kinds))})"
        )
    description = _normalised(text, kind)
    build = _server_from_string if source else _client_from_string
    try:
        endpoint = build(_memory_reactor(), description)
    except Exception as error:
        raise EndpointError(f"{invalid}: {_describe_error(text, error)}") from None
    interface = IStreamServerEndpoint if source else IStreamClientEndpoint
    if not interface.providedBy(endpoint):
        raise EndpointError(f"{invalid}: not a stream {role} endpoint")
    return description


def _check_server_description(text: str, kind: str) -> str:
    if kind == "stdio":
        raise EndpointError(
            f"Invalid source endpoint description '{text}': use --stdio to carry one connection "
            "over standard input and output"
        )
    return _check_description(text, kind, source=True)


# --- destinations ------------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationEndpoint:
    """
    Where a destination connects for one service ID: exactly one of
    (C{host}, C{port}), C{path} and C{description} is set.

    @ivar text: the value as configured, for logs.
    @ivar host: lower-cased; an IPv6 literal without brackets.
    @ivar path: a Unix socket path.
    @ivar description: the Twisted client description (type name lower-cased).
    """

    text: str
    host: Optional[str] = None
    port: Optional[int] = None
    path: Optional[str] = None
    description: Optional[str] = None

    def client_endpoint(self, reactor: Any, timeout: float) -> IStreamClientEndpoint:
        """
        The endpoint to connect with: C{HostnameEndpoint} (IPv4/IPv6, happy
        eyeballs), C{UNIXClientEndpoint}, or C{clientFromString}'s for a
        description (which keeps its own ``timeout=``, Twisted's default 30 s).
        """
        if self.description is not None:
            return _client_from_string(reactor, self.description)
        from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint

        if self.path is not None:
            unix_client: Callable[..., IStreamClientEndpoint] = UNIXClientEndpoint
            return unix_client(reactor, self.path, timeout=timeout)
        assert self.host is not None and self.port is not None
        return HostnameEndpoint(reactor, self.host, self.port, timeout=timeout)

    def describe(self) -> str:
        """For log lines: ``Unix socket /x``, ``127.0.0.1:22``, ``[::1]:22`` or the description."""
        if self.description is not None:
            return self.description
        if self.path is not None:
            return f"Unix socket {self.path}"
        host = f"[{self.host}]" if self.host is not None and ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_destination_endpoint(
    text: str, default_host: str = DEFAULT_DESTINATION_HOST
) -> DestinationEndpoint:
    """
    A destination's endpoint: ``port``, ``host:port``, ``[v6]:port``, a bare
    IPv6 ``a:b::c:port``, a Unix socket path (anything with a ``/``), or a
    client description.

    @raise EndpointError: ``Invalid destination endpoint: <text>`` (no host or
        no port), ``Invalid port in destination endpoint: <text>`` (a port not
        1..65535), or a message naming a bad description.
    """
    stripped = text.strip()
    kind = _description_type(stripped)
    if kind is not None:
        return DestinationEndpoint(
            text, description=_check_description(stripped, kind, source=False)
        )
    if "/" in stripped:
        return DestinationEndpoint(text, path=stripped)
    host, port = _host_and_port(stripped.lower(), text, default_host)
    return DestinationEndpoint(text, host=host, port=port)


def _host_and_port(lowered: str, text: str, default_host: str) -> Tuple[str, int]:
    if lowered.isdigit():
        return default_host, _destination_port(lowered, text)
    if lowered.startswith("["):
        host, bracket, rest = lowered[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise EndpointError(f"Invalid destination endpoint: {text}")
        return host, _destination_port(rest[1:], text)
    host, colon, port = lowered.rpartition(":")
    if not colon or not host:
        raise EndpointError(f"Invalid destination endpoint: {text}")
    return host, _destination_port(port, text)


def _destination_port(port: str, text: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EndpointError(f"Invalid port in destination endpoint: {text}")
    return int(port)
