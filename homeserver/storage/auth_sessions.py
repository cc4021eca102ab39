"""User-interactive authentication sessions and shared-secret registration nonces
(schema/0003_accounts.sql).

Both are short-lived; expired rows are swept whenever new ones are created.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.users import Executor

# ---- user-interactive authentication sessions ----------------------------------------------


@dataclass(frozen=True, slots=True)
class UiaSession:
    session_id: str
    operation: str
    user_id: str | None
    completed: tuple[str, ...]
    created_ts: int


async def create_uia_session(
    db: Executor,
    session_id: str,
    operation: str,
    user_id: str | None,
    *,
    now_ms: int,
    expired_before_ms: int,
) -> None:
    await db.execute("DELETE FROM uia_sessions WHERE created_ts < $1", expired_before_ms)
    await db.execute(
        """
        INSERT INTO uia_sessions (session_id, operation, user_id, created_ts)
        VALUES ($1, $2, $3, $4)
        """,
        session_id,
        operation,
        user_id,
        now_ms,
    )


async def get_uia_session(
    db: Executor, session_id: str, *, expired_before_ms: int
) -> UiaSession | None:
    row = await db.fetchrow(
        """
        SELECT session_id, operation, user_id, completed, created_ts
        FROM uia_sessions WHERE session_id = $1 AND created_ts >= $2
        """,
        session_id,
        expired_before_ms,
    )
    if row is None:
        return None
    return UiaSession(
        session_id=row["session_id"],
        operation=row["operation"],
        user_id=row["user_id"],
        completed=tuple(row["completed"]),
        created_ts=row["created_ts"],
    )


async def add_completed_stage(
    db: Executor, session_id: str, stage: str, user_id: str | None
) -> tuple[tuple[str, ...], str | None]:
    """Append `stage` to the session's completed stages (once); record the user if now known.

    Returns the completed stages and the session's user afterwards.
    """
    row = await db.fetchrow(
        """
        UPDATE uia_sessions
        SET completed = CASE WHEN $2 = ANY(completed) THEN completed
                             ELSE array_append(completed, $2) END,
            user_id = COALESCE(user_id, $3)
        WHERE session_id = $1
        RETURNING completed, user_id
        """,
        session_id,
        stage,
        user_id,
    )
    if row is None:
        return (), user_id
    return tuple(row["completed"]), row["user_id"]


# ---- shared-secret registration nonces -------------------------------------------------------


async def create_registration_nonce(
    db: Executor, nonce: str, *, now_ms: int, expired_before_ms: int
) -> None:
    await db.execute("DELETE FROM registration_nonces WHERE created_ts < $1", expired_before_ms)
    await db.execute(
        "INSERT INTO registration_nonces (nonce, created_ts) VALUES ($1, $2)", nonce, now_ms
    )


async def take_registration_nonce(db: Executor, nonce: str, *, expired_before_ms: int) -> bool:
    """Consume the nonce: True if it existed and had not expired. It is gone afterwards."""
    created_ts = await db.fetchval(
        "DELETE FROM registration_nonces WHERE nonce = $1 RETURNING created_ts", nonce
    )
    return created_ts is not None and created_ts >= expired_before_ms
