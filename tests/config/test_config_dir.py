"""Tests for aws_localproxy.config.config_dir: the --config file and the --config-dir mapping files."""

from __future__ import annotations

import os

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.config_dir import (
    ConfigDirError,
    ConfigFileError,
    IniError,
    check_mapping_endpoints,
    default_config_dir,
    list_config_files,
    make_lookup,
    parse_ini,
    parse_options_file,
    parse_options_text,
    read_config_dir,
)


def _write(path: str, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


class OptionsFileTests(SynchronousTestCase):
    def test_pairs_in_order(self) -> None:
        text = "# comment\nregion = us-east-1\n\naccess-token=foobar  # trailing\ndestination-app = SSH1=22,HTTP1=80\n"
        self.assertEqual(
            parse_options_text(text),
            [
                ("region", "us-east-1"),
                ("access-token", "foobar"),
                ("destination-app", "SSH1=22,HTTP1=80"),
            ],
        )

    def test_section_prefixes_names(self) -> None:
        self.assertEqual(parse_options_text("[main]\nregion = x\n"), [("main.region", "x")])

    def test_invalid_line(self) -> None:
        e = self.assertRaises(ConfigFileError, parse_options_text, "region\n")
        self.assertIn("invalid line 'region'", str(e))

    def test_unreadable(self) -> None:
        path = self.mktemp()
        e = self.assertRaises(ConfigFileError, parse_options_file, path)
        self.assertEqual(str(e), f"can not read options configuration file '{path}'")

    def test_file(self) -> None:
        path = _write(os.path.join(self.mktemp(), "c.ini"), "region = us-west-2\n")
        self.assertEqual(parse_options_file(path), [("region", "us-west-2")])


class ConfigDirTests(SynchronousTestCase):
    def test_given_dir_missing(self) -> None:
        path = self.mktemp()
        e = self.assertRaises(ConfigDirError, read_config_dir, path)
        self.assertEqual(str(e), f"Invalid configuration directory: {path}")

    def test_given_dir_empty(self) -> None:
        path = self.mktemp()
        os.makedirs(path)
        self.assertRaises(ConfigDirError, read_config_dir, path)

    def test_given_path_is_a_file(self) -> None:
        path = _write(os.path.join(self.mktemp(), "f"), "x=1")
        self.assertRaises(ConfigDirError, read_config_dir, path)

    def test_recursive_sorted_with_logs(self) -> None:
        base = self.mktemp()
        b = _write(os.path.join(base, "b.ini"), "SSH2=5555\n")
        a = _write(os.path.join(base, "a.ini"), "SSH1=3333\n")
        c = _write(os.path.join(base, "sub", "c.ini"), "SSH3=7777\n")
        with capturedLogs() as events:
            files = read_config_dir(base)
        self.assertEqual(files, ((a, "SSH1=3333\n"), (b, "SSH2=5555\n"), (c, "SSH3=7777\n")))
        self.assertEqual(list_config_files(base), [a, b, c])
        messages = [e["log_format"] for e in events]
        self.assertEqual(messages.count("Detect configuration files: "), 3)

    def test_contents_not_read_with_a_mapping(self) -> None:
        base = self.mktemp()
        a = _write(os.path.join(base, "a.ini"), "SSH1=3333\n")
        self.assertEqual(read_config_dir(base, read_contents=False), ((a, ""),))

    def test_default_is_cwd_config(self) -> None:
        cwd = self.mktemp()
        a = _write(os.path.join(cwd, "config", "a.ini"), "SSH1=22\n")
        self.assertEqual(default_config_dir(cwd), os.path.join(cwd, "config"))
        self.assertEqual(read_config_dir(None, cwd=cwd), ((a, "SSH1=22\n"),))

    def test_default_ignored_when_missing_or_empty(self) -> None:
        cwd = self.mktemp()
        os.makedirs(cwd)
        self.assertEqual(read_config_dir(None, cwd=cwd), ())
        os.makedirs(os.path.join(cwd, "config"))
        self.assertEqual(read_config_dir(None, cwd=cwd), ())


class IniTests(SynchronousTestCase):
    def test_pairs_comments_sections(self) -> None:
        text = "; comment\n# comment\n  SSH1 = 22  \nSSH2=10.0.0.1:80\n[section]\nSSH3=33\n"
        self.assertEqual(parse_ini(text), {"SSH1": "22", "SSH2": "10.0.0.1:80"})

    def test_errors(self) -> None:
        self.assertIn(
            "duplicate key name", str(self.assertRaises(IniError, parse_ini, "A=1\nA=2\n"))
        )
        self.assertIn("'=' character not found", str(self.assertRaises(IniError, parse_ini, "A\n")))
        self.assertIn("key expected", str(self.assertRaises(IniError, parse_ini, "=1\n")))
        self.assertIn("unmatched", str(self.assertRaises(IniError, parse_ini, "[x\n")))


class LookupTests(SynchronousTestCase):
    def test_first_file_wins(self) -> None:
        lookup = make_lookup([("a", "SSH1=22\n"), ("b", "SSH1=2222\nSSH2=80\n")])
        self.assertEqual(lookup(["SSH1", "SSH2"]), {"SSH1": "22", "SSH2": "80"})

    def test_missing_ids_absent(self) -> None:
        lookup = make_lookup([("a", "SSH1=22\n")])
        self.assertEqual(lookup(["SSH1", "VNC"]), {"SSH1": "22"})
        self.assertEqual(lookup([]), {})

    def test_bad_file_skipped_with_warnings(self) -> None:
        with capturedLogs() as events:
            lookup = make_lookup([("bad.ini", "A=1\nA=2\n"), ("good.ini", "A=3\n")])
        self.assertEqual(lookup(["A"]), {"A": "3"})
        formats = [e["log_format"] for e in events]
        self.assertIn(
            "Fail to parse {path} .Please make sure your file is in .ini format.", formats
        )
        self.assertIn("Error message from parsing: {error} .Continue to the next file.", formats)

    def test_section_keys_not_found(self) -> None:
        lookup = make_lookup([("a", "[s]\nSSH1=22\n")])
        self.assertEqual(lookup(["SSH1"]), {})


class CheckMappingEndpointsTests(SynchronousTestCase):
    def test_source_and_destination_grammar(self) -> None:
        files = (
            ("a.ini", "A=5555\nB=tcp:6000\nC=host:x\n"),
            ("b.txt", "not ini"),
            ("c.ini", "D=unix:/x\n"),
        )
        self.assertEqual(
            check_mapping_endpoints(files, source=True),
            [
                "Invalid endpoint for service id C in a.ini: Invalid listen port in port mapping: host:x"
            ],
        )
        self.assertEqual(
            check_mapping_endpoints(files, source=False),
            [
                "Invalid endpoint for service id B in a.ini: Invalid destination endpoint description"
                " 'tcp:6000': TCP4ClientEndpoint.__init__() missing 1 required positional argument: 'port'",
                "Invalid endpoint for service id C in a.ini: Invalid port in destination endpoint: host:x",
            ],
        )
        self.assertEqual(check_mapping_endpoints((("a.ini", "A=/run/x.sock\n"),), source=False), [])
