"""Paginating a room's history: GET /messages and GET /context/{eventId}.

C-S "Getting events for a room" (`message_pagination.yaml`, `event_context.yaml`) and
"Lazy-loading room members". Events are walked in topological order, `(depth,
stream_ordering)`; tokens name the gaps between events (homeserver/services/tokens.py). Each
batch read from storage is run through the history visibility rules and the client's filter;
a page stops early when it reaches the end of the room or the `to` token, and then carries no
`end` token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from federation.room_state import MEMBER
from homeserver.errors import MatrixError
from homeserver.services.client_events import Viewer
from homeserver.services.filters import RoomEventFilter, event_matches
from homeserver.services.ignored_users import NOBODY, IgnoredUsers, hidden_from
from homeserver.services.room_reads import RoomAccess, RoomReader
from homeserver.services.tokens import RoomToken, StreamToken, TopologicalToken
from homeserver.storage.event_rows import EventRow
from homeserver.storage.room_reads import KEY_MAX, KEY_MIN, Direction, Key

DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 1000
# Rows read per storage round: many may be hidden (history visibility, filters).
MIN_BATCH: Final = 50
MAX_ROUNDS: Final = 8

Fetch = Callable[[Key, int], Awaitable[list[EventRow]]]


class Backfill(Protocol):
    """Older history from other servers (homeserver/services/federation_backfill.py)."""

    async def backfill(self, room_id: str, limit: int) -> int:
        """Fetch and save events before the room's earliest timeline event; how many."""
        ...

    async def has_older_history(self, room_id: str) -> bool:
        """Whether the room's earliest timeline event cites prev events we do not hold."""
        ...

# Events asked of another server in the one backfill round a /messages request may take.
MAX_BACKFILL_LIMIT: Final = 100


def key_of(row: EventRow) -> Key:
    return (row.event.depth, row.stream_ordering)


def token_after(key: Key) -> TopologicalToken:
    """The gap right after the event at `key`."""
    return TopologicalToken(*key)


def key_before(key: Key) -> Key:
    """The gap right before the event at `key`: every smaller key is ≤ it."""
    return (key[0], key[1] - 1)


def filter_view(row: EventRow) -> dict[str, Any]:
    """The fields a RoomEventFilter looks at."""
    event = row.event
    return {
        "type": event.type,
        "sender": event.sender,
        "room_id": event.room_id,
        "content": event.content,
    }


@dataclass(slots=True)
class Scan:
    """Visible, matching events found walking in one direction."""

    rows: list[EventRow] = field(default_factory=list)
    memberships: dict[str, str] = field(default_factory=dict)
    # The gap after the last event looked at, where the next page starts.
    cursor: Key = KEY_MIN
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class MessagesPage:
    start: str
    chunk: list[dict[str, Any]]
    end: str | None
    state: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"start": self.start, "chunk": self.chunk}
        if self.end is not None:
            body["end"] = self.end
        if self.state:
            body["state"] = self.state
        return body


class RoomPaginator:
    def __init__(self, reader: RoomReader, backfill: Backfill | None = None) -> None:
        self._reader = reader
        self._store = reader.store
        self._backfill = backfill
        # C-S "Ignoring Users": events of users the viewer ignores are left out (wiring sets it).
        self.ignored: IgnoredUsers | None = None

    def set_backfill(self, backfill: Backfill | None) -> None:
        """Where /messages gets older history it does not hold (federation; None: nowhere)."""
        self._backfill = backfill

    async def resolve_token(self, room_id: str, token: RoomToken) -> Key:
        """A token as a point of this room's topological order."""
        if isinstance(token, StreamToken):
            return await self._store.get_key_for_stream_position(room_id, token.position)
        return token.key

    async def scan(
        self,
        viewer: Viewer,
        direction: Direction,
        start: Key,
        fetch: Fetch,
        limit: int,
        event_filter: RoomEventFilter | None,
    ) -> Scan:
        """Walk from `start` with `fetch(from_key, n)` until `limit` events pass the history
        visibility rules and `event_filter`, storage runs out, or `MAX_ROUNDS` batches."""
        result = Scan(cursor=start)
        ignored = await self.ignored.ignored_by(viewer.user_id) if self.ignored else NOBODY
        for _ in range(MAX_ROUNDS):
            if len(result.rows) >= limit:
                break
            batch = max(limit - len(result.rows), MIN_BATCH)
            rows = await fetch(result.cursor, batch + 1)
            more = len(rows) > batch
            rows = rows[:batch]
            verdicts = await self._reader.visibility.check_events(viewer.user_id, rows)
            for index, row in enumerate(rows):
                key = key_of(row)
                result.cursor = key_before(key) if direction == "b" else key
                verdict = verdicts[row.event.event_id]
                if (
                    verdict.visible
                    and event_matches(event_filter, filter_view(row))
                    and not hidden_from(row.event, ignored)
                ):
                    result.rows.append(row)
                    result.memberships[row.event.event_id] = verdict.membership
                    if len(result.rows) >= limit:
                        result.exhausted = not more and index == len(rows) - 1
                        return result
            if not more:
                result.exhausted = True
                break
        return result

    async def messages(
        self,
        room_id: str,
        viewer: Viewer,
        *,
        direction: Direction,
        from_token: RoomToken | None,
        to_token: RoomToken | None,
        limit: int,
        event_filter: RoomEventFilter | None,
    ) -> MessagesPage:
        """GET /rooms/{roomId}/messages."""
        reader = self._reader
        access = await reader.check_access(room_id, viewer.user_id)
        start, start_token = await self._start(room_id, access, direction, from_token)
        stop = KEY_MIN if direction == "b" else KEY_MAX
        if to_token is not None:
            stop = await self.resolve_token(room_id, to_token)
        if direction == "f":
            stop = access.cap(stop)

        async def fetch(cursor: Key, count: int) -> list[EventRow]:
            return await self._store.paginate(room_id, direction, cursor, stop, count)

        found = await self.scan(viewer, direction, start, fetch, limit, event_filter)
        more_elsewhere = False
        backfill = self._backfill
        if direction == "b" and to_token is None and found.exhausted and backfill is not None:
            # S2S "Backfilling": the page ran out at the start of what we hold; one round
            # of fetching older events, then read again (a /sync token may now fall among
            # them). A page still ends with an `end` token while older events exist elsewhere.
            if len(found.rows) < limit and await backfill.backfill(
                room_id, min(limit, MAX_BACKFILL_LIMIT)
            ):
                start, _ = await self._start(room_id, access, direction, from_token)
                found = await self.scan(viewer, direction, start, fetch, limit, event_filter)
            more_elsewhere = found.exhausted and await backfill.has_older_history(room_id)
        chunk = await reader.formatter.format_events(
            found.rows, viewer, memberships=found.memberships
        )
        state: list[dict[str, Any]] = []
        if event_filter is not None and event_filter.lazy_load_members and found.rows:
            state = await self.lazy_members(access, viewer, found.rows, found.rows[0])
        exhausted = found.exhausted and not more_elsewhere
        end = None if exhausted else str(token_after(found.cursor))
        return MessagesPage(start_token, chunk, end, state)

    async def _start(
        self,
        room_id: str,
        access: RoomAccess,
        direction: Direction,
        from_token: RoomToken | None,
    ) -> tuple[Key, str]:
        """Where a /messages page starts, and the `start` token it answers."""
        if from_token is not None:
            start = await self.resolve_token(room_id, from_token)
            start_token = str(from_token)
        elif direction == "b":
            # v1.3: no `from` means the newest event the user may see.
            start = await self._store.get_key_for_stream_position(room_id, KEY_MAX[1])
            start = access.cap(start)
            start_token = str(token_after(start))
        else:
            return KEY_MIN, str(token_after(KEY_MIN))
        return (access.cap(start) if direction == "b" else start), start_token

    async def lazy_members(
        self, access: RoomAccess, viewer: Viewer, rows: Sequence[EventRow], at: EventRow
    ) -> list[dict[str, Any]]:
        """Member events of the senders of `rows`, from the state after `at` (C-S
        "Lazy-loading room members"; redundant ones are sent again, which the spec allows)."""
        state = await self._reader.cache.get_state_after_event(at.event.event_id) or {}
        senders = {row.event.sender for row in rows}
        wanted = {k: v for k, v in state.items() if k[0] == MEMBER and k[1] in senders}
        ordered = await self._reader.state_rows(wanted)
        return await self._reader.formatter.format_events(
            ordered, viewer, bundle=False, replaced_state=False
        )

    async def context(
        self,
        room_id: str,
        event_id: str,
        viewer: Viewer,
        *,
        limit: int,
        event_filter: RoomEventFilter | None,
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/context/{eventId}: `limit` events split around the event (the
        filter applies to them and to `state`, not to the event itself)."""
        reader = self._reader
        access = await reader.check_access(room_id, viewer.user_id)
        row, membership = await reader.get_visible_event(access, event_id, viewer.user_id)
        key = key_of(row)
        before_limit = limit // 2
        after_limit = limit - before_limit
        stop_after = access.cap(KEY_MAX)

        async def fetch_before(cursor: Key, count: int) -> list[EventRow]:
            return await self._store.paginate(room_id, "b", cursor, KEY_MIN, count)

        async def fetch_after(cursor: Key, count: int) -> list[EventRow]:
            return await self._store.paginate(room_id, "f", cursor, stop_after, count)

        before = await self.scan(
            viewer, "b", key_before(key), fetch_before, before_limit, event_filter
        )
        after = await self.scan(viewer, "f", key, fetch_after, after_limit, event_filter)
        formatter = reader.formatter
        memberships = {**before.memberships, **after.memberships, event_id: membership}
        everything = [*before.rows, row, *after.rows]
        formatted = await formatter.format_events(everything, viewer, memberships=memberships)
        last = after.rows[-1] if after.rows else row
        state = await self.context_state(access, viewer, last, everything, event_filter)
        return {
            "start": str(token_after(before.cursor)),
            "end": str(token_after(after.cursor)),
            "events_before": formatted[: len(before.rows)],
            "event": formatted[len(before.rows)],
            "events_after": formatted[len(before.rows) + 1 :],
            "state": state,
        }

    async def context_state(
        self,
        access: RoomAccess,
        viewer: Viewer,
        last: EventRow,
        rows: Sequence[EventRow],
        event_filter: RoomEventFilter | None,
    ) -> list[dict[str, Any]]:
        """"The state of the room at the last event returned", filtered; with lazy loading,
        members only for the senders of the returned events."""
        state = await self._reader.cache.get_state_after_event(last.event.event_id) or {}
        if event_filter is not None and event_filter.lazy_load_members:
            senders = {row.event.sender for row in rows}
            state = {k: v for k, v in state.items() if k[0] != MEMBER or k[1] in senders}
        state_rows = await self._reader.state_rows(state)
        state_rows = [r for r in state_rows if event_matches(event_filter, filter_view(r))]
        return await self._reader.formatter.format_events(
            state_rows, viewer, bundle=False, replaced_state=False
        )


def parse_limit(value: str | None, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """A `limit` query parameter: a non-negative integer (capped), else 400 M_INVALID_PARAM."""
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    return min(int(value), maximum)
