# -*- test-case-name: tests.config.test_client_token -*-
"""
A client token that survives restarts: ``--client-token-file PATH``.

The AWS tunneling service binds a tunnel's end to the first client token it
sees; a proxy that reconnects (or restarts) with the same token gets its
place back, one with another token is refused while the first holds it.
Keeping the token in a file lets a restarted proxy reclaim its end without
the token ever appearing on a command line: the first run generates one and
stores it (readable by the owner only), later runs read it.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import string
from typing import Callable, Optional

from twisted.logger import Logger

__all__ = [
    "ClientTokenFileError",
    "generate_client_token",
    "is_valid_client_token",
    "read_client_token",
    "load_or_create_client_token",
    "client_token_for",
]

log = Logger()

_ALPHABET = string.ascii_letters + string.digits + "-"
_GENERATED_LENGTH = 64
# The AWS tunneling service's format for client tokens.
_VALID = re.compile(r"[a-zA-Z0-9-]{32,128}")


class ClientTokenFileError(ValueError):
    """The client token file cannot be read, written or used; the message never contains the token."""


def generate_client_token() -> str:
    """A new client token: 64 characters of ``[a-zA-Z0-9-]`` from C{secrets}."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(_GENERATED_LENGTH))


def is_valid_client_token(token: str) -> bool:
    """Whether C{token} has the AWS tunneling service's format: 32 to 128 of ``[a-zA-Z0-9-]``."""
    return _VALID.fullmatch(token) is not None


def read_client_token(path: str) -> str | None:
    """
    The token stored at C{path} (surrounding white space ignored), or
    C{None} when there is no such file.

    @raise ClientTokenFileError: the file cannot be read or does not hold a valid token.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
            mode = os.fstat(f.fileno()).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ClientTokenFileError(
            f"Cannot read the client token file {path}: {e.strerror or e}"
        ) from None
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not is_valid_client_token(token):
        raise ClientTokenFileError(
            f"The client token file {path} does not hold a valid client token"
            " (32 to 128 letters, digits and hyphens)"
        )
    if stat.S_IMODE(mode) & 0o077:
        log.warn("The client token file {path} can be read by other users", path=path)
    return token


def _write_new(path: str, token: str) -> None:
    """
    Write C{token} to a new file next to C{path}, created with
    ``O_CREAT|O_EXCL`` and mode 0600, then move it to C{path} in one step
    without replacing a file another process put there first.

    @raise FileExistsError: C{path} appeared meanwhile.
    """
    directory = os.path.dirname(path) or "."
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(token.encode("ascii") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            # A hard link never replaces an existing file: two proxies
            # starting together agree on one token.
            os.link(temporary, path)
        except OSError as e:
            if e.errno == errno.EEXIST:
                raise FileExistsError(path) from None
            # A file system without hard links: a rename is still atomic.
            os.rename(temporary, path)
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass


def load_or_create_client_token(path: str) -> str:
    """
    The client token stored at C{path}; when there is none yet, a new one
    (L{generate_client_token}) written there first (mode 0600, atomically).

    @raise ClientTokenFileError: the file is unreadable or invalid, or cannot be created.
    """
    token = read_client_token(path)
    if token is not None:
        return token
    token = generate_client_token()
    try:
        _write_new(path, token)
    except FileExistsError:
        existing = read_client_token(path)
        if existing is None:
            raise ClientTokenFileError(
                f"The client token file {path} vanished while it was created"
            ) from None
        return existing
    except OSError as e:
        raise ClientTokenFileError(
            f"Cannot create the client token file {path}: {e.strerror or e}"
        ) from None
    log.info("Stored a new client token in {path}", path=path)
    return token


def client_token_for(
    configured: Optional[str],
    token_file: Optional[str],
    on_secret: Optional[Callable[[str], None]] = None,
) -> str:
    """
    The client token of a proxy's every connect: C{configured} if given,
    else the one kept in C{token_file} (created there now if needed), else
    a new one for the life of the proxy.  The AWS tunneling service makes an
    access token single-use unless its first connection carried a client
    token, so without one the first reconnect would be refused.

    @param on_secret: called with a token that did not come from the
        configuration (read from the file, or made up) before it is used:
        the console script redacts it from the log.
    @raise ClientTokenFileError: C{token_file} cannot be read or created.
    """
    if configured:
        return configured
    if token_file is not None:
        token = load_or_create_client_token(token_file)
    else:
        token = generate_client_token()
        log.debug("Generated a client token for this proxy's reconnects")
    if on_secret is not None:
        on_secret(token)
    return token
