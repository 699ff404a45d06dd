# -*- test-case-name: tests.adapters.test_openssl_private -*-
"""
Every private part of pyOpenSSL the project uses, in one place.

What it reaches into, who uses it and why, and what happens when a
pyOpenSSL (or cryptography) release moves it
(tests/adapters/test_openssl_private.py is the canary for each; setup.py's
ceiling on pyOpenSSL is the newest release it passed on):

  1. The OpenSSL bindings pyOpenSSL itself calls, C{OpenSSL.SSL._lib} and
     C{OpenSSL.SSL._ffi} (cryptography's cffi bindings), for the loops of
     L{aws_localproxy.upstream.tls_layer} that run once per TLS record or
     per read: L{SSL_write}, L{SSL_read}, L{SSL_get_error}, L{BIO_read} and
     L{BIO_write} (with L{from_buffer} to hand them a buffer without a
     copy).  pyOpenSSL's public C{send}/C{recv}/C{bio_read}/C{bio_write}
     check their arguments, make a buffer pointer and translate errors for
     every call, and raise an exception each time a BIO runs dry: more
     Python than the record costs to encrypt.  Gone (L{DIRECT} false):
     every record goes through those public methods; a warning, once.
  2. A connection's own handles, C{Connection._ssl} (its C{SSL *}),
     C{Connection._from_ssl} (its send memory BIO, a C{BIO *}) and
     C{Connection._into_ssl} (its receive memory BIO, a C{BIO *}): the first
     argument of those calls.  L{direct_handles} checks all three once per
     connection against cffi's own types (C{ffi.typeof}): if a pyOpenSSL
     kept anything else there, the connection takes the public methods
     rather than having every write raise; a warning, once.

The functions are resolved once, here: the hot loops call the C functions
themselves, with no layer in between.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from OpenSSL import SSL as _pyopenssl

from aws_localproxy.adapters.seams import warn_once

__all__ = [
    "DIRECT",
    "SSL_write",
    "SSL_read",
    "SSL_get_error",
    "BIO_read",
    "BIO_write",
    "WANT_READ",
    "from_buffer",
    "DirectHandles",
    "direct_handles",
]

_lib: Any = getattr(_pyopenssl, "_lib", None)
_ffi: Any = getattr(_pyopenssl, "_ffi", None)

#: The OpenSSL functions of the per-record loops (C{None} without the bindings).
SSL_write: Any = getattr(_lib, "SSL_write", None)
SSL_read: Any = getattr(_lib, "SSL_read", None)
SSL_get_error: Any = getattr(_lib, "SSL_get_error", None)
BIO_read: Any = getattr(_lib, "BIO_read", None)
#: C{BIO_write(bio, data, length)}: the read's ciphertext into the receive
#: BIO.  cffi passes a C{bytes} object to its C{void *} argument as a
#: pointer to the bytes themselves (no copy, no pointer object to make).
BIO_write: Any = getattr(_lib, "BIO_write", None)
#: C{ffi.from_buffer}: a C pointer into a Python buffer, no copy.
from_buffer: Any = getattr(_ffi, "from_buffer", None)

#: What C{SSL_get_error} says when a read stopped for want of more bytes.
WANT_READ: int = getattr(_lib, "SSL_ERROR_WANT_READ", 2)


def _pointer_type(name: str) -> Any:
    """cffi's type for C{name} (C{"SSL *"}), or C{None} if these bindings do not declare it."""
    try:
        return _ffi.typeof(name)
    except Exception:  # the bindings' ffi.error (an unknown type), or no ffi at all
        return None


_SSL_POINTER = _pointer_type("SSL *")
_BIO_POINTER = _pointer_type("BIO *")

#: Whether the bindings have every function and type the direct calls need.
DIRECT: bool = (
    None not in (SSL_write, SSL_read, SSL_get_error, BIO_read, BIO_write, from_buffer)
    and _SSL_POINTER is not None
    and _BIO_POINTER is not None
)


def _is_a(handle: object, pointer_type: Any) -> bool:
    """Whether C{handle} is a cffi pointer of C{pointer_type} (cffi says what it is)."""
    try:
        return bool(_ffi.typeof(handle) == pointer_type)
    except TypeError:  # not a cffi object at all
        return False


def _describe(handle: object) -> str:
    """What C{handle} is, in cffi's words if it is a cffi object."""
    try:
        return str(_ffi.typeof(handle).cname)
    except (TypeError, AttributeError):
        return type(handle).__name__


class DirectHandles(NamedTuple):
    """A pyOpenSSL connection's OpenSSL handles, checked (L{direct_handles})."""

    #: Its C{SSL *} (C{Connection._ssl}).
    ssl: Any
    #: Its send memory BIO, where OpenSSL puts ciphertext (C{Connection._from_ssl}).
    send_bio: Any
    #: Its receive memory BIO, where the peer's ciphertext goes (C{Connection._into_ssl}).
    receive_bio: Any


def direct_handles(connection: object) -> Optional[DirectHandles]:
    """
    The C{SSL *} and the send and receive C{BIO *}s of C{connection} (a
    pyOpenSSL C{Connection}) for the direct calls, or C{None}: then its
    records go through pyOpenSSL's public methods (warned once).  Asked
    once per connection.
    """
    if not DIRECT:
        warn_once(
            "pyopenssl-bindings",
            "This pyOpenSSL no longer exposes the OpenSSL bindings (SSL._lib/_ffi: "
            "SSL_write, SSL_read, SSL_get_error, BIO_read) the TLS layer calls per record: "
            "records go through pyOpenSSL's public methods (more time per byte)",
        )
        return None
    ssl = getattr(connection, "_ssl", None)
    send_bio = getattr(connection, "_from_ssl", None)
    receive_bio = getattr(connection, "_into_ssl", None)
    if (
        _is_a(ssl, _SSL_POINTER)
        and _is_a(send_bio, _BIO_POINTER)
        and _is_a(receive_bio, _BIO_POINTER)
    ):
        return DirectHandles(ssl, send_bio, receive_bio)
    warn_once(
        "pyopenssl-handles",
        "This pyOpenSSL's Connection._ssl / _from_ssl / _into_ssl are not an SSL * and "
        f"two BIO * ({_describe(ssl)}, {_describe(send_bio)}, {_describe(receive_bio)}): "
        "TLS records go through pyOpenSSL's public methods (more time per byte)",
    )
    return None
