# -*- test-case-name: tests.tunnelservice.test_certs -*-
"""
The service's certificates: a private CA and a server certificate.

A local proxy verifies the service like the real one (``-c`` with a CA file
or an OpenSSL hashed directory), so the service needs a certificate chain a
client can trust without touching the system store.  On first start a CA
and a server certificate for localhost, 127.0.0.1 and ::1 are created in
the certificate directory; later starts (and users who put their own files
there) reuse them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.logger import Logger

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
CAPATH_DIR = "capath"

SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")

log = Logger()


@dataclass(frozen=True)
class CertificateFiles:
    """Where the service's TLS material is."""

    cert_dir: str
    ca_file: str
    server_cert_file: str
    server_key_file: str
    #: An OpenSSL hashed directory (``<subject hash>.0``) holding the CA.
    capath: str


def subject_hash(cert_pem: bytes) -> str:
    """OpenSSL's ``x509 -hash`` of a certificate's subject, as its file name stem."""
    return "%08x" % (crypto.load_certificate(crypto.FILETYPE_PEM, cert_pem).subject_name_hash(),)


def ensure_certificates(cert_dir: str) -> CertificateFiles:
    """
    Return the certificates of C{cert_dir}, creating a CA and a server
    certificate first if the directory has none.
    """
    os.makedirs(cert_dir, exist_ok=True)
    files = CertificateFiles(
        cert_dir=os.path.abspath(cert_dir),
        ca_file=os.path.abspath(os.path.join(cert_dir, CA_FILE)),
        server_cert_file=os.path.abspath(os.path.join(cert_dir, SERVER_CERT_FILE)),
        server_key_file=os.path.abspath(os.path.join(cert_dir, SERVER_KEY_FILE)),
        capath=os.path.abspath(os.path.join(cert_dir, CAPATH_DIR)),
    )
    have = [
        os.path.exists(p) for p in (files.ca_file, files.server_cert_file, files.server_key_file)
    ]
    if not any(have):
        _generate(files)
        log.info("Created a CA and a server certificate in {cert_dir}", cert_dir=files.cert_dir)
    elif not all(have):
        raise ValueError(
            "%s must hold all of %s, %s and %s, or none of them"
            % (cert_dir, CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE)
        )
    _write_capath(files)
    return files


def server_tls_options(files: CertificateFiles) -> ssl.CertificateOptions:
    """Server TLS options: the server certificate with the CA as chain, TLS 1.2 or newer."""
    with open(files.server_cert_file, "rb") as f:
        cert_pem = f.read()
    with open(files.server_key_file, "rb") as f:
        key_pem = f.read()
    with open(files.ca_file, "rb") as f:
        ca_pem = f.read()
    certificate = crypto.load_certificate(crypto.FILETYPE_PEM, cert_pem)
    key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)
    chain = [crypto.load_certificate(crypto.FILETYPE_PEM, ca_pem)]
    return ssl.CertificateOptions(
        privateKey=key,
        certificate=certificate,
        extraCertChain=chain,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


def _generate(files: CertificateFiles) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(hours=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aws-localproxy"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, "localtunnel private CA %s" % (os.urandom(4).hex(),)
            ),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVER_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_ADDRESSES]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    _write(files.ca_file, ca_cert.public_bytes(pem), 0o644)
    _write(
        os.path.join(files.cert_dir, CA_KEY_FILE),
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    _write(files.server_cert_file, server_cert.public_bytes(pem), 0o644)
    _write(
        files.server_key_file,
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )


def _write_capath(files: CertificateFiles) -> None:
    """Put the CA into the hashed directory under its subject hash."""
    with open(files.ca_file, "rb") as f:
        ca_pem = f.read()
    os.makedirs(files.capath, exist_ok=True)
    _write(os.path.join(files.capath, subject_hash(ca_pem) + ".0"), ca_pem, 0o644)


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
