# -*- test-case-name: tests.tunnelservice.test_registry -*-
"""
Tunnels that survive a restart: one SQLite file (``--state-file``).

Each tunnel is one row holding its JSON record (tokens included: a restarted
service must accept the tokens it handed out), written on every change.
The file is created readable by its owner only.  A record holds everything
but the live connections and streams (L{tunnel_record}, L{tunnel_from_record}).
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any, Dict, List, Protocol

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.model import ManagedTunnel, Slot

Record = Dict[str, Any]


class TunnelStore(Protocol):
    """Where tunnels survive a restart."""

    def load(self) -> List[Record]:
        """Every saved tunnel record."""

    def save(self, record: Record) -> None:
        """Insert or replace one tunnel's record."""

    def delete(self, tunnel_id: str) -> None:
        """Forget a tunnel."""


def tunnel_record(tunnel: ManagedTunnel) -> Record:
    """What the store keeps of C{tunnel}."""
    return {
        "tunnel_id": tunnel.tunnel_id,
        "tunnel_arn": tunnel.tunnel_arn,
        "created_at": tunnel.created_at,
        "last_updated_at": tunnel.last_updated_at,
        "max_lifetime_minutes": tunnel.max_lifetime_minutes,
        "description": tunnel.description,
        "thing_name": tunnel.thing_name,
        "services": list(tunnel.services),
        "has_destination_config": tunnel.has_destination_config,
        "tags": [dict(tag) for tag in tunnel.tags],
        "status": tunnel.status,
        "slots": {
            mode.value: {
                "access_token": slot.access_token,
                "client_token": slot.client_token,
                "spent": slot.spent,
            }
            for mode, slot in tunnel.slots.items()
        },
    }


def tunnel_from_record(record: Record, now: float) -> ManagedTunnel:
    """The tunnel of a stored record; its slots are disconnected since C{now}."""
    slots = {}
    for mode in Mode:
        saved = record["slots"][mode.value]
        slots[mode] = Slot(
            mode=mode,
            access_token=saved["access_token"],
            client_token=saved["client_token"],
            spent=saved["spent"],
            last_updated_at=now,
        )
    return ManagedTunnel(
        tunnel_id=record["tunnel_id"],
        tunnel_arn=record["tunnel_arn"],
        created_at=record["created_at"],
        last_updated_at=record["last_updated_at"],
        max_lifetime_minutes=record["max_lifetime_minutes"],
        slots=slots,
        description=record["description"],
        thing_name=record["thing_name"],
        services=list(record["services"]),
        has_destination_config=record["has_destination_config"],
        tags=[dict(tag) for tag in record["tags"]],
        status=record["status"],
    )


class SQLiteTunnelStore:
    """A L{TunnelStore} in a single SQLite file."""

    def __init__(self, path: str) -> None:
        if not os.path.exists(path):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tunnels (tunnel_id TEXT PRIMARY KEY, record TEXT NOT NULL)"
        )

    def load(self) -> List[Record]:
        return [json.loads(row[0]) for row in self._db.execute("SELECT record FROM tunnels")]

    def save(self, record: Record) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO tunnels (tunnel_id, record) VALUES (?, ?)",
            (record["tunnel_id"], json.dumps(record)),
        )

    def delete(self, tunnel_id: str) -> None:
        self._db.execute("DELETE FROM tunnels WHERE tunnel_id = ?", (tunnel_id,))

    def close(self) -> None:
        self._db.close()
