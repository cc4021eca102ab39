"""Room aliases hosted here (schema/0005_room_directory.sql, `room_aliases`)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class AliasMapping:
    room_alias: str
    room_id: str
    creator: str
    created_ts: int


class AliasesStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_alias(self, room_alias: str, room_id: str, creator: str, now_ms: int) -> bool:
        """Map `room_alias` to `room_id`; False (and nothing changed) if the alias is taken."""
        result: str = await self._pool.execute(
            "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (room_alias) DO NOTHING",
            room_alias,
            room_id,
            creator,
            now_ms,
        )
        return result == "INSERT 0 1"

    async def get_alias(self, room_alias: str) -> AliasMapping | None:
        row = await self._pool.fetchrow(
            "SELECT room_alias, room_id, creator, created_ts FROM room_aliases"
            " WHERE room_alias = $1",
            room_alias,
        )
        return None if row is None else AliasMapping(**dict(row))

    async def delete_alias(self, room_alias: str) -> bool:
        """Remove the mapping; False if there was none."""
        result: str = await self._pool.execute(
            "DELETE FROM room_aliases WHERE room_alias = $1", room_alias
        )
        return result != "DELETE 0"

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        """Every local alias of the room, oldest first."""
        rows = await self._pool.fetch(
            "SELECT room_alias FROM room_aliases WHERE room_id = $1"
            " ORDER BY created_ts, room_alias",
            room_id,
        )
        return [row["room_alias"] for row in rows]
