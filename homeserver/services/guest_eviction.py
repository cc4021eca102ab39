"""Guests leave rooms that stop admitting them (C-S "Guest Access", "Server behaviour").

"Servers MUST only allow guest users to join rooms if the `m.room.guest_access` state event
is present on the room, and has the `guest_access` value `can_join`. If the
`m.room.guest_access` event is changed to stop this from being the case, the server MUST set
those users' `m.room.member` state to `leave`."

`GuestEviction.on_events_persisted` is an `on_persisted` hook of the event pipeline: it sees
every accepted timeline event, local or received over federation. The leaves are sent by the
guests themselves (a user may always leave), as events of their own, from a task of its own:
the hook runs under the room's write lock, which those leaves need.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final, Protocol

import asyncpg

from federation.pdu import Event
from federation.room_state import MEMBER
from homeserver.services.state import RoomStateCache
from homeserver.storage import guest_accounts

logger = logging.getLogger(__name__)

GUEST_ACCESS: Final = "m.room.guest_access"
CAN_JOIN: Final = "can_join"
# Memberships a guest gives up: joined, and the ways of asking in (invite, knock).
IN_ROOM: Final = frozenset({"join", "invite", "knock"})


class Leaver(Protocol):
    """`MembershipService.leave` (homeserver/services/membership.py)."""

    async def leave(self, user_id: str, room_id: str, *, reason: str | None = None) -> None: ...


def withdraws_guest_access(event: Event) -> bool:
    """An `m.room.guest_access` state event whose value is anything but `can_join`."""
    return (
        event.type == GUEST_ACCESS
        and event.state_key == ""
        and event.content.get("guest_access") != CAN_JOIN
    )


class GuestEviction:
    def __init__(
        self, pool: asyncpg.Pool, state: RoomStateCache, membership: Leaver, server_name: str
    ) -> None:
        self._pool = pool
        self._state = state
        self._membership = membership
        self._server_name = server_name
        self._tasks: set[asyncio.Task[list[str]]] = set()

    async def on_events_persisted(self, events: Sequence[Event]) -> None:
        rooms = {event.room_id for event in events if withdraws_guest_access(event)}
        for room_id in rooms:
            task = asyncio.create_task(self.evict_guests(room_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Until every eviction started so far has finished (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def evict_guests(self, room_id: str) -> list[str]:
        """Make this server's guests in the room leave, unless the room's current state
        admits guests again; the guests who left."""
        state = await self._state.get_current_state(room_id)
        guest_access = state.get((GUEST_ACCESS, ""))
        if guest_access is not None and guest_access.content.get("guest_access") == CAN_JOIN:
            return []
        members = [
            user_id
            for (event_type, user_id), event in state.items()
            if event_type == MEMBER
            and event.membership in IN_ROOM
            and user_id.partition(":")[2] == self._server_name
        ]
        guests = await guest_accounts.guests_among(self._pool, members)
        evicted = []
        for user_id in sorted(guests):
            try:
                await self._membership.leave(user_id, room_id, reason="Guest access withdrawn")
            except Exception:
                logger.exception("could not make guest %s leave %s", user_id, room_id)
                continue
            evicted.append(user_id)
        return evicted
