"""Server-side search: POST /search, category `room_events` (C-S "Server Side Search",
`search.yaml`).

- Searched: content.body of m.room.message, content.name of m.room.name, content.topic of
  m.room.topic (`keys` narrows them; default all), in every room the user has been joined to,
  left ones included. Encrypted rooms' messages have no searchable text, so they never match.
- "Only events that the user is allowed to see will be searched": each batch goes through the
  history visibility rules (homeserver/services/visibility.py) and the request's `filter`.
- `order_by`: `rank` (the default; ts_rank, most relevant first) or `recent` (newest first).
- Pagination: `next_batch` at `search_categories.room_events.next_batch` only (the spec lets
  a server leave out the per-group tokens). A `recent` token is a stream position, a `rank`
  token an offset into the ranked matches.
- `count` is PostgreSQL's count of matches before history visibility (an estimate, as allowed).
- Messages of users the searcher ignores are left out, as everywhere else (C-S "Ignoring
  Users"); the paginator's `ignored` tracker says who they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from homeserver.errors import MatrixError
from homeserver.services.client_events import Viewer
from homeserver.services.filters import (
    FilterError,
    RoomEventFilter,
    event_limit,
    event_matches,
    parse_filter,
    room_allowed,
)
from homeserver.services.ignored_users import NOBODY, hidden_from
from homeserver.services.pagination import (
    RoomPaginator,
    filter_view,
    key_before,
    key_of,
    token_after,
)
from homeserver.services.room_reads import RoomReader
from homeserver.storage.event_rows import EventRow
from homeserver.storage.room_reads import KEY_MAX, KEY_MIN, Key
from homeserver.storage.search import SEARCH_KEYS, OrderBy, rooms_ever_joined, search_events

DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 100
DEFAULT_CONTEXT: Final = 5
MAX_CONTEXT: Final = 50
MAX_TERMS: Final = 32
# Longer words are cut: they only bloat the query (PostgreSQL drops words over 2047 bytes).
MAX_WORD_CHARS: Final = 100
# Matches read per round, and rounds per request, while hidden ones are skipped.
MIN_BATCH: Final = 20
MAX_ROUNDS: Final = 5
GROUP_KEYS: Final = ("room_id", "sender")
# Words of the search term: letters and digits (anything else would be tsquery syntax).
_WORD = re.compile(r"[^\W_]+")

Json = dict[str, Any]


def invalid(message: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", message)


def bad_json(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


@dataclass(frozen=True, slots=True)
class EventContextRequest:
    before_limit: int
    after_limit: int
    include_profile: bool


@dataclass(frozen=True, slots=True)
class RoomEventsCriteria:
    """The request's `search_categories.room_events`."""

    search_term: str
    keys: tuple[str, ...]
    event_filter: RoomEventFilter | None
    order_by: OrderBy
    event_context: EventContextRequest | None
    include_state: bool
    group_by: tuple[str, ...]


def search_words(term: str) -> list[str]:
    return [word[:MAX_WORD_CHARS] for word in _WORD.findall(term)[:MAX_TERMS]]


def tsquery_text(words: Sequence[str]) -> str:
    """Every word must match, each also as a prefix ("mart" finds "martians")."""
    return " & ".join(f"{word}:*" for word in words)


def _context_limit(context: Mapping[str, Any], key: str) -> int:
    value = context.get(key, DEFAULT_CONTEXT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise invalid(f"event_context.{key} must be a non-negative integer")
    return min(value, MAX_CONTEXT)


def _parse_event_context(value: Any) -> EventContextRequest | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_json("'event_context' must be an object")
    include_profile = value.get("include_profile", False)
    if not isinstance(include_profile, bool):
        raise bad_json("event_context.include_profile must be a boolean")
    return EventContextRequest(
        _context_limit(value, "before_limit"), _context_limit(value, "after_limit"), include_profile
    )


def _parse_room_filter(value: Any) -> RoomEventFilter | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_json("'filter' must be an object")
    try:
        return parse_filter({"room": {"timeline": value}}).room.timeline
    except FilterError as e:
        raise MatrixError(400, e.errcode, e.message.replace("room.timeline.", "")) from None


def _parse_group_by(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    groups = value.get("group_by", []) if isinstance(value, dict) else None
    if not isinstance(groups, list):
        raise bad_json("'groupings.group_by' must be a list")
    keys = []
    for group in groups:
        key = group.get("key") if isinstance(group, dict) else None
        if key not in GROUP_KEYS:
            raise invalid(f"Groups can be by {' or '.join(GROUP_KEYS)} only")
        keys.append(key)
    return tuple(dict.fromkeys(keys))


def parse_criteria(room_events: Any) -> RoomEventsCriteria:
    """`search_categories.room_events`, checked; 400 with the offending field otherwise."""
    if not isinstance(room_events, dict):
        raise bad_json("'room_events' must be an object")
    term = room_events.get("search_term")
    if term is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'search_term'")
    if not isinstance(term, str):
        raise bad_json("'search_term' must be a string")
    keys = room_events.get("keys", list(SEARCH_KEYS))
    if not isinstance(keys, list) or not keys or any(key not in SEARCH_KEYS for key in keys):
        raise invalid(f"'keys' must be a non-empty list of {', '.join(SEARCH_KEYS)}")
    order_by = room_events.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise invalid("'order_by' must be 'rank' or 'recent'")
    include_state = room_events.get("include_state", False)
    if not isinstance(include_state, bool):
        raise bad_json("'include_state' must be a boolean")
    return RoomEventsCriteria(
        search_term=term,
        keys=tuple(keys),
        event_filter=_parse_room_filter(room_events.get("filter")),
        order_by=order_by,
        event_context=_parse_event_context(room_events.get("event_context")),
        include_state=include_state,
        group_by=_parse_group_by(room_events.get("groupings")),
    )


@dataclass(slots=True)
class Cursor:
    """Where a page starts: below a stream position (recent) or after an offset (rank)."""

    before_stream: int | None = None
    offset: int = 0

    def token(self, order_by: OrderBy) -> str:
        return f"r{self.before_stream}" if order_by == "recent" else f"k{self.offset}"


def parse_next_batch(token: str | None, order_by: OrderBy) -> Cursor:
    if token is None:
        return Cursor()
    prefix = "r" if order_by == "recent" else "k"
    digits = token[1:]
    if not token.startswith(prefix) or not digits.isascii() or not digits.isdigit():
        raise invalid("Unknown next_batch token for this search")
    if len(digits) > 18:
        raise invalid("Unknown next_batch token for this search")
    if order_by == "recent":
        return Cursor(before_stream=int(digits))
    return Cursor(offset=int(digits))


@dataclass(slots=True)
class Page:
    rows: list[EventRow]
    ranks: list[float]
    count: int
    next_batch: str | None


class SearchService:
    def __init__(self, pool: asyncpg.Pool, reader: RoomReader, paginator: RoomPaginator) -> None:
        self._pool = pool
        self._reader = reader
        self._paginator = paginator

    async def search(self, viewer: Viewer, body: Mapping[str, Any], next_batch: str | None) -> Json:
        """POST /search."""
        categories = body.get("search_categories")
        if not isinstance(categories, dict):
            raise MatrixError(400, "M_MISSING_PARAM", "Missing 'search_categories'")
        if "room_events" not in categories:
            return {"search_categories": {}}
        criteria = parse_criteria(categories["room_events"])
        cursor = parse_next_batch(next_batch, criteria.order_by)
        words = search_words(criteria.search_term)
        page = await self._find(viewer, criteria, words, cursor)
        return {
            "search_categories": {"room_events": await self._answer(viewer, criteria, words, page)}
        }

    async def _find(
        self, viewer: Viewer, criteria: RoomEventsCriteria, words: list[str], cursor: Cursor
    ) -> Page:
        """Matching events the user may see, up to the filter's limit, and where to go on."""
        event_filter = criteria.event_filter
        limit = event_limit(event_filter, DEFAULT_LIMIT, MAX_LIMIT)
        rooms = [
            room_id
            for room_id in await rooms_ever_joined(self._pool, viewer.user_id)
            if room_allowed(event_filter, room_id)
        ]
        page = Page([], [], 0, None)
        if not words or not rooms:
            return page
        tracker = self._paginator.ignored
        ignored = await tracker.ignored_by(viewer.user_id) if tracker else NOBODY
        more = True
        for round_number in range(MAX_ROUNDS):
            batch = max(limit * 2, MIN_BATCH)
            hits = await search_events(
                self._pool,
                room_ids=rooms,
                keys=criteria.keys,
                query=tsquery_text(words),
                order_by=criteria.order_by,
                before_stream=cursor.before_stream,
                offset=cursor.offset if criteria.order_by == "rank" else 0,
                limit=batch,
            )
            if round_number == 0 and hits:
                page.count = hits[0].total
            visible = {
                row.event.event_id
                for row in await self._reader.visibility.filter_events(
                    viewer.user_id, [hit.row for hit in hits]
                )
            }
            for index, hit in enumerate(hits):
                cursor.offset += 1
                cursor.before_stream = hit.row.stream_ordering
                # C-S "Ignoring Users": nothing of theirs reaches the client but state.
                shown = hit.row.event.event_id in visible and not hidden_from(
                    hit.row.event, ignored
                )
                if shown and event_matches(event_filter, filter_view(hit.row)):
                    page.rows.append(hit.row)
                    page.ranks.append(hit.rank)
                    if len(page.rows) >= limit:
                        more = index < len(hits) - 1 or len(hits) == batch
                        break
            else:
                more = len(hits) == batch
            if len(page.rows) >= limit or not more:
                break
        page.next_batch = cursor.token(criteria.order_by) if more else None
        return page

    async def _answer(
        self, viewer: Viewer, criteria: RoomEventsCriteria, words: list[str], page: Page
    ) -> Json:
        formatter = self._reader.formatter
        events = await formatter.format_events(page.rows, viewer)
        results: list[Json] = []
        for row, rank, event in zip(page.rows, page.ranks, events, strict=True):
            result: Json = {"rank": rank, "result": event}
            if criteria.event_context is not None:
                result["context"] = await self._context(viewer, row, criteria.event_context)
            results.append(result)
        answer: Json = {"results": results, "count": page.count, "highlights": words}
        if page.next_batch is not None:
            answer["next_batch"] = page.next_batch
        if criteria.group_by:
            answer["groups"] = groups_of(page.rows, criteria.group_by)
        if criteria.include_state:
            answer["state"] = await self._room_states(viewer, {r.event.room_id for r in page.rows})
        return answer

    async def _context(self, viewer: Viewer, row: EventRow, wanted: EventContextRequest) -> Json:
        """Events around a result, as /context would find them (history visibility applied)."""
        room_id, store = row.event.room_id, self._reader.store
        try:
            access = await self._reader.check_access(room_id, viewer.user_id)
        except MatrixError:
            return {}
        stop_after = access.cap(KEY_MAX)

        async def fetch_before(cursor: Key, count: int) -> list[EventRow]:
            return await store.paginate(room_id, "b", cursor, KEY_MIN, count)

        async def fetch_after(cursor: Key, count: int) -> list[EventRow]:
            return await store.paginate(room_id, "f", cursor, stop_after, count)

        key = key_of(row)
        before = await self._paginator.scan(
            viewer, "b", key_before(key), fetch_before, wanted.before_limit, None
        )
        after = await self._paginator.scan(viewer, "f", key, fetch_after, wanted.after_limit, None)
        formatter = self._reader.formatter
        context: Json = {
            "start": str(token_after(before.cursor)),
            "end": str(token_after(after.cursor)),
            "events_before": await formatter.format_events(before.rows, viewer),
            "events_after": await formatter.format_events(after.rows, viewer),
        }
        if wanted.include_profile:
            senders = {r.event.sender for r in (*before.rows, row, *after.rows)}
            context["profile_info"] = await self._profiles_at(row, senders)
        return context

    async def _profiles_at(self, row: EventRow, senders: set[str]) -> Json:
        """ "The historic profile information": the senders' member events at the result."""
        state = await self._reader.cache.get_state_after_event(row.event.event_id) or {}
        members = {k: v for k, v in state.items() if k[0] == "m.room.member" and k[1] in senders}
        profiles: Json = {}
        for member in await self._reader.state_rows(members):
            content = member.event.content
            profile = {
                field: content[field]
                for field in ("displayname", "avatar_url")
                if isinstance(content.get(field), str)
            }
            profiles[member.event.state_key or ""] = profile
        return profiles

    async def _room_states(self, viewer: Viewer, room_ids: set[str]) -> Json:
        """`include_state`: each room's state as the user may read it now."""
        states: Json = {}
        for room_id in sorted(room_ids):
            try:
                access = await self._reader.check_access(room_id, viewer.user_id)
            except MatrixError:
                continue
            rows = await self._reader.state_rows(await self._reader.state_ids(access))
            states[room_id] = await self._reader.formatter.format_events(
                rows, viewer, bundle=False, replaced_state=False
            )
        return states


def groups_of(rows: Sequence[EventRow], group_by: Sequence[str]) -> Json:
    """`groups.<key>.<value>`: the results' event IDs per value, `order` by first result."""
    groups: Json = {}
    for key in group_by:
        by_value: dict[str, Json] = {}
        for row in rows:
            value = row.event.room_id if key == "room_id" else row.event.sender
            group = by_value.setdefault(value, {"results": [], "order": len(by_value) + 1})
            group["results"].append(row.event.event_id)
        groups[key] = by_value
    return groups
