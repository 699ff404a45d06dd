# -*- test-case-name: tests.cli.test_options -*-
"""
The local proxy's command line, for both the ``localproxy`` console script
and ``twistd localproxy``: the reference's options (same long and short
names, same descriptions) and the reference's parser messages.

L{LocalProxyOptions} parses the command line, merges it with the
``--config`` file and the environment
(L{aws_localproxy.config.option_sources.merge_sources}) and hands the values to
L{aws_localproxy.config.build.build_config}, which runs the reference's
checklist and leaves a validated L{ProxyConfig} in C{options.config}.

Two kinds of failure, as in the reference: C{usage.UsageError} for a wrong
command line (the console script prints it with a "Try --help" line), and
L{ConfigurationError} (a subclass) for values that break a rule (the console
script logs it at ``fatal``).  Both end the process with exit code 1.
"""

from __future__ import annotations

import getopt
import os
import sys
from typing import Dict, List, Mapping, Optional, Tuple

from twisted.python import usage

from aws_localproxy import __version__
from aws_localproxy.cli.console import ActionFlags
from aws_localproxy.config.build import build_config
from aws_localproxy.config.option_sources import (
    ENV_ACCESS_TOKEN,
    ENV_CLIENT_TOKEN,
    ENV_CLIENT_TOKEN_FILE,
    ENV_ENDPOINT,
    ENV_REGION,
    merge_sources,
)
from aws_localproxy.config.port_mapping import parse_port_mapping
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings_json import export_default_settings
from aws_localproxy.config.validation import (
    ConfigurationError,
    check_path,
    parse_verbosity,
)

__all__ = [
    "LocalProxyOptions",
    "ConfigurationError",
    "parse_port_mapping",
    "check_path",
    "banner",
    "TRY_HELP",
    "ENV_ACCESS_TOKEN",
    "ENV_CLIENT_TOKEN",
    "ENV_CLIENT_TOKEN_FILE",
    "ENV_ENDPOINT",
    "ENV_REGION",
]

TRY_HELP = "Try 'localproxy --help' for a list of options."

_SECRET_OPTIONS = ("access-token", "client-token")

#: Options that are actions, not values: they may be repeated.
_ACTIONS = ("help", "version")


def banner() -> str:
    """The first line of every run, on stdout."""
    return f"Running AWS IoT Secure Tunneling Local Proxy version: v{__version__}"


class LocalProxyOptions(ActionFlags, usage.Options):
    """
    The reference's options, for ``localproxy`` and ``twistd localproxy``.

    After C{parseOptions}: C{config} is the validated L{ProxyConfig} (C{None}
    for the actions ``--help``, ``--version`` and ``--export-default-settings``);
    C{help_requested}, C{version_requested} and C{export_default_settings_to}
    say which action was asked for; C{verbosity} is the ``-v`` level (0..6);
    C{sources} tells where each value came from (``cli``, ``config``, ``env``).

    @param environ: the environment to read (default C{os.environ}).
    @param exit_on_action: when true (the default, as twistd instantiates
        it), ``--help``/``--version`` print to stdout and
        ``--export-default-settings`` writes its file, then C{SystemExit(0)}
        is raised, as Twisted's own options do.  The console script passes
        C{False} and performs the actions itself, with the reference's output.
    """

    synopsis = "Usage: localproxy [options] [--stdio [SERVICE_ID]]"
    action_docs = {
        "help": "Show help message",
        "version": "Show current version of Local Proxy and exit",
    }
    longdesc = (
        "The AWS IoT Secure Tunneling local proxy. Options may also come from a --config file and from "
        f"the environment ({ENV_ACCESS_TOKEN}, {ENV_CLIENT_TOKEN}, {ENV_CLIENT_TOKEN_FILE}, {ENV_ENDPOINT}, "
        f"{ENV_REGION}, "
        "https_proxy/HTTPS_PROXY, no_proxy/NO_PROXY); the command line wins over the file, the file over "
        "the environment. A -s/-d endpoint may also be a Twisted endpoint description, e.g. "
        "SSH1=unix:/run/ssh.sock or WEB=tcp:host=example:port=80."
    )

    optFlags: List[List[Optional[str]]] = [
        [
            "no-ssl-host-verify",
            "k",
            "[INSECURE - DEV/TEST ONLY] Turn off SSL host verification. WARNING: This disables critical "
            "security checks and should NEVER be used in production.",
        ],
        [
            "stdio",
            None,
            "Source mode with one connection carried over standard input and output instead of a "
            "listener (e.g. as an ssh ProxyCommand); give the service ID as the only positional argument "
            "when the tunnel has several. Logs go to standard error. Not with -s or -d.",
        ],
    ]

    optParameters = [
        ["access-token", "t", None, "Client access token"],
        ["client-token", "i", None, "Optional Client Token"],
        [
            "client-token-file",
            None,
            None,
            "Keep the client token in this file: read it if it exists, else generate one and store it "
            "there (mode 0600), so a restarted proxy can reconnect to its tunnel. --client-token wins.",
        ],
        [
            "proxy-endpoint",
            "e",
            None,
            "Endpoint of proxy server with port (if not default 443). Example: "
            "data.tunneling.iot.us-east-1.amazonaws.com:443",
        ],
        [
            "region",
            "r",
            None,
            "Endpoint region where tunnel exists. Mutually exclusive flag with --proxy-endpoint",
        ],
        [
            "source-listen-port",
            "s",
            None,
            "Sets the mappings between source listening ports and service identifier. Example: SSH1=5555 or 5555",
        ],
        [
            "destination-app",
            "d",
            None,
            "Sets the mappings between the endpoint(address:port/port) and service identifier. "
            "Example: SSH1=127.0.0.1:22 or 22",
        ],
        [
            "local-bind-address",
            "b",
            None,
            "Assigns a specific local address to bind to for listening in source mode or a local socket "
            "address for destination mode.",
        ],
        [
            "capath",
            "c",
            None,
            "Adds the directory containing certificate authority files to be used for performing verification",
        ],
        [
            "export-default-settings",
            None,
            None,
            "Exports the default settings for the TCP adapter to the given file as json and exit program",
        ],
        ["settings-json", None, None, "Use the input JSON file to apply fine grained settings."],
        [
            "config",
            None,
            None,
            "Use the supplied configuration file to apply CLI args. Actual CLI args override the contents of "
            "this file",
        ],
        [
            "verbose",
            "v",
            None,
            "Logging level to standard error, 0-6 (0=off, 1=fatal, 2=error, 3=warning, 4=info, 5=debug, "
            ">=6=trace). Default 4.",
        ],
        ["mode", "m", None, "The mode local proxy will run: src(source) or dst(destination)"],
        [
            "destination-client-type",
            "y",
            None,
            "Specify the value V1 or V2 to run the localproxy in compatibility mode with older clients. "
            "This should only be used when running localproxy in source mode.",
        ],
        [
            "config-dir",
            None,
            None,
            "Set the configuration directory where service identifier mappings are stored. If not specified, "
            "will read mappings from the directory ./config of the current working directory, if it exists",
        ],
        [
            "metrics-port",
            None,
            None,
            "Serve metrics over HTTP on this port (0: any free port). Default: off.",
        ],
        [
            "metrics-address",
            None,
            None,
            "The address the metrics listener binds to. Default: 127.0.0.1.",
        ],
    ]

    def __init__(
        self,
        environ: Optional[Mapping[str, str]] = None,
        *,
        exit_on_action: bool = True,
        cwd: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._exit_on_action = exit_on_action
        self._cwd = cwd
        self.export_default_settings_to: Optional[str] = None
        self.verbosity = 4
        self.config: Optional[ProxyConfig] = None
        self.sources: Dict[str, str] = {}
        self.secrets: List[str] = []
        self.stdio_service_id: Optional[str] = None
        self._stdio_in_file = False

    def __repr__(self) -> str:
        shown = {
            key: ("***" if key in _SECRET_OPTIONS and value else value)
            for key, value in dict(self).items()
        }
        return f"<LocalProxyOptions {shown!r} config={self.config!r}>"

    # --- parsing ----------------------------------------------------------------

    def _canonical(self, opt: str) -> str:
        name = opt.lstrip("-")
        name = self.synonyms.get(name, self.synonyms.get(name.replace("-", "_"), name))
        return str(name).replace("_", "-")

    def parseOptions(self, options: Optional[List[str]] = None) -> None:
        """Parse, with the reference's messages for unknown, incomplete and repeated options."""
        if options is None:
            options = sys.argv[1:]
        if not (len(options) > 1 and options[-2] == "--_shell-completion"):
            try:
                # GNU style, as the reference's parser: the positional SERVICE_ID
                # of --stdio may stand anywhere among the options.
                opts, args = getopt.gnu_getopt(options, self.shortOpt, self.longOpt)
            except getopt.GetoptError as e:
                raise usage.UsageError(self._getopt_message(e)) from None
            seen = set()
            for opt, _value in opts:
                name = self._canonical(opt)
                if name in seen and name not in _ACTIONS:
                    raise usage.UsageError(f"option '--{name}' cannot be specified more than once")
                seen.add(name)
            options = self._options_first(opts, args)
        super().parseOptions(options)  # type: ignore[no-untyped-call]

    def _options_first(self, opts: List[Tuple[str, str]], args: List[str]) -> List[str]:
        """The command line with every option before the positional arguments (which getopt wants)."""
        ordered: List[str] = []
        for opt, value in opts:
            if opt.startswith("--"):
                takes_value = opt[2:] + "=" in self.longOpt
                ordered.append(f"{opt}={value}" if takes_value else opt)
            else:
                takes_value = opt[1] + ":" in self.shortOpt
                ordered.extend([opt, value] if takes_value else [opt])
        return [*ordered, "--", *args] if args else ordered

    def _getopt_message(self, error: getopt.GetoptError) -> str:
        opt = error.opt
        shown = f"-{opt}" if len(opt) == 1 else f"--{opt}"
        if "not recognized" in error.msg:
            return f"unrecognised option '{shown}'"
        if "requires argument" in error.msg:
            return f"the required argument for option '--{self._canonical(opt)}' is missing"
        if "not a unique prefix" in error.msg:
            return f"option '{shown}' is ambiguous"
        if "must not have an argument" in error.msg:
            return f"option '{shown}' does not take any arguments"
        return str(error)

    def parseArgs(self, *args: str) -> None:
        """At most one positional argument: the SERVICE_ID of ``--stdio``."""
        if args and not (self["stdio"] and len(args) == 1):
            raise usage.UsageError(
                "too many positional options have been specified on the command line"
            )
        if args:
            self.stdio_service_id = args[0]

    @property
    def stdio_requested(self) -> bool:
        """Whether ``--stdio`` was asked for (on the command line or in the ``--config`` file)."""
        return bool(self["stdio"]) or self._stdio_in_file

    # --- after parsing ------------------------------------------------------------

    def postOptions(self) -> None:
        """Short-circuit the actions, then merge the sources and validate."""
        if self["verbose"] is not None:
            self.verbosity = parse_verbosity(self["verbose"])
        if self.version_requested or self.help_requested:
            if self._exit_on_action:
                print(banner() if self.version_requested else str(self))
                raise SystemExit(0)
            return
        if self["export-default-settings"] is not None:
            path = check_path(self["export-default-settings"], "--export-default-settings")
            self.export_default_settings_to = path
            if self._exit_on_action:
                export_default_settings(path)
                raise SystemExit(0)
            return
        merged = merge_sources(
            dict(self),
            self._environ,
            known=set(self.docs) | set(_ACTIONS),
            flags=[str(flag[0]) for flag in self.optFlags],
        )
        self.sources = merged.sources
        self._stdio_in_file = bool(merged.values.get("stdio"))
        if merged.verbosity is not None and self["verbose"] is None:
            self.verbosity = merged.verbosity
        values = dict(merged.values)
        if self.stdio_service_id is not None:
            values["stdio-service-id"] = self.stdio_service_id
        self.config = build_config(
            values, self._environ, sources=merged.sources, cwd=self._cwd, secrets=self.secrets
        )
