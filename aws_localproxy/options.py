# -*- test-case-name: tests.test_options -*-
"""
The local proxy's command line, as the reference has it (§1), for both the
``localproxy`` console script and ``twistd localproxy``.

L{LocalProxyOptions} parses the reference's options (same long and short
names), merges them with the ``--config`` file and the environment (command
line first, then the file, then the environment: the first value found wins),
runs the reference's validation checklist in its order (§1.8) and leaves a
validated L{ProxyConfig} in C{options.config}.

Two kinds of failure, as in the reference: L{usage.UsageError} for a wrong
command line (the console script prints it with a "Try --help" line), and
L{ConfigurationError} (a subclass) for values that break a rule (the console
script logs it at ``fatal``).  Both end the process with exit code 1.
"""

from __future__ import annotations

import getopt
import os
import re
import sys
from typing import Any, Dict, List, Mapping, Optional

from twisted.logger import Logger
from twisted.python import usage

from aws_localproxy import __version__
from aws_localproxy.config import ProxyConfig
from aws_localproxy.configfiles import (
    ConfigDirError,
    ConfigFileError,
    check_mapping_endpoints,
    parse_options_file,
    read_config_dir,
)
from aws_localproxy.constants import Mode, PeerVersion
from aws_localproxy.endpoints import EndpointError as LocalEndpointError
from aws_localproxy.endpoints import is_description, parse_destination_endpoint, parse_source_endpoint
from aws_localproxy.mapping import NO_PORT_MAPPING
from aws_localproxy.regions import (
    EndpointError,
    ServiceEndpoint,
    endpoint_for_region,
    parse_endpoint,
    strip_scheme,
)
from aws_localproxy.settings import (
    Settings,
    SettingsError,
    export_default_settings,
    load_settings_json,
)
from aws_localproxy.webproxy import (
    ProxyURLError,
    no_proxy_from_environment,
    parse_proxy_url,
    proxy_from_environment,
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
    "ENV_ENDPOINT",
    "ENV_REGION",
]

log = Logger()

ENV_ACCESS_TOKEN = "AWSIOT_TUNNEL_ACCESS_TOKEN"
ENV_CLIENT_TOKEN = "AWSIOT_TUNNEL_CLIENT_TOKEN"
ENV_ENDPOINT = "AWSIOT_TUNNEL_ENDPOINT"
ENV_REGION = "AWSIOT_TUNNEL_REGION"

#: Option name -> environment variable, the lowest-priority source.
_ENVIRONMENT = {
    "access-token": ENV_ACCESS_TOKEN,
    "client-token": ENV_CLIENT_TOKEN,
    "proxy-endpoint": ENV_ENDPOINT,
    "region": ENV_REGION,
}

TRY_HELP = "Try 'localproxy --help' for a list of options."

_SECRET_OPTIONS = ("access-token", "client-token")

_MAX_PATH = 4096
_MAX_TOKEN = 4096
_MAX_HOST = 253
_MAX_REGION = 64
_MAX_SERVICE_ID = 128
_HOST_CHARS = re.compile(r"^[a-zA-Z0-9.:\[\]-]+$")
_REGION_CHARS = re.compile(r"^[a-z0-9-]+$")
# The reference rejects "." (§9 S7), although AWS accepts service names like host names.
_SERVICE_ID_CHARS = re.compile(r"^[a-zA-Z0-9._-]+$")
# What the service accepts (V3 guide); the reference does not check it (§9 S4).
_CLIENT_TOKEN_CHARS = re.compile(r"^[a-zA-Z0-9-]+$")

_MODES = {"src": Mode.SOURCE, "source": Mode.SOURCE, "dst": Mode.DESTINATION, "destination": Mode.DESTINATION}
_PEER_VERSIONS = {"V1": PeerVersion.V1, "V2": PeerVersion.V2, "V3": PeerVersion.V3}

_K_WARNING = (
    "**********************************************************************",
    "* SECURITY WARNING: SSL host verification is DISABLED (-k flag)     *",
    "* This removes critical security checks and exposes the connection  *",
    "* to potential man-in-the-middle attacks. DO NOT use in production! *",
    "**********************************************************************",
)


def banner() -> str:
    """The first line of every run, on stdout (§1.1)."""
    return f"Running AWS IoT Secure Tunneling Local Proxy version: v{__version__}"


class ConfigurationError(usage.UsageError):
    """
    A value breaks one of the reference's rules (§1.8 "runtime errors"): the
    console script logs it at ``fatal`` rather than printing usage help.
    """


def _truthy(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("", "1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise usage.UsageError(f"the argument ('{value}') for option '--{name}' is invalid")


def check_path(path: str, option: str) -> str:
    """The reference's path validator (§1.8), for the option named C{option}."""
    if not path:
        raise ConfigurationError(f"Path cannot be empty ({option})")
    if len(path) > _MAX_PATH:
        raise ConfigurationError(f"Path exceeds maximum allowed length ({option})")
    if "\0" in path:
        raise ConfigurationError(f"Path contains invalid null byte ({option})")
    return path


def _reject(option: str, reason: str) -> ConfigurationError:
    log.warn("SECURITY: Rejected input for '{field}': {reason}", field=option, reason=reason)
    return ConfigurationError(f"{reason} ({option})")


def _check_port(text: str, option: str) -> str:
    if not (text.isascii() and text.isdigit()):
        raise _reject(option, "Port must contain only digits")
    if int(text) > 2**31 - 1:
        raise _reject(option, "Port value is too large")
    if not 0 < int(text) < 65536:
        raise _reject(option, "Port must be between 1 and 65535")
    # Written as a number: "05555" would never match the listening port (§9 S6).
    return str(int(text))


def _check_endpoint(text: str, option: str, *, source: bool) -> str:
    """One mapping endpoint; returns it normalised (see L{aws_localproxy.endpoints})."""
    if not text:
        raise _reject(option, "Endpoint cannot be empty")
    if is_description(text):
        try:
            if source:
                parse_source_endpoint(text)
            else:
                parse_destination_endpoint(text)
        except LocalEndpointError as e:
            raise _reject(option, str(e)) from None
        return text
    if text.isascii() and text.isdigit():
        return _check_port(text, option)
    if source:
        # A source only listens on a port; a host here used to pass and crash later.
        raise _reject(option, f"Source listen port must be a port number between 1 and 65535, not '{text}'")
    if "/" in text:
        check_path(text, option)
        return text
    if len(text) > _MAX_HOST:
        raise _reject(option, "Bind address exceeds maximum allowed length")
    if not _HOST_CHARS.match(text):
        raise _reject(option, "Bind address contains invalid characters")
    bracket = text.rfind("]")
    colon = text.rfind(":")
    if colon > bracket:
        host, port = text[:colon], text[colon + 1:]
        if not host:
            raise _reject(option, f"Endpoint has no host: '{text}'")
        text = f"{host}:{_check_port(port, option)}"
    try:
        parse_destination_endpoint(text)
    except LocalEndpointError as e:
        raise _reject(option, str(e)) from None
    return text


def parse_port_mapping(text: str, option: str, *, source: bool) -> Dict[str, str]:
    """
    ``-s``/``-d`` text to a service ID -> endpoint mapping (§1.7).

    A single value without ``=`` is the V1 format, C{{"": endpoint}};
    otherwise ``ID=ENDPOINT`` pieces separated by commas.

    @param option: the option's name, for messages.
    @param source: C{True} for ``-s``: endpoints must be ports.
    @raise ConfigurationError: the reference's messages, with the option named.
    """
    pieces = re.split(r",+", text)
    if len(pieces) == 1 and ("=" not in pieces[0] or is_description(pieces[0])):
        return {"": _check_endpoint(pieces[0].strip(), option, source=source)}
    mapping: Dict[str, str] = {}
    for piece in pieces:
        if not piece.strip():
            if len(pieces) > 1 and all("=" not in p for p in pieces):
                raise _reject(option, "Wrong format for the port mappings! Example: SSH1=5555,SSH2=6666.")
            continue
        parts = re.split(r"=+", piece, maxsplit=1)
        if len(parts) == 2 and "=" in parts[1] and not is_description(parts[1].strip()):
            # Only a Twisted endpoint description may contain "=" after the service ID.
            parts = re.split(r"=+", piece)
        if len(parts) != 2:
            if len(parts) == 1:
                raise _reject(option, "Wrong format for the port mappings! Example: SSH1=5555,SSH2=6666.")
            raise _reject(option, f"Wrong format for the port mappings: {piece} .Example: SSH1=5555")
        service_id, endpoint = parts[0].strip(), parts[1].strip()
        if not service_id or not endpoint:
            raise _reject(option, f"Wrong format for the port mappings: {piece} .Example: SSH1=5555")
        if len(service_id) > _MAX_SERVICE_ID:
            raise _reject(option, "Service ID exceeds maximum allowed length")
        if not _SERVICE_ID_CHARS.match(service_id):
            raise _reject(
                option, "Service ID must contain only alphanumeric characters, dots, hyphens, and underscores"
            )
        endpoint = _check_endpoint(endpoint, option, source=source)
        if service_id in mapping:
            log.warn(
                "Duplicate mappings, ignore. This mapping already exists: {service_id} : {endpoint}",
                service_id=service_id,
                endpoint=mapping[service_id],
            )
            continue
        mapping[service_id] = endpoint
    if not mapping:
        raise _reject(option, "Wrong format for the port mappings! Example: SSH1=5555,SSH2=6666.")
    return mapping


def _parse_verbosity(value: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise usage.UsageError(f"the argument ('{value}') for option '--verbose' is invalid")
    return min(int(text), 6)


class LocalProxyOptions(usage.Options):
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

    synopsis = "Usage: localproxy [options]"
    longdesc = (
        "The AWS IoT Secure Tunneling local proxy. Options may also come from a --config file and from "
        f"the environment ({ENV_ACCESS_TOKEN}, {ENV_CLIENT_TOKEN}, {ENV_ENDPOINT}, {ENV_REGION}, "
        "https_proxy/HTTPS_PROXY, no_proxy/NO_PROXY); the command line wins over the file, the file over "
        "the environment."
    )

    optFlags = [
        [
            "no-ssl-host-verify",
            "k",
            "[INSECURE - DEV/TEST ONLY] Turn off SSL host verification. WARNING: This disables critical "
            "security checks and should NEVER be used in production.",
        ],
    ]

    optParameters = [
        ["access-token", "t", None, "Client access token"],
        ["client-token", "i", None, "Optional Client Token"],
        [
            "proxy-endpoint",
            "e",
            None,
            "Endpoint of proxy server with port (if not default 443). Example: "
            "data.tunneling.iot.us-east-1.amazonaws.com:443",
        ],
        ["region", "r", None, "Endpoint region where tunnel exists. Mutually exclusive flag with --proxy-endpoint"],
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
        self.help_requested = False
        self.version_requested = False
        self.export_default_settings_to: Optional[str] = None
        self.verbosity = 4
        self.config: Optional[ProxyConfig] = None
        self.sources: Dict[str, str] = {}
        self.secrets: List[str] = []

    def __repr__(self) -> str:
        shown = {
            key: ("***" if key in _SECRET_OPTIONS and value else value) for key, value in dict(self).items()
        }
        return f"<LocalProxyOptions {shown!r} config={self.config!r}>"

    # --- parsing ----------------------------------------------------------------

    def opt_help(self) -> None:
        """Show help message"""
        self.help_requested = True

    opt_h = opt_help

    def opt_version(self) -> None:
        """Show current version of Local Proxy and exit"""
        self.version_requested = True

    opt_V = opt_version

    def _canonical(self, opt: str) -> str:
        name = opt.lstrip("-")
        name = self.synonyms.get(name, self.synonyms.get(name.replace("-", "_"), name))
        return name.replace("_", "-")

    def parseOptions(self, options: Optional[List[str]] = None) -> None:
        """Parse, with the reference's messages for unknown, incomplete and repeated options."""
        if options is None:
            options = sys.argv[1:]
        if not (len(options) > 1 and options[-2] == "--_shell-completion"):
            try:
                opts, _ = getopt.getopt(options, self.shortOpt, self.longOpt)
            except getopt.GetoptError as e:
                raise usage.UsageError(self._getopt_message(e)) from None
            seen = set()
            for opt, _value in opts:
                name = self._canonical(opt)
                if name in seen and name not in ("help", "version"):
                    raise usage.UsageError(f"option '--{name}' cannot be specified more than once")
                seen.add(name)
        super().parseOptions(options)

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
        if args:
            raise usage.UsageError("too many positional options have been specified on the command line")

    # --- after parsing ------------------------------------------------------------

    def postOptions(self) -> None:
        """Short-circuit the actions, then merge the sources and validate (§1.2, §1.8)."""
        if self["verbose"] is not None:
            self.verbosity = _parse_verbosity(self["verbose"])
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
        values = self._merge_sources()
        self.config = self._validate(values)

    def _merge_sources(self) -> Dict[str, Any]:
        """Command line, then ``--config``, then environment: the first value found wins (§1.4)."""
        values: Dict[str, Any] = {}
        for key, value in dict(self).items():
            if key == "no-ssl-host-verify":
                if value:
                    values[key] = True
            elif value is not None:
                values[key] = value
        self.sources = {key: "cli" for key in values}

        if "config" in values:
            path = check_path(values["config"], "--config")
            try:
                pairs = parse_options_file(path)
            except ConfigFileError as e:
                raise usage.UsageError(str(e)) from None
            known = set(self.docs) | {"help", "version"}
            from_file: set[str] = set()
            for name, value in pairs:
                if name not in known:
                    raise usage.UsageError(f"unrecognised option '{name}'")
                if name in from_file:
                    raise usage.UsageError(f"option '--{name}' cannot be specified more than once")
                from_file.add(name)
                if name in ("help", "version", "export-default-settings", "config") or name in values:
                    continue
                if name == "no-ssl-host-verify":
                    if _truthy(name, value):
                        values[name] = True
                elif name == "verbose":
                    # The reference ignores this (§9 S10); honouring it is what users expect.
                    self.verbosity = _parse_verbosity(value)
                    values[name] = value
                else:
                    values[name] = value
                self.sources[name] = "config"

        for name, variable in _ENVIRONMENT.items():
            if name not in values and variable in self._environ:
                values[name] = self._environ[variable]
                self.sources[name] = "env"
        return values

    def _where(self, name: str) -> str:
        return {
            "cli": "on the command line",
            "config": "in the --config file",
            "env": f"by {_ENVIRONMENT.get(name, '')}",
        }.get(self.sources.get(name, ""), "")

    def _validate(self, values: Dict[str, Any]) -> ProxyConfig:
        # 1. The access token must come from somewhere.
        if "access-token" not in values:
            raise usage.UsageError(
                "the option '--access-token' is required but missing"
                f" (give it with {ENV_ACCESS_TOKEN}, access-token in --config, or -t)"
            )
        # 2. Exactly one of region and endpoint, from any source.
        has_region, has_endpoint = "region" in values, "proxy-endpoint" in values
        if has_region == has_endpoint:
            detail = (
                f" (--region given {self._where('region')}, --proxy-endpoint given {self._where('proxy-endpoint')})"
                if has_region
                else " (neither was given)"
            )
            raise usage.UsageError(
                "Must specify one and only one of --region/-r or --proxy-endpoint/-e options" + detail
            )
        # 3.
        if self.sources.get("access-token") == "cli":
            log.warn(
                "Found access token supplied via CLI arg. Consider using environment variable "
                "AWSIOT_TUNNEL_ACCESS_TOKEN instead"
            )
        # 4. Access token.
        access_token: str = values["access-token"]
        self._check_token(access_token)
        self.secrets.append(access_token)
        # 5. Client token (an empty one means none).
        client_token: Optional[str] = values.get("client-token") or None
        if client_token is not None:
            self._check_client_token(client_token)
            self.secrets.append(client_token)
        # 6, 7.
        if has_region:
            self._check_region(values["region"])
        else:
            self._check_endpoint_text(values["proxy-endpoint"])
        # 8. Settings, then the endpoint they help form.
        settings = Settings()
        if "settings-json" in values:
            path = check_path(values["settings-json"], "--settings-json")
            log.info("Using settings specified in file: {path}", path=path)
            try:
                settings = load_settings_json(path)
            except SettingsError as e:
                raise ConfigurationError(f"{e} (--settings-json)") from None
        endpoint = self._endpoint(values, settings)
        # 9. Web proxy from the environment.
        web_proxy = proxy_from_environment(self._environ)
        if web_proxy is not None:
            variable = "https_proxy" if "https_proxy" in self._environ else "HTTPS_PROXY"
            try:
                proxy = parse_proxy_url(web_proxy)
            except ProxyURLError as e:
                raise ConfigurationError(
                    f"Failed to parse the value of environment variable {variable}: {e}"
                ) from None
            if proxy.password:
                self.secrets.append(proxy.password)
            log.info(
                "Found Web proxy information in the environment variables, will use it to connect via the proxy."
            )
        no_proxy = no_proxy_from_environment(self._environ)
        # 10. Mode.
        mode_text: Optional[str] = values.get("mode")
        if mode_text is not None and mode_text not in _MODES:
            raise usage.UsageError(
                f"Mode value is wrong! Allowed values are: src, dst, source, destination (--mode/-m: '{mode_text}')"
            )
        # 11. Peer version.
        peer_version = self._peer_version(values.get("destination-client-type"))
        # 12-15. Mappings and mode.
        has_s, has_d = "source-listen-port" in values, "destination-app" in values
        if has_s and has_d:
            raise usage.UsageError(
                "Must specify one and only one of --source-listen-port/-s or --destination-app/-d"
                f" (-s given {self._where('source-listen-port')}, -d given {self._where('destination-app')})"
            )
        if not (has_s or has_d or mode_text is not None):
            raise usage.UsageError(
                "Must specify one of --source-listen-port/-s or --destination-app/-d or --mode"
            )
        mode = Mode.DESTINATION if has_d else Mode.SOURCE
        if mode_text is not None:
            mode = _MODES[mode_text]
        if has_s and mode is Mode.DESTINATION:
            raise usage.UsageError("-s and --mode have mismatched mode. Mode is set to destination!")
        if has_d and mode is Mode.SOURCE:
            raise usage.UsageError("-d and --mode have mismatched mode. Mode is set to source!")
        # 16. -d, then -s.
        service_map: Dict[str, str] = {}
        if has_d:
            service_map = parse_port_mapping(values["destination-app"], "destination-app", source=False)
        if has_s:
            service_map = parse_port_mapping(values["source-listen-port"], "source-listen-port", source=True)
        # 17. Mapping files.
        if "config-dir" in values:
            check_path(values["config-dir"], "--config-dir")
        try:
            config_files = read_config_dir(
                values.get("config-dir"), cwd=self._cwd, read_contents=not service_map
            )
        except ConfigDirError as e:
            raise ConfigurationError(f"{e} (--config-dir)") from None
        if service_map:
            # Listed and checked as the reference does, but -s/-d wins: never looked up.
            config_files = ()
        check_mapping_endpoints(config_files, source=mode is Mode.SOURCE)
        if mode is Mode.DESTINATION and not service_map and not config_files:
            # The reference finds out only after connecting, which uses up the token.
            raise ConfigurationError(
                f"{NO_PORT_MAPPING} (give -d, or mapping files with --config-dir or ./config)"
            )
        # 18. -b.
        bind_address = self._bind_address(values.get("local-bind-address"))
        # 19. -c.
        capath: Optional[str] = values.get("capath")
        if capath is not None:
            check_path(capath, "--capath")
            if not os.path.isdir(capath):
                raise ConfigurationError(f"CA directory does not exist or is not a directory: {capath} (--capath)")
        # 20. -k.
        verify_tls = not values.get("no-ssl-host-verify", False)
        if not verify_tls:
            for line in _K_WARNING:
                log.warn("{line}", line=line)

        return ProxyConfig(
            mode=mode,
            access_token=access_token,
            endpoint_host=endpoint.host,
            endpoint_port=endpoint.port,
            client_token=client_token,
            use_tls=endpoint.use_tls,
            service_map=service_map,
            config_files=config_files,
            bind_address=bind_address,
            capath=capath,
            verify_tls=verify_tls,
            peer_version=peer_version,
            settings=settings,
            web_proxy=web_proxy,
            no_proxy=no_proxy,
            verbosity=self.verbosity,
        )

    # --- single rules -----------------------------------------------------------

    @staticmethod
    def _check_token(token: str) -> None:
        if not token:
            raise ConfigurationError("Access token cannot be empty (--access-token)")
        if len(token) > _MAX_TOKEN:
            raise ConfigurationError("Access token exceeds maximum allowed length (--access-token)")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
            raise ConfigurationError("Access token contains invalid control characters (--access-token)")
        if not token.isascii():
            raise ConfigurationError("Access token contains non-ASCII characters (--access-token)")

    @staticmethod
    def _check_client_token(token: str) -> None:
        if not 32 <= len(token) <= 128:
            raise ConfigurationError("Client token must be between 32 and 128 characters (--client-token)")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
            raise ConfigurationError("Client token contains invalid control characters (--client-token)")
        if not _CLIENT_TOKEN_CHARS.match(token):
            raise ConfigurationError(
                "Client token must contain only letters, digits and hyphens (--client-token)"
            )

    @staticmethod
    def _check_region(region: str) -> None:
        if not region:
            raise ConfigurationError("Region cannot be empty (--region)")
        if len(region) > _MAX_REGION:
            raise ConfigurationError("Region exceeds maximum allowed length (--region)")
        if not _REGION_CHARS.match(region):
            raise ConfigurationError(
                "Region must contain only lowercase letters, numbers, and hyphens (--region)"
            )

    @staticmethod
    def _check_endpoint_text(text: str) -> None:
        if not text:
            raise ConfigurationError("Proxy endpoint cannot be empty (--proxy-endpoint)")
        if len(text) > _MAX_HOST:
            raise ConfigurationError("Proxy endpoint exceeds maximum allowed length (--proxy-endpoint)")
        rest, _ = strip_scheme(text)
        if not _HOST_CHARS.match(rest):
            raise ConfigurationError("Proxy endpoint contains invalid characters (--proxy-endpoint)")

    @staticmethod
    def _endpoint(values: Mapping[str, Any], settings: Settings) -> ServiceEndpoint:
        try:
            if "region" in values:
                return endpoint_for_region(values["region"], settings)
            return parse_endpoint(values["proxy-endpoint"])
        except EndpointError as e:
            option = "--region" if "region" in values else "--proxy-endpoint"
            raise ConfigurationError(f"{e} ({option})") from None

    @staticmethod
    def _peer_version(value: Optional[str]) -> PeerVersion:
        if value is None:
            return PeerVersion.V3
        if value in ("V1", "V2"):
            log.info("setting source protocol to {version}", version=value)
        elif value != "V3":
            log.warn("unknown value for destination-client-type, assuming default protocol V3.")
        return _PEER_VERSIONS.get(value, PeerVersion.V3)

    @staticmethod
    def _bind_address(value: Optional[str]) -> Optional[str]:
        if not value:
            return None
        if len(value) > _MAX_HOST:
            raise ConfigurationError("Bind address exceeds maximum allowed length (--local-bind-address)")
        if not _HOST_CHARS.match(value):
            raise ConfigurationError("Bind address contains invalid characters (--local-bind-address)")
        if value.startswith("[") and value.endswith("]"):
            # Listening APIs take the bare IPv6 literal.
            return value[1:-1]
        return value

