# -*- test-case-name: tests.agent.test_options -*-
"""
The agent's command line, for the ``localproxy-agent`` console script and ``twistd localproxy-agent``.

Two groups of options.  The agent's own: which thing, which MQTT broker and
with which certificates, how many tunnels at once.  And the destination's,
with the names and forms of ``localproxy``'s (``-d``, ``--config-dir``,
``-e``, ``-c``, ``-k``, ``--settings-json``, ``-b``, ``-v``), checked by the
same code (L{aws_localproxy.config.build.build_config}) once at start, so a
mistake is reported before any tunnel is notified.  A ``--config`` file may
give any of them, as for ``localproxy``.  After parsing, C{options.agent}
is the validated L{AgentConfig}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence

from twisted.python import usage

from aws_localproxy import __version__
from aws_localproxy.agent.broker import (
    BROKER_FILE_OPTIONS,
    BrokerConfig,
    BrokerConfigError,
    broker_parameters,
    parse_broker_url,
)
from aws_localproxy.agent.notification import check_thing_name
from aws_localproxy.agent.tunnels import DEFAULT_MAX_TUNNELS
from aws_localproxy.cli.console import ActionFlags
from aws_localproxy.config.build import build_config
from aws_localproxy.config.option_sources import merge_sources
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.validation import ConfigurationError, check_path, parse_verbosity

__all__ = ["AgentOptions", "AgentConfig", "banner", "TRY_HELP"]

TRY_HELP = "Try 'localproxy-agent --help' for a list of options."

#: Stands in for the access token while the template is checked; every tunnel replaces it.
_PLACEHOLDER_TOKEN = "agent-template-placeholder"
#: Stands in for the region until a notification names the real one.
_PLACEHOLDER_REGION = "us-east-1"

#: Options handed to the destination's checklist (build_config), by long name.
_PROXY_OPTIONS = (
    "destination-app",
    "config-dir",
    "proxy-endpoint",
    "capath",
    "no-ssl-host-verify",
    "settings-json",
    "local-bind-address",
    "verbose",
)


def banner() -> str:
    return f"Running AWS IoT Secure Tunneling Local Proxy agent version: v{__version__}"


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs, validated."""

    thing_name: str
    broker: BrokerConfig
    client_id: str
    template: ProxyConfig
    endpoint_from_region: bool
    max_tunnels: int = DEFAULT_MAX_TUNNELS
    keepalive: int = 60
    verbosity: int = 4


def _positive(name: str, text: Any, low: int, high: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise usage.UsageError(f"--{name} must be between {low} and {high}")
    return value


class AgentOptions(ActionFlags, usage.Options):
    """The agent's options; C{agent} is the L{AgentConfig} after C{parseOptions}."""

    synopsis = "Usage: localproxy-agent --thing-name NAME --mqtt-broker URL -d MAPPING [options]"
    action_docs = {"help": "Show this help and exit", "version": "Show the version and exit"}
    longdesc = (
        "The AWS IoT Secure Tunneling device agent: subscribes to the thing's tunnel notify topic "
        "and runs a destination local proxy, in this process, for every tunnel opened for the thing. "
        "Options may also come from a --config file (name = value lines)."
    )

    optFlags: List[List[Optional[str]]] = [
        [
            "no-ssl-host-verify",
            "k",
            "[INSECURE - DEV/TEST ONLY] Turn off SSL host verification towards the tunneling "
            "service (not the broker).",
        ],
        [
            "mqtt-alpn",
            None,
            "Offer the ALPN protocol x-amzn-mqtt-ca (AWS IoT Core with client certificates); "
            "on by itself for mqtts:// on port 443.",
        ],
    ]

    optParameters: List[List[Any]] = [
        ["thing-name", "n", None, "The AWS IoT thing this device is (the notify topic's thing)."],
        *broker_parameters(
            broker="The MQTT broker: mqtt://HOST[:PORT] (plain, default 1883) or "
            "mqtts://HOST[:PORT] (TLS, default 8883), "
            "e.g. mqtts://xxxx-ats.iot.us-east-1.amazonaws.com:8883.",
            ca="PEM file of the CAs that sign the broker's certificate (default: system CAs).",
            cert="The device certificate (PEM), for brokers that want mutual TLS.",
            key="The device certificate's private key (PEM).",
        ),
        ["mqtt-client-id", None, None, "The MQTT client ID (default: the thing name)."],
        # No defaults in the table: a value there would hide the --config file's.
        [
            "mqtt-keepalive",
            None,
            None,
            "Seconds between MQTT keep-alive pings (30 to 1200). Default 60.",
        ],
        [
            "max-tunnels",
            None,
            None,
            "Tunnels open at once; more notifications are refused until one ends. "
            f"Default {DEFAULT_MAX_TUNNELS}.",
        ],
        [
            "destination-app",
            "d",
            None,
            "The mappings between service identifiers and local endpoints, as localproxy's -d. "
            "Example: SSH=22,WEB=127.0.0.1:80",
        ],
        [
            "config-dir",
            None,
            None,
            "Directory of service identifier mapping files, as localproxy's --config-dir (used when "
            "-d is not given).",
        ],
        [
            "proxy-endpoint",
            "e",
            None,
            "The tunneling service's endpoint for every tunnel, instead of the one of the "
            "notification's region (e.g. a local tunnel service).",
        ],
        ["capath", "c", None, "Directory of CA files (OpenSSL hashed) for the tunneling service."],
        ["settings-json", None, None, "The local proxy's fine grained settings (JSON file)."],
        [
            "local-bind-address",
            "b",
            None,
            "The local address the destinations' connections to local services come from.",
        ],
        [
            "verbose",
            "v",
            None,
            "Logging level to standard error, 0-6 (0=off, 1=fatal, 2=error, 3=warning, 4=info, "
            "5=debug, >=6=trace). Default 4.",
        ],
        ["config", None, None, "A file of options (name = value lines); the command line wins."],
    ]

    def __init__(
        self,
        environ: Optional[Mapping[str, str]] = None,
        *,
        cwd: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._cwd = cwd
        self.agent: Optional[AgentConfig] = None
        self.verbosity = 4

    def postOptions(self) -> None:
        if self.version_requested or self.help_requested:
            return
        known = set(self.docs) - {"help", "version"}
        flags = [str(flag[0]) for flag in self.optFlags]
        merged = merge_sources(dict(self), self._environ, known=known, flags=flags)
        values = {k: v for k, v in merged.values.items() if k in known}
        sources = {k: v for k, v in merged.sources.items() if k in known}
        if values.get("verbose") is not None:
            self.verbosity = parse_verbosity(str(values["verbose"]))
        self.agent = agent_config(values, self._environ, sources=sources, cwd=self._cwd)


def agent_config(
    values: Mapping[str, object],
    environ: Mapping[str, str],
    *,
    sources: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
) -> AgentConfig:
    """
    The validated agent configuration for option values by long name.

    @raise usage.UsageError: a required option is missing or a value is wrong.
    """
    thing_name = values.get("thing-name")
    if not thing_name:
        raise usage.UsageError("the option '--thing-name' is required but missing")
    try:
        check_thing_name(str(thing_name))
    except ValueError as e:
        raise ConfigurationError(f"{e} (--thing-name)") from None
    broker_url = values.get("mqtt-broker")
    if not broker_url:
        raise usage.UsageError("the option '--mqtt-broker' is required but missing")
    files = {}
    for name in BROKER_FILE_OPTIONS:
        if values.get(name) is not None:
            files[name] = check_path(str(values[name]), f"--{name}")
    try:
        broker = parse_broker_url(
            str(broker_url),
            ca_file=files.get("mqtt-ca"),
            cert_file=files.get("mqtt-cert"),
            key_file=files.get("mqtt-key"),
            alpn=True if values.get("mqtt-alpn") else None,
        )
    except BrokerConfigError as e:
        raise ConfigurationError(f"{e} (--mqtt-broker)") from None
    proxy_values = {k: v for k, v in values.items() if k in _PROXY_OPTIONS}
    proxy_values["access-token"] = _PLACEHOLDER_TOKEN
    proxy_values["mode"] = "dst"
    endpoint_from_region = "proxy-endpoint" not in proxy_values
    if endpoint_from_region:
        proxy_values["region"] = _PLACEHOLDER_REGION
    template = build_config(proxy_values, environ, sources=sources, cwd=cwd)
    return AgentConfig(
        thing_name=str(thing_name),
        broker=broker,
        client_id=str(values.get("mqtt-client-id") or thing_name),
        template=template,
        endpoint_from_region=endpoint_from_region,
        max_tunnels=_positive(
            "max-tunnels", values.get("max-tunnels", DEFAULT_MAX_TUNNELS), 1, 10000
        ),
        keepalive=_positive("mqtt-keepalive", values.get("mqtt-keepalive", 60), 30, 1200),
        verbosity=template.verbosity,
    )


def make_agent(
    reactor: Any,
    config: AgentConfig,
    *,
    on_secret: Callable[[str], None] = lambda secret: None,
    backoff: Optional[Callable[[int], float]] = None,
) -> Any:
    """The L{aws_localproxy.agent.service.AgentService} for C{config} (not started)."""
    from aws_localproxy.agent.service import AgentService
    from aws_localproxy.agent.tunnels import TunnelManager
    from aws_localproxy.config.config_dir import make_lookup

    template = config.template
    lookup: Optional[Callable[[Sequence[str]], Mapping[str, str]]] = (
        make_lookup(template.config_files) if template.config_files else None
    )
    manager = TunnelManager(
        reactor,
        template,
        endpoint_from_region=config.endpoint_from_region,
        max_tunnels=config.max_tunnels,
        lookup_endpoints=lookup,
        on_secret=on_secret,
    )
    return AgentService(
        reactor,
        config.thing_name,
        manager,
        broker=config.broker,
        client_id=config.client_id,
        keepalive=config.keepalive,
        backoff=backoff,
    )
