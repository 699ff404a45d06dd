# -*- test-case-name: tests.upstream.test_tls_options -*-
"""
TLS towards the tunneling service: what ``-c`` and ``-k`` mean, the Twisted way.

The reference trusts the system's default CA paths *plus* the ``-c``
directory, checks the host name (RFC 2818) and requires TLS 1.2 or newer;
``-k`` turns every check off.  Twisted's C{optionsForClientTLS} does the
host-name check with service_identity; this module only supplies a trust
root that is "system CAs plus a hashed directory", which Twisted has no
ready-made object for.
"""

from __future__ import annotations

import functools
from typing import Optional

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions, TLSVersion, optionsForClientTLS
from twisted.logger import Logger
from zope.interface import implementer

from aws_localproxy.adapters.sockets import ip_address_of
from aws_localproxy.adapters.twisted_private import IOpenSSLTrustRoot, TrustRoot

__all__ = [
    "CAPathTrustRoot",
    "UnverifiedClientTLS",
    "service_tls_options",
    "trust_root",
    "NO_VERIFY_WARNING",
]

log = Logger()

NO_VERIFY_WARNING = (
    "SECURITY WARNING: SSL host verification is disabled (-k/--no-ssl-host-verify): "
    "the connection to the tunneling service is vulnerable to man-in-the-middle attacks. "
    "Never use this in production."
)


class CAPathTrustRoot(TrustRoot):
    """The platform's default CAs, plus every certificate of an OpenSSL hashed directory."""

    def __init__(self, capath: Optional[str]) -> None:
        self.capath = capath

    def add_cas_to(self, context: SSL.Context) -> None:
        context.set_default_verify_paths()
        if self.capath:
            context.load_verify_locations(None, self.capath)


@implementer(IOpenSSLClientConnectionCreator)
class UnverifiedClientTLS:
    """TLS 1.2+ with no certificate check at all (``-k``); SNI only when C{hostname} is a name."""

    def __init__(self, hostname: Optional[str] = None) -> None:
        self._hostname = (
            hostname.encode("idna") if hostname and ip_address_of(hostname) is None else None
        )
        self._context = CertificateOptions(
            verify=False, raiseMinimumTo=TLSVersion.TLSv1_2
        ).getContext()

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if self._hostname is not None:
            connection.set_tlsext_host_name(self._hostname)
        return connection


def trust_root(capath: Optional[str]) -> IOpenSSLTrustRoot:
    """The trust root of ``-c``: system CAs plus C{capath} (if any)."""
    return CAPathTrustRoot(capath)


def service_tls_options(
    hostname: str, capath: Optional[str] = None, verify: bool = True
) -> IOpenSSLClientConnectionCreator:
    """
    Client TLS for the tunneling service at C{hostname}.

    @param capath: extra CA directory (``-c``), added to the system CAs.
    @param verify: C{False} for ``-k``: logs a loud warning, checks nothing.
    @raise ValueError: C{capath} cannot be loaded (the reference's fatal
        ``Could not set additional OpenSSL verification path``).
    """
    if not verify:
        log.warn(NO_VERIFY_WARNING)
    return _shared_options(hostname, capath, verify)


@functools.lru_cache(maxsize=64)
def _shared_options(
    hostname: str, capath: Optional[str], verify: bool
) -> IOpenSSLClientConnectionCreator:
    """
    One connection creator, so one OpenSSL context, per (host, ``-c``,
    ``-k``): a context holds the whole system CA store, most of a megabyte,
    and a process running many tunnels to the same service needs it once.
    Each connection still gets its own C{SSL.Connection}.
    """
    if not verify:
        return UnverifiedClientTLS(hostname)
    root = trust_root(capath)
    if capath:
        # Fail now, with a clear message, rather than on the first handshake.
        probe = SSL.Context(SSL.TLS_CLIENT_METHOD)
        try:
            probe.load_verify_locations(None, capath)
        except SSL.Error as error:
            raise ValueError(
                f"Could not set additional OpenSSL verification path({capath}) - {error}"
            ) from error
    return optionsForClientTLS(
        hostname,
        trustRoot=root,
        extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
    )
