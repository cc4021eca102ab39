"""The user directory search (C-S `POST /user_directory/search`, `users.yaml`).

Searched: users joined to a room the searcher is joined to, or to a room whose current join
rule is `public` or whose history visibility is `world_readable` — the minimum the spec asks.
Read from `current_state_events` and the member events (`events.json`); local users' own
profile (`profiles`, schema 0005) wins over what a member event says.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    user_id: str
    display_name: str | None
    avatar_url: str | None


def like_pattern(word: str) -> str:
    """`%word%` for ILIKE, with the wildcards of `word` escaped (so `_` matches only `_`)."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_SEARCH = r"""
WITH visible_rooms AS (
    SELECT room_id FROM current_state_events
    WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'join'
    UNION
    SELECT c.room_id FROM current_state_events c JOIN events e ON e.event_id = c.event_id
    WHERE c.type = 'm.room.join_rules' AND c.state_key = ''
      AND e.json::jsonb -> 'content' ->> 'join_rule' = 'public'
    UNION
    SELECT c.room_id FROM current_state_events c JOIN events e ON e.event_id = c.event_id
    WHERE c.type = 'm.room.history_visibility' AND c.state_key = ''
      AND e.json::jsonb -> 'content' ->> 'history_visibility' = 'world_readable'
),
candidates AS (
    SELECT DISTINCT ON (m.state_key) m.state_key AS user_id,
           coalesce(p.displayname, e.json::jsonb -> 'content' ->> 'displayname') AS display_name,
           coalesce(p.avatar_url, e.json::jsonb -> 'content' ->> 'avatar_url') AS avatar_url
    FROM current_state_events m
    JOIN visible_rooms v ON v.room_id = m.room_id
    JOIN events e ON e.event_id = m.event_id
    LEFT JOIN profiles p ON p.user_id = m.state_key
    WHERE m.type = 'm.room.member' AND m.membership = 'join'
    ORDER BY m.state_key, e.stream_ordering DESC
)
SELECT user_id, display_name, avatar_url FROM candidates
WHERE (SELECT bool_and(user_id ILIKE w OR coalesce(display_name, '') ILIKE w)
       FROM unnest($2::text[]) AS w)
ORDER BY
    -- Rank: an exact match, then a match at the start of the ID's localpart or the name.
    (lower(coalesce(display_name, '')) = $3 OR lower(user_id) = $3
        OR lower(split_part(substr(user_id, 2), ':', 1)) = $3) DESC,
    (lower(substr(user_id, 2)) LIKE $4 OR lower(coalesce(display_name, '')) LIKE $4) DESC,
    -- "then whether or not profile info is available"
    (display_name IS NOT NULL) DESC,
    user_id
LIMIT $5
"""


class UserDirectoryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def search(self, searcher: str, term: str, limit: int) -> list[DirectoryEntry]:
        """Users matching every word of `term` (case-insensitive, in the user ID or display
        name), best first, at most `limit`."""
        words = term.lower().split()
        if not words:
            return []
        lowered = term.strip().lower()
        prefix = lowered.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._pool.fetch(
            _SEARCH,
            searcher,
            [like_pattern(word) for word in words],
            lowered,
            prefix,
            limit,
        )
        return [
            DirectoryEntry(row["user_id"], row["display_name"], row["avatar_url"]) for row in rows
        ]
