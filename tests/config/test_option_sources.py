"""Tests for aws_localproxy.config.option_sources: command line, then --config file, then environment, and where each value came from."""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.option_sources import merge_sources, where


class MergeSourcesTests(SynchronousTestCase):
    KNOWN = ("access-token", "region", "verbose", "no-ssl-host-verify", "config", "help")
    FLAGS = ("no-ssl-host-verify",)

    def file(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_order(self) -> None:
        path = self.file(
            "region = eu-west-1\naccess-token = from-file\nverbose = 6\nno-ssl-host-verify = yes\n"
        )
        merged = merge_sources(
            {"region": "us-east-1", "config": path, "no-ssl-host-verify": 0, "verbose": None},
            {"AWSIOT_TUNNEL_ACCESS_TOKEN": "from-env", "AWSIOT_TUNNEL_ENDPOINT": "h:1"},
            known=self.KNOWN,
            flags=self.FLAGS,
        )
        self.assertEqual(
            merged.values,
            {
                "region": "us-east-1",
                "config": path,
                "access-token": "from-file",
                "verbose": "6",
                "no-ssl-host-verify": True,
                "proxy-endpoint": "h:1",
            },
        )
        self.assertEqual(merged.sources["region"], "cli")
        self.assertEqual(merged.sources["access-token"], "config")
        self.assertEqual(merged.sources["proxy-endpoint"], "env")
        self.assertEqual(merged.verbosity, 6)
        self.assertEqual(where(merged.sources, "proxy-endpoint"), "by AWSIOT_TUNNEL_ENDPOINT")

    def test_file_errors(self) -> None:
        for text, message in (
            ("zzz = 1\n", "unrecognised option 'zzz'"),
            ("region = a\nregion = b\n", "option '--region' cannot be specified more than once"),
            (
                "no-ssl-host-verify = maybe\n",
                "the argument ('maybe') for option '--no-ssl-host-verify' is invalid",
            ),
            ("garbage\n", "the options configuration file contains an invalid line 'garbage'"),
        ):
            e = self.assertRaises(
                usage.UsageError,
                merge_sources,
                {"config": self.file(text)},
                {},
                known=self.KNOWN,
                flags=self.FLAGS,
            )
            self.assertEqual(str(e), message)

    def test_help_in_file_is_ignored(self) -> None:
        merged = merge_sources(
            {"config": self.file("help = 1\n")}, {}, known=self.KNOWN, flags=self.FLAGS
        )
        self.assertNotIn("help", merged.values)
