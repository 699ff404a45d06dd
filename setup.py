"""Packaging for aws-localproxy (``pip install .``)."""

import locale
import os
import re
from typing import Any

from setuptools import find_packages, setup

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64: ``pip install -e .`` runs ``setup.py develop``,
    editable_wheel = None  # which puts the checkout itself on sys.path: nothing to add.

HERE = os.path.dirname(os.path.abspath(__file__))


# twisted/plugins has no __init__.py (Twisted's own must stay the only one),
# so find_packages cannot see it: it is listed by name.
PLUGIN_PACKAGES = (
    ["twisted.plugins"] if os.path.isdir(os.path.join(HERE, "twisted", "plugins")) else []
)


class _PluginPathStrategy:
    """Setuptools' own editable strategy, plus a ``.pth`` line naming the checkout.

    Twisted finds plugins by looking for ``twisted/plugins`` directories in the
    directories on ``sys.path`` (``twisted.plugin.pluginPackagePaths``). A PEP 660
    editable install of a flat layout puts only an import hook on ``sys.path``,
    which can import ``aws_localproxy`` but is not a directory, so ``twistd``
    never sees ``twisted/plugins/`` and answers ``Unknown command: localproxy``.
    The extra line puts the checkout on ``sys.path`` after everything else, as
    ``setup.py develop`` always did, so ``twisted/plugins/`` is found there and
    edits to the plugin files take effect without reinstalling.
    """

    def __init__(self, strategy: Any, name: str) -> None:
        self._strategy = strategy
        self._name = name

    def __enter__(self) -> "_PluginPathStrategy":
        self._strategy.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> object:
        return self._strategy.__exit__(*exc_info)

    def __call__(self, wheel: Any, files: Any, mapping: Any) -> None:
        self._strategy(wheel, files, mapping)
        # site.py reads .pth files in the locale's encoding before Python 3.13.
        line = HERE + "\n"
        wheel.writestr(
            f"__editable__.{self._name}.twisted-plugins.pth",
            line.encode(locale.getpreferredencoding(False)),
        )


CMDCLASS: dict[str, Any] = {}
if editable_wheel is not None:

    class editable_wheel_with_twisted_plugins(editable_wheel):
        """``pip install -e .`` that keeps ``twistd localproxy`` and ``twistd localtunnel``.

        ``_select_strategy`` is setuptools' internal seam (setuptools 64 to at
        least 84); tests/test_packaging.py fails if a setuptools release moves it.
        """

        def _select_strategy(self, name: str, tag: str, build_lib: Any) -> Any:
            strategy = super()._select_strategy(name, tag, build_lib)
            return _PluginPathStrategy(strategy, name) if PLUGIN_PACKAGES else strategy

    CMDCLASS["editable_wheel"] = editable_wheel_with_twisted_plugins


def read_version() -> str:
    with open(os.path.join(HERE, "aws_localproxy", "_version.py")) as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def read_readme() -> str:
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        return f.read()


setup(
    name="aws-localproxy",
    version=read_version(),
    description="AWS IoT Secure Tunneling local proxy, and a local tunnel service, on Twisted",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    keywords=["aws", "iot", "secure tunneling", "localproxy", "tunnel", "websocket", "twisted"],
    project_urls={
        # The project's own repository URL goes here once it is published.
        "Reference implementation": "https://github.com/aws-samples/aws-iot-securetunneling-localproxy",
        "AWS IoT Secure Tunneling": "https://docs.aws.amazon.com/iot/latest/developerguide/secure-tunneling.html",
        "Protocol guide": "https://github.com/aws-samples/aws-iot-securetunneling-localproxy/blob/main/V3WebSocketProtocolGuide.md",
    },
    python_requires=">=3.11",
    packages=find_packages(include=["aws_localproxy", "aws_localproxy.*"]) + PLUGIN_PACKAGES,
    package_data={"aws_localproxy": ["py.typed", "_proto/*.pyi"]},
    include_package_data=False,
    zip_safe=False,
    install_requires=[
        # The ceilings on Twisted, Autobahn and pyOpenSSL stop below the next
        # minor release after the newest one the canary tests of the adapters
        # on their private parts (tests/adapters/) passed with, so that patch
        # (security) releases of that line still install; the floors passed
        # too. To raise one, run the canaries on the new release
        # (docs/dependencies.md).
        "twisted[tls]>=24.7.0,<26.11",
        # 24.4.2 masks in pure Python (NVX masking came with 25.9.1): the
        # proxy warns at start-up. Not raised: 25.9.1 and later have no
        # wheel for some device platforms and need a C compiler there.
        "autobahn[twisted]>=24.4.2,<26.12",
        # The committed gencode (scripts/regen-proto, grpcio-tools 1.85.1)
        # needs a runtime at least as new as protobuf 7.35.1.
        "protobuf>=7.35.1,<9",
        # pyOpenSSL pins cryptography, whose bindings the TLS layer calls.
        "pyOpenSSL>=24.0.0,<26.5",
        "service-identity>=24.1.0",
        "txaio>=23.1.1",
        "attrs>=23.1.0",
        # The connector's state machine (TypeMachineBuilder; Twisted asks for the same).
        "automat>=24.8.1",
        "hyperlink>=21.0.0",
        # The metrics endpoint (Prometheus text format).
        "prometheus_client>=0.17",
        # The device agent's MQTT (pure Python, no dependencies). Below 3: the
        # agent hands paho its connection through Client._create_socket
        # (aws_localproxy/adapters/paho_private.py; canaries pass on 2.0 to 2.2).
        "paho-mqtt>=2.0,<3",
    ],
    extras_require={
        "test": [
            "hypothesis>=6.100",
            "boto3>=1.34",
            "awscli>=1.32",
            "grpcio-tools==1.85.1",
            # tests/test_layers.py runs the import contracts (.importlinter).
            "import-linter>=2.17,<3",
        ],
        # localtunnel --credentials: botocore's SigV4 signer checks the
        # management API's signatures. An extra, not a requirement: local
        # proxies on devices do not need botocore (over 30 MB installed).
        "tunnelservice": ["botocore>=1.34"],
        # import-linter: the layers and import contracts of .importlinter
        # (2.17: acyclic_siblings contracts, self-pairs skipped in forbidden ones).
        "lint": ["ruff>=0.6", "mypy>=1.10", "mypy-zope>=1.0", "import-linter>=2.17,<3"],
        # tox -e apidocs: the API reference from the docstrings.
        "docs": ["pydoctor>=24.3"],
    },
    cmdclass=CMDCLASS,
    entry_points={
        "console_scripts": [
            "localproxy = aws_localproxy.cli.localproxy:main",
            "localtunnel = aws_localproxy.tunnelservice.cli:main",
            "localproxy-agent = aws_localproxy.agent.cli:main",
        ],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Environment :: Console",
        "Environment :: No Input/Output (Daemon)",
        "Framework :: Twisted",
        "Intended Audience :: Developers",
        "Intended Audience :: System Administrators",
        "Operating System :: POSIX",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Topic :: Internet :: Proxy Servers",
        "Topic :: System :: Networking",
        "Typing :: Typed",
    ],
)
