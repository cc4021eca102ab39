"""Pushers (pusher.yaml; schema/0012_presence_pushers.sql).

A pusher is identified by `(app_id, pushkey, user_id)`. Rows of a deleted device go with it
(foreign key ON DELETE CASCADE), so logging out stops its notifications without any hook.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class Pusher:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    pushkey_ts: int  # milliseconds since the Unix epoch
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: Mapping[str, Any]
    device_id: str | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.app_id, self.pushkey, self.user_id)


_COLUMNS = (
    "user_id, app_id, pushkey, kind, pushkey_ts, app_display_name, device_display_name,"
    " profile_tag, lang, data, device_id"
)


def _pusher(row: asyncpg.Record) -> Pusher:
    return Pusher(**dict(row))


class PushersStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def set_pusher(self, pusher: Pusher, *, append: bool) -> None:
        """Create or update the pusher. Without `append`, pushers with the same app ID and
        pushkey for other users are removed (pusher.yaml `append`)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not append:
                await conn.execute(
                    "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
                    pusher.app_id,
                    pusher.pushkey,
                    pusher.user_id,
                )
            await conn.execute(
                f"""
                INSERT INTO pushers ({_COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET kind = EXCLUDED.kind,
                    pushkey_ts = EXCLUDED.pushkey_ts,
                    app_display_name = EXCLUDED.app_display_name,
                    device_display_name = EXCLUDED.device_display_name,
                    profile_tag = EXCLUDED.profile_tag, lang = EXCLUDED.lang,
                    data = EXCLUDED.data, device_id = EXCLUDED.device_id
                """,
                pusher.user_id,
                pusher.app_id,
                pusher.pushkey,
                pusher.kind,
                pusher.pushkey_ts,
                pusher.app_display_name,
                pusher.device_display_name,
                pusher.profile_tag,
                pusher.lang,
                dict(pusher.data),
                pusher.device_id,
            )

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        """Whether a pusher was deleted."""
        result = await self._pool.execute(
            "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
            user_id,
            app_id,
            pushkey,
        )
        return bool(result != "DELETE 0")

    async def get_pushers(self, user_id: str) -> list[Pusher]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY app_id, pushkey",
            user_id,
        )
        return [_pusher(row) for row in rows]

    async def get_users_with_pushers(self, kind: str) -> set[str]:
        rows = await self._pool.fetch("SELECT DISTINCT user_id FROM pushers WHERE kind = $1", kind)
        return {row["user_id"] for row in rows}

    async def get_pushers_of_kind(self, user_ids: Collection[str], kind: str) -> list[Pusher]:
        """The `kind` pushers of these users (whom an event notifies)."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM pushers WHERE user_id = ANY($1::text[]) AND kind = $2",
            list(user_ids),
            kind,
        )
        return [_pusher(row) for row in rows]
