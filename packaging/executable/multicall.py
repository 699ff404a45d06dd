"""
The entry point of the single-file executable (``scripts/build-executable``).

One file carries the three console scripts of setup.py, because the bundle
(Python, Twisted, Autobahn, protobuf, cryptography: about 95% of the file)
is the same for all three: three files would triple what a device stores and
downloads for a few kilobytes of difference.  Which command runs is chosen
the way BusyBox chooses:

  - by the name the file was started under (a symlink or hard link named
    ``localproxy``, ``localtunnel`` or ``localproxy-agent``), so a link in
    place of the pip-installed script keeps every command line, systemd
    unit and ``ProxyCommand`` as it was;
  - else by its first argument (``aws-localproxy localproxy -r ...``).

The command then gets exactly the arguments the console script would get,
and ``sys.argv[0]`` is the command's name, so its options, messages and
exit codes are the pip-installed command's (tests/e2e/test_executable.py
compares them byte for byte).

The file's own options are ``--help``, ``--version`` and ``--self-check``,
which checks that the build is whole (docs/executable.md).  Only this
module is imported before the command's own: start-up time is the
bundle's unpacking plus the command's imports.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

#: The console scripts of setup.py: name -> the module whose ``main`` it runs.
COMMANDS: Dict[str, str] = {
    "localproxy": "aws_localproxy.cli.localproxy",
    "localtunnel": "aws_localproxy.tunnelservice.cli",
    "localproxy-agent": "aws_localproxy.agent.cli",
}

#: The name of the file itself (``scripts/build-executable`` gives it this name).
PROGRAM = "aws-localproxy"

#: What the build wrote beside this module in the bundle: the modules the
#: checkout had and the protobuf runtime the build environment used.
MANIFEST = "executable-manifest.json"

USAGE = f"""\
Usage: {PROGRAM} COMMAND [options]
   or: COMMAND [options]    (this file started through a link named COMMAND)
   or: {PROGRAM} --self-check | --version | --help

aws-localproxy's commands in one file, with Python and every dependency inside.
Each COMMAND takes exactly the options of the pip-installed command of that
name (COMMAND --help lists them):

  localproxy        the local proxy, source or destination
  localtunnel       the local tunnel service (an AWS IoT Secure Tunneling
                    service on this machine, for tests and demos)
  localproxy-agent  the device agent: destinations for the tunnels that
                    AWS IoT notifies over MQTT

Options:
  --self-check  Check that this file is whole (every module of aws-localproxy
                imports, WebSocket frames are masked by Autobahn's compiled NVX
                code, protobuf runs on the runtime it was built with), print
                what was checked and exit 0, or 1 if anything is missing.
  --version     Print the version and exit.
  --help        Show this help and exit.
"""


def _command_main(command: str) -> Callable[[], Any]:
    import importlib

    main: Callable[[], Any] = importlib.import_module(COMMANDS[command]).main
    return main


def run_command(command: str, args: List[str]) -> None:
    """
    Run console script C{command} with C{args}, as its pip-installed script
    does (``sys.exit(main())``); C{sys.argv[0]} becomes C{command}, the name
    that script would have.
    """
    sys.argv = [command, *args]
    main = _command_main(command)
    sys.exit(main())


def _bundle_dir() -> str:
    """Where the bundle's files are: the unpacked directory when frozen, else beside this file."""
    return str(getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(__file__))))


def self_check(out: TextIO) -> int:
    """
    Check that the bundle is whole; prints one line per check, returns 0
    when all pass, else 1.  Every module the checkout had must import (a
    module the build missed fails here, not on a device the first time a
    user takes the path that needs it); the masker must be NVX and mask a
    frame as RFC 6455 says; protobuf must run on the runtime of the build
    environment and round-trip a tunnel message.
    """
    import json

    try:
        with open(os.path.join(_bundle_dir(), MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except OSError as error:
        out.write(f"FAIL  the build's manifest {MANIFEST} is missing ({error.strerror})\n")
        return 1
    failed = 0
    for check in (_check_modules, _check_masker, _check_protobuf, _check_tls):
        try:
            ok, line = check(manifest)
        except Exception as error:  # what a missing or broken part raises
            ok, line = False, f"{check.__doc__}: {type(error).__name__}: {error}"
        out.write(("ok    " if ok else "FAIL  ") + line + "\n")
        failed += not ok
    out.write(f"self-check: {f'{failed} FAILED' if failed else 'ok'}\n")
    return 1 if failed else 0


def _check_modules(manifest: Dict[str, Any]) -> Tuple[bool, str]:
    """aws_localproxy's modules"""
    import importlib

    modules: List[str] = manifest["modules"]
    missing: List[str] = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # an ImportError, or what a module's own import raised
            missing.append(f"\n        missing: {name} ({type(error).__name__}: {error})")
    line = f"{len(modules) - len(missing)} of {len(modules)} aws_localproxy modules import"
    return not missing, line + "".join(missing)


def _check_masker(manifest: Dict[str, Any]) -> Tuple[bool, str]:
    """the WebSocket masker"""
    from aws_localproxy.adapters.autobahn_private import NVX_MISSING_REASON
    from aws_localproxy.upstream.masking import SMALL_PAYLOAD, mask_in_place, masker_in_use

    masker = masker_in_use()
    frame = bytearray(range(256)) * (SMALL_PAYLOAD // 64)
    mask = b"\x9a\x01\xff\x30"
    expected = bytes(byte ^ mask[index % 4] for index, byte in enumerate(frame))
    mask_in_place(frame, 0, mask)
    right = bytes(frame) == expected
    return masker == "nvx" and right, (
        f"WebSocket masker: {masker}"
        + (f" ({NVX_MISSING_REASON})" if NVX_MISSING_REASON else ", Autobahn's compiled NVX code")
        + ("" if right else "; it masked a frame WRONGLY")
    )


def _check_protobuf(manifest: Dict[str, Any]) -> Tuple[bool, str]:
    """the protobuf runtime"""
    from google.protobuf import __version__ as version
    from google.protobuf.internal import api_implementation

    from aws_localproxy._proto.Message_pb2 import Message

    runtime = api_implementation.Type()
    sent = Message(type=Message.DATA, streamId=7, connectionId=3, payload=b"\x00\xff" * 100)
    received = Message()
    received.ParseFromString(sent.SerializeToString())
    return runtime == manifest["protobuf_runtime"] and received == sent, (
        f"protobuf {version}, {runtime} runtime (the build's: {manifest['protobuf_runtime']})"
        + ("" if received == sent else "; a message did NOT round-trip")
    )


def _check_tls(manifest: Dict[str, Any]) -> Tuple[bool, str]:
    """TLS"""
    from cryptography.hazmat.backends.openssl.backend import backend
    from OpenSSL import SSL

    SSL.Context(SSL.TLS_CLIENT_METHOD)
    return True, f"TLS: pyOpenSSL on {backend.openssl_version_text()}"


def main(argv: Optional[List[str]] = None) -> None:
    """Choose the command by the file's name, else by the first argument; see the module docstring."""
    argv = sys.argv if argv is None else argv
    name = os.path.basename(argv[0]) if argv else PROGRAM
    if name in COMMANDS:
        run_command(name, argv[1:])
    args = argv[1:]
    first = args[0] if args else None
    if first in COMMANDS:
        run_command(first, args[1:])
    if first in ("-h", "--help") and len(args) == 1:
        sys.stdout.write(USAGE)
        sys.exit(0)
    if first in ("-V", "--version") and len(args) == 1:
        from aws_localproxy._version import __version__

        sys.stdout.write(f"{PROGRAM} {__version__}\n")
        sys.exit(0)
    if first == "--self-check" and len(args) == 1:
        sys.exit(self_check(sys.stdout))
    reason = "no command given" if first is None else f"unknown command or option {first!r}"
    sys.stderr.write(f"{PROGRAM}: {reason}\nTry '{PROGRAM} --help' for the commands.\n")
    sys.exit(1)


if __name__ == "__main__":
    main()
