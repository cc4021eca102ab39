"""Server-side key backups (schema/0017_key_backup_search_openid.sql: `e2e_room_keys_versions`,
`e2e_room_keys`). C-S "Server-side key backups"; the rules are in
homeserver/services/key_backup.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from homeserver.storage.users import Executor


@dataclass(frozen=True, slots=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: Any
    etag: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class RoomKey:
    """One backed-up session key (KeyBackupData)."""

    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: Any


_VERSION_COLUMNS = "version, algorithm, auth_data, etag, deleted"


def _version(row: asyncpg.Record | None) -> BackupVersion | None:
    return None if row is None else BackupVersion(**dict(row))


class KeyBackupStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create_version(self, user_id: str, algorithm: str, auth_data: Any) -> int:
        """A new version, numbered one past the user's highest (deleted ones included)."""
        async with self.pool.acquire() as conn, conn.transaction():
            # Two creations at once must not pick the same number.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "room_keys:" + user_id)
            version = await conn.fetchval(
                """
                INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data)
                SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3
                FROM e2e_room_keys_versions WHERE user_id = $1
                RETURNING version
                """,
                user_id,
                algorithm,
                auth_data,
            )
        return int(version)

    async def current_version(self, db: Executor, user_id: str) -> BackupVersion | None:
        """The newest version not deleted."""
        row = await db.fetchrow(
            f"""
            SELECT {_VERSION_COLUMNS} FROM e2e_room_keys_versions
            WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1
            """,
            user_id,
        )
        return _version(row)

    async def get_version(self, db: Executor, user_id: str, version: int) -> BackupVersion | None:
        """A version by number, deleted or not."""
        row = await db.fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM e2e_room_keys_versions "
            "WHERE user_id = $1 AND version = $2",
            user_id,
            version,
        )
        return _version(row)

    async def update_auth_data(self, user_id: str, version: int, auth_data: Any) -> None:
        await self.pool.execute(
            "UPDATE e2e_room_keys_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2",
            user_id,
            version,
            auth_data,
        )

    async def delete_version(self, user_id: str, version: int) -> None:
        """Keep the tombstone, drop the keys."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2", user_id, version
            )
            await conn.execute(
                "UPDATE e2e_room_keys_versions SET deleted = TRUE "
                "WHERE user_id = $1 AND version = $2",
                user_id,
                version,
            )

    async def count_keys(self, db: Executor, user_id: str, version: int) -> int:
        count = await db.fetchval(
            "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = $1 AND version = $2",
            user_id,
            version,
        )
        return int(count)

    async def get_keys(
        self,
        db: Executor,
        user_id: str,
        version: int,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> list[RoomKey]:
        """The version's keys, narrowed to a room and a session when given."""
        rows = await db.fetch(
            """
            SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,
                   session_data
            FROM e2e_room_keys
            WHERE user_id = $1 AND version = $2
              AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)
            """,
            user_id,
            version,
            room_id,
            session_id,
        )
        return [RoomKey(**dict(row)) for row in rows]

    async def get_sessions(
        self, db: Executor, user_id: str, version: int, sessions: Sequence[tuple[str, str]]
    ) -> list[RoomKey]:
        """The stored keys of these `(room_id, session_id)` pairs."""
        rows = await db.fetch(
            """
            SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,
                   session_data
            FROM e2e_room_keys
            WHERE user_id = $1 AND version = $2
              AND (room_id, session_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
            """,
            user_id,
            version,
            [room_id for room_id, _ in sessions],
            [session_id for _, session_id in sessions],
        )
        return [RoomKey(**dict(row)) for row in rows]

    async def put_keys(
        self, conn: asyncpg.Connection, user_id: str, version: int, keys: Sequence[RoomKey]
    ) -> None:
        """Insert or overwrite; the caller has already applied the replacement rules."""
        await conn.executemany(
            """
            INSERT INTO e2e_room_keys (user_id, version, room_id, session_id,
                first_message_index, forwarded_count, is_verified, session_data)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                first_message_index = EXCLUDED.first_message_index,
                forwarded_count = EXCLUDED.forwarded_count,
                is_verified = EXCLUDED.is_verified,
                session_data = EXCLUDED.session_data
            """,
            [
                (
                    user_id,
                    version,
                    key.room_id,
                    key.session_id,
                    key.first_message_index,
                    key.forwarded_count,
                    key.is_verified,
                    key.session_data,
                )
                for key in keys
            ],
        )

    async def delete_keys(
        self,
        conn: asyncpg.Connection,
        user_id: str,
        version: int,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> int:
        """Delete the version's keys (narrowed like `get_keys`); how many went."""
        status = await conn.execute(
            """
            DELETE FROM e2e_room_keys
            WHERE user_id = $1 AND version = $2
              AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)
            """,
            user_id,
            version,
            room_id,
            session_id,
        )
        return int(status.split()[-1])

    async def bump_etag(self, conn: asyncpg.Connection, user_id: str, version: int) -> int:
        etag = await conn.fetchval(
            """
            UPDATE e2e_room_keys_versions SET etag = etag + 1
            WHERE user_id = $1 AND version = $2 RETURNING etag
            """,
            user_id,
            version,
        )
        return int(etag)

    async def lock_version(self, conn: asyncpg.Connection, user_id: str, version: int) -> None:
        """Serialise writers of one version until the transaction ends."""
        await conn.execute(
            "SELECT 1 FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2 FOR UPDATE",
            user_id,
            version,
        )
