"""
The pure rules of the data plane, without sockets: the handshake
(L{handshake}) and what a client may send (L{rules}).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Set, Tuple

from twisted.trial import unittest

from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V2, SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.wire import Message
from aws_localproxy.tunnelservice.handshake import (
    HandshakeRejected,
    cookie_values,
    grant_slot,
    header_values,
    read_upgrade,
    select_subprotocol,
)
from aws_localproxy.tunnelservice.model import CLOSED, ManagedTunnel, Slot
from aws_localproxy.tunnelservice.rules import violation

CLIENT_TOKEN = "0123456789abcdef-0123456789abcdef"


def make_tunnel() -> ManagedTunnel:
    return ManagedTunnel(
        tunnel_id="t",
        tunnel_arn="arn:t",
        created_at=0,
        last_updated_at=0,
        max_lifetime_minutes=1,
        slots={mode: Slot(mode=mode, access_token="token-" + mode.value) for mode in Mode},
    )


class UpgradeTests(unittest.TestCase):
    def read(
        self,
        path: str = "/tunnel",
        params: Any = None,
        protocols: Any = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> Any:
        return read_upgrade(
            path,
            {"local-proxy-mode": ["source"]} if params is None else params,
            [SUBPROTOCOL_V3] if protocols is None else protocols,
            headers or {},
        )

    def assertStatus(self, status: int, **kwargs: Any) -> None:
        error = self.assertRaises(HandshakeRejected, self.read, **kwargs)
        self.assertEqual(error.status, status)

    def test_well_formed(self) -> None:
        upgrade = self.read(
            headers={"access-token": "a", "client-token": "c", "cookie": "awsiot-tunnel-token=b"}
        )
        self.assertEqual(
            (upgrade.mode_value, upgrade.subprotocol, upgrade.access_tokens, upgrade.client_tokens),
            ("source", SUBPROTOCOL_V3, ["a", "b"], ["c"]),
        )

    def test_refused(self) -> None:
        self.assertStatus(400, path="/other")
        self.assertStatus(400, params={})
        self.assertStatus(400, params={"local-proxy-mode": ["source", "source"]})
        self.assertStatus(400, protocols=["chat"])

    def test_refusal_reasons(self) -> None:
        """The reason phrase of each 400 says what was wrong with the request."""
        for kwargs, reason in [
            ({"path": "/other"}, "Invalid path"),
            ({"params": {}}, "Missing or repeated local-proxy-mode"),
            (
                {"params": {"local-proxy-mode": ["source", "source"]}},
                "Missing or repeated local-proxy-mode",
            ),
            ({"protocols": ["chat"]}, "No supported Sec-WebSocket-Protocol"),
        ]:
            error = self.assertRaises(HandshakeRejected, self.read, **kwargs)
            self.assertEqual((error.status, error.reason), (400, reason))

    def test_cookie_value_kept_whole(self) -> None:
        """A cookie value is everything after the first '=', without its quotes."""
        self.assertEqual(cookie_values({"cookie": "n=a=b; m=c"}, "n"), ["a=b"])
        self.assertEqual(cookie_values({"cookie": 'n="XtokenX"'}, "n"), ["XtokenX"])
        self.assertEqual(cookie_values({"cookie": "n"}, "n"), [])
        self.assertEqual(cookie_values({}, "n"), [])

    def test_subprotocol_preference(self) -> None:
        self.assertEqual(select_subprotocol([SUBPROTOCOL_V1, SUBPROTOCOL_V3]), SUBPROTOCOL_V3)
        self.assertEqual(select_subprotocol(["x", SUBPROTOCOL_V2, SUBPROTOCOL_V1]), SUBPROTOCOL_V2)
        self.assertIsNone(select_subprotocol(["x"]))

    def test_header_and_cookie_values(self) -> None:
        self.assertEqual(header_values({"a": "x, y"}, "a"), ["x", "y"])
        self.assertEqual(header_values({}, "a"), [])
        self.assertEqual(cookie_values({"cookie": 'k=1; n="2", n=3'}, "n"), ["2", "3"])


class GrantTests(unittest.TestCase):
    def setUp(self) -> None:
        self.tunnel = make_tunnel()
        self.in_use: Set[str] = set()

    def find(self, token: str) -> Optional[Tuple[ManagedTunnel, Mode]]:
        for mode, slot in self.tunnel.slots.items():
            if slot.access_token == token:
                return self.tunnel, mode
        return None

    def grant(
        self, mode: str = "source", tokens: Any = ("token-source",), clients: Any = ()
    ) -> Any:
        return grant_slot(mode, list(tokens), list(clients), self.find, self.in_use.__contains__)

    def assertStatus(self, status: int, reason: str, **kwargs: Any) -> None:
        error = self.assertRaises(HandshakeRejected, self.grant, **kwargs)
        self.assertEqual((error.status, error.reason), (status, reason))

    def test_spent_without_client_token(self) -> None:
        grant, changed = self.grant()
        self.assertTrue(changed and grant.slot.spent)
        self.assertStatus(403, "Access token already used")

    def test_client_token_binds(self) -> None:
        grant, changed = self.grant(clients=[CLIENT_TOKEN])
        self.assertTrue(changed)
        self.assertEqual(grant.slot.client_token, CLIENT_TOKEN)
        again, changed = self.grant(clients=[CLIENT_TOKEN])
        self.assertFalse(changed)
        self.assertIs(again.slot, grant.slot)
        self.assertStatus(403, "Client token does not match", clients=["f" * 32])
        self.assertStatus(403, "Client token does not match")

    def test_client_token_lengths(self) -> None:
        """Client tokens of 32 to 128 characters are taken; 31 and 129 are refused (400)."""
        for length in (32, 128):
            self.setUp()
            token = ("aZ09-" * 30)[:length]
            grant, _ = self.grant(clients=[token])
            self.assertEqual(grant.client_token, token)
        for length in (0, 31, 129):
            self.setUp()
            self.assertStatus(400, "Invalid client token", clients=["a" * length])

    def test_client_token_alphabet(self) -> None:
        """Only letters, digits and '-': anything else, a trailing newline included, is refused."""
        for bad in ("_", ".", " ", "\u00e9", "\n", "/"):
            self.assertStatus(400, "Invalid client token", clients=["a" * 40 + bad])
        self.assertStatus(400, "Invalid client token", clients=["\n" + "a" * 40])

    def test_client_token_in_use_elsewhere(self) -> None:
        self.in_use.add(CLIENT_TOKEN)
        self.assertStatus(409, "Client token already in use", clients=[CLIENT_TOKEN])

    def test_refusals(self) -> None:
        self.assertStatus(400, "Invalid local-proxy-mode", mode="both")
        self.assertStatus(401, "Missing access token", tokens=[])
        self.assertStatus(400, "Multiple access tokens", tokens=["a", "b"])
        self.assertStatus(400, "Multiple client tokens", clients=[CLIENT_TOKEN, CLIENT_TOKEN])
        self.assertStatus(400, "Invalid client token", clients=["short"])
        self.assertStatus(401, "Invalid access token", tokens=["unknown"])
        self.assertStatus(
            403, "Access token does not match local-proxy-mode", tokens=["token-destination"]
        )
        self.tunnel.status = CLOSED
        self.assertStatus(403, "Tunnel is closed")


class RulesTests(unittest.TestCase):
    def test_allowed(self) -> None:
        for mode, message in [
            (Mode.SOURCE, Message(type=Message.STREAM_START, streamId=1, serviceId="a")),
            (Mode.DESTINATION, Message(type=Message.DATA, streamId=1, serviceId="a", payload=b"x")),
            (Mode.SOURCE, Message(type=Message.STREAM_START, streamId=1)),  # V1: no service ID
            (Mode.DESTINATION, Message(type=Message.CONNECTION_RESET, streamId=1, connectionId=2)),
        ]:
            self.assertIsNone(violation(mode, message, ["a"]))

    def test_refused(self) -> None:
        for mode, message in [
            (Mode.SOURCE, Message()),
            (Mode.SOURCE, Message(type=Message.SERVICE_IDS)),
            (Mode.SOURCE, Message(type=Message.SESSION_RESET)),
            (Mode.DESTINATION, Message(type=Message.STREAM_START, streamId=1)),
            (Mode.SOURCE, Message(type=Message.DATA, serviceId="a")),
            (Mode.SOURCE, Message(type=Message.DATA, streamId=1, serviceId="b")),
        ]:
            self.assertIsNotNone(violation(mode, message, ["a"]), message)
