"""
Canary tests of aws_localproxy.adapters.autobahn_private: the private parts
of Autobahn the WebSocket's fast path and the masking use (the parser's
state and steps, the factory's batched timer, the NVX masker).  They drive
Autobahn's own client protocol, not ours, so that each fails with a message
naming the part when an Autobahn release moves it or changes what it means;
run them on a new release before raising setup.py's ceiling on Autobahn.

Autobahn's timers run on txaio's global loop: every test points
C{txaio.config.loop} at its own L{Clock}.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, List, Optional, Tuple

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters import autobahn_private
from aws_localproxy.adapters.autobahn_private import (
    HOOKS,
    PARSER_STATE,
    fast_path,
    keepalive_call_later,
    parse_frames,
    restart_keepalive,
)
from aws_localproxy.adapters.seams import code_uses
from aws_localproxy.upstream import masking
from tests.fakes.transport import TCPLikeTransport
from tests.support.seams import adapter_warnings
from tests.support.websocket import server_frame, upgrade_response


class Recorder(WebSocketClientProtocol):
    """Autobahn's client protocol, recording what its hooks see."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: List[bytes] = []
        self.message_ends: List[Tuple[List[bytes], bool]] = []
        self.control_frames: List[Tuple[int, bytes]] = []
        self.ping_timeouts = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append(payload)

    def onMessageEnd(self) -> None:
        self.message_ends.append((list(self.message_data), self.failedByMe))
        super().onMessageEnd()

    def processControlFrame(self) -> Any:
        self.control_frames.append(
            (self.current_frame.opcode, b"".join(self.control_frame_data))
        )
        return super().processControlFrame()

    def onAutoPingTimeout(self) -> None:
        self.ping_timeouts += 1
        super().onAutoPingTimeout()


class AutobahnTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        config = txaio.config  # type: ignore[attr-defined]
        previous = config.loop
        config.loop = self.clock
        self.addCleanup(setattr, config, "loop", previous)

    def open(self) -> Tuple[Recorder, TCPLikeTransport]:
        """Autobahn's client, its upgrade accepted: the session open, a keep-alive every 5 s."""
        factory = WebSocketClientFactory("ws://localhost:9000/", reactor=self.clock)
        factory.protocol = Recorder
        factory.setProtocolOptions(autoPingInterval=5, autoPingTimeout=10)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
        transport = TCPLikeTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(upgrade_response(protocol.websocket_key))
        self.assertEqual(protocol.state, protocol.STATE_OPEN)
        transport.clear()
        return protocol, transport


class ParserCanaryTests(AutobahnTestCase):
    def test_names_are_still_used(self) -> None:
        for name, method in PARSER_STATE.items():
            self.assertTrue(
                code_uses(autobahn_private.WebSocketProtocol, method, name),
                f"Autobahn's WebSocketProtocol.{method} no longer uses {name}, "
                "which the WebSocket's fast path reads",
            )
        for hook in HOOKS:
            self.assertTrue(
                callable(getattr(autobahn_private.WebSocketProtocol, hook, None)),
                f"Autobahn's WebSocketProtocol.{hook} is gone (the WebSocket overrides it)",
            )
        self.assertTrue(callable(parse_frames), "Autobahn's WebSocketProtocol._dataReceived is gone")
        self.assertTrue(
            callable(restart_keepalive),
            "Autobahn's WebSocketProtocol._cancelAutoPingTimeoutCall is gone",
        )
        self.assertTrue(autobahn_private.PARSER_SEAM, "autobahn_private.PARSER_SEAM is false")

    def test_between_messages(self) -> None:
        """Once open, and after each whole message: no frame begun, no message begun, nothing buffered."""
        protocol, _ = self.open()
        for _ in range(2):
            self.assertEqual(
                (protocol.current_frame, protocol.inside_message, protocol.data),
                (None, False, b""),
                "Autobahn's current_frame/inside_message/data no longer say "
                "'between messages' as the fast path reads them",
            )
            parse_frames(protocol, server_frame(0x2, b"whole"))
        self.assertEqual(protocol.messages, [b"whole", b"whole"])

    def test_within_a_frame(self) -> None:
        """Part of a header is buffered in C{data}; a header read begins C{current_frame}."""
        protocol, _ = self.open()
        message = server_frame(0x2, b"x" * 300)
        parse_frames(protocol, message[:1])
        self.assertEqual(
            protocol.data, message[:1], "Autobahn no longer buffers a partial header in data"
        )
        parse_frames(protocol, message[1:10])
        self.assertIsNotNone(
            protocol.current_frame,
            "Autobahn's current_frame is no longer set while a frame's payload arrives",
        )
        parse_frames(protocol, message[10:])
        self.assertEqual(protocol.messages, [b"x" * 300])
        self.assertIsNone(protocol.current_frame)

    def test_within_a_fragmented_message(self) -> None:
        """Between the fragments of a message: C{inside_message}, no frame begun."""
        protocol, _ = self.open()
        parse_frames(protocol, server_frame(0x2, b"abc", final=False))
        self.assertEqual(
            (protocol.current_frame, protocol.inside_message),
            (None, True),
            "Autobahn's inside_message no longer says a fragmented message is under way",
        )
        parse_frames(protocol, server_frame(0x0, b"def"))
        self.assertEqual(protocol.messages, [b"abcdef"])
        self.assertFalse(protocol.inside_message)

    def test_message_end(self) -> None:
        """C{onMessageEnd} finds the message's pieces in C{message_data}, and C{failedByMe} false."""
        protocol, _ = self.open()
        parse_frames(protocol, server_frame(0x2, b"abc", final=False) + server_frame(0x0, b"def"))
        ((pieces, failed),) = protocol.message_ends
        self.assertEqual(
            b"".join(pieces), b"abcdef", "Autobahn's message_data no longer holds the message"
        )
        self.assertFalse(failed)

    def test_failed_by_me(self) -> None:
        """A frame with a reserved bit fails the connection: C{failedByMe}, the TCP connection dropped."""
        protocol, transport = self.open()
        parse_frames(protocol, server_frame(0x2, b"bad", first_bits=0x40))
        self.assertTrue(protocol.failedByMe, "Autobahn's failedByMe no longer says it failed")
        self.assertEqual(protocol.messages, [])
        self.assertTrue(transport.disconnecting)

    def test_control_frame(self) -> None:
        """C{processControlFrame} finds a pong's opcode and payload where the WebSocket reads them."""
        protocol, _ = self.open()
        parse_frames(protocol, server_frame(0xA, b"pacer"))
        self.assertEqual(
            protocol.control_frames,
            [(0xA, b"pacer")],
            "Autobahn's current_frame.opcode/control_frame_data no longer describe a pong",
        )

    def test_restart_keepalive(self) -> None:
        """C{_cancelAutoPingTimeoutCall}: the pong timeout off, the pending ping forgotten, the next one due."""
        protocol, transport = self.open()
        self.clock.advance(5.5)
        self.assertIsNotNone(protocol.autoPingTimeoutCall, "no pong timeout after the keep-alive ping")
        self.assertIsNotNone(protocol.autoPingPending)
        restart_keepalive(protocol)
        self.assertEqual(
            (protocol.autoPingTimeoutCall, protocol.autoPingPending),
            (None, None),
            "Autobahn's _cancelAutoPingTimeoutCall no longer cancels the pong timeout",
        )
        self.clock.advance(20)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(protocol.ping_timeouts, 0)

    def test_ping_timeout_hook(self) -> None:
        """An unanswered keep-alive ping ends in C{onAutoPingTimeout}, which drops the connection."""
        protocol, transport = self.open()
        self.clock.advance(5.5)
        self.clock.advance(10.5)
        self.assertEqual(
            protocol.ping_timeouts, 1, "Autobahn no longer calls onAutoPingTimeout"
        )
        self.assertTrue(transport.disconnecting)

    def test_keepalive_timer(self) -> None:
        """C{factory._batched_timer.call_later} runs on txaio's loop, as Autobahn's own timeouts do."""
        protocol, _ = self.open()
        call_later = keepalive_call_later(protocol.factory)
        self.assertEqual(
            call_later,
            protocol.factory._batched_timer.call_later,
            "Autobahn's factory._batched_timer is gone",
        )
        fired: List[int] = []
        call = call_later(3, lambda: fired.append(1))
        self.clock.advance(4)
        self.assertEqual(fired, [1])
        self.assertTrue(callable(call.cancel))

    def test_fallbacks_warn_once(self) -> None:
        warnings = adapter_warnings(self)
        self.assertTrue(fast_path())
        self.patch(autobahn_private, "PARSER_SEAM", False)
        self.assertFalse(fast_path())
        self.assertFalse(fast_path())
        fired: List[int] = []
        call_later = keepalive_call_later(object())
        call_later(1, lambda: fired.append(1))
        keepalive_call_later(object())
        self.clock.advance(2)
        self.assertEqual(fired, [1])
        self.assertEqual(len(warnings), 2)
        self.assertIn("_dataReceived", warnings[0])
        self.assertIn("_batched_timer", warnings[1])


def reference_mask(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 section 5.3, byte by byte."""
    return bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


class MaskerCanaryTests(SynchronousTestCase):
    """The maskers: Autobahn's NVX module where it is installed, its pure-Python one everywhere."""

    def nvx_module(self) -> Optional[Any]:
        try:
            return importlib.import_module("_nvx_xormasker")
        except ImportError:
            return None

    def test_nvx_is_checked_and_used_when_installed(self) -> None:
        """Installed NVX passes the adapter's check and is the masker in use; else the Python one is."""
        if self.nvx_module() is None:
            self.assertIsNone(autobahn_private.NVX_MASKER)
            self.assertIn("without", autobahn_private.NVX_MISSING_REASON)
            self.assertEqual(masking.masker_in_use(), "python")
        else:
            self.assertIsNotNone(
                autobahn_private.NVX_MASKER,
                f"Autobahn's NVX masker is installed but refused: {autobahn_private.NVX_MISSING_REASON}",
            )
            self.assertEqual(masking.masker_in_use(), "nvx")

    def test_nvx_new_masker_uses_the_best_implementation(self) -> None:
        """C{nvx_xormask_new} already picks NVX's best implementation (so masking does not set it)."""
        module = self.nvx_module()
        if module is None:
            return  # nothing of NVX's to check: test_nvx_is_checked... covers this install
        lib, ffi = module.lib, module.ffi
        for name in ("nvx_xormask_new", "nvx_xormask_process", "nvx_xormask_free"):
            self.assertTrue(hasattr(lib, name), f"Autobahn's _nvx_xormasker has no {name}")
        masker = lib.nvx_xormask_new(ffi.from_buffer("uint8_t[]", b"\x01\x02\x03\x04"))
        try:
            chosen = lib.nvx_xormask_get_impl(masker)
            self.assertEqual(
                chosen,
                lib.nvx_xormask_set_impl(masker, 0),
                "Autobahn's nvx_xormask_new no longer starts on NVX's best implementation",
            )
        finally:
            lib.nvx_xormask_free(masker)

    def test_nvx_masks_as_the_rfc_says(self) -> None:
        nvx = autobahn_private.NVX_MASKER
        if nvx is None:
            return  # no NVX here: the Python masker is tested below
        for size in (0, 1, 15, 16, 17, 127, 128, 1000, 70000):
            payload, mask = bytearray(os.urandom(size)), os.urandom(4)
            expected = reference_mask(bytes(payload), mask)
            handle = nvx.new(nvx.from_buffer("uint8_t[]", mask))
            try:
                nvx.process(handle, nvx.from_buffer("uint8_t[]", payload), size)
            finally:
                nvx.free(handle)
            self.assertEqual(bytes(payload), expected, size)

    def test_python_masker(self) -> None:
        """Autobahn's C{create_xor_masker(mask, length).process(data)}, the fallback."""
        for size in (0, 1, 127, 128, 1000):
            payload, mask = os.urandom(size), os.urandom(4)
            self.assertEqual(
                autobahn_private.python_masker(mask, size).process(payload),
                reference_mask(payload, mask),
                "Autobahn's xormasker.create_xor_masker no longer masks as RFC 6455 says",
            )

    def test_a_broken_nvx_is_refused(self) -> None:
        """An NVX module that masks wrongly (a broken build) is not used."""
        module = self.nvx_module()
        if module is None:
            return

        class Broken:
            ffi = module.ffi

            class lib:
                nvx_xormask_new = module.lib.nvx_xormask_new
                nvx_xormask_free = module.lib.nvx_xormask_free

                @staticmethod
                def nvx_xormask_process(masker: Any, data: Any, length: int) -> None:
                    pass  # masks nothing

        self.patch(importlib, "import_module", lambda name: Broken)
        masker, reason = autobahn_private._load_nvx()
        self.assertIsNone(masker)
        self.assertIn("wrongly", reason)
