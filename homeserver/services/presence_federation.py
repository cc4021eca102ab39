"""Presence across servers (S2S "Presence"): local users' changes go out as `m.presence`
EDUs to the servers sharing a room with them; incoming EDUs (dispatched by
homeserver/services/federation_edus.py, already restricted to the sending server's own users)
update the presence service.

"Servers should only send presence updates for users that the receiving server would be
interested in": the servers of the rooms the user is joined to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, Protocol

from federation.edus import PresenceEdu
from homeserver.services.presence import PresenceService, UserPresence

PRESENCE_EDU: Final = "m.presence"

JoinedServers = Callable[[Collection[str]], Awaitable[Mapping[str, set[str]]]]


class EduSender(Protocol):
    """homeserver/services/federation_sender.py `FederationSender`."""

    async def send_edu(
        self, destinations: str | Collection[str], edu_type: str, content: Mapping[str, Any]
    ) -> None: ...


def presence_edu_content(state: UserPresence, now_ms: int) -> dict[str, Any]:
    """S2S `m.presence`: `{"push": [{user_id, presence, last_active_ago, status_msg?,
    currently_active}]}`."""
    update: dict[str, Any] = {
        "user_id": state.user_id,
        "presence": state.presence,
        "last_active_ago": max(0, now_ms - state.last_active_ts) if state.last_active_ts else 0,
        "currently_active": state.currently_active(now_ms),
    }
    if state.status_msg is not None:
        update["status_msg"] = state.status_msg
    return {"push": [update]}


class PresenceForwarder:
    """Sends local users' presence changes to the servers in their rooms."""

    def __init__(
        self,
        presence: PresenceService,
        sender: EduSender,
        joined_servers: JoinedServers,
        server_name: str,
    ) -> None:
        self._presence = presence
        self._sender = sender
        self._joined_servers = joined_servers
        self._server_name = server_name

    def attach(self) -> None:
        self._presence.add_listener(self.on_change)

    async def on_change(self, state: UserPresence, rooms: Collection[str]) -> None:
        if not rooms:
            return
        by_room = await self._joined_servers(rooms)
        servers = {s for joined in by_room.values() for s in joined} - {self._server_name}
        if servers:
            content = presence_edu_content(state, self._presence.now_ms())
            await self._sender.send_edu(sorted(servers), PRESENCE_EDU, content)


class PresenceEduSink:
    """For `EduDispatcher(presence=…)`: each update of an inbound `m.presence` EDU."""

    def __init__(self, presence: PresenceService) -> None:
        self._presence = presence

    async def on_presence(self, origin: str, edu: PresenceEdu) -> None:
        for update in edu.push:
            await self._presence.on_remote_update(update)
