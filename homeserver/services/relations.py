"""Child events of an event, and the threads of a room.

C-S "Relationships API" (`relations.yaml`): children of a parent, optionally only of one
`rel_type` and event type, newest first by default, `recurse` following relations of relations
(at least 3 levels; every intermediate event must match the filters too). C-S "Threading",
"Querying threads in a room" (`threads_list.yaml`): thread roots ordered by their latest
activity. The parent, the children and the roots are all subject to history visibility.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from homeserver.services.client_events import Viewer
from homeserver.services.pagination import MAX_ROUNDS, RoomPaginator, token_after
from homeserver.services.room_reads import RoomReader
from homeserver.services.tokens import RoomToken, TopologicalToken
from homeserver.storage.event_rows import EventRow
from homeserver.storage.room_reads import KEY_MAX, KEY_MIN, Direction, Key

DEFAULT_RELATIONS_LIMIT: Final = 10
MAX_RELATIONS_LIMIT: Final = 100
# relations.yaml `recurse`: "Homeservers SHOULD traverse at least 3 levels of relationships."
RECURSION_DEPTH: Final = 3
DEFAULT_THREADS_LIMIT: Final = 10
MAX_THREADS_LIMIT: Final = 100


@dataclass(frozen=True, slots=True)
class RelationsQuery:
    relation_type: str | None = None
    event_type: str | None = None
    from_token: RoomToken | None = None
    to_token: RoomToken | None = None
    limit: int = DEFAULT_RELATIONS_LIMIT
    direction: Direction = "b"
    # None: the client did not send `recurse` (then `recursion_depth` is absent).
    recurse: bool | None = None


class Relations:
    def __init__(self, reader: RoomReader, paginator: RoomPaginator) -> None:
        self._reader = reader
        self._paginator = paginator

    async def children(
        self, room_id: str, parent_id: str, viewer: Viewer, query: RelationsQuery
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]; 404
        `M_NOT_FOUND` when the parent is unknown or hidden from the user."""
        reader = self._reader
        access = await reader.check_access(room_id, viewer.user_id)
        await reader.get_visible_event(access, parent_id, viewer.user_id)
        direction = query.direction
        paginator = self._paginator
        start = KEY_MAX if direction == "b" else KEY_MIN
        if query.from_token is not None:
            start = await paginator.resolve_token(room_id, query.from_token)
        stop = KEY_MIN if direction == "b" else KEY_MAX
        if query.to_token is not None:
            stop = await paginator.resolve_token(room_id, query.to_token)
        if direction == "b":
            start = access.cap(start)
        else:
            stop = access.cap(stop)
        max_level = RECURSION_DEPTH if query.recurse else 1

        async def fetch(cursor: Key, count: int) -> list[EventRow]:
            return await reader.store.get_relation_children(
                room_id,
                parent_id,
                relation_type=query.relation_type,
                event_type=query.event_type,
                max_level=max_level,
                direction=direction,
                from_key=cursor,
                to_key=stop,
                limit=count,
            )

        found = await paginator.scan(viewer, direction, start, fetch, query.limit, None)
        chunk = await reader.formatter.format_events(
            found.rows, viewer, memberships=found.memberships
        )
        body: dict[str, Any] = {"chunk": chunk}
        if not found.exhausted:
            body["next_batch"] = str(token_after(found.cursor))
        if query.from_token is not None:
            body["prev_batch"] = str(query.from_token)
        if query.recurse is not None:
            body["recursion_depth"] = max_level
        return body

    async def threads(
        self,
        room_id: str,
        viewer: Viewer,
        *,
        include: Literal["all", "participated"],
        limit: int,
        from_token: RoomToken | None,
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/threads: roots the user may see, most recently active first.
        `next_batch` names the latest activity of the last root looked at."""
        reader = self._reader
        access = await reader.check_access(room_id, viewer.user_id)
        cursor = KEY_MAX
        if from_token is not None:
            cursor = await self._paginator.resolve_token(room_id, from_token)
        if access.until_key is not None:
            # A departed user sees no thread activity after leaving (the query is `<`).
            cursor = min(cursor, (access.until_key[0], access.until_key[1] + 1))
        participant = viewer.user_id if include == "participated" else None
        roots: list[EventRow] = []
        exhausted = False
        for _ in range(MAX_ROUNDS):
            batch = await reader.store.get_thread_roots(
                room_id, participant=participant, before_key=cursor, limit=limit + 1
            )
            more = len(batch) > limit
            candidates = batch[:limit]
            found = await reader.store.get_event_rows([root_id for root_id, _ in candidates])
            ordered = [found[root_id] for root_id, _ in candidates if root_id in found]
            visible = await reader.visibility.filter_events(viewer.user_id, ordered)
            visible_ids = {row.event.event_id for row in visible}
            for index, (root_id, activity) in enumerate(candidates):
                cursor = activity
                if root_id in visible_ids:
                    roots.append(found[root_id])
                if len(roots) >= limit:
                    exhausted = not more and index == len(candidates) - 1
                    break
            if len(roots) >= limit:
                break
            if not more:
                exhausted = True
                break
        chunk = await reader.formatter.format_events(roots, viewer)
        body: dict[str, Any] = {"chunk": chunk}
        if not exhausted:
            body["next_batch"] = str(TopologicalToken(*cursor))
        return body
