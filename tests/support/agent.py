"""
Shared pieces of the agent's end-to-end tests: Debian's mosquitto on
127.0.0.1, plain or with TLS client certificates issued by the local
tunnel service's CA.

mosquitto cannot report a port it picked, so the OS picks one (bind to
port 0, read it, close) and mosquitto is told to listen there; a broker
restart reuses the same port.
"""

from __future__ import annotations

import datetime
import os
import shutil
from typing import Any, Dict, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol

from tests.support.deadlines import START, scaled, tail
from tests.support.helpers import ChildProcess, free_port, sleep, stop_child

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
mosquitto_missing: Optional[str] = (
    None if os.path.exists(MOSQUITTO) else "mosquitto is not installed"
)


def issue_client_certificate(cert_dir: str, name: str, out_dir: str) -> Dict[str, str]:
    """
    A client certificate for C{name} signed by the local tunnel service's CA
    in C{cert_dir} (its ``ca.pem`` and ``ca-key.pem``); returns the paths of
    ``cert`` and ``key``.
    """
    with open(os.path.join(cert_dir, "ca.pem"), "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(cert_dir, "ca-key.pem"), "rb") as f:
        ca_key: Any = serialization.load_pem_private_key(f.read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "cert": os.path.join(out_dir, f"{name}.pem"),
        "key": os.path.join(out_dir, f"{name}-key.pem"),
    }
    with open(paths["cert"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


class Mosquitto:
    """One mosquitto broker on 127.0.0.1, started and stopped by a test."""

    def __init__(self, directory: str, tls_cert_dir: Optional[str] = None) -> None:
        """
        @param tls_cert_dir: the local tunnel service's certificate directory:
            TLS with its server certificate, client certificates from its CA required.
        """
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.tls = tls_cert_dir is not None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            # Otherwise mosquitto drops to the "mosquitto" user, which cannot read the keys.
            lines.append("user root")
        if tls_cert_dir is not None:
            lines += [
                f"cafile {os.path.join(tls_cert_dir, 'ca.pem')}",
                f"certfile {os.path.join(tls_cert_dir, 'server.pem')}",
                f"keyfile {os.path.join(tls_cert_dir, 'server-key.pem')}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        self.config_file = os.path.join(directory, "mosquitto.conf")
        with open(self.config_file, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._process: Any = None
        self._exited: Optional[ChildProcess] = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @inlineCallbacks
    def start(self) -> Any:
        """Start the broker; fires once it accepts connections."""
        self._exited = ChildProcess("mosquitto")
        self._process = reactor.spawnProcess(
            self._exited, MOSQUITTO, [MOSQUITTO, "-c", self.config_file], env=dict(os.environ)
        )
        # Within START seconds of the reactor's clock, not a count of probes
        # (each may take its whole connect timeout on a loaded machine).
        limit = scaled(START)
        end = reactor.seconds() + limit  # type: ignore[attr-defined]
        while reactor.seconds() < end:  # type: ignore[attr-defined]
            if self._exited.ended.called:
                raise AssertionError(f"mosquitto exited: {tail(self._exited.output)}")
            try:
                probe = yield TCP4ClientEndpoint(
                    reactor, "127.0.0.1", self.port, timeout=1
                ).connect(Factory.forProtocol(Protocol))
            except Exception:
                yield sleep(0.05)
                continue
            probe.transport.loseConnection()
            return
        raise AssertionError(
            f"mosquitto did not listen on port {self.port} within {limit:g} s; "
            f"its output ends:\n{tail(self._exited.output)}"
        )

    @inlineCallbacks
    def stop(self) -> Any:
        """Stop the broker (SIGTERM); fires once it exited."""
        if self._exited is None or self._exited.ended.called:
            return
        yield stop_child(self._exited, self._process, "TERM")

    @inlineCallbacks
    def restart(self) -> Any:
        yield self.stop()
        yield self.start()
