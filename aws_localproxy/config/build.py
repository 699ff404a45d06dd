# -*- test-case-name: tests.config.test_build -*-
"""
From merged option values to a validated L{ProxyConfig}: the reference's checklist.

L{build_config} takes the values of every option, by long name (as
L{aws_localproxy.config.option_sources.merge_sources} leaves them), and runs the
reference's checks in the reference's order, so that a command line with
several mistakes gets the same first message as from the reference.  Each
step is one small function; the single rules are in
L{aws_localproxy.config.validation}.  Nothing here knows about C{usage.Options}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from twisted.logger import Logger
from twisted.python import usage

from aws_localproxy.config.config_dir import (
    ConfigDirError,
    check_mapping_endpoints,
    read_config_dir,
)
from aws_localproxy.config.option_sources import ENV_ACCESS_TOKEN, where
from aws_localproxy.config.port_mapping import check_service_id, parse_port_mapping
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.proxy_url import (
    ProxyURLError,
    no_proxy_from_environment,
    parse_proxy_url,
    proxy_from_environment,
)
from aws_localproxy.config.regions import (
    EndpointError,
    ServiceEndpoint,
    endpoint_for_region,
    parse_endpoint,
)
from aws_localproxy.config.settings import Settings, SettingsError, inert_settings
from aws_localproxy.config.settings_json import load_settings_json
from aws_localproxy.config.validation import (
    ConfigurationError,
    bind_address,
    check_access_token,
    check_capath,
    check_client_token,
    check_client_token_file,
    check_path,
    check_proxy_endpoint_text,
    check_region,
    parse_metrics_address,
    parse_metrics_port,
    parse_mode,
    parse_verbosity,
    peer_version,
)
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.service_ids import NO_PORT_MAPPING

__all__ = ["build_config", "K_WARNING"]

log = Logger()

K_WARNING = (
    "**********************************************************************",
    "* SECURITY WARNING: SSL host verification is DISABLED (-k flag)     *",
    "* This removes critical security checks and exposes the connection  *",
    "* to potential man-in-the-middle attacks. DO NOT use in production! *",
    "**********************************************************************",
)


@dataclass
class _Checklist:
    """The inputs of one run of the checklist, and the secrets found so far."""

    values: Mapping[str, object]
    environ: Mapping[str, str]
    sources: Mapping[str, str]
    cwd: Optional[str]
    secrets: List[str] = field(default_factory=list)

    def text(self, name: str) -> Optional[str]:
        value = self.values.get(name)
        return None if value is None else str(value)

    def has(self, name: str) -> bool:
        return name in self.values

    def where(self, name: str) -> str:
        return where(self.sources, name)


# --- 1-7: tokens and the service's address --------------------------------------------------


def _require_access_token(run: _Checklist) -> None:
    if not run.has("access-token"):
        raise usage.UsageError(
            "the option '--access-token' is required but missing"
            f" (give it with {ENV_ACCESS_TOKEN}, access-token in --config, or -t)"
        )


def _one_of_region_and_endpoint(run: _Checklist) -> None:
    has_region = run.has("region")
    if has_region == run.has("proxy-endpoint"):
        detail = (
            f" (--region given {run.where('region')}, --proxy-endpoint given {run.where('proxy-endpoint')})"
            if has_region
            else " (neither was given)"
        )
        raise usage.UsageError(
            "Must specify one and only one of --region/-r or --proxy-endpoint/-e options" + detail
        )


def _access_token(run: _Checklist) -> str:
    if run.sources.get("access-token") == "cli":
        log.warn(
            "Found access token supplied via CLI arg. Consider using environment variable "
            "AWSIOT_TUNNEL_ACCESS_TOKEN instead"
        )
    token = check_access_token(run.text("access-token") or "")
    run.secrets.append(token)
    return token


def _client_token(run: _Checklist) -> Optional[str]:
    """An empty client token means none."""
    token = run.text("client-token") or None
    if token is not None:
        check_client_token(token)
        run.secrets.append(token)
    return token


def _client_token_file(run: _Checklist, client_token: Optional[str]) -> Optional[str]:
    """``--client-token-file``, unless a client token was given (which wins)."""
    path = run.text("client-token-file")
    if path is None:
        return None
    if client_token is not None:
        log.info(
            "A client token was given {where}; the client token file {path} is not used",
            where=run.where("client-token"),
            path=path,
        )
        return None
    stored = check_client_token_file(path)
    if stored is not None:
        run.secrets.append(stored)
    return path


def _check_service_address_text(run: _Checklist) -> None:
    region = run.text("region")
    if region is not None:
        check_region(region)
    else:
        check_proxy_endpoint_text(run.text("proxy-endpoint") or "")


# --- 8-9: settings, the service endpoint, the web proxy --------------------------------------


def _settings(run: _Checklist) -> Settings:
    path = run.text("settings-json")
    if path is None:
        return Settings()
    check_path(path, "--settings-json")
    log.info("Using settings specified in file: {path}", path=path)
    try:
        settings = load_settings_json(path)
    except SettingsError as e:
        raise ConfigurationError(f"{e} (--settings-json)") from None
    for message in inert_settings(settings):
        log.warn("{setting_warning}", setting_warning=message)
    return settings


def _service_endpoint(run: _Checklist, settings: Settings) -> ServiceEndpoint:
    region = run.text("region")
    try:
        if region is not None:
            return endpoint_for_region(region, settings)
        return parse_endpoint(run.text("proxy-endpoint") or "")
    except EndpointError as e:
        option = "--region" if region is not None else "--proxy-endpoint"
        raise ConfigurationError(f"{e} ({option})") from None


def _web_proxy(run: _Checklist) -> Tuple[Optional[str], Optional[str]]:
    """The web proxy URL and ``NO_PROXY`` list from the environment."""
    web_proxy = proxy_from_environment(run.environ)
    if web_proxy is not None:
        variable = "https_proxy" if "https_proxy" in run.environ else "HTTPS_PROXY"
        try:
            proxy = parse_proxy_url(web_proxy)
        except ProxyURLError as e:
            raise ConfigurationError(
                f"Failed to parse the value of environment variable {variable}: {e}"
            ) from None
        if proxy.password:
            run.secrets.append(proxy.password)
        log.info(
            "Found Web proxy information in the environment variables, will use it to connect via the proxy."
        )
    return web_proxy, no_proxy_from_environment(run.environ)


# --- 10-17: mode and mappings ----------------------------------------------------------------


def _mode(run: _Checklist, mode_option: Optional[Mode]) -> Mode:
    """-s, -d and --mode together (steps 12-15)."""
    has_s, has_d = run.has("source-listen-port"), run.has("destination-app")
    if has_s and has_d:
        raise usage.UsageError(
            "Must specify one and only one of --source-listen-port/-s or --destination-app/-d"
            f" (-s given {run.where('source-listen-port')}, -d given {run.where('destination-app')})"
        )
    if not (has_s or has_d or mode_option is not None):
        raise usage.UsageError(
            "Must specify one of --source-listen-port/-s or --destination-app/-d or --mode"
        )
    mode = Mode.DESTINATION if has_d else Mode.SOURCE
    if mode_option is not None:
        mode = mode_option
    if has_s and mode is Mode.DESTINATION:
        raise usage.UsageError("-s and --mode have mismatched mode. Mode is set to destination!")
    if has_d and mode is Mode.SOURCE:
        raise usage.UsageError("-d and --mode have mismatched mode. Mode is set to source!")
    return mode


def _stdio(run: _Checklist, mode_option: Optional[Mode]) -> Tuple[bool, Optional[str]]:
    """``--stdio [SERVICE_ID]``: a source without -s/-d."""
    if not run.values.get("stdio", False):
        if run.has("stdio-service-id"):
            raise usage.UsageError(
                "too many positional options have been specified on the command line"
            )
        return False, None
    for name, short in (("source-listen-port", "-s"), ("destination-app", "-d")):
        if run.has(name):
            raise usage.UsageError(
                f"--stdio cannot be used with --{name}/{short} ({short} given {run.where(name)})"
            )
    if mode_option is Mode.DESTINATION:
        raise usage.UsageError(
            "--stdio and --mode have mismatched mode. Mode is set to destination!"
        )
    service_id = run.text("stdio-service-id")
    if service_id is not None:
        check_service_id(service_id, "stdio")
    return True, service_id


def _service_map(run: _Checklist) -> Dict[str, str]:
    """-d, then -s (step 16)."""
    service_map: Dict[str, str] = {}
    destination = run.text("destination-app")
    if destination is not None:
        service_map = parse_port_mapping(destination, "destination-app", source=False)
    source = run.text("source-listen-port")
    if source is not None:
        service_map = parse_port_mapping(source, "source-listen-port", source=True)
    return service_map


def _config_files(
    run: _Checklist, mode: Mode, service_map: Mapping[str, str], stdio: bool
) -> Tuple[Tuple[str, str], ...]:
    """The mapping files (step 17): listed even when -s/-d (or --stdio) gave the mapping, but then never used."""
    config_dir = run.text("config-dir")
    if config_dir is not None:
        check_path(config_dir, "--config-dir")
    try:
        config_files = read_config_dir(
            config_dir, cwd=run.cwd, read_contents=not (service_map or stdio)
        )
    except ConfigDirError as e:
        raise ConfigurationError(f"{e} (--config-dir)") from None
    if service_map or stdio:
        config_files = ()
    check_mapping_endpoints(config_files, source=mode is Mode.SOURCE)
    if mode is Mode.DESTINATION and not service_map and not config_files:
        # The reference finds out only after connecting, which uses up the token.
        raise ConfigurationError(
            f"{NO_PORT_MAPPING} (give -d, or mapping files with --config-dir or ./config)"
        )
    return config_files


# --- 18-20: local addresses and TLS -----------------------------------------------------------


def _verify_tls(run: _Checklist) -> bool:
    verify = not run.values.get("no-ssl-host-verify", False)
    if not verify:
        for line in K_WARNING:
            log.warn("{line}", line=line)
    return verify


def _metrics(run: _Checklist) -> Tuple[Optional[int], str]:
    port_text = run.text("metrics-port")
    port = None if port_text is None else parse_metrics_port(port_text)
    address_text = run.text("metrics-address")
    address = "127.0.0.1" if address_text is None else parse_metrics_address(address_text)
    if address_text is not None and port is None:
        raise usage.UsageError("the option '--metrics-address' needs '--metrics-port'")
    return port, address


def build_config(
    values: Mapping[str, object],
    environ: Mapping[str, str],
    *,
    sources: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    secrets: Optional[List[str]] = None,
) -> ProxyConfig:
    """
    The validated configuration for these option values.

    @param values: long option name -> value (text, or C{True} for a flag
        that is on); absent options are absent (not C{None}).  The
        positional SERVICE_ID of ``--stdio`` is C{"stdio-service-id"}.
    @param environ: for the web proxy variables (``https_proxy``, ``NO_PROXY``).
    @param sources: option name -> ``cli``/``config``/``env``, for messages
        and the warning about a token on the command line.
    @param cwd: where ``./config`` is looked for (default: the working directory).
    @param secrets: a list the secrets found are appended to as soon as they
        are known (for log redaction, even when a later check fails).
    @raise usage.UsageError: a wrong command line.
    @raise ConfigurationError: a value that breaks a rule.
    """
    run = _Checklist(values, environ, sources or {}, cwd, secrets if secrets is not None else [])
    _require_access_token(run)  # 1
    _one_of_region_and_endpoint(run)  # 2
    access_token = _access_token(run)  # 3, 4
    client_token = _client_token(run)  # 5
    client_token_file = _client_token_file(run, client_token)
    _check_service_address_text(run)  # 6, 7
    settings = _settings(run)  # 8
    endpoint = _service_endpoint(run, settings)
    web_proxy, no_proxy = _web_proxy(run)  # 9
    mode_option = parse_mode(run.text("mode"))  # 10
    version = peer_version(run.text("destination-client-type"))  # 11
    stdio, stdio_service_id = _stdio(run, mode_option)
    mode = Mode.SOURCE if stdio else _mode(run, mode_option)  # 12-15
    service_map = _service_map(run)  # 16
    config_files = _config_files(run, mode, service_map, stdio)  # 17
    local_bind_address = bind_address(run.text("local-bind-address"))  # 18
    capath = check_capath(run.text("capath"))  # 19
    verify_tls = _verify_tls(run)  # 20
    metrics_port, metrics_address = _metrics(run)
    verbose = run.text("verbose")
    return ProxyConfig(
        mode=mode,
        access_token=access_token,
        endpoint_host=endpoint.host,
        endpoint_port=endpoint.port,
        client_token=client_token,
        use_tls=endpoint.use_tls,
        service_map=service_map,
        config_files=config_files,
        bind_address=local_bind_address,
        capath=capath,
        verify_tls=verify_tls,
        peer_version=version,
        settings=settings,
        web_proxy=web_proxy,
        no_proxy=no_proxy,
        verbosity=4 if verbose is None else parse_verbosity(verbose),
        client_token_file=client_token_file,
        stdio=stdio,
        stdio_service_id=stdio_service_id,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
    )
