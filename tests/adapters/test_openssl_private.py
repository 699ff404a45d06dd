"""
Canary tests of aws_localproxy.adapters.openssl_private: the private parts
of pyOpenSSL the TLS layer calls per record.  Each fails with a message
naming the part when a pyOpenSSL (or cryptography) release moves it; run
them on a new release before raising setup.py's ceiling on pyOpenSSL.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters import openssl_private
from aws_localproxy.adapters.openssl_private import (
    WANT_READ,
    BIO_read,
    BIO_write,
    SSL_get_error,
    SSL_read,
    SSL_write,
    direct_handles,
    from_buffer,
)
from tests.support.payloads import assert_same_bytes, unique_payload
from tests.support.seams import adapter_warnings
from tests.support.tls import move_bytes, pyopenssl_pair

ffi: Any = getattr(SSL, "_ffi", None)


class BindingsCanaryTests(SynchronousTestCase):
    def test_bindings_are_there(self) -> None:
        """OpenSSL.SSL._lib and _ffi have the five calls and the type names the direct path takes."""
        for name in (
            "SSL_write",
            "SSL_read",
            "SSL_get_error",
            "BIO_read",
            "BIO_write",
            "SSL_ERROR_WANT_READ",
        ):
            self.assertTrue(
                hasattr(getattr(SSL, "_lib", None), name),
                f"pyOpenSSL's private OpenSSL.SSL._lib has no {name} any more",
            )
        self.assertIsNotNone(ffi, "pyOpenSSL's private OpenSSL.SSL._ffi is gone")
        self.assertTrue(openssl_private.DIRECT, "openssl_private.DIRECT is false")

    def test_signatures(self) -> None:
        """The C functions still take what the loops pass them."""
        for function, signature in (
            (SSL_write, "int(*)(SSL *, void *, int)"),
            (SSL_read, "int(*)(SSL *, void *, int)"),
            (SSL_get_error, "int(*)(SSL *, int)"),
            (BIO_read, "int(*)(BIO *, void *, int)"),
            (BIO_write, "int(*)(BIO *, void *, int)"),
        ):
            self.assertEqual(
                ffi.typeof(function),
                ffi.typeof(signature),
                f"pyOpenSSL's _lib.{function.__name__} is no longer {signature}",
            )

    def test_want_read(self) -> None:
        """C{SSL_ERROR_WANT_READ} is still what OpenSSL says when a read needs more bytes."""
        client, _ = pyopenssl_pair(self)
        handles = direct_handles(client)
        assert handles is not None
        buffer = bytearray(100)
        with from_buffer(buffer) as pointer:
            count = SSL_read(handles[0], pointer, len(buffer))
        self.assertLessEqual(count, 0)
        self.assertEqual(
            SSL_get_error(handles[0], count),
            WANT_READ,
            "SSL_get_error no longer answers SSL_ERROR_WANT_READ for an empty read",
        )

    def test_bytes_for_a_void_pointer(self) -> None:
        """
        cffi hands a C{bytes} object to C{BIO_write}'s C{void *} as a pointer
        to its bytes (what the TLS layer's reads pass it), and refuses
        anything that could change under it.
        """
        handles = direct_handles(SSL.Connection(SSL.Context(SSL.TLS_METHOD), None))
        assert handles is not None
        bio = handles.receive_bio  # a memory BIO, read back here
        self.assertEqual(BIO_write(bio, b"ciphertext", 10), 10)
        out = bytearray(20)
        with from_buffer(out) as pointer:
            self.assertEqual(BIO_read(bio, pointer, 20), 10)
        self.assertEqual(bytes(out[:10]), b"ciphertext")
        for mutable in (bytearray(b"x"), memoryview(b"x")):
            self.assertRaises(TypeError, BIO_write, bio, mutable, 1)

    def test_pointer_kept(self) -> None:
        """
        A pointer made once into a C{bytearray} (the TLS layer keeps one per
        buffer for the process) sees every later read into it, and the
        buffer cannot be resized while it exists.
        """
        client, server = pyopenssl_pair(self)
        handles = direct_handles(client)
        assert handles is not None
        buffer = bytearray(64)
        pointer = from_buffer(buffer)
        for message in (b"first", b"second"):
            server.send(message)
            move_bytes(server, client)
            count = SSL_read(handles.ssl, pointer, len(buffer))
            self.assertEqual(bytes(buffer[:count]), message)
        with self.assertRaises(BufferError):
            buffer.extend(b"more")


class HandlesCanaryTests(SynchronousTestCase):
    def test_connection_handles(self) -> None:
        """
        C{Connection._ssl} is an C{SSL *}, C{Connection._from_ssl} and
        C{Connection._into_ssl} each a C{BIO *}.
        """
        connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        self.assertEqual(
            ffi.typeof(getattr(connection, "_ssl", None)),
            ffi.typeof("SSL *"),
            "pyOpenSSL's private Connection._ssl is no longer an SSL *",
        )
        self.assertEqual(
            ffi.typeof(getattr(connection, "_from_ssl", None)),
            ffi.typeof("BIO *"),
            "pyOpenSSL's private Connection._from_ssl is no longer a BIO *",
        )
        self.assertEqual(
            ffi.typeof(getattr(connection, "_into_ssl", None)),
            ffi.typeof("BIO *"),
            "pyOpenSSL's private Connection._into_ssl is no longer a BIO *",
        )
        self.assertEqual(
            direct_handles(connection),
            (connection._ssl, connection._from_ssl, connection._into_ssl),
        )

    def test_records_both_ways(self) -> None:
        """
        What the loops rely on: C{SSL_write} on C{_ssl} encrypts, the
        ciphertext is in C{_from_ssl} (C{BIO_read}), and written into the
        peer's C{_into_ssl} (C{BIO_write}) the peer's C{SSL_read} decrypts
        it; and the other way.
        """
        client, server = pyopenssl_pair(self)
        client_handles, server_handles = direct_handles(client), direct_handles(server)
        assert client_handles is not None and server_handles is not None
        message = unique_payload(256 * 200)  # more than three records, none like another
        written = 0
        with from_buffer(message) as pointer:
            while written < len(message):
                count = SSL_write(client_handles[0], pointer + written, len(message) - written)
                self.assertGreater(count, 0, "SSL_write on Connection._ssl wrote nothing")
                written += count
        ciphertext = bytearray(1 << 17)
        with from_buffer(ciphertext) as pointer:
            count = BIO_read(client_handles[1], pointer, len(ciphertext))
        self.assertGreater(
            count, len(message), "no ciphertext in Connection._from_ssl after SSL_write"
        )
        # Into the peer's receive BIO, as the TLS layer's reads put it.
        self.assertEqual(
            BIO_write(server_handles.receive_bio, bytes(ciphertext[:count]), count), count
        )
        received = bytearray(len(message))
        done = 0
        with from_buffer(received) as pointer:
            while done < len(message):
                count = SSL_read(server_handles[0], pointer + done, len(message) - done)
                self.assertGreater(count, 0, "SSL_read on Connection._ssl decrypted nothing")
                done += count
        assert_same_bytes(self, bytes(received), message)
        # Back, through the public methods, read by the direct calls.
        server.send(b"answer")
        move_bytes(server, client)
        answer = bytearray(100)
        with from_buffer(answer) as pointer:
            count = SSL_read(client_handles[0], pointer, len(answer))
        self.assertEqual(bytes(answer[:count]), b"answer")


class HandleCheckTests(SynchronousTestCase):
    """L{direct_handles}: anything but an C{SSL *} and two C{BIO *} takes the public path, once warned."""

    def test_not_a_cffi_object(self) -> None:
        warnings = adapter_warnings(self)
        connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)

        class Future:
            _ssl = object()
            _from_ssl = connection._from_ssl

        self.assertIsNone(direct_handles(Future()))
        self.assertIsNone(direct_handles(Future()))
        self.assertEqual(len(warnings), 1)
        self.assertIn("not an SSL *", warnings[0])
        self.assertIn("object", warnings[0])

    def test_another_pointer_type(self) -> None:
        warnings = adapter_warnings(self)
        connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)

        class Future:
            _ssl = ffi.cast("void *", connection._ssl)
            _from_ssl = connection._from_ssl

        self.assertIsNone(direct_handles(Future()))
        self.assertIn("void *", warnings[0])

    def test_no_send_bio(self) -> None:
        adapter_warnings(self)
        connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)

        class Future:
            _ssl = connection._ssl

        self.assertIsNone(direct_handles(Future()))

    def test_no_receive_bio(self) -> None:
        warnings = adapter_warnings(self)
        connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)

        class Future:
            _ssl = connection._ssl
            _from_ssl = connection._from_ssl
            _into_ssl = None

        self.assertIsNone(direct_handles(Future()))
        self.assertIn("_into_ssl", warnings[0])

    def test_without_bindings(self) -> None:
        warnings = adapter_warnings(self)
        self.patch(openssl_private, "DIRECT", False)
        connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        self.assertIsNone(direct_handles(connection))
        self.assertEqual(len(warnings), 1)
        self.assertIn("SSL._lib/_ffi", warnings[0])
