"""
The twistd plugins survive installation: ``twistd localproxy`` and ``twistd
localtunnel`` work from an editable install (``pip install -e .``) and from a
normal one.

Each test installs a copy of this checkout into a fresh virtual environment
and runs twistd there. The environment borrows the already-installed
dependencies of the interpreter running the tests (Twisted, Autobahn, pip,
setuptools...) through symbolic links, leaving out any copy of aws-localproxy
and its plugin files, so that the plugins twistd finds can only come from the
installation under test. pip runs with ``--no-deps --no-build-isolation``: no
network, no downloads.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from twisted.trial.unittest import SkipTest, TestCase

ROOT = Path(__file__).resolve().parent.parent
#: Every twistd plugin the project ships (the checkout's own list, so a new one is covered).
PLUGIN_FILES = tuple(
    sorted(
        path.name
        for path in (Path(__file__).resolve().parent.parent / "twisted" / "plugins").glob("*.py")
    )
)

# What a copy of the checkout leaves out: build outputs, environments, caches.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".tox",
    "build",
    "dist",
    "*.egg-info",
    "_trial_temp*",
    "__pycache__",
    "dropin.cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "certs",
    "demo-state",
    "localtunnel-certs",
)

TWISTD = "from twisted.scripts.twistd import run; run()"


def _is_ours(name: str) -> bool:
    """Is this site-packages entry part of an installed aws-localproxy?"""
    lowered = name.lower().replace("-", "_")
    return lowered.startswith("aws_localproxy") or (
        lowered.startswith("__editable__") and "aws_localproxy" in lowered
    )


def _link_children(source: Path, target: Path, skip: set[str]) -> None:
    for entry in source.iterdir():
        if entry.name in skip or (target / entry.name).exists():
            continue
        (target / entry.name).symlink_to(entry)


def _borrow_site_packages(target: Path) -> None:
    """
    Make the dependencies installed for this interpreter importable in the
    environment whose site-packages is C{target}, without aws-localproxy.

    Twisted's package is rebuilt as a directory of links so that its
    C{twisted/plugins} can leave out a plugin file an earlier normal install
    of aws-localproxy put there.
    """
    sources: List[Path] = [Path(p) for p in site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        sources.append(Path(site.getusersitepackages()))
    for source in sources:
        if not source.is_dir():
            continue
        for entry in source.iterdir():
            if _is_ours(entry.name) or (target / entry.name).exists():
                continue
            if entry.name == "twisted" and entry.is_dir():
                twisted = target / "twisted"
                twisted.mkdir()
                _link_children(entry, twisted, {"plugins", "__pycache__"})
                plugins = twisted / "plugins"
                plugins.mkdir()
                _link_children(
                    entry / "plugins", plugins, {*PLUGIN_FILES, "dropin.cache", "__pycache__"}
                )
                continue
            (target / entry.name).symlink_to(entry)


class PluginsAfterInstallTests(TestCase):
    """
    C{twistd --help} lists both commands, each command starts far enough to
    print its own usage, and the plugin module comes from where the install
    under test put it.
    """

    # Two pip runs and four interpreter starts: about 10 s each on a slow machine.
    timeout = 120

    def setUp(self) -> None:
        if not hasattr(os, "symlink") or sys.platform == "win32":
            raise SkipTest("the borrowed environment is made of symbolic links (POSIX only)")
        self.work = Path(tempfile.mkdtemp(prefix="aws-localproxy-packaging-"))
        self.addCleanup(shutil.rmtree, self.work, True)
        self.checkout = self.work / "checkout"
        shutil.copytree(ROOT, self.checkout, ignore=_NOT_SOURCE, symlinks=True)
        self.venv = self.work / "venv"
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(self.venv)],
            check=True,
            capture_output=True,
        )
        self.python = str(self.venv / "bin" / "python")
        purelib = self.run_python(["-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
        self.site_packages = Path(purelib.stdout.strip())
        _borrow_site_packages(self.site_packages)
        # Nothing found by accident: not the current directory, not PYTHONPATH.
        self.cwd = self.work / "elsewhere"
        self.cwd.mkdir()

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONNOUSERSITE"] = "1"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INDEX"] = "1"
        return env

    def run_python(
        self, args: List[str], check: bool = True, cwd: Optional[Path] = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.python, *args],
            cwd=str(cwd or self.work),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=100,
        )
        if check and result.returncode != 0:
            self.fail(f"{args!r} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def pip_install(self, *args: str) -> None:
        self.run_python(
            [
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--use-pep517",
                *args,
            ],
            cwd=self.checkout,
        )

    def assert_plugins_from(self, plugin_dir: Path) -> None:
        self.run_python(["-c", "import aws_localproxy.cli.tap"], cwd=self.cwd)
        help_text = self.run_python(["-c", TWISTD, "--help"], cwd=self.cwd).stdout
        commands = help_text.split("Commands:", 1)[-1]
        for command in ("localproxy", "localtunnel", "localproxy-agent"):
            self.assertIn(f"    {command} ", commands, help_text)
            usage = self.run_python(["-c", TWISTD, command, "--help"], cwd=self.cwd)
            self.assertIn(f"Usage: twistd [options] {command}", usage.stdout)

        where = self.run_python(
            [
                "-c",
                "import twisted.plugins.localproxy_plugin as p, twisted.plugins.localtunnel_plugin"
                " as t; print(p.__file__); print(t.__file__)",
            ],
            cwd=self.cwd,
        )
        self.assertEqual(
            [Path(line).parent for line in where.stdout.split()], [plugin_dir, plugin_dir]
        )

    def test_editable(self) -> None:
        """
        C{pip install -e .}: the plugins are found in the checkout itself, so
        edits to them take effect without reinstalling.
        """
        self.pip_install("--editable", ".")
        self.assert_plugins_from(self.checkout / "twisted" / "plugins")

    def test_normal(self) -> None:
        """C{pip install .}: the plugin files are installed into site-packages."""
        self.pip_install(".")
        self.assert_plugins_from(self.site_packages / "twisted" / "plugins")

    def test_borrowed_environment_has_no_plugins(self) -> None:
        """
        Before anything is installed, twistd in the test environment knows
        neither command: the other two tests can fail.
        """
        help_text = self.run_python(["-c", TWISTD, "--help"], cwd=self.cwd).stdout
        self.assertIn("portforward", help_text)
        self.assertNotIn("localproxy", help_text)
        self.assertNotIn("localtunnel", help_text)
