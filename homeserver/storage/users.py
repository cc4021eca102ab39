"""The `users` table (schema/0001_initial.sql): local accounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import asyncpg

# A pool or a connection (inside a transaction); both offer fetchrow/execute.
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


class UserExistsError(Exception):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id} already exists")
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    password_hash: str | None
    admin: bool
    is_guest: bool
    created_ts: int
    deactivated: bool


async def create_user(
    db: Executor,
    user_id: str,
    password_hash: str | None,
    *,
    created_ts: int,
    admin: bool = False,
    is_guest: bool = False,
) -> None:
    """Insert a new account; raise `UserExistsError` if the user ID is taken."""
    try:
        await db.execute(
            """
            INSERT INTO users (user_id, password_hash, admin, is_guest, created_ts)
            VALUES ($1, $2, $3, $4, $5)
            """,
            user_id,
            password_hash,
            admin,
            is_guest,
            created_ts,
        )
    except asyncpg.UniqueViolationError:
        raise UserExistsError(user_id) from None


async def get_user(db: Executor, user_id: str) -> User | None:
    row = await db.fetchrow(
        """
        SELECT user_id, password_hash, admin, is_guest, created_ts, deactivated
        FROM users WHERE user_id = $1
        """,
        user_id,
    )
    if row is None:
        return None
    return User(
        user_id=row["user_id"],
        password_hash=row["password_hash"],
        admin=row["admin"],
        is_guest=row["is_guest"],
        created_ts=row["created_ts"],
        deactivated=row["deactivated"],
    )
