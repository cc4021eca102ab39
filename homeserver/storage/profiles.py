"""Profiles of local users (schema/0005_room_directory.sql, `profiles`).

`displayname` and `avatar_url` have columns of their own (every member event reads them);
other fields (`m.tz`, custom keys) live in `other_fields`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg

DISPLAYNAME: Final = "displayname"
AVATAR_URL: Final = "avatar_url"


@dataclass(frozen=True, slots=True)
class StoredProfile:
    displayname: str | None
    avatar_url: str | None
    other_fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The profile as GET /profile/{userId} returns it: unset fields are absent."""
        result: dict[str, Any] = dict(self.other_fields)
        if self.displayname is not None:
            result[DISPLAYNAME] = self.displayname
        if self.avatar_url is not None:
            result[AVATAR_URL] = self.avatar_url
        return result


class ProfilesStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_profile(self, user_id: str) -> StoredProfile | None:
        """The stored profile; None if the user never changed theirs (or is not local)."""
        row = await self._pool.fetchrow(
            "SELECT displayname, avatar_url, other_fields FROM profiles WHERE user_id = $1",
            user_id,
        )
        if row is None:
            return None
        return StoredProfile(row["displayname"], row["avatar_url"], row["other_fields"])

    async def save_profile(self, user_id: str, profile: StoredProfile) -> None:
        """Replace the user's whole profile (the caller read, changed and size-checked it)."""
        await self._pool.execute(
            """
            INSERT INTO profiles (user_id, displayname, avatar_url, other_fields)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (user_id) DO UPDATE SET displayname = EXCLUDED.displayname,
                avatar_url = EXCLUDED.avatar_url, other_fields = EXCLUDED.other_fields
            """,
            user_id,
            profile.displayname,
            profile.avatar_url,
            dict(profile.other_fields),
        )
