"""Outbound federation, where each local event goes (GUIDE.md "Outbound federation", step 2
of homeserver/services/federation_sender.py): the servers with joined members in its room
now, plus the target's server of a kick or ban; never us, never a server our config or the
room's ACL excludes (S2S "Server Access Control Lists (ACLs)").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Final

from federation.acl import ServerAcl, is_server_allowed
from federation.ids import is_valid_user_id, server_name_of
from homeserver.storage.federation_outbound import FederationOutboundStore, StreamEvent

MEMBER: Final = "m.room.member"
# A kicked or banned user's server must learn of it, though it has no joined member any more.
_TARGET_NOTIFIED: Final = frozenset({"leave", "ban"})


class PduRouter:
    def __init__(
        self,
        *,
        store: FederationOutboundStore,
        server_name: str,
        may_send_to: Callable[[str], bool],
        joined_members: Callable[[str], Awaitable[Mapping[str, str]]] | None = None,
    ) -> None:
        """`may_send_to(destination)`: the sender's policy (not us, allowed by the config,
        federation enabled). `joined_members(room_id)`: the room's joined users from memory
        (`RoomStateCache.get_joined_members`); without it they are read from the database."""
        self._store = store
        self._server_name = server_name
        self._may_send_to = may_send_to
        self._joined_members = joined_members
        # Room ID → (the joined members mapping last seen, their servers).
        self._room_servers: dict[str, tuple[Mapping[str, str], set[str]]] = {}

    async def route(self, events: Sequence[StreamEvent]) -> list[tuple[str, StreamEvent]]:
        """`(destination, event)` for every server each event goes to."""
        if not events:
            return []
        room_ids = {event.room_id for event in events}
        joined = await self._joined_servers(room_ids)
        candidates: list[tuple[StreamEvent, set[str]]] = []
        for event in events:
            destinations = set(joined.get(event.room_id, ()))
            target = _notified_target_server(event)
            if target is not None:
                destinations.add(target)
            destinations.discard(self._server_name)
            if destinations:
                candidates.append((event, destinations))
        if not candidates:
            return []  # rooms of this server's users alone: no ACL to read
        acl_rooms = {event.room_id for event, _ in candidates}
        acls = {
            room_id: ServerAcl.from_content(content)
            for room_id, content in (await self._store.get_server_acls(acl_rooms)).items()
        }
        rows: list[tuple[str, StreamEvent]] = []
        for event, destinations in candidates:
            # S2S "Server Access Control Lists (ACLs)": a denied server takes no part.
            acl = acls.get(event.room_id)
            rows += [
                (destination, event)
                for destination in sorted(destinations)
                if self._may_send_to(destination) and is_server_allowed(acl, destination)
            ]
        return rows

    async def _joined_servers(self, room_ids: Collection[str]) -> Mapping[str, set[str]]:
        """Room ID → the servers of its joined members (ours included)."""
        if self._joined_members is None:
            return await self._store.get_joined_servers(room_ids)
        servers: dict[str, set[str]] = {}
        for room_id in room_ids:
            members = await self._joined_members(room_id)
            known = self._room_servers.get(room_id)
            if known is None or known[0] is not members:  # the cache made a new mapping
                found = {user_id.partition(":")[2] for user_id in members} - {""}
                known = self._room_servers[room_id] = (members, found)
            servers[room_id] = known[1]
        return servers


def _notified_target_server(event: StreamEvent) -> str | None:
    """The server of the user a local kick or ban is about (it may have no member left)."""
    if event.type != MEMBER or event.membership not in _TARGET_NOTIFIED:
        return None
    state_key = event.state_key
    if state_key is None or not is_valid_user_id(state_key, historical=True):
        return None
    return server_name_of(state_key)
