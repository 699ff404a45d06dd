"""
The committed protobuf module matches proto/Message.proto and the protocol.
"""

import os
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy._proto import Message_pb2
from aws_localproxy._proto.Message_pb2 import Message

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MessageSchemaTests(SynchronousTestCase):
    """The fields and types of the protocol guides, by number."""

    def test_package(self) -> None:
        """The full name is the one every peer uses."""
        self.assertEqual(Message.DESCRIPTOR.full_name, "com.amazonaws.iot.securedtunneling.Message")

    def test_fields(self) -> None:
        """Field numbers, names and types are the protocol's."""
        fields = {f.number: (f.name, f.type) for f in Message.DESCRIPTOR.fields}
        FD = Message.DESCRIPTOR.fields_by_name["type"]
        self.assertEqual(
            fields,
            {
                1: ("type", FD.TYPE_ENUM),
                2: ("streamId", FD.TYPE_INT32),
                3: ("ignorable", FD.TYPE_BOOL),
                4: ("payload", FD.TYPE_BYTES),
                5: ("serviceId", FD.TYPE_STRING),
                6: ("availableServiceIds", FD.TYPE_STRING),
                7: ("connectionId", FD.TYPE_UINT32),
            },
        )
        self.assertTrue(Message.DESCRIPTOR.fields_by_name["availableServiceIds"].is_repeated)

    def test_types(self) -> None:
        """Message types have the protocol's numbers."""
        self.assertEqual(
            {v.name: v.number for v in Message.DESCRIPTOR.enum_types_by_name["Type"].values},
            {
                "UNKNOWN": 0,
                "DATA": 1,
                "STREAM_START": 2,
                "STREAM_RESET": 3,
                "SESSION_RESET": 4,
                "SERVICE_IDS": 5,
                "CONNECTION_START": 6,
                "CONNECTION_RESET": 7,
            },
        )


class GeneratedCodeTests(SynchronousTestCase):
    """The committed gencode is what the pinned generator makes of the .proto."""

    def test_generated_matches_proto(self) -> None:
        """Regenerating from proto/Message.proto gives the committed files."""
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "grpc_tools.protoc",
                    "-I" + os.path.join(ROOT, "proto"),
                    "--python_out=" + out,
                    "--pyi_out=" + out,
                    os.path.join(ROOT, "proto", "Message.proto"),
                ],
                check=True,
            )
            for name in ("Message_pb2.py", "Message_pb2.pyi"):
                with (
                    open(os.path.join(out, name)) as fresh,
                    open(os.path.join(os.path.dirname(Message_pb2.__file__), name)) as committed,
                ):
                    self.assertEqual(
                        fresh.read(),
                        committed.read(),
                        "%s is stale: run scripts/regen-proto" % (name,),
                    )
