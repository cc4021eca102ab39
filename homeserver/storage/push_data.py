"""Push rules of each user and the push actions evaluated for each event.

Tables (schema/0006_sync_data.sql): `push_rules`, `push_rule_changes`, `event_push_actions`,
and `notification_read_positions` (read here for unread counts; written by receipts).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import asyncpg
import orjson

from homeserver.services.push_rules import Action, PushRule, RuleKind
from homeserver.services.push_rules_edit import RuleKey, UserPushRule


@dataclass(frozen=True, slots=True)
class StoredPushRules:
    """A user's own rules (each kind's in priority order) and their enabled/actions changes."""

    user_rules: list[UserPushRule]
    enabled: dict[RuleKey, bool]
    actions: dict[RuleKey, list[Action]]


@dataclass(frozen=True, slots=True)
class PushAction:
    """One notification for one user (a row of `event_push_actions`)."""

    user_id: str
    event_id: str
    room_id: str
    stream_ordering: int
    thread_id: str
    actions: Sequence[Action]
    highlight: bool
    ts: int


@dataclass(frozen=True, slots=True)
class NotificationRow:
    event_id: str
    room_id: str
    stream_ordering: int
    actions: list[Action]
    ts: int
    read: bool


@dataclass(frozen=True, slots=True)
class UnreadCounts:
    notification_count: int = 0
    highlight_count: int = 0


class PushDataStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- push rules -------------------------------------------------------------------------

    async def get_push_rules(self, user_id: str) -> StoredPushRules:
        rules = await self._pool.fetch(
            "SELECT kind, rule_json FROM push_rules WHERE user_id = $1 ORDER BY kind, priority",
            user_id,
        )
        changes = await self._pool.fetch(
            "SELECT kind, rule_id, enabled, actions FROM push_rule_changes WHERE user_id = $1",
            user_id,
        )
        enabled: dict[RuleKey, bool] = {}
        actions: dict[RuleKey, list[Action]] = {}
        for row in changes:
            key = (cast(RuleKind, row["kind"]), row["rule_id"])
            if row["enabled"] is not None:
                enabled[key] = row["enabled"]
            if row["actions"] is not None:
                actions[key] = orjson.loads(row["actions"])
        user_rules = [
            UserPushRule(
                cast(RuleKind, row["kind"]), PushRule.from_json(orjson.loads(row["rule_json"]))
            )
            for row in rules
        ]
        return StoredPushRules(user_rules, enabled, actions)

    async def replace_user_rules(
        self, user_id: str, kind: RuleKind, rules: Sequence[PushRule]
    ) -> None:
        """Store the user's rules of one kind, in priority order (one transaction)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM push_rules WHERE user_id = $1 AND kind = $2", user_id, kind
            )
            await conn.executemany(
                "INSERT INTO push_rules (user_id, kind, rule_id, priority, rule_json)"
                " VALUES ($1, $2, $3, $4, $5)",
                [
                    (user_id, kind, rule.rule_id, index, orjson.dumps(rule.to_json()).decode())
                    for index, rule in enumerate(rules)
                ],
            )

    async def delete_rule_changes(self, user_id: str, kind: RuleKind, rule_id: str) -> None:
        await self._pool.execute(
            "DELETE FROM push_rule_changes WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
            user_id,
            kind,
            rule_id,
        )

    async def set_rule_enabled(
        self, user_id: str, kind: RuleKind, rule_id: str, enabled: bool
    ) -> None:
        await self._pool.execute(
            "INSERT INTO push_rule_changes (user_id, kind, rule_id, enabled)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET enabled = EXCLUDED.enabled",
            user_id,
            kind,
            rule_id,
            enabled,
        )

    async def set_rule_actions(
        self, user_id: str, kind: RuleKind, rule_id: str, actions: Sequence[Action]
    ) -> None:
        await self._pool.execute(
            "INSERT INTO push_rule_changes (user_id, kind, rule_id, actions)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET actions = EXCLUDED.actions",
            user_id,
            kind,
            rule_id,
            orjson.dumps(list(actions)).decode(),
        )

    # --- push actions -----------------------------------------------------------------------

    async def insert_push_actions(self, actions: Iterable[PushAction]) -> None:
        rows = [
            (
                a.user_id,
                a.event_id,
                a.room_id,
                a.stream_ordering,
                a.thread_id,
                orjson.dumps(list(a.actions)).decode(),
                a.highlight,
                a.ts,
            )
            for a in actions
        ]
        if rows:
            await self._pool.executemany(
                "INSERT INTO event_push_actions (user_id, event_id, room_id, stream_ordering,"
                " thread_id, actions, highlight, ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (user_id, event_id) DO NOTHING",
                rows,
            )

    async def record_evaluation(
        self, read_up_to: Mapping[tuple[str, str], int], actions: Sequence[PushAction]
    ) -> None:
        """One statement: move senders' unthreaded read positions forward (never back) to the
        `(user, room) → position` given, and insert the push actions."""
        if not read_up_to and not actions:
            return
        read_keys = list(read_up_to)
        await self._pool.execute(
            """
            WITH read AS (
              INSERT INTO notification_read_positions (user_id, room_id, thread_id,
                                                      stream_ordering)
              SELECT u, r, '', s FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(u, r, s)
              ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET stream_ordering =
                GREATEST(notification_read_positions.stream_ordering, EXCLUDED.stream_ordering)
            )
            INSERT INTO event_push_actions (user_id, event_id, room_id, stream_ordering,
                                            thread_id, actions, highlight, ts)
            SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[],
                                 $9::text[], $10::boolean[], $11::bigint[])
            ON CONFLICT (user_id, event_id) DO NOTHING
            """,
            [u for u, _ in read_keys],
            [r for _, r in read_keys],
            [read_up_to[k] for k in read_keys],
            [a.user_id for a in actions],
            [a.event_id for a in actions],
            [a.room_id for a in actions],
            [a.stream_ordering for a in actions],
            [a.thread_id for a in actions],
            [orjson.dumps(list(a.actions)).decode() for a in actions],
            [a.highlight for a in actions],
            [a.ts for a in actions],
        )

    async def get_unread_counts(
        self, user_id: str, room_ids: Collection[str]
    ) -> dict[str, UnreadCounts]:
        """Notifications after the user's read position, per room (C-S "Receiving
        notifications"): after the unthreaded position and after the event's thread's position."""
        if not room_ids:
            return {}
        rows = await self._pool.fetch(
            """
            SELECT a.room_id, count(*) AS notifications,
                   count(*) FILTER (WHERE a.highlight) AS highlights
            FROM event_push_actions a
            LEFT JOIN notification_read_positions u
              ON u.user_id = a.user_id AND u.room_id = a.room_id AND u.thread_id = ''
            LEFT JOIN notification_read_positions t
              ON t.user_id = a.user_id AND t.room_id = a.room_id AND t.thread_id = a.thread_id
            WHERE a.user_id = $1 AND a.room_id = ANY($2::text[])
              AND a.stream_ordering > COALESCE(u.stream_ordering, 0)
              AND a.stream_ordering > COALESCE(t.stream_ordering, 0)
            GROUP BY a.room_id
            """,
            user_id,
            list(room_ids),
        )
        return {r["room_id"]: UnreadCounts(r["notifications"], r["highlights"]) for r in rows}

    async def get_notifications(
        self, user_id: str, before: int | None, limit: int, only_highlight: bool
    ) -> list[NotificationRow]:
        """The user's notifications, newest first, strictly before stream position `before`."""
        rows = await self._pool.fetch(
            """
            SELECT a.event_id, a.room_id, a.stream_ordering, a.actions, a.ts,
                   a.stream_ordering <= GREATEST(COALESCE(u.stream_ordering, 0),
                                                 COALESCE(t.stream_ordering, 0)) AS read
            FROM event_push_actions a
            LEFT JOIN notification_read_positions u
              ON u.user_id = a.user_id AND u.room_id = a.room_id AND u.thread_id = ''
            LEFT JOIN notification_read_positions t
              ON t.user_id = a.user_id AND t.room_id = a.room_id AND t.thread_id = a.thread_id
            WHERE a.user_id = $1 AND ($2::bigint IS NULL OR a.stream_ordering < $2)
              AND (NOT $4 OR a.highlight)
            ORDER BY a.stream_ordering DESC LIMIT $3
            """,
            user_id,
            before,
            limit,
            only_highlight,
        )
        return [
            NotificationRow(
                r["event_id"],
                r["room_id"],
                r["stream_ordering"],
                orjson.loads(r["actions"]),
                r["ts"],
                r["read"],
            )
            for r in rows
        ]
