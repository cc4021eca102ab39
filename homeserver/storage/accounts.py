"""Devices, access tokens and refresh tokens (schema/0003_accounts.sql), and the account
changes on `users` that sessions need (password, deactivation, case-insensitive lookup).

Tokens are only ever handled here as SHA-256 hashes; homeserver/services/auth.py makes and
hashes them. Deleting a device deletes its tokens (foreign keys with ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from homeserver.storage.users import Executor

# ---- users -----------------------------------------------------------------------------------


async def find_user_id_ignoring_case(db: Executor, user_id: str) -> str | None:
    """The stored user ID equal to `user_id` ignoring case; None if none or ambiguous."""
    rows = await db.fetch(
        "SELECT user_id FROM users WHERE lower(user_id) = lower($1) LIMIT 2", user_id
    )
    return rows[0]["user_id"] if len(rows) == 1 else None


async def set_password_hash(db: Executor, user_id: str, password_hash: str | None) -> None:
    await db.execute(
        "UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash
    )


async def mark_deactivated(db: Executor, user_id: str, now_ms: int) -> None:
    """C-S "Account deactivation": the ID stays reserved; the password is forgotten."""
    await db.execute(
        """
        UPDATE users SET deactivated = TRUE, deactivated_ts = $2, password_hash = NULL
        WHERE user_id = $1
        """,
        user_id,
        now_ms,
    )


# ---- devices ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ip: str | None
    last_seen_ts: int | None


def _device(row: asyncpg.Record) -> Device:
    return Device(
        user_id=row["user_id"],
        device_id=row["device_id"],
        display_name=row["display_name"],
        last_seen_ip=row["last_seen_ip"],
        last_seen_ts=row["last_seen_ts"],
    )


_DEVICE_COLUMNS = "user_id, device_id, display_name, last_seen_ip, last_seen_ts"


async def create_device(
    db: Executor, user_id: str, device_id: str, display_name: str | None, now_ms: int
) -> bool:
    """Create the device unless it exists; True if it was created."""
    created = await db.fetchval(
        """
        INSERT INTO devices (user_id, device_id, display_name, created_ts)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id, device_id) DO NOTHING
        RETURNING TRUE
        """,
        user_id,
        device_id,
        display_name,
        now_ms,
    )
    return bool(created)


async def get_device(db: Executor, user_id: str, device_id: str) -> Device | None:
    row = await db.fetchrow(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id = $1 AND device_id = $2",
        user_id,
        device_id,
    )
    return None if row is None else _device(row)


async def list_devices(db: Executor, user_id: str) -> list[Device]:
    rows = await db.fetch(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_ts, device_id",
        user_id,
    )
    return [_device(row) for row in rows]


async def set_device_display_name(
    db: Executor, user_id: str, device_id: str, display_name: str
) -> bool:
    """True if the device exists (and now has the name)."""
    updated = await db.fetchval(
        """
        UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2
        RETURNING TRUE
        """,
        user_id,
        device_id,
        display_name,
    )
    return bool(updated)


async def record_device_seen(
    db: Executor, user_id: str, device_id: str, ip: str | None, now_ms: int
) -> None:
    await db.execute(
        """
        UPDATE devices SET last_seen_ts = $3, last_seen_ip = COALESCE($4, last_seen_ip)
        WHERE user_id = $1 AND device_id = $2
        """,
        user_id,
        device_id,
        now_ms,
        ip,
    )


async def delete_devices(
    db: Executor, user_id: str, device_ids: Sequence[str] | None, *, keep: str | None = None
) -> list[str]:
    """Delete the listed devices (None: every device) except `keep`, with all their tokens.

    Returns the IDs of the devices that existed and were deleted.
    """
    rows = await db.fetch(
        """
        DELETE FROM devices
        WHERE user_id = $1
          AND ($2::text[] IS NULL OR device_id = ANY($2::text[]))
          AND ($3::text IS NULL OR device_id <> $3)
        RETURNING device_id
        """,
        user_id,
        None if device_ids is None else list(device_ids),
        keep,
    )
    return [row["device_id"] for row in rows]


async def delete_device_tokens(db: Executor, user_id: str, device_id: str) -> None:
    """Revoke every access and refresh token of a device, keeping the device itself."""
    await db.execute(
        "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2", user_id, device_id
    )
    await db.execute(
        "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2", user_id, device_id
    )


# ---- access tokens ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessTokenInfo:
    """An access token row joined with its user."""

    token_id: int
    user_id: str
    device_id: str
    expires_ts: int | None
    refresh_token_id: int | None
    used: bool
    admin: bool
    is_guest: bool
    deactivated: bool


async def insert_access_token(
    db: Executor,
    token_hash: bytes,
    user_id: str,
    device_id: str,
    *,
    now_ms: int,
    expires_ts: int | None,
    refresh_token_id: int | None,
) -> int:
    token_id = await db.fetchval(
        """
        INSERT INTO access_tokens
            (token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_id)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING token_id
        """,
        token_hash,
        user_id,
        device_id,
        now_ms,
        expires_ts,
        refresh_token_id,
    )
    return int(token_id)


async def get_access_token(db: Executor, token_hash: bytes) -> AccessTokenInfo | None:
    row = await db.fetchrow(
        """
        SELECT t.token_id, t.user_id, t.device_id, t.expires_ts, t.refresh_token_id, t.used,
               u.admin, u.is_guest, u.deactivated
        FROM access_tokens t JOIN users u ON u.user_id = t.user_id
        WHERE t.token_hash = $1
        """,
        token_hash,
    )
    if row is None:
        return None
    return AccessTokenInfo(
        token_id=row["token_id"],
        user_id=row["user_id"],
        device_id=row["device_id"],
        expires_ts=row["expires_ts"],
        refresh_token_id=row["refresh_token_id"],
        used=row["used"],
        admin=row["admin"],
        is_guest=row["is_guest"],
        deactivated=row["deactivated"],
    )


async def mark_access_token_used(db: Executor, token_id: int, refresh_token_id: int | None) -> None:
    """First use of a refreshed access token: the refresh token it came from is now revoked."""
    await db.execute("UPDATE access_tokens SET used = TRUE WHERE token_id = $1", token_id)
    if refresh_token_id is not None:
        await db.execute(
            "DELETE FROM refresh_tokens WHERE next_refresh_token_id = $1", refresh_token_id
        )


async def delete_access_token(db: Executor, token_id: int) -> None:
    await db.execute("DELETE FROM access_tokens WHERE token_id = $1", token_id)


# ---- refresh tokens --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshTokenInfo:
    refresh_token_id: int
    user_id: str
    device_id: str
    next_refresh_token_id: int | None


async def insert_refresh_token(
    db: Executor, token_hash: bytes, user_id: str, device_id: str, now_ms: int
) -> int:
    refresh_token_id = await db.fetchval(
        """
        INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)
        VALUES ($1, $2, $3, $4)
        RETURNING refresh_token_id
        """,
        token_hash,
        user_id,
        device_id,
        now_ms,
    )
    return int(refresh_token_id)


async def get_refresh_token_for_update(
    conn: asyncpg.Connection, token_hash: bytes
) -> RefreshTokenInfo | None:
    """The refresh token, locked until the end of the transaction (one refresh at a time)."""
    row = await conn.fetchrow(
        """
        SELECT refresh_token_id, user_id, device_id, next_refresh_token_id
        FROM refresh_tokens WHERE token_hash = $1
        FOR UPDATE
        """,
        token_hash,
    )
    if row is None:
        return None
    return RefreshTokenInfo(
        refresh_token_id=row["refresh_token_id"],
        user_id=row["user_id"],
        device_id=row["device_id"],
        next_refresh_token_id=row["next_refresh_token_id"],
    )


async def replace_refresh_token(
    conn: asyncpg.Connection, old: RefreshTokenInfo, new_refresh_token_id: int
) -> None:
    """Record the rotation old → new and revoke what the old token no longer vouches for.

    - the access token issued with `old` (the client is refreshing it away);
    - a replacement issued by an earlier, unacknowledged use of `old`, with its access token;
    - the refresh token `old` itself replaced: using `old` proves that one was received.
    """
    await conn.execute(
        "DELETE FROM access_tokens WHERE refresh_token_id = $1", old.refresh_token_id
    )
    if old.next_refresh_token_id is not None:
        await conn.execute(
            "DELETE FROM access_tokens WHERE refresh_token_id = $1", old.next_refresh_token_id
        )
        await conn.execute(
            "DELETE FROM refresh_tokens WHERE refresh_token_id = $1", old.next_refresh_token_id
        )
    await conn.execute(
        "DELETE FROM refresh_tokens WHERE next_refresh_token_id = $1", old.refresh_token_id
    )
    await conn.execute(
        "UPDATE refresh_tokens SET next_refresh_token_id = $2 WHERE refresh_token_id = $1",
        old.refresh_token_id,
        new_refresh_token_id,
    )
