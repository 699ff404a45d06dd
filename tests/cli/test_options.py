"""
Tests for aws_localproxy.cli.options (the reference's command line).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.cli.options import ConfigurationError, LocalProxyOptions
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.protocol.constants import Mode, PeerVersion

TOKEN = "tok-" + "a" * 40
CLIENT_TOKEN = "c" * 40


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        # An empty working directory, so no ./config is picked up by accident.
        self.cwd = self.mktemp()
        os.makedirs(self.cwd)

    def parse(self, args: List[str], env: Optional[Dict[str, str]] = None) -> LocalProxyOptions:
        options = LocalProxyOptions(env or {}, exit_on_action=False, cwd=self.cwd)
        options.parseOptions(args)
        return options

    def config(self, args: List[str], env: Optional[Dict[str, str]] = None) -> ProxyConfig:
        config = self.parse(args, env).config
        assert config is not None
        return config

    def usage_error(self, args: List[str], env: Optional[Dict[str, str]] = None) -> str:
        e = self.assertRaises(usage.UsageError, self.parse, args, env)
        self.assertNotIsInstance(e, ConfigurationError)
        return str(e)

    def config_error(self, args: List[str], env: Optional[Dict[str, str]] = None) -> str:
        return str(self.assertRaises(ConfigurationError, self.parse, args, env))

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.mktemp(), name)
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write(text)
        return path


BASE = ["-t", TOKEN, "-r", "us-east-1"]


class ParseErrorTests(_Base):
    """Boost's parse errors, one test each."""

    def test_unknown_option(self) -> None:
        self.assertEqual(self.usage_error(["-Z"]), "unrecognised option '-Z'")
        self.assertEqual(self.usage_error(["--zzz"]), "unrecognised option '--zzz'")

    def test_missing_argument(self) -> None:
        self.assertEqual(
            self.usage_error(["-v"]), "the required argument for option '--verbose' is missing"
        )

    def test_invalid_verbose(self) -> None:
        self.assertEqual(
            self.usage_error([*BASE, "-s", "1", "-v", "abc"]),
            "the argument ('abc') for option '--verbose' is invalid",
        )
        self.assertIn("'--verbose'", self.usage_error([*BASE, "-s", "1", "-v", "-1"]))

    def test_repeated_option(self) -> None:
        self.assertEqual(
            self.usage_error(["-r", "a", "--region", "b"]),
            "option '--region' cannot be specified more than once",
        )

    def test_positional(self) -> None:
        self.assertIn("positional", self.usage_error([*BASE, "extra"]))

    def test_long_forms_and_prefixes(self) -> None:
        config = self.config([f"--access-token={TOKEN}", "--reg", "us-east-1", "-s5555"])
        self.assertEqual(config.access_token, TOKEN)
        self.assertEqual(config.service_map, {"": "5555"})


class ChecklistTests(_Base):
    """The checklist in order, one test per rule; every message names its option."""

    def test_01_missing_token(self) -> None:
        message = self.usage_error(["-r", "us-east-1", "-s", "5555"])
        self.assertTrue(message.startswith("the option '--access-token' is required but missing"))

    def test_02_region_and_endpoint(self) -> None:
        message = self.usage_error([*BASE, "-e", "example.com", "-s", "1"])
        self.assertTrue(
            message.startswith(
                "Must specify one and only one of --region/-r or --proxy-endpoint/-e options"
            )
        )

    def test_02_neither(self) -> None:
        self.assertIn("--region/-r", self.usage_error(["-t", TOKEN, "-s", "1"]))

    def test_02_region_plus_endpoint_env(self) -> None:
        message = self.usage_error([*BASE, "-s", "1"], {"AWSIOT_TUNNEL_ENDPOINT": "x.example"})
        self.assertIn("--proxy-endpoint", message)
        self.assertIn("AWSIOT_TUNNEL_ENDPOINT", message)

    def test_03_cli_token_warning(self) -> None:
        with capturedLogs() as events:
            self.config([*BASE, "-s", "1"])
        self.assertTrue(
            any("Found access token supplied via CLI arg" in e["log_format"] for e in events)
        )
        with capturedLogs() as events:
            self.config(["-r", "us-east-1", "-s", "1"], {"AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN})
        self.assertFalse(any("Found access token" in e["log_format"] for e in events))

    def test_04_access_token(self) -> None:
        env = {"AWSIOT_TUNNEL_ACCESS_TOKEN": ""}
        self.assertIn(
            "Access token cannot be empty (--access-token)",
            self.config_error(["-r", "us-east-1", "-s", "1"], env),
        )
        self.assertIn(
            "Access token exceeds maximum allowed length",
            self.config_error(["-t", "a" * 4097, "-r", "us-east-1", "-s", "1"]),
        )
        self.assertIn(
            "Access token contains invalid control characters",
            self.config_error(["-t", "ab\x01cd", "-r", "us-east-1", "-s", "1"]),
        )
        self.assertIn(
            "--access-token", self.config_error(["-t", "abcdé", "-r", "us-east-1", "-s", "1"])
        )

    def test_05_client_token(self) -> None:
        self.assertIn(
            "Client token must be between 32 and 128 characters (--client-token)",
            self.config_error([*BASE, "-s", "1", "-i", "short"]),
        )
        self.assertIn(
            "Client token contains invalid control characters",
            self.config_error([*BASE, "-s", "1", "-i", "c" * 32 + "\x7f"]),
        )
        self.assertIn("--client-token", self.config_error([*BASE, "-s", "1", "-i", "c" * 32 + "_"]))

    def test_05_empty_client_token_means_none(self) -> None:
        config = self.config([*BASE, "-s", "1"], {"AWSIOT_TUNNEL_CLIENT_TOKEN": ""})
        self.assertIsNone(config.client_token)

    def test_06_region(self) -> None:
        self.assertIn(
            "Region cannot be empty (--region)",
            self.config_error(["-t", TOKEN, "-r", "", "-s", "1"]),
        )
        self.assertIn(
            "Region exceeds maximum allowed length",
            self.config_error(["-t", TOKEN, "-r", "a" * 65, "-s", "1"]),
        )
        self.assertIn(
            "Region must contain only lowercase letters, numbers, and hyphens (--region)",
            self.config_error(["-t", TOKEN, "-r", "US-EAST-1", "-s", "1"]),
        )

    def test_07_endpoint(self) -> None:
        self.assertIn(
            "Proxy endpoint cannot be empty (--proxy-endpoint)",
            self.config_error(["-t", TOKEN, "-e", "", "-s", "1"]),
        )
        self.assertIn(
            "Proxy endpoint exceeds maximum allowed length",
            self.config_error(["-t", TOKEN, "-e", "a" * 254, "-s", "1"]),
        )
        self.assertIn(
            "Proxy endpoint contains invalid characters (--proxy-endpoint)",
            self.config_error(["-t", TOKEN, "-e", "https://example.com", "-s", "1"]),
        )

    def test_08_bad_endpoint_port(self) -> None:
        self.assertIn(
            "Invalid endpoint specified: example.com:99999 (--proxy-endpoint)",
            self.config_error(["-t", TOKEN, "-e", "Example.com:99999", "-s", "1"]),
        )
        self.assertIn(
            "Invalid endpoint specified",
            self.config_error(["-t", TOKEN, "-e", "example.com:", "-s", "1"]),
        )

    def test_08_bad_settings_json(self) -> None:
        path = self.write("s.json", "{nope")
        message = self.config_error([*BASE, "-s", "1", "--settings-json", path])
        self.assertIn("--settings-json", message)
        self.assertIn("Malformed JSON", message)

    def test_09_bad_web_proxy(self) -> None:
        message = self.config_error([*BASE, "-s", "1"], {"HTTPS_PROXY": "ftp://proxy:21"})
        self.assertIn("Failed to parse the value of environment variable HTTPS_PROXY", message)

    def test_10_mode(self) -> None:
        self.assertTrue(
            self.usage_error([*BASE, "-m", "both"]).startswith(
                "Mode value is wrong! Allowed values are: src, dst, source, destination"
            )
        )

    def test_11_destination_client_type(self) -> None:
        with capturedLogs() as events:
            self.assertEqual(
                self.config([*BASE, "-s", "1", "-y", "V1"]).peer_version, PeerVersion.V1
            )
            self.assertEqual(
                self.config([*BASE, "-s", "1", "-y", "V2"]).peer_version, PeerVersion.V2
            )
            self.assertEqual(
                self.config([*BASE, "-s", "1", "-y", "v1"]).peer_version, PeerVersion.V3
            )
        texts = [e["log_format"].format(**e) for e in events]
        self.assertIn("setting source protocol to V1", texts)
        self.assertIn("setting source protocol to V2", texts)
        self.assertIn(
            "unknown value for destination-client-type, assuming default protocol V3.", texts
        )

    def test_12_both_mappings(self) -> None:
        self.assertTrue(
            self.usage_error([*BASE, "-s", "1", "-d", "22"]).startswith(
                "Must specify one and only one of --source-listen-port/-s or --destination-app/-d"
            )
        )

    def test_12_s_on_cli_d_in_config(self) -> None:
        path = self.write("c.ini", "destination-app = SSH1=22\n")
        message = self.usage_error([*BASE, "-s", "1", "--config", path])
        self.assertIn("--source-listen-port/-s or --destination-app/-d", message)
        self.assertIn("--config file", message)

    def test_13_no_mapping_no_mode(self) -> None:
        self.assertEqual(
            self.usage_error(BASE),
            "Must specify one of --source-listen-port/-s or --destination-app/-d or --mode",
        )

    def test_14_s_with_destination_mode(self) -> None:
        self.assertEqual(
            self.usage_error([*BASE, "-s", "1", "-m", "dst"]),
            "-s and --mode have mismatched mode. Mode is set to destination!",
        )

    def test_15_d_with_source_mode(self) -> None:
        self.assertEqual(
            self.usage_error([*BASE, "-d", "22", "-m", "source"]),
            "-d and --mode have mismatched mode. Mode is set to source!",
        )

    def test_16_destination_mapping_error(self) -> None:
        with capturedLogs() as events:
            message = self.config_error([*BASE, "-d", "SSH1=99999"])
        self.assertEqual(message, "Port must be between 1 and 65535 (destination-app)")
        self.assertTrue(any(e["log_format"].startswith("SECURITY: Rejected input") for e in events))

    def test_16_source_mapping_error(self) -> None:
        self.assertIn("(source-listen-port)", self.config_error([*BASE, "-s", "SSH1=host:22"]))

    def test_17_config_dir(self) -> None:
        missing = self.mktemp()
        self.assertIn(
            f"Invalid configuration directory: {missing} (--config-dir)",
            self.config_error([*BASE, "-m", "src", "--config-dir", missing]),
        )

    def test_17_destination_without_any_mapping(self) -> None:
        self.assertIn("No port mapping exists", self.config_error([*BASE, "-m", "dst"]))

    def test_18_bind_address(self) -> None:
        self.assertIn(
            "Bind address exceeds maximum allowed length (--local-bind-address)",
            self.config_error([*BASE, "-s", "1", "-b", "a" * 254]),
        )
        self.assertIn(
            "Bind address contains invalid characters (--local-bind-address)",
            self.config_error([*BASE, "-s", "1", "-b", "a b"]),
        )
        self.assertIsNone(self.config([*BASE, "-s", "1", "-b", ""]).bind_address)
        self.assertEqual(self.config([*BASE, "-s", "1", "-b", "[::1]"]).bind_address, "::1")

    def test_19_capath(self) -> None:
        self.assertIn(
            "Path cannot be empty (--capath)", self.config_error([*BASE, "-s", "1", "-c", ""])
        )
        self.assertIn("--capath", self.config_error([*BASE, "-s", "1", "-c", self.mktemp()]))
        cadir = self.mktemp()
        os.makedirs(cadir)
        self.assertEqual(self.config([*BASE, "-s", "1", "-c", cadir]).capath, cadir)

    def test_20_k_warning(self) -> None:
        with capturedLogs() as events:
            config = self.config([*BASE, "-s", "1", "-k"])
        self.assertFalse(config.verify_tls)
        lines = [e["line"] for e in events if "line" in e]
        self.assertEqual(len(lines), 5)
        self.assertIn("SSL host verification is DISABLED (-k flag)", lines[1])

    def test_path_validator_null_byte(self) -> None:
        path = self.write("c.ini", "settings-json = a\0b\n")
        self.assertIn(
            "Path contains invalid null byte (--settings-json)",
            self.config_error([*BASE, "-s", "1", "--config", path]),
        )

    def test_checks_run_in_order(self) -> None:
        # A bad region (6) is reported before a bad mode (10) and a bad mapping (16).
        self.assertIn("Region", self.config_error(["-t", TOKEN, "-r", "X", "-m", "x", "-d", "0"]))


class ConfigResultTests(_Base):
    def test_source_v1_format(self) -> None:
        config = self.config([*BASE, "-s", "5555"])
        self.assertEqual(config.mode, Mode.SOURCE)
        self.assertEqual(config.service_map, {"": "5555"})
        self.assertEqual(
            (config.endpoint_host, config.endpoint_port),
            ("data.tunneling.iot.us-east-1.amazonaws.com", 443),
        )
        self.assertTrue(config.use_tls)
        self.assertEqual(config.verbosity, 4)

    def test_destination_multi(self) -> None:
        config = self.config([*BASE, "-d", "SSH1=127.0.0.1:22, HTTP1=80", "-v", "9"])
        self.assertEqual(config.mode, Mode.DESTINATION)
        self.assertEqual(dict(config.service_map), {"SSH1": "127.0.0.1:22", "HTTP1": "80"})
        self.assertEqual(config.verbosity, 6)

    def test_mode_alone(self) -> None:
        config = self.config([*BASE, "-m", "source"])
        self.assertEqual((config.mode, dict(config.service_map)), (Mode.SOURCE, {}))

    def test_destination_mode_with_config_dir(self) -> None:
        path = self.write("a.ini", "SSH1=22\n")
        config = self.config([*BASE, "-m", "destination", "--config-dir", os.path.dirname(path)])
        self.assertEqual(config.config_files, ((path, "SSH1=22\n"),))

    def test_config_dir_endpoints_checked(self) -> None:
        """Mapping files use the same endpoint grammar; a bad value is a warning at start-up."""
        path = self.write("a.ini", "SSH1=unix:/run/sshd.sock\nWEB=example.com\n")
        with capturedLogs() as events:
            config = self.config(
                [*BASE, "-m", "destination", "--config-dir", os.path.dirname(path)]
            )
        self.assertEqual(len(config.config_files), 1)
        warnings = [e["problem"] for e in events if e.get("log_format") == "{problem}"]
        self.assertEqual(
            warnings,
            [
                f"Invalid endpoint for service id WEB in {path}: Invalid destination endpoint: example.com"
            ],
        )
        with capturedLogs() as events:
            self.config([*BASE, "-m", "source", "--config-dir", os.path.dirname(path)])
        warnings = [e["problem"] for e in events if e.get("log_format") == "{problem}"]
        self.assertEqual(
            warnings,
            [
                f"Invalid endpoint for service id WEB in {path}: Invalid listen port in port mapping: example.com"
            ],
        )

    def test_config_dir_unused_with_a_mapping(self) -> None:
        path = self.write("a.ini", "SSH1=22\n")
        config = self.config([*BASE, "-d", "SSH1=80", "--config-dir", os.path.dirname(path)])
        self.assertEqual(config.config_files, ())

    def test_default_config_dir(self) -> None:
        os.makedirs(os.path.join(self.cwd, "config"))
        with open(os.path.join(self.cwd, "config", "m.ini"), "w") as f:
            f.write("SSH1=22\n")
        config = self.config([*BASE, "-m", "dst"])
        self.assertEqual(len(config.config_files), 1)

    def test_settings_json_applied(self) -> None:
        path = self.write("s.json", '{"tunneling": {"proxy": {"default_bind_address": "0.0.0.0"}}}')
        config = self.config([*BASE, "-s", "1", "--settings-json", path])
        self.assertEqual(config.settings.default_bind_address, "0.0.0.0")
        self.assertEqual(config.listen_address, "0.0.0.0")

    def test_web_proxy_from_environment(self) -> None:
        env = {"https_proxy": "http://user:secretpw@proxy.example:3128", "NO_PROXY": "internal"}
        options = self.parse([*BASE, "-s", "1"], env)
        assert options.config is not None
        self.assertEqual(options.config.web_proxy, env["https_proxy"])
        self.assertEqual(options.config.no_proxy, "internal")
        self.assertIn("secretpw", options.secrets)

    def test_ws_extension(self) -> None:
        config = self.config(["-t", TOKEN, "-e", "ws://127.0.0.1:9000", "-s", "1"])
        self.assertEqual(
            (config.endpoint_host, config.endpoint_port, config.use_tls), ("127.0.0.1", 9000, False)
        )

    def test_ipv6_endpoint(self) -> None:
        config = self.config(["-t", TOKEN, "-e", "[::1]:8443", "-s", "1"])
        self.assertEqual((config.endpoint_host, config.endpoint_port), ("::1", 8443))

    def test_repr_hides_tokens(self) -> None:
        options = self.parse([*BASE, "-s", "1", "-i", CLIENT_TOKEN])
        self.assertNotIn(TOKEN, repr(options))
        self.assertNotIn(CLIENT_TOKEN, repr(options))
        self.assertIn("us-east-1", repr(options))
        self.assertEqual(set(options.secrets), {TOKEN, CLIENT_TOKEN})


class PrecedenceTests(_Base):
    def test_env_only(self) -> None:
        env = {
            "AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN,
            "AWSIOT_TUNNEL_REGION": "eu-west-1",
            "AWSIOT_TUNNEL_CLIENT_TOKEN": CLIENT_TOKEN,
        }
        options = self.parse(["-s", "1"], env)
        assert options.config is not None
        self.assertEqual(options.config.access_token, TOKEN)
        self.assertEqual(options.config.client_token, CLIENT_TOKEN)
        self.assertEqual(options.config.endpoint_host, "data.tunneling.iot.eu-west-1.amazonaws.com")
        self.assertEqual(options.sources["region"], "env")

    def test_env_endpoint(self) -> None:
        config = self.config(
            ["-s", "1"],
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN, "AWSIOT_TUNNEL_ENDPOINT": "localhost:8443"},
        )
        self.assertEqual((config.endpoint_host, config.endpoint_port), ("localhost", 8443))

    def test_cli_over_config_over_env(self) -> None:
        path = self.write(
            "c.ini",
            f"access-token = from-config-{TOKEN}\nregion = us-west-2\n"
            "source-listen-port = 6000\nlocal-bind-address = ::1\n",
        )
        env = {
            "AWSIOT_TUNNEL_ACCESS_TOKEN": "from-env-" + TOKEN,
            "AWSIOT_TUNNEL_REGION": "eu-west-1",
        }
        options = self.parse(["--config", path, "-s", "7000"], env)
        config = options.config
        assert config is not None
        self.assertEqual(config.access_token, f"from-config-{TOKEN}")
        self.assertEqual(config.endpoint_host, "data.tunneling.iot.us-west-2.amazonaws.com")
        self.assertEqual(config.service_map, {"": "7000"})
        self.assertEqual(config.bind_address, "::1")
        self.assertEqual(options.sources["source-listen-port"], "cli")
        self.assertEqual(options.sources["region"], "config")

    def test_config_flags_and_verbose(self) -> None:
        path = self.write("c.ini", "no-ssl-host-verify = true\nverbose = 2\nmode = src\n")
        config = self.config([*BASE, "--config", path])
        self.assertFalse(config.verify_tls)
        self.assertEqual(config.verbosity, 2)
        self.assertEqual(self.config([*BASE, "--config", path, "-v", "5"]).verbosity, 5)

    def test_config_unknown_name(self) -> None:
        path = self.write("c.ini", "[main]\nregion = x\n")
        self.assertEqual(self.usage_error(["--config", path]), "unrecognised option 'main.region'")

    def test_config_unreadable(self) -> None:
        path = self.mktemp()
        self.assertEqual(
            self.usage_error(["--config", path]),
            f"can not read options configuration file '{path}'",
        )

    def test_config_repeated_name(self) -> None:
        path = self.write("c.ini", "region = a\nregion = b\n")
        self.assertIn(
            "'--region' cannot be specified more than once", self.usage_error(["--config", path])
        )


class ActionTests(_Base):
    def test_version_skips_validation(self) -> None:
        options = self.parse(["-V"])
        self.assertTrue(options.version_requested)
        self.assertIsNone(options.config)

    def test_help_skips_validation(self) -> None:
        options = self.parse(["--help", "-r", "BAD"])
        self.assertTrue(options.help_requested)
        self.assertIn("Show help message", str(options))

    def test_export_needs_no_token(self) -> None:
        options = self.parse(["--export-default-settings", "out.json"])
        self.assertEqual(options.export_default_settings_to, "out.json")
        self.assertIsNone(options.config)

    def test_export_path_validated(self) -> None:
        self.assertIn(
            "Path cannot be empty (--export-default-settings)",
            self.config_error(["--export-default-settings", ""]),
        )

    def test_twistd_style(self) -> None:
        """twistd instantiates the class without arguments; actions then exit like Twisted's own."""
        self.patch(
            os,
            "environ",
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN, "AWSIOT_TUNNEL_REGION": "us-east-1"},
        )
        options = LocalProxyOptions()
        options.parseOptions(["-s", "5555"])
        assert options.config is not None
        self.assertEqual(options.config.access_token, TOKEN)
        options = LocalProxyOptions()
        path = self.mktemp()
        e = self.assertRaises(SystemExit, options.parseOptions, ["--export-default-settings", path])
        self.assertEqual(e.code, 0)
        self.assertTrue(os.path.exists(path))


class ClientTokenFileTests(_Base):
    def test_given_on_the_command_line(self) -> None:
        path = os.path.join(self.mktemp(), "token")
        os.makedirs(os.path.dirname(path))
        config = self.config([*BASE, "-s", "1", "--client-token-file", path])
        self.assertEqual(config.client_token_file, path)
        self.assertIsNone(config.client_token)
        self.assertFalse(
            os.path.exists(path), "the file is created when the proxy runs, not when parsing"
        )

    def test_from_the_environment_and_config_file(self) -> None:
        path = os.path.join(self.cwd, "token")
        config = self.config([*BASE, "-s", "1"], {"AWSIOT_TUNNEL_CLIENT_TOKEN_FILE": path})
        self.assertEqual(config.client_token_file, path)
        options_file = self.write("c.ini", f"client-token-file = {path}\n")
        config = self.config([*BASE, "-s", "1", "--config", options_file])
        self.assertEqual(config.client_token_file, path)

    def test_a_client_token_wins(self) -> None:
        path = os.path.join(self.cwd, "token")
        with capturedLogs() as events:
            config = self.config(
                [*BASE, "-s", "1", "--client-token-file", path],
                {"AWSIOT_TUNNEL_CLIENT_TOKEN": CLIENT_TOKEN},
            )
        self.assertEqual(config.client_token, CLIENT_TOKEN)
        self.assertIsNone(config.client_token_file)
        self.assertTrue(
            any("the client token file {path} is not used" in e["log_format"] for e in events)
        )
        for event in events:
            self.assertNotIn(CLIENT_TOKEN, repr(event))

    def test_existing_file_is_checked_and_redacted(self) -> None:
        stored = "s" * 40
        path = self.write("token", stored + "\n")
        os.chmod(path, 0o600)
        options = self.parse([*BASE, "-s", "1", "--client-token-file", path])
        self.assertIn(stored, options.secrets)
        bad = self.write("bad", "not a token\n")
        self.assertEqual(
            self.config_error([*BASE, "-s", "1", "--client-token-file", bad]),
            f"The client token file {bad} does not hold a valid client token"
            " (32 to 128 letters, digits and hyphens) (--client-token-file)",
        )

    def test_missing_directory(self) -> None:
        path = os.path.join(self.cwd, "nowhere", "token")
        self.assertEqual(
            self.config_error([*BASE, "-s", "1", "--client-token-file", path]),
            f"Directory of the client token file does not exist: {os.path.dirname(path)} (--client-token-file)",
        )
        self.assertEqual(
            self.config_error([*BASE, "-s", "1", "--client-token-file", ""]),
            "Path cannot be empty (--client-token-file)",
        )


class StdioTests(_Base):
    def test_alone(self) -> None:
        config = self.config([*BASE, "--stdio"])
        self.assertEqual(
            (config.stdio, config.stdio_service_id, config.mode), (True, None, Mode.SOURCE)
        )
        self.assertEqual(dict(config.service_map), {})

    def test_with_a_service_id_anywhere(self) -> None:
        config = self.config(
            ["-r", "us-east-1", "--stdio", "SSH1"], {"AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN}
        )
        self.assertEqual((config.stdio, config.stdio_service_id), (True, "SSH1"))
        config = self.config(["--stdio", "SSH1", "-t", TOKEN, "-r", "us-east-1", "-m", "src"])
        self.assertEqual(config.stdio_service_id, "SSH1")

    def test_with_a_mapping(self) -> None:
        self.assertEqual(
            self.usage_error([*BASE, "--stdio", "-s", "SSH1=5555"]),
            "--stdio cannot be used with --source-listen-port/-s (-s given on the command line)",
        )
        self.assertEqual(
            self.usage_error([*BASE, "--stdio", "-d", "22"]),
            "--stdio cannot be used with --destination-app/-d (-d given on the command line)",
        )

    def test_with_destination_mode(self) -> None:
        self.assertEqual(
            self.usage_error([*BASE, "--stdio", "-m", "dst"]),
            "--stdio and --mode have mismatched mode. Mode is set to destination!",
        )

    def test_positional_without_stdio(self) -> None:
        message = "too many positional options have been specified on the command line"
        self.assertEqual(self.usage_error([*BASE, "-s", "1", "SSH1"]), message)
        self.assertEqual(self.usage_error([*BASE, "--stdio", "SSH1", "SSH2"]), message)

    def test_bad_service_id(self) -> None:
        self.assertIn("Service ID must contain only", self.config_error([*BASE, "--stdio", "a b"]))

    def test_in_config_file(self) -> None:
        path = self.write("c.ini", "stdio = true\n")
        options = self.parse([*BASE, "--config", path])
        assert options.config is not None
        self.assertTrue(options.config.stdio)
        self.assertTrue(options.stdio_requested)

    def test_mapping_files_not_used(self) -> None:
        os.makedirs(os.path.join(self.cwd, "config"))
        with open(os.path.join(self.cwd, "config", "m.ini"), "w") as f:
            f.write("SSH1=22\n")
        self.assertEqual(self.config([*BASE, "--stdio"]).config_files, ())


class MetricsTests(_Base):
    def test_defaults(self) -> None:
        config = self.config([*BASE, "-s", "1"])
        self.assertEqual((config.metrics_port, config.metrics_address), (None, "127.0.0.1"))

    def test_given(self) -> None:
        config = self.config(
            [*BASE, "-s", "1", "--metrics-port", "9100", "--metrics-address", "[::1]"]
        )
        self.assertEqual((config.metrics_port, config.metrics_address), (9100, "::1"))
        self.assertEqual(self.config([*BASE, "-s", "1", "--metrics-port", "0"]).metrics_port, 0)

    def test_bad_values(self) -> None:
        for bad in ("abc", "-1", "65536", "", "99999999999"):
            self.assertEqual(
                self.usage_error([*BASE, "-s", "1", "--metrics-port", bad]),
                f"the argument ('{bad}') for option '--metrics-port' is invalid",
            )
        for bad in ("bad_host", "", "a b"):
            self.assertEqual(
                self.usage_error(
                    [*BASE, "-s", "1", "--metrics-port", "1", "--metrics-address", bad]
                ),
                f"the argument ('{bad}') for option '--metrics-address' is invalid",
            )

    def test_address_needs_port(self) -> None:
        self.assertEqual(
            self.usage_error([*BASE, "-s", "1", "--metrics-address", "127.0.0.1"]),
            "the option '--metrics-address' needs '--metrics-port'",
        )

    def test_twistd_options(self) -> None:
        from aws_localproxy.cli import tap

        options = tap.Options({"AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN}, cwd=self.cwd)
        options.parseOptions(["-r", "us-east-1", "-s", "1", "--metrics-port", "9100"])
        assert options.config is not None
        self.assertEqual(options.config.metrics_port, 9100)

    def test_twistd_refuses_stdio(self) -> None:
        from aws_localproxy.cli import tap

        options = tap.Options({"AWSIOT_TUNNEL_ACCESS_TOKEN": TOKEN}, cwd=self.cwd)
        e = self.assertRaises(
            usage.UsageError, options.parseOptions, ["-r", "us-east-1", "--stdio"]
        )
        self.assertEqual(
            str(e), "--stdio cannot be used with twistd: run the localproxy command instead"
        )
