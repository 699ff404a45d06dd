# -*- test-case-name: tests.adapters.test_seams -*-
"""
What the adapters on dependencies' private parts share: whether a
dependency's code still uses a name, and a warning logged once per process.

Each adapter (L{twisted_private}, L{openssl_private}, L{autobahn_private},
L{paho_private}) decides once, at import or per connection, whether the
private part it relies on is still there.  Where it is not, the proxy takes
the dependency's public path (slower, never wrong) and says so once, so a
dependency release that moves an internal costs speed and a log line, not
a session; where there is no public path, the adapter refuses with a
message that names the part.
"""

from __future__ import annotations

from twisted.logger import Logger

__all__ = ["code_uses", "warn_once", "forget_warnings"]

_log = Logger(namespace="aws_localproxy.adapters")

#: The keys of the warnings this process has logged.
_warned: set[str] = set()


def code_uses(owner: object, function_name: str, *names: str) -> bool:
    """
    Whether C{owner.function_name} is a Python function whose own code
    reads, writes or calls every one of C{names} (its C{co_names}: the
    attribute and global names it uses).

    This is how an adapter checks, without running anything, that a
    dependency still calls the private hook we override, or still keeps the
    private state we read under the name we read it by.  It is strict on
    purpose: a refactoring that moves the use into another function reads as
    "gone", the public path is taken, and the canary tests say what moved.
    """
    function = getattr(owner, function_name, None)
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    used = code.co_names
    return all(name in used for name in names)


def warn_once(key: str, text: str) -> bool:
    """
    Log C{text} at warning level the first time this process meets C{key};
    returns whether it was logged now.
    """
    if key in _warned:
        return False
    _warned.add(key)
    _log.warn("{text}", text=text)
    return True


def forget_warnings() -> None:
    """Forget which warnings were logged (tests each expect their warning once)."""
    _warned.clear()
