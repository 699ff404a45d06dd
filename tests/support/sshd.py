"""
A real OpenSSH server on 127.0.0.1 for a test, and the ``ssh`` command
line that reaches it through a ``ProxyCommand`` (a local proxy's
``--stdio``): the end-to-end tests of ``--stdio`` with the pip-installed
proxy and with the single-file executable share them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, List, Optional

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from tests.support.deadlines import EVENT, tail
from tests.support.helpers import free_port, wait_until

SSHD = "/usr/sbin/sshd"


def require_openssh() -> None:
    """Skip the test unless ssh, ssh-keygen and sshd are installed."""
    for tool in (SSHD, shutil.which("ssh"), shutil.which("ssh-keygen")):
        if not tool or not os.path.exists(tool):
            raise SkipTest("OpenSSH (ssh, ssh-keygen, /usr/sbin/sshd) is not installed")


@dataclass
class Sshd:
    """What L{start_sshd} started: its port, the key it accepts, its log file."""

    port: int
    user_key: str
    log: str

    def log_text(self) -> str:
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")


def start_sshd(test: TestCase) -> Sshd:
    """An sshd on 127.0.0.1 with its own host key, accepting a new test key, until the test ends."""
    directory = tempfile.mkdtemp(prefix="lp-sshd-")
    test.addCleanup(shutil.rmtree, directory, True)
    host_key = os.path.join(directory, "host_key")
    user_key = os.path.join(directory, "user_key")
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    authorized = os.path.join(directory, "authorized_keys")
    shutil.copy(user_key + ".pub", authorized)
    port = free_port()
    config = os.path.join(directory, "sshd_config")
    with open(config, "w") as f:
        f.write(
            f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nPidFile none\n"
        )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    log_path = os.path.join(directory, "sshd.log")
    log = open(log_path, "wb")
    test.addCleanup(log.close)
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=log, stderr=subprocess.STDOUT)
    test.addCleanup(sshd.wait, 10)
    test.addCleanup(sshd.terminate)
    return Sshd(port, user_key, log_path)


@inlineCallbacks
def sshd_listening(port: int, sshd: Optional[Sshd] = None) -> Any:
    """
    Fires once something accepts connections on 127.0.0.1:C{port}; fails
    after L{EVENT} seconds with the end of C{sshd}'s log, if given.
    """

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    yield wait_until(
        listening,
        EVENT,
        what=f"sshd did not listen on port {port}",
        state=(lambda: "its log ends:\n" + tail(sshd.log_text())) if sshd is not None else None,
    )


def ssh_argv(proxy_command: str, key: str, command: str) -> List[str]:
    """``ssh`` running C{command} as root through C{proxy_command}, with key C{key} and no prompts."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        f"ProxyCommand={proxy_command}",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        "-i",
        key,
        "root@dummy",
        command,
    ]
