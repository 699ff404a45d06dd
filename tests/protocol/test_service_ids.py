"""
Tests for aws_localproxy.protocol.service_ids: the received SERVICE_IDS against the
configured mapping, the V1 renaming and the config-file lookup, without a
tunnel (the tunnel applying the result is tests.protocol.test_tunnel's).
"""

from __future__ import annotations

from typing import List, Mapping, Sequence

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.service_ids import (
    NO_PORT_MAPPING,
    NOT_ENOUGH_SERVICE_IDS,
    WRONG_CONFIGURATION,
    ServiceMapping,
    build_mapping,
    deduplicate,
)


class DeduplicateTests(SynchronousTestCase):
    def test_first_kept_repeats_warned(self) -> None:
        with capturedLogs() as events:
            self.assertEqual(deduplicate(["b", "a", "b", "a", "c"]), ["b", "a", "c"])
        warned = [e["service_id"] for e in events if "Duplicate service Id" in e["log_format"]]
        self.assertEqual(warned, ["b", "a"])


class BuildMappingTests(SynchronousTestCase):
    def assertFatal(self, message: str, *args: object) -> None:
        e = self.assertRaises(FatalTunnelError, build_mapping, *args)
        self.assertEqual(str(e), message)

    def test_configured_must_match_exactly(self) -> None:
        configured = {"SSH": "5555", "WEB": "6666"}
        self.assertEqual(
            build_mapping(Mode.SOURCE, configured, ["WEB", "SSH"]),
            ServiceMapping(("WEB", "SSH"), {"WEB": "6666", "SSH": "5555"}),
        )
        self.assertFatal(WRONG_CONFIGURATION, Mode.SOURCE, configured, ["SSH"])
        self.assertFatal(WRONG_CONFIGURATION, Mode.DESTINATION, configured, ["SSH", "RDP"])
        self.assertFatal(WRONG_CONFIGURATION, Mode.SOURCE, {"SSH": "1"}, ["SSH", "WEB"])

    def test_v1_renamed_to_the_single_id(self) -> None:
        self.assertEqual(
            build_mapping(Mode.DESTINATION, {"": "localhost:22"}, ["SSH"]),
            ServiceMapping(("SSH",), {"SSH": "localhost:22"}),
        )

    def test_v1_without_a_single_id_keeps_the_empty_one(self) -> None:
        for received in ([], ["A", "B"]):
            self.assertEqual(
                build_mapping(Mode.SOURCE, {"": "5555"}, received),
                ServiceMapping(("",), {"": "5555"}),
            )

    def test_no_service_ids_is_the_unnamed_service(self) -> None:
        """
        Issue 18: an empty list (a tunnel without services) maps like a V1
        session's single service without an ID, for every kind of mapping.
        """
        self.assertEqual(build_mapping(Mode.SOURCE, {}, []), ServiceMapping(("",), {"": "0"}))
        self.assertEqual(
            build_mapping(Mode.SOURCE, {}, [], lambda ids: {}), ServiceMapping(("",), {"": "0"})
        )
        self.assertEqual(
            build_mapping(Mode.DESTINATION, {"": "22"}, []), ServiceMapping(("",), {"": "22"})
        )
        self.assertFatal(WRONG_CONFIGURATION, Mode.SOURCE, {"SSH": "1"}, [])
        self.assertFatal(NO_PORT_MAPPING, Mode.DESTINATION, {}, [])
        self.assertFatal(NOT_ENOUGH_SERVICE_IDS, Mode.DESTINATION, {}, [], lambda ids: {"A": "1"})

    def test_nothing_configured(self) -> None:
        self.assertEqual(
            build_mapping(Mode.SOURCE, {}, ["A", "B"]),
            ServiceMapping(("A", "B"), {"A": "0", "B": "0"}),
        )
        self.assertFatal(NO_PORT_MAPPING, Mode.DESTINATION, {}, ["A"])

    def test_config_file_lookup(self) -> None:
        asked: List[Sequence[str]] = []

        def lookup(ids: Sequence[str]) -> Mapping[str, str]:
            asked.append(list(ids))
            return {"A": "localhost:22"}

        self.assertEqual(
            build_mapping(Mode.SOURCE, {}, ["A", "B"], lookup),
            ServiceMapping(("A", "B"), {"A": "localhost:22", "B": "0"}),
        )
        self.assertEqual(asked, [["A", "B"]])
        self.assertEqual(
            build_mapping(Mode.DESTINATION, {}, ["A"], lookup),
            ServiceMapping(("A",), {"A": "localhost:22"}),
        )
        self.assertFatal(NOT_ENOUGH_SERVICE_IDS, Mode.DESTINATION, {}, ["A", "B"], lookup)

    def test_configured_mapping_wins_over_files(self) -> None:
        def lookup(ids: Sequence[str]) -> Mapping[str, str]:
            raise AssertionError("the files are not read when -s/-d map the IDs")

        self.assertEqual(
            build_mapping(Mode.DESTINATION, {"A": "1"}, ["A"], lookup),
            ServiceMapping(("A",), {"A": "1"}),
        )
