# -*- test-case-name: tests.test_tunnelservice_registry -*-
"""
Tunnels that survive a restart: one SQLite file (``--state-file``).

Each tunnel is one row holding its JSON record (tokens included: a restarted
service must accept the tokens it handed out), written on every change.
The file is created readable by its owner only.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import List


class SQLiteTunnelStore:
    """A L{TunnelStore} in a single SQLite file."""

    def __init__(self, path: str) -> None:
        if not os.path.exists(path):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tunnels (tunnel_id TEXT PRIMARY KEY, record TEXT NOT NULL)"
        )

    def load(self) -> List[dict]:
        return [json.loads(row[0]) for row in self._db.execute("SELECT record FROM tunnels")]

    def save(self, record: dict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO tunnels (tunnel_id, record) VALUES (?, ?)",
            (record["tunnel_id"], json.dumps(record)),
        )

    def delete(self, tunnel_id: str) -> None:
        self._db.execute("DELETE FROM tunnels WHERE tunnel_id = ?", (tunnel_id,))

    def close(self) -> None:
        self._db.close()
