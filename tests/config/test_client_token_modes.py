"""
The client token file's permission bits (L{aws_localproxy.config.client_token}):
a new file is created 0600, an existing one is read whatever its mode, and
any bit for the group or for others (read, write or execute) is warned
about, word for word; the owner's own bits never are.
"""

from __future__ import annotations

import os
import stat
from typing import List

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.client_token import load_or_create_client_token, read_client_token

TOKEN = "m0de-" + "t" * 40


class ModeTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "client-token")

    def stored(self, mode: int) -> None:
        with open(self.path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(self.path, mode)

    def warnings_reading(self) -> List[str]:
        """The lines warned while the file is read (its token must come back)."""
        with capturedLogs() as events:
            self.assertEqual(read_client_token(self.path), TOKEN)
        return [formatEvent(e) for e in events if e["log_level"] >= LogLevel.warn]

    def test_created_owner_only(self) -> None:
        """A new file is 0600 whatever the umask lets through."""
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        load_or_create_client_token(self.path)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_created_file_read_without_warning(self) -> None:
        token = load_or_create_client_token(self.path)
        with capturedLogs() as events:
            self.assertEqual(load_or_create_client_token(self.path), token)
        self.assertEqual([formatEvent(e) for e in events], [])

    def test_owner_bits_do_not_warn(self) -> None:
        for mode in (0o600, 0o400, 0o700, 0o200):
            self.stored(mode)
            self.assertEqual(self.warnings_reading(), [], oct(mode))
            self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), mode, "mode kept")

    def test_group_or_other_bits_warn(self) -> None:
        """Each of the six bits alone (and 0644, 0666) is warned about, naming the file."""
        for mode in (0o640, 0o620, 0o610, 0o604, 0o602, 0o601, 0o644, 0o666):
            self.stored(mode)
            self.assertEqual(
                self.warnings_reading(),
                [f"The client token file {self.path} can be read by other users"],
                oct(mode),
            )
            self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), mode, "mode kept")

    def test_existing_mode_kept_by_load(self) -> None:
        """Loading an existing file never rewrites it or changes its mode."""
        self.stored(0o640)
        with capturedLogs():
            self.assertEqual(load_or_create_client_token(self.path), TOKEN)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
