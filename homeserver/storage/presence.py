"""The last presence state of each local user (schema/0012_presence_pushers.sql).

Presence is kept in memory by homeserver/services/presence.py; this table only lets a restart
keep what users set (C-S "Presence": the status message above all).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class StoredPresence:
    user_id: str
    presence: str
    status_msg: str | None
    last_active_ts: int


class PresenceStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def load_all(self) -> list[StoredPresence]:
        """Every stored state (read once at start-up)."""
        rows = await self._pool.fetch(
            "SELECT user_id, presence, status_msg, last_active_ts FROM presence_state"
        )
        return [StoredPresence(**dict(row)) for row in rows]

    async def save(self, state: StoredPresence, now_ms: int) -> None:
        await self._pool.execute(
            """
            INSERT INTO presence_state (user_id, presence, status_msg, last_active_ts, updated_ts)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (user_id) DO UPDATE SET presence = EXCLUDED.presence,
                status_msg = EXCLUDED.status_msg, last_active_ts = EXCLUDED.last_active_ts,
                updated_ts = EXCLUDED.updated_ts
            """,
            state.user_id,
            state.presence,
            state.status_msg,
            state.last_active_ts,
            now_ms,
        )
