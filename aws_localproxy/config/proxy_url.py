# -*- test-case-name: tests.config.test_proxy_url -*-
"""
Web proxy configuration: the proxy URL, where it comes from, and when to bypass it.

The reference reads one URL from ``https_proxy`` (or ``HTTPS_PROXY``) and
parses ``[scheme://][user:password@]host[:port]`` by hand. This module keeps
that grammar and its error messages, so a configuration that worked with the
reference works here, and fixes the reference's parsing bugs:

  - without ``scheme://`` the URL is ``http`` and nothing is dropped from the
    host;
  - a trailing ``/`` is ignored, any other path, query or fragment is rejected
    with its own message instead of ending up in the host name;
  - ``%`` must be followed by two hex digits;
  - every error is a ``ProxyURLError`` whose message is the reason.

It also adds what the reference lacks: ``https`` proxies get their port like
``http`` ones, ``socks5://``/``socks5h://`` URLs, and ``NO_PROXY``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Mapping

import attrs

from aws_localproxy.adapters.sockets import ip_address_of

__all__ = [
    "ProxyURLError",
    "ProxyURL",
    "SCHEMES",
    "DEFAULT_PORTS",
    "parse_proxy_url",
    "proxy_from_environment",
    "no_proxy_from_environment",
    "bypass_proxy",
]

#: The proxy kinds this package can tunnel through.
SCHEMES = ("http", "https", "socks5", "socks5h")

#: Port used when the URL has none (or port 0, as the reference does).
#: ``http`` and ``https`` both use the reference's 3128, so an ``https://``
#: URL that worked with the reference reaches the same port here.
DEFAULT_PORTS: Mapping[str, int] = {
    "http": 3128,
    "https": 3128,
    "socks5": 1080,
    "socks5h": 1080,
}

_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")


class ProxyURLError(ValueError):
    """The web proxy URL cannot be used; the message says why."""


def _hide(value: object) -> str:
    """What ``repr`` shows for a credential: whether there is one, never what it is."""
    return "None" if value is None else "'***'"


@attrs.frozen
class ProxyURL:
    """
    One parsed web proxy URL.

    ``host`` is lower-case, without brackets for an IPv6 literal. The
    credentials are percent-decoded. Neither the user name nor the password
    appears in ``repr`` or ``str``, so a ``ProxyURL`` can be logged.
    """

    scheme: str = attrs.field(validator=attrs.validators.in_(SCHEMES))
    host: str
    port: int
    username: str | None = attrs.field(default=None, repr=_hide)
    password: str | None = attrs.field(default=None, repr=_hide)
    #: True when the URL gave no port (or port 0) and ``port`` is the default.
    port_defaulted: bool = attrs.field(default=False, eq=False)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """``(username, password)``, or None when the URL has none."""
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    @property
    def authority(self) -> str:
        """``host:port`` with IPv6 brackets, without credentials."""
        return format_authority(self.host, self.port)

    def __str__(self) -> str:
        user = "" if self.username is None else "***:***@"
        return f"{self.scheme}://{user}{self.authority}"


def format_authority(host: str, port: int) -> str:
    """``host:port``, with the brackets an IPv6 literal needs."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _percent_decode(text: str) -> str:
    """
    Decode ``%XX`` escapes and ``+`` (a space, as the reference does).

    The reference's messages are kept; unlike the reference, one hex digit
    followed by something else is an error.
    """
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == ord("%"):
            digits = raw[i + 1 : i + 3]
            if len(digits) < 2:
                raise ProxyURLError("Invalid URL token")
            if not all(chr(d) in "0123456789abcdefABCDEF" for d in digits):
                raise ProxyURLError("Invalid Hex number")
            value = int(digits, 16)
            if value == 0:
                raise ProxyURLError("Invalid URL: encoded null byte (%00) is not allowed")
            out.append(value)
            i += 3
        elif c == ord("+"):
            out.append(ord(" "))
            i += 1
        else:
            out.append(c)
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ProxyURLError("Invalid URL: the credentials are not valid UTF-8") from None


def _parse_userinfo(userinfo: str) -> tuple[str, str]:
    if not userinfo:
        raise ProxyURLError(
            "Empty authentication, if you don't need to authentication information, remove `@`"
        )
    if ":" not in userinfo:
        raise ProxyURLError("Missing the colon between the username and password in URL.")
    raw_user, raw_password = userinfo.split(":", 1)
    username = _percent_decode(raw_user)
    password = _percent_decode(raw_password)
    if not username or not password:
        raise ProxyURLError("Invalid authentication format, missing either username or password.")
    return username, password


def _parse_port(text: str) -> int | None:
    if not text:
        return None
    if not text.isascii() or not text.isdigit():
        raise ProxyURLError(f"Failed to parse the port: {text!r} is not a number")
    port = int(text)
    if port > 65535:
        raise ProxyURLError(f"Failed to parse the port: {port} is out of range 0-65535")
    return port or None


def _parse_hostport(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ProxyURLError("Invalid IPv6 address in URL: missing closing ']'")
        host = hostport[1:end]
        rest = hostport[end + 1 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ProxyURLError(f"Invalid IPv6 address in URL: {host!r}") from None
        if rest and not rest.startswith(":"):
            raise ProxyURLError(f"Unexpected text after the IPv6 address in URL: {rest!r}")
        return host, _parse_port(rest[1:])
    if hostport.count(":") > 1:
        raise ProxyURLError(
            "Invalid host in URL: put an IPv6 address in brackets, e.g. http://[::1]:3128"
        )
    host, _, port_text = hostport.partition(":")
    host = host.lower()
    if not host:
        raise ProxyURLError("Missing HTTP host address")
    if not _HOST_NAME.match(host):
        raise ProxyURLError(f"Invalid web proxy host name: {host!r}")
    return host, _parse_port(port_text)


def parse_proxy_url(text: str) -> ProxyURL:
    """
    Parse ``[scheme://][user:password@]host[:port][/]``.

    ``host`` may be an IPv6 literal in brackets. The scheme is one of
    ``SCHEMES`` (``http`` when absent); a missing port, or port 0, gives
    ``DEFAULT_PORTS[scheme]``. Raises ``ProxyURLError`` with the reason.
    """
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    scheme = scheme.lower()
    if not scheme:
        raise ProxyURLError("Invalid URL, missing protocol")
    if scheme not in SCHEMES:
        raise ProxyURLError(f"Unsupported protocol: {scheme!r} (use one of {', '.join(SCHEMES)})")
    # The credentials end at the last "@", so an unencoded "@" or "/" in
    # the password still works, as it does with the reference.
    userinfo, at, hostpart = rest.rpartition("@")
    credentials = _parse_userinfo(userinfo) if at else None
    for i, char in enumerate(hostpart):
        if char in "/?#":
            if hostpart[i:] != "/":
                raise ProxyURLError(
                    f"Unexpected path in web proxy URL: {hostpart[i:]!r} "
                    "(expected [scheme://][user:password@]host[:port])"
                )
            hostpart = hostpart[:i]
            break
    host, port = _parse_hostport(hostpart)
    username, password = credentials if credentials else (None, None)
    return ProxyURL(
        scheme=scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        username=username,
        password=password,
        port_defaulted=port is None,
    )


def _first_set(environ: Mapping[str, str], names: tuple[str, str]) -> str | None:
    # The lower-case name wins whenever it is set, even to "" (which then
    # means "none" and hides the upper-case one), as in the reference.
    for name in names:
        if name in environ:
            return environ[name].strip() or None
    return None


def proxy_from_environment(environ: Mapping[str, str]) -> str | None:
    """The raw web proxy URL: ``https_proxy`` if set (even empty), else ``HTTPS_PROXY``."""
    return _first_set(environ, ("https_proxy", "HTTPS_PROXY"))


def no_proxy_from_environment(environ: Mapping[str, str]) -> str | None:
    """The raw bypass list: ``no_proxy`` if set (even empty), else ``NO_PROXY``."""
    return _first_set(environ, ("no_proxy", "NO_PROXY"))


def _split_entry(entry: str) -> tuple[str, int | None]:
    """An entry as ``(host, port or None)``; IPv6 with a port needs brackets."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def bypass_proxy(host: str, no_proxy: str | None, port: int | None = None) -> bool:
    """
    Whether ``host`` (and ``port``) should be reached directly, per ``NO_PROXY``.

    As curl and most tools read it: a comma (or space) separated list; ``*``
    alone matches everything; a name matches itself and its subdomains, with
    or without a leading ``.`` (or ``*.``); IP literals match exactly, and a
    CIDR block (``10.0.0.0/8``) matches the addresses in it; an entry with
    ``:port`` matches only that port. Comparison ignores case and a trailing
    dot.
    """
    if not no_proxy:
        return False
    host = host.strip("[]").lower().rstrip(".")
    host_ip = ip_address_of(host)
    for raw in re.split(r"[,\s]+", no_proxy.strip()):
        entry = raw.lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            if host_ip is None:
                continue
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if host_ip in network:
                return True
            continue
        name, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        entry_ip = ip_address_of(name)
        if entry_ip is not None or host_ip is not None:
            if entry_ip is not None and entry_ip == host_ip:
                return True
            continue
        name = name.removeprefix("*").removeprefix(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False
