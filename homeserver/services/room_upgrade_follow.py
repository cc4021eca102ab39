"""Following a room upgrade when a local user joins the replacement room.

C-S "Room Upgrades", Server behaviour: "When a user joins the new room, the server should
automatically transfer/replicate some of the user's personalized settings such as
notifications, tags, etc." Here: the user's room push rules, room tags and `m.direct` entries.

The server also carries over what it holds for the old room as a whole, the way the upgrading
server did (homeserver/services/room_upgrade.py, step 4): its local aliases and publication in
the room directory. That happens only when the old room's tombstone names the new room, so a
room cannot claim another room's aliases by naming it as its `predecessor`.

Everything is idempotent: a repeated join copies nothing twice. The pipeline runs its hooks
after answering the sender, so a client may see the copies a moment after its join returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from federation.pdu import Event
from homeserver.errors import MatrixError
from homeserver.services.account_data import AccountDataService
from homeserver.services.push import PushService
from homeserver.services.state import RoomStateCache
from homeserver.storage.aliases import AliasesStore
from homeserver.storage.rooms import RoomsStore

logger = logging.getLogger(__name__)

CREATE: Final = "m.room.create"
MEMBER: Final = "m.room.member"
TOMBSTONE: Final = "m.room.tombstone"
DIRECT: Final = "m.direct"
TAG: Final = "m.tag"
GLOBAL: Final = ""


def copied_direct(content: Mapping[str, Any], old_id: str, new_id: str) -> dict[str, Any] | None:
    """`m.direct` with `new_id` added next to `old_id` wherever it is listed; None if no
    change is needed."""
    changed = False
    updated: dict[str, Any] = {}
    for user_id, rooms in content.items():
        if isinstance(rooms, list) and old_id in rooms and new_id not in rooms:
            updated[user_id] = [*rooms, new_id]
            changed = True
        else:
            updated[user_id] = rooms
    return updated if changed else None


class UpgradeFollower:
    """The pipeline's persisted hook for joins to rooms that have a `predecessor`."""

    def __init__(
        self,
        *,
        state: RoomStateCache,
        rooms: RoomsStore,
        aliases: AliasesStore,
        account_data: AccountDataService,
        push: PushService,
        server_name: str,
    ) -> None:
        self._state = state
        self._rooms = rooms
        self._aliases = aliases
        self._account_data = account_data
        self._push = push
        self._server_name = server_name

    def _is_local(self, user_id: str) -> bool:
        return user_id.partition(":")[2] == self._server_name

    async def on_events_persisted(self, events: Sequence[Event]) -> None:
        for event in events:
            if (
                event.type == MEMBER
                and event.state_key is not None
                and self._is_local(event.state_key)
                and event.content.get("membership") == "join"
            ):
                old_id = await self._predecessor_of(event.room_id)
                if old_id is not None:
                    await self.follow_upgrade(event.state_key, old_id, event.room_id)

    async def _predecessor_of(self, room_id: str) -> str | None:
        create = (await self._state.get_current_state(room_id, [(CREATE, "")])).get((CREATE, ""))
        predecessor = None if create is None else create.content.get("predecessor")
        old_id = predecessor.get("room_id") if isinstance(predecessor, Mapping) else None
        return old_id if isinstance(old_id, str) and old_id != room_id else None

    async def follow_upgrade(self, user_id: str, old_id: str, new_id: str) -> None:
        """Copy the user's settings for `old_id` to `new_id`; move the server's aliases and
        directory entry if the old room's tombstone points here."""
        await self._copy_direct(user_id, old_id, new_id)
        await self._copy_tags(user_id, old_id, new_id)
        await self._copy_push_rules(user_id, old_id, new_id)
        if await self._tombstone_points_to(old_id, new_id):
            await self._move_room_data(old_id, new_id)

    async def _copy_push_rules(self, user_id: str, old_id: str, new_id: str) -> None:
        """A `room` push rule for the old room gets a twin for the new one."""
        rule_set = await self._push.get_rule_set(user_id)
        old_rule = rule_set.find("room", old_id)
        if old_rule is None or old_rule.default or rule_set.find("room", new_id) is not None:
            return
        body = {"actions": old_rule.to_json()["actions"]}
        await self._push.put_rule(user_id, "room", new_id, body, None, None)

    async def _copy_tags(self, user_id: str, old_id: str, new_id: str) -> None:
        tags = await self._account_data.get_tags(user_id, old_id)
        if tags and not await self._account_data.get_tags(user_id, new_id):
            await self._account_data.put(user_id, new_id, TAG, {"tags": tags})

    async def _copy_direct(self, user_id: str, old_id: str, new_id: str) -> None:
        try:
            content = await self._account_data.get(user_id, GLOBAL, DIRECT)
        except MatrixError:  # M_NOT_FOUND: the user has no direct rooms
            return
        updated = copied_direct(content, old_id, new_id)
        if updated is not None:
            await self._account_data.put(user_id, GLOBAL, DIRECT, updated)

    async def _tombstone_points_to(self, old_id: str, new_id: str) -> bool:
        key = (TOMBSTONE, "")
        tombstone = (await self._state.get_current_state(old_id, [key])).get(key)
        return tombstone is not None and tombstone.content.get("replacement_room") == new_id

    async def _move_room_data(self, old_id: str, new_id: str) -> None:
        for alias in await self._aliases.get_aliases_for_room(old_id):
            mapping = await self._aliases.get_alias(alias)
            if mapping is not None and await self._aliases.delete_alias(alias):
                now = int(time.time() * 1000)
                await self._aliases.create_alias(alias, new_id, mapping.creator, now)
        if await self._rooms.is_room_public(old_id):
            await self._rooms.set_room_is_public(new_id, True)
            await self._rooms.set_room_is_public(old_id, False)
