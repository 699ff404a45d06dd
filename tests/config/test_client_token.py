"""
Tests for aws_localproxy.config.client_token: generating, storing and
reading a client token file, and which token a proxy uses.
"""

from __future__ import annotations

import errno
import os
import stat

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config import client_token
from aws_localproxy.config.client_token import (
    ClientTokenFileError,
    client_token_for,
    generate_client_token,
    is_valid_client_token,
    load_or_create_client_token,
    read_client_token,
)


class FormatTests(SynchronousTestCase):
    def test_generated_tokens(self) -> None:
        tokens = {generate_client_token() for _ in range(20)}
        self.assertEqual(len(tokens), 20)
        for token in tokens:
            self.assertEqual(len(token), 64)
            self.assertTrue(is_valid_client_token(token))
            self.assertTrue(
                set(token) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
            )

    def test_validity(self) -> None:
        for good in ("a" * 32, "A-1" * 40 + "abcdefgh", "-" * 128):
            self.assertTrue(is_valid_client_token(good), good)
        for bad in (
            "a" * 31,
            "a" * 129,
            "a" * 31 + "_",
            "a" * 31 + " ",
            "a" * 32 + "\n",
            "",
            "é" * 32,
        ):
            self.assertFalse(is_valid_client_token(bad), bad)


class FileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "client-token")

    def test_created_once_then_read(self) -> None:
        with capturedLogs() as events:
            token = load_or_create_client_token(self.path)
        self.assertEqual(
            [formatEvent(e) for e in events], [f"Stored a new client token in {self.path}"]
        )
        self.assertTrue(is_valid_client_token(token))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        with open(self.path) as f:
            self.assertEqual(f.read(), token + "\n")
        self.assertEqual(load_or_create_client_token(self.path), token)
        self.assertEqual(os.listdir(self.directory), ["client-token"])
        for event in events:
            self.assertNotIn(token, repr(event))

    def test_existing_token_is_used(self) -> None:
        token = "x" * 40
        with open(self.path, "w") as f:
            f.write(f"  {token}\n")
        os.chmod(self.path, 0o600)
        self.assertEqual(load_or_create_client_token(self.path), token)

    def test_missing_file_reads_as_none(self) -> None:
        self.assertIsNone(read_client_token(self.path))

    def test_invalid_file(self) -> None:
        for content in (b"short\n", b"a" * 200, b"\xff" * 40, b""):
            with open(self.path, "wb") as f:
                f.write(content)
            e = self.assertRaises(ClientTokenFileError, load_or_create_client_token, self.path)
            self.assertEqual(
                str(e),
                f"The client token file {self.path} does not hold a valid client token"
                " (32 to 128 letters, digits and hyphens)",
            )

    def test_unreadable_file(self) -> None:
        os.makedirs(self.path)  # a directory cannot be read as a file
        e = self.assertRaises(ClientTokenFileError, load_or_create_client_token, self.path)
        self.assertEqual(
            str(e), f"Cannot read the client token file {self.path}: {os.strerror(errno.EISDIR)}"
        )

    def test_cannot_create(self) -> None:
        path = os.path.join(self.directory, "missing", "client-token")
        e = self.assertRaises(ClientTokenFileError, load_or_create_client_token, path)
        self.assertEqual(
            str(e), f"Cannot create the client token file {path}: {os.strerror(errno.ENOENT)}"
        )

    def test_only_the_first_4_kib_read(self) -> None:
        """A token file is read 4 KiB at most: what follows (here: garbage) is never looked at."""
        token = "k" * 40
        with open(self.path, "w") as f:
            f.write(token + " " * (4096 - len(token)) + "not part of the token")
        self.assertEqual(read_client_token(self.path), token)

    def test_relative_path_in_the_working_directory(self) -> None:
        """C{--client-token-file client-token}: created in the working directory, then read."""
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.directory)
        token = load_or_create_client_token("client-token")
        self.assertEqual(read_client_token(os.path.abspath("client-token")), token)
        self.assertEqual(os.listdir("."), ["client-token"])

    def test_temporary_file_beside_the_token_file(self) -> None:
        """
        The new file is written beside its final name (not in the working
        directory), so the link that puts it there never crosses file systems.
        """
        linked = []
        real_link = os.link

        def recording_link(source: str, target: str) -> None:
            linked.append(os.path.dirname(source))
            real_link(source, target)

        self.patch(os, "link", recording_link)
        load_or_create_client_token(self.path)
        self.assertEqual(linked, [self.directory])

    def test_existing_file_in_a_directory_not_writable(self) -> None:
        """An existing token is only read: nothing is created, so a read-only directory is fine."""
        token = "r" * 40
        with open(self.path, "w") as f:
            f.write(token)
        os.chmod(self.path, 0o600)

        def no_creation(*args: object) -> int:
            raise PermissionError(errno.EACCES, "Permission denied")

        self.patch(client_token.os, "open", no_creation)
        self.assertEqual(load_or_create_client_token(self.path), token)

    def test_vanished_while_created(self) -> None:
        """Another process's file was there at the link and gone at the read: said so."""

        def exists_then_gone(source: str, target: str) -> None:
            raise FileExistsError(errno.EEXIST, "File exists")

        self.patch(os, "link", exists_then_gone)
        e = self.assertRaises(ClientTokenFileError, load_or_create_client_token, self.path)
        self.assertEqual(str(e), f"The client token file {self.path} vanished while it was created")
        self.assertEqual(os.listdir(self.directory), [])

    def test_readable_by_others_warns(self) -> None:
        with open(self.path, "w") as f:
            f.write("y" * 40)
        os.chmod(self.path, 0o644)
        with capturedLogs() as events:
            read_client_token(self.path)
        self.assertEqual(
            [e["log_format"] for e in events],
            ["The client token file {path} can be read by other users"],
        )

    def test_lost_race_uses_the_winner(self) -> None:
        """Another process stores its token between our read and our write: we use its token."""
        winner = "w" * 40
        real_link = os.link

        def link_after_the_other_process(source: str, target: str) -> None:
            with open(target, "w") as f:
                f.write(winner)
            real_link(source, target)

        self.patch(os, "link", link_after_the_other_process)
        self.assertEqual(load_or_create_client_token(self.path), winner)
        self.assertEqual(os.listdir(self.directory), ["client-token"])

    def test_without_hard_links(self) -> None:
        def no_links(source: str, target: str) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        self.patch(os, "link", no_links)
        token = load_or_create_client_token(self.path)
        self.assertEqual(read_client_token(self.path), token)
        self.assertEqual(os.listdir(self.directory), ["client-token"])

    def test_uses_exclusive_creation(self) -> None:
        flags_seen = []
        real_open = os.open

        def recording_open(path: str, flags: int, mode: int = 0o777) -> int:
            flags_seen.append((flags, mode))
            return real_open(path, flags, mode)

        self.patch(client_token.os, "open", recording_open)
        load_or_create_client_token(self.path)
        ((flags, mode),) = flags_seen
        self.assertEqual(flags & (os.O_CREAT | os.O_EXCL), os.O_CREAT | os.O_EXCL)
        self.assertEqual(mode, 0o600)


class ClientTokenForTests(SynchronousTestCase):
    """The token of a proxy's connects: configured, else from its file, else made up."""

    def setUp(self) -> None:
        self.secrets: list = []

    def test_configured(self) -> None:
        """A configured token is used as it is, and is no secret of ours to tell."""
        token = "c" * 40
        path = os.path.join(self.mktemp(), "never-created")
        self.assertEqual(client_token_for(token, path, self.secrets.append), token)
        self.assertEqual(self.secrets, [])
        self.assertFalse(os.path.exists(path))

    def test_from_the_file(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "client-token")
        token = client_token_for(None, path, self.secrets.append)
        self.assertEqual(read_client_token(path), token)
        self.assertEqual(client_token_for("", path, self.secrets.append), token)
        self.assertEqual(self.secrets, [token, token])

    def test_made_up(self) -> None:
        with capturedLogs() as events:
            token = client_token_for(None, None, self.secrets.append)
        self.assertTrue(is_valid_client_token(token))
        self.assertEqual(self.secrets, [token])
        self.assertNotEqual(client_token_for(None, None), token)
        self.assertEqual(
            [event["log_format"] for event in events],
            ["Generated a client token for this proxy's reconnects"],
        )

    def test_file_error(self) -> None:
        path = os.path.join(self.mktemp(), "missing-directory", "client-token")
        self.assertRaises(ClientTokenFileError, client_token_for, None, path, self.secrets.append)
        self.assertEqual(self.secrets, [])
