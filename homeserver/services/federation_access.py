"""Which other servers may read or write what: server ACLs, presence in a room, and the history
visibility rules applied to a server.

S2S "Server Access Control Lists (ACLs)": a server denied by the room's `m.room.server_acl` gets
403 M_FORBIDDEN on the protected endpoints, and its PDUs and room EDUs are ignored. The read
endpoints (`/state`, `/state_ids`, `/event_auth`, `/backfill`, `/get_missing_events`, `/event`)
serve only servers with a user in the room; events the server may not see under the room's
history visibility are served redacted, so the DAG can still be walked (as Synapse does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from federation.acl import SERVER_ACL_EVENT_TYPE, ServerAcl, is_server_allowed
from federation.ids import server_name_of
from federation.room_state import HISTORY_VISIBILITY, MEMBER, StateKey
from homeserver.errors import MatrixError
from homeserver.services.state import RoomStateCache
from homeserver.storage.event_rows import EventRow

WORLD_READABLE: Final = "world_readable"
SHARED: Final = "shared"
INVITED: Final = "invited"
JOINED: Final = "joined"


def forbidden(reason: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", reason)


async def server_acl_allows(cache: RoomStateCache, room_id: str, server_name: str) -> bool:
    """`m.room.server_acl` of the room's current state; no ACL event allows everyone."""
    acl_events = await cache.get_current_state(room_id, [(SERVER_ACL_EVENT_TYPE, "")])
    event = acl_events.get((SERVER_ACL_EVENT_TYPE, ""))
    acl = None if event is None else ServerAcl.from_content(event.content)
    return is_server_allowed(acl, server_name)


async def ensure_acl_allows(cache: RoomStateCache, room_id: str, server_name: str) -> None:
    """403 M_FORBIDDEN for a server the room's ACL denies (S2S "Server ACLs")."""
    if not await server_acl_allows(cache, room_id, server_name):
        raise forbidden("Server is denied by the room's server ACL")


def _user_server(user_id: str) -> str | None:
    try:
        return server_name_of(user_id)
    except ValueError:
        return None


async def server_memberships(
    cache: RoomStateCache, state: Mapping[StateKey, str], server_name: str
) -> set[str]:
    """The memberships (join, invite, …) that users of `server_name` hold in `state`."""
    ids = [
        event_id
        for (event_type, state_key), event_id in state.items()
        if event_type == MEMBER and _user_server(state_key) == server_name
    ]
    events = await cache.get_events(ids)
    return {m for e in events.values() if (m := e.membership) is not None}


async def servers_in_state(cache: RoomStateCache, state: Mapping[StateKey, str]) -> list[str]:
    """Servers with at least one joined user in `state`, sorted."""
    members = await cache.get_events(eid for (t, _), eid in state.items() if t == MEMBER)
    servers = {
        server
        for event in members.values()
        if event.membership == "join"
        and event.state_key is not None
        and (server := _user_server(event.state_key)) is not None
    }
    return sorted(servers)


async def server_is_joined(
    cache: RoomStateCache, state: Mapping[StateKey, str] | None, server_name: str
) -> bool:
    return state is not None and "join" in await server_memberships(cache, state, server_name)


async def ensure_server_in_room(
    cache: RoomStateCache, room_id: str, server_name: str, *, at_events: Iterable[str] = ()
) -> None:
    """403 unless `server_name` has a joined user in the room now, or before or after one of
    `at_events` (a server that has since left may still read up to where it was)."""
    if await server_is_joined(cache, await cache.get_current_state_ids(room_id), server_name):
        return
    for event_id in at_events:
        for state in (
            await cache.get_state_before_event(event_id),
            await cache.get_state_after_event(event_id),
        ):
            if await server_is_joined(cache, state, server_name):
                return
    raise forbidden(f"{server_name} has no user in {room_id}")


async def server_may_see(cache: RoomStateCache, row: EventRow, server_name: str) -> bool:
    """History visibility for a server (as Synapse applies it): `world_readable` and `shared`
    events to any server in the room, `invited` to servers with an invited or joined user at
    the event, `joined` to servers with a joined user at the event. Outliers and events
    without stored state are visible to servers joined now (checked by the caller)."""
    event_id = row.event.event_id
    state = await cache.get_state_before_event(event_id)
    if state is None:
        return True
    visibility = await _history_visibility(cache, state)
    if visibility in (WORLD_READABLE, SHARED):
        return True
    wanted = {"join", "invite"} if visibility == INVITED else {"join"}
    for candidate in (state, await cache.get_state_after_event(event_id)):
        if candidate is not None and wanted & await server_memberships(
            cache, candidate, server_name
        ):
            return True
    return False


async def _history_visibility(cache: RoomStateCache, state: Mapping[StateKey, str]) -> str:
    event_id = state.get((HISTORY_VISIBILITY, ""))
    if event_id is None:
        return SHARED
    event = (await cache.get_events([event_id])).get(event_id)
    value: Any = None if event is None else event.content.get("history_visibility")
    return value if value in (WORLD_READABLE, SHARED, INVITED, JOINED) else SHARED
