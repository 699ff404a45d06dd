"""
The programs in examples/ run as written (each in its own process, with a
timeout), so they cannot rot.  examples/embedding.py is the README's
embedding snippet, verbatim.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.support.helpers import PROJECT_ROOT, child_environ

EXAMPLES = os.path.join(PROJECT_ROOT, "examples")


class ExampleTests(SynchronousTestCase):
    def run_example(self, *args: str) -> subprocess.CompletedProcess[str]:
        cwd = self.mktemp()
        os.makedirs(cwd)
        environ = child_environ()
        result = subprocess.run(
            [sys.executable, *args],
            cwd=cwd,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result

    def test_embedding_serves_http_without_a_port(self) -> None:
        result = self.run_example(os.path.join(EXAMPLES, "embedding.py"))
        self.assertEqual(result.stdout, "hello from inside the destination\n")

    def test_unix_socket_source(self) -> None:
        result = self.run_example(os.path.join(EXAMPLES, "unix_socket_source.py"))
        lines = result.stdout.splitlines()
        self.assertTrue(lines[0].startswith("SSH1 listens on /"), result.stdout)
        self.assertTrue(lines[0].endswith("/ssh1.sock"), result.stdout)
        self.assertEqual(lines[1], "ping through a Unix socket")

    def test_trial_test_with_the_local_tunnel_service(self) -> None:
        result = self.run_example(
            "-m", "twisted.trial", os.path.join(EXAMPLES, "test_local_tunnel_service.py")
        )
        self.assertIn("PASSED (successes=1)", result.stdout)


class ReadmeSnippetTests(SynchronousTestCase):
    """The README's embedding snippet is examples/embedding.py, verbatim, so it runs as written."""

    def test_readme_holds_the_example(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "examples", "embedding.py"), encoding="utf-8") as f:
            example = f.read().rstrip("\n")
        with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        self.assertIn("```python\n" + example + "\n```", readme)
