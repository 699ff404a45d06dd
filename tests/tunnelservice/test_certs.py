"""
The private CA and server certificate of the local tunnel service.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from twisted.trial import unittest

from aws_localproxy.tunnelservice.certs import (
    ensure_certificates,
    server_tls_options,
    subject_hash,
)


class CertificateTests(unittest.TestCase):
    def test_created_once(self) -> None:
        cert_dir = self.mktemp()
        files = ensure_certificates(cert_dir)
        with open(files.ca_file, "rb") as f:
            ca = f.read()
        self.assertEqual(os.stat(files.server_key_file).st_mode & 0o077, 0)
        again = ensure_certificates(cert_dir)
        with open(again.ca_file, "rb") as f:
            self.assertEqual(f.read(), ca)

    def test_capath_hash(self) -> None:
        """The hashed directory is named as OpenSSL looks certificates up."""
        files = ensure_certificates(self.mktemp())
        name = subject_hash(open(files.ca_file, "rb").read()) + ".0"
        self.assertEqual(os.listdir(files.capath), [name])
        openssl = shutil.which("openssl")
        if openssl:
            out = subprocess.run(
                [openssl, "x509", "-hash", "-noout", "-in", files.ca_file],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            self.assertEqual(out + ".0", name)
            verify = subprocess.run(
                [openssl, "verify", "-CApath", files.capath, files.server_cert_file],
                capture_output=True,
                text=True,
            )
            self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)

    def test_partial_directory_refused(self) -> None:
        cert_dir = self.mktemp()
        files = ensure_certificates(cert_dir)
        os.remove(files.server_key_file)
        self.assertRaises(ValueError, ensure_certificates, cert_dir)

    def test_server_options(self) -> None:
        """The files make a TLS context (the key matches the certificate)."""
        files = ensure_certificates(self.mktemp())
        self.assertIsNotNone(server_tls_options(files).getContext())
