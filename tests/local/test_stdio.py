"""
L{aws_localproxy.local.stdio}: the service ID chosen, and standard input and
output (here: pipes, with Twisted's real C{StandardIO}) as a local connection.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.stdio import StandardIO
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aws_localproxy.local.stdio import StdioConnection, StdioEnd, StdioSide, choose_service_id
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import LocalConnection
from tests.fakes.local import RecordingTunnelConnection
from tests.support.helpers import sleep
from tests.support.payloads import assert_same_bytes, unique_payload


class ChooseTests(SynchronousTestCase):
    def test_named(self) -> None:
        self.assertEqual(choose_service_id("B", ["A", "B"]), "B")

    def test_only_one(self) -> None:
        self.assertEqual(choose_service_id(None, ["A"]), "A")
        self.assertEqual(choose_service_id(None, [""]), "")

    def test_no_service_ids(self) -> None:
        """
        Issue 18: a tunnel without services has one unnamed service (the
        tunnel reports C{""}; an empty list means the same): it is chosen.
        """
        self.assertEqual(choose_service_id(None, [""]), "")
        self.assertEqual(choose_service_id(None, []), "")
        for available in ([""], []):
            error = self.assertRaises(FatalTunnelError, choose_service_id, "SSH1", available)
            self.assertEqual(
                str(error),
                "Service id SSH1 given to --stdio is not one of the tunnel's: "
                "the tunnel has no service ids (leave SERVICE_ID out)",
            )

    def test_errors(self) -> None:
        error = self.assertRaises(FatalTunnelError, choose_service_id, "C", ["A", "B"])
        self.assertEqual(
            str(error), "Service id C given to --stdio is not one of the tunnel's: A, B"
        )
        error = self.assertRaises(FatalTunnelError, choose_service_id, None, ["A", "B"])
        self.assertIn("name one with --stdio SERVICE_ID", str(error))


class SideTests(SynchronousTestCase):
    def side(self, built: List[Any], accepted: Optional[List[str]] = None) -> StdioSide:
        """
        A side without a chosen service ID; the protocols it opens go to
        C{built}, the service IDs its tunnel is asked to accept to C{accepted}.
        """

        def accept(service_id: str, local: LocalConnection) -> None:
            if accepted is not None:
                accepted.append(service_id)

        return StdioSide(
            None,
            InboundFlow(),
            service_id=None,
            accept=accept,
            session_ready=lambda: True,
            on_end=lambda end: None,
            standard_io=lambda protocol, reactor: built.append(protocol),
        )

    def test_opened_once_for_the_chosen_service(self) -> None:
        built: List[Any] = []
        accepted: List[str] = []
        side = self.side(built, accepted)
        side.services_ready({"SSH1": "0"})
        side.services_ready({"SSH1": "0"})  # a later session
        self.assertEqual(len(built), 1)
        self.assertEqual(side.service_id, "SSH1")

    def test_tunnel_without_service_ids(self) -> None:
        """The unnamed service of a tunnel without services gets the connection."""
        built: List[Any] = []
        side = self.side(built)
        side.services_ready({"": "0"})
        self.assertEqual(len(built), 1)
        self.assertEqual(side.service_id, "")


class PipeTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_eof_on_stdin_flushes_stdout(self) -> Any:
        """
        What was written to stdout is all delivered after stdin's EOF (Twisted
        would drop it without half-close), and the tunnel hears of the end once.
        """
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        os.set_blocking(stdout_read, False)
        ends: List[StdioEnd] = []
        connection = RecordingTunnelConnection("SSH1")
        protocol = StdioConnection(
            InboundFlow(), on_made=lambda p: None, on_end=ends.append, session_ready=lambda: True
        )
        protocol.tunnel_connection = connection
        StandardIO(protocol, stdin=stdin_read, stdout=stdout_write, reactor=reactor)
        os.write(stdin_write, b"from stdin")
        data = unique_payload(1 << 20)
        protocol.write(data)  # far more than a pipe holds
        os.close(stdin_write)
        received = bytearray()
        for _ in range(2000):
            try:
                chunk = os.read(stdout_read, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk:
                received += chunk
            elif chunk == b"" or (ends and len(received) >= len(data)):
                break
            yield sleep(0.002)
        os.close(stdout_read)
        assert_same_bytes(self, bytes(received), data)
        self.assertEqual(b"".join(connection.data), b"from stdin")
        self.assertEqual(connection.lost, 1)
        self.assertEqual(len(ends), 1)
        self.assertFalse(ends[0].session_lost)
