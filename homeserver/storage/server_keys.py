"""The `server_signing_keys` table (schema/0004_server_keys.sql): other servers' keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

import asyncpg

from federation.keys import ServerKeys

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection

# S2S "Publishing Keys": use the lesser of valid_until_ts and 7 days into the future.
MAX_KEY_VALIDITY_MS: Final = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class StoredServerKey:
    server_name: str
    key_id: str
    verify_key: bytes
    valid_until_ts: int
    expired_ts: int | None  # set: an old key, for events only
    fetched_ts: int
    fetched_from: str


async def store_server_keys(
    db: Executor, keys: ServerKeys, key_json: bytes, *, fetched_ts: int, fetched_from: str
) -> None:
    """Record every key of a verified response.

    A row is replaced only by a response that makes the key valid at least as long: a notary
    replaying an older response cannot shorten what the server itself told us.
    """
    capped_until = min(keys.valid_until_ts, fetched_ts + MAX_KEY_VALIDITY_MS)
    rows: list[tuple[str, str, bytes, int, int | None, int, str, bytes]] = [
        (keys.server_name, key_id, key, capped_until, None, fetched_ts, fetched_from, key_json)
        for key_id, key in keys.verify_keys.items()
    ]
    rows += [
        (keys.server_name, key_id, key, expired, expired, fetched_ts, fetched_from, key_json)
        for key_id, (key, expired) in keys.old_verify_keys.items()
        if key_id not in keys.verify_keys
    ]
    await db.executemany(
        """
        INSERT INTO server_signing_keys AS k
            (server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_ts,
             fetched_from, key_json)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (server_name, key_id) DO UPDATE SET
            verify_key = excluded.verify_key,
            valid_until_ts = excluded.valid_until_ts,
            expired_ts = excluded.expired_ts,
            fetched_ts = excluded.fetched_ts,
            fetched_from = excluded.fetched_from,
            key_json = excluded.key_json
        WHERE excluded.valid_until_ts >= k.valid_until_ts
        """,
        rows,
    )


async def get_server_key(db: Executor, server_name: str, key_id: str) -> StoredServerKey | None:
    row = await db.fetchrow(
        """
        SELECT server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_ts,
               fetched_from
        FROM server_signing_keys WHERE server_name = $1 AND key_id = $2
        """,
        server_name,
        key_id,
    )
    return StoredServerKey(**dict(row)) if row is not None else None


async def get_key_responses(db: Executor, server_name: str) -> list[tuple[int, bytes]]:
    """The distinct stored responses for `server_name` as `(longest valid_until_ts among its
    keys, key_json)`, longest-lived first: what a notary serves."""
    rows = await db.fetch(
        """
        SELECT max(valid_until_ts) AS valid_until_ts, key_json
        FROM server_signing_keys WHERE server_name = $1
        GROUP BY key_json
        ORDER BY valid_until_ts DESC
        """,
        server_name,
    )
    return [(row["valid_until_ts"], row["key_json"]) for row in rows]
