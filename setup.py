"""Packaging for aws-localproxy (``pip install .``)."""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


# twisted/plugins has no __init__.py (Twisted's own must stay the only one),
# so find_packages cannot see it: it is listed by name.
PLUGIN_PACKAGES = (
    ["twisted.plugins"] if os.path.isdir(os.path.join(HERE, "twisted", "plugins")) else []
)


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
        "twisted[tls]>=24.7.0",
        "autobahn[twisted]>=24.4.2",
        # The committed gencode (scripts/regen-proto, grpcio-tools 1.85.1)
        # needs a runtime at least as new as protobuf 7.35.1.
        "protobuf>=7.35.1,<9",
        "pyOpenSSL>=24.0.0",
        "service-identity>=24.1.0",
        "txaio>=23.1.1",
        "attrs>=23.1.0",
        "hyperlink>=21.0.0",
        # The metrics endpoint (Prometheus text format).
        "prometheus_client>=0.17",
    ],
    extras_require={
        "test": [
            "hypothesis>=6.100",
            "boto3>=1.34",
            "awscli>=1.32",
            "grpcio-tools==1.85.1",
        ],
        "lint": ["ruff>=0.6", "mypy>=1.10", "mypy-zope>=1.0"],
        # tox -e apidocs: the API reference from the docstrings.
        "docs": ["pydoctor>=24.3"],
    },
    entry_points={
        "console_scripts": [
            "localproxy = aws_localproxy.cli:main",
            "localtunnel = aws_localproxy.tunnelservice.cli:main",
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
