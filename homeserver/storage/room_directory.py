"""Queries for the published room directory and forgotten rooms (schema/0002 `rooms`,
`current_state_events`, `local_current_membership`; schema/0005 `forgotten_rooms`)."""

from __future__ import annotations

import asyncpg


class RoomDirectoryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_public_rooms(self) -> list[tuple[str, int]]:
        """`(room_id, joined member count)` of every published room, largest first (C-S
        "Published room directory" recommends a stable order; ties by room ID)."""
        rows = await self._pool.fetch(
            """
            SELECT r.room_id, count(c.state_key) AS joined
            FROM rooms r
            LEFT JOIN current_state_events c
              ON c.room_id = r.room_id AND c.type = 'm.room.member' AND c.membership = 'join'
            WHERE r.is_public
            GROUP BY r.room_id
            ORDER BY joined DESC, r.room_id
            """
        )
        return [(row["room_id"], row["joined"]) for row in rows]

    # --- forgotten rooms ------------------------------------------------------------------

    async def forget_room(self, user_id: str, room_id: str, membership_event_id: str) -> None:
        """Forget the room as of the user's current (leave or ban) membership event."""
        await self._pool.execute(
            "INSERT INTO forgotten_rooms (user_id, room_id, event_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (user_id, room_id) DO UPDATE SET event_id = EXCLUDED.event_id",
            user_id,
            room_id,
            membership_event_id,
        )

    async def get_forgotten_room_ids(self, user_id: str) -> set[str]:
        """Rooms the user forgot and has not re-joined, been re-invited to, or knocked on since
        (for /sync: these never appear, not even with `include_leave`)."""
        rows = await self._pool.fetch(
            """
            SELECT f.room_id FROM forgotten_rooms f
            JOIN local_current_membership m
              ON m.room_id = f.room_id AND m.user_id = f.user_id AND m.event_id = f.event_id
            WHERE f.user_id = $1
            """,
            user_id,
        )
        return {row["room_id"] for row in rows}

    async def is_room_forgotten(self, user_id: str, room_id: str) -> bool:
        return bool(
            await self._pool.fetchval(
                """
                SELECT EXISTS (
                    SELECT 1 FROM forgotten_rooms f
                    JOIN local_current_membership m
                      ON m.room_id = f.room_id AND m.user_id = f.user_id
                     AND m.event_id = f.event_id
                    WHERE f.user_id = $1 AND f.room_id = $2)
                """,
                user_id,
                room_id,
            )
        )

    async def get_local_membership_event(
        self, user_id: str, room_id: str
    ) -> tuple[str, str] | None:
        """`(membership, event_id)` of a local user's current membership in the room."""
        row = await self._pool.fetchrow(
            "SELECT membership, event_id FROM local_current_membership"
            " WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
        )
        return None if row is None else (row["membership"], row["event_id"])
