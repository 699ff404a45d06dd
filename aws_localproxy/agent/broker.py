# -*- test-case-name: tests.agent.test_broker -*-
# mypy: disallow-untyped-calls=False
# (this module calls Twisted APIs that have no annotations)
"""
Where the MQTT broker is and how to reach it: a URL, TLS, client certificates, ALPN.

``mqtt://host[:port]`` is plain TCP (default port 1883), ``mqtts://host[:port]``
is TLS (default 8883) with the broker's certificate checked against the
system CAs or the ``--mqtt-ca`` file, and the host name checked.  AWS IoT
Core wants the device certificate and key (mutual TLS) and takes MQTT on
port 8883, or on 443 when the TLS handshake offers the ALPN protocol
``x-amzn-mqtt-ca`` (for networks that only let 443 out): on ``mqtts://`` with
port 443, that ALPN protocol is offered.

The connection itself is Twisted's (C{HostnameEndpoint}, pyOpenSSL through
C{wrapClientTLS}): name resolution, connect and handshake never block the
reactor.  L{aws_localproxy.agent.mqtt} speaks MQTT over it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Optional
from urllib.parse import urlsplit

from twisted.internet import ssl
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint

__all__ = [
    "BrokerConfig",
    "BrokerConfigError",
    "parse_broker_url",
    "broker_endpoint",
    "broker_parameters",
    "BROKER_FILE_OPTIONS",
    "IOT_CORE_ALPN",
]

#: The ALPN protocol AWS IoT Core wants for MQTT with client certificates on port 443.
IOT_CORE_ALPN = b"x-amzn-mqtt-ca"
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class BrokerConfigError(ValueError):
    """The broker URL or its TLS files cannot be used."""


@dataclass(frozen=True)
class BrokerConfig:
    """
    One MQTT broker and the credentials for it.

    @ivar ca_file: PEM file of the CAs to trust for the broker (instead of the
        system's); C{None}: the system's CAs.
    @ivar cert_file: the client (device) certificate, PEM; with C{key_file}.
    @ivar key_file: the client's private key, PEM.
    @ivar alpn: offer L{IOT_CORE_ALPN}; C{None}: only on TLS to port 443.
    """

    host: str
    port: int
    use_tls: bool
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    alpn: Optional[bool] = None

    def __post_init__(self) -> None:
        if not self.host:
            raise BrokerConfigError("the broker URL has no host")
        if not 0 < self.port < 65536:
            raise BrokerConfigError(f"invalid broker port: {self.port}")
        if (self.cert_file is None) != (self.key_file is None):
            raise BrokerConfigError("a client certificate needs its key, and a key its certificate")
        if not self.use_tls and (self.cert_file or self.ca_file or self.alpn):
            raise BrokerConfigError(
                "client certificates, a CA file and ALPN need TLS: use an mqtts:// URL"
            )

    @property
    def offers_alpn(self) -> bool:
        return self.use_tls and (self.port == 443 if self.alpn is None else self.alpn)

    @property
    def url(self) -> str:
        """The broker's URL (no credentials in it), for log lines."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.use_tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(
    url: str,
    *,
    ca_file: Optional[str] = None,
    cert_file: Optional[str] = None,
    key_file: Optional[str] = None,
    alpn: Optional[bool] = None,
) -> BrokerConfig:
    """
    ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (``[v6]`` for IPv6) to a L{BrokerConfig}.

    @raise BrokerConfigError: another scheme, a path, credentials in the URL,
        no host, a bad port.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise BrokerConfigError(f"invalid broker URL: {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BrokerConfigError(f"the broker URL must start with mqtt:// or mqtts://, not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise BrokerConfigError("the broker URL must not carry credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerConfigError(f"the broker URL has a path or query: {url!r}")
    return BrokerConfig(
        host=parts.hostname or "",
        port=_DEFAULT_PORTS[scheme] if port is None else port,
        use_tls=scheme == "mqtts",
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        alpn=alpn,
    )


#: The options naming the files of L{parse_broker_url}: the CAs, the client
#: certificate and its key.
BROKER_FILE_OPTIONS = ("mqtt-ca", "mqtt-cert", "mqtt-key")


def broker_parameters(*, broker: str, ca: str, cert: str, key: str) -> List[List[Any]]:
    """
    The C{usage.Options} rows of C{--mqtt-broker} (the URL of
    L{parse_broker_url}) and of L{BROKER_FILE_OPTIONS}, none with a default:
    the same options in every command that talks to a broker, each with
    that command's help texts.
    """
    rows: List[List[Any]] = [["mqtt-broker", None, None, broker]]
    rows.extend(
        [name, None, None, text]
        for name, text in zip(BROKER_FILE_OPTIONS, (ca, cert, key), strict=True)
    )
    return rows


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BrokerConfigError(f"cannot read the {what} {path}: {e.strerror or e}") from None


def client_tls_options(broker: BrokerConfig) -> Any:
    """
    pyOpenSSL client options for the broker: its certificate and host name
    checked, TLS 1.2 or newer, the device certificate if any, ALPN if asked.

    @raise BrokerConfigError: a file cannot be read or parsed.
    """
    try:
        trust: Any = None
        if broker.ca_file is not None:
            pems: List[bytes] = _PEM_CERT.findall(_read(broker.ca_file, "broker CA file"))
            if not pems:
                raise BrokerConfigError(f"the broker CA file {broker.ca_file} holds no certificate")
            trust = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(p) for p in pems])
        extra: dict[str, Any] = {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
        client: Any = None
        if broker.cert_file is not None and broker.key_file is not None:
            cert_pem = _read(broker.cert_file, "client certificate")
            key_pem = _read(broker.key_file, "client key")
            chain = _PEM_CERT.findall(cert_pem)
            if not chain:
                raise BrokerConfigError(
                    f"the client certificate file {broker.cert_file} holds no certificate"
                )
            client = ssl.PrivateCertificate.loadPEM(chain[0] + b"\n" + key_pem)
            if len(chain) > 1:
                extra["extraCertChain"] = [ssl.Certificate.loadPEM(p).original for p in chain[1:]]
    except BrokerConfigError:
        raise
    except Exception as e:  # pyOpenSSL's errors for a bad PEM or a key that does not match
        raise BrokerConfigError(f"cannot load the broker TLS files: {e}") from None
    return ssl.optionsForClientTLS(
        broker.host,
        trustRoot=trust,
        clientCertificate=client,
        acceptableProtocols=[IOT_CORE_ALPN] if broker.offers_alpn else None,
        extraCertificateOptions=extra,
    )


def broker_endpoint(
    reactor: Any, broker: BrokerConfig, timeout: float = 30.0
) -> IStreamClientEndpoint:
    """The client endpoint for C{broker}: TCP, wrapped in TLS for ``mqtts://``."""
    tcp = HostnameEndpoint(reactor, broker.host, broker.port, timeout=timeout)
    if not broker.use_tls:
        return tcp
    return wrapClientTLS(client_tls_options(broker), tcp)
