"""Guest accounts in the `users` table (schema/0001_initial.sql, column `is_guest`).

C-S "Guest Access": a guest account can be upgraded to a full account keeping its user ID
(its devices and tokens stay, being rows keyed by that user ID); guests are made to leave a
room whose `m.room.guest_access` stops being `can_join`, which needs to know who is a guest.
"""

from __future__ import annotations

from collections.abc import Collection

from homeserver.storage.users import Executor


async def upgrade_guest(db: Executor, user_id: str, password_hash: str | None) -> bool:
    """Turn the guest account `user_id` into a full account with this password; False if it
    is not (or no longer) a guest account, e.g. a concurrent upgrade got there first."""
    upgraded = await db.fetchval(
        """
        UPDATE users SET is_guest = FALSE, password_hash = $2
        WHERE user_id = $1 AND is_guest AND NOT deactivated
        RETURNING TRUE
        """,
        user_id,
        password_hash,
    )
    return bool(upgraded)


async def guests_among(db: Executor, user_ids: Collection[str]) -> set[str]:
    """Which of `user_ids` are local guest accounts."""
    if not user_ids:
        return set()
    rows = await db.fetch(
        "SELECT user_id FROM users WHERE user_id = ANY($1::text[]) AND is_guest",
        list(user_ids),
    )
    return {row["user_id"] for row in rows}
