"""A room's summary from other servers, for GET /room_summary when this server has no state
for the room: S2S GET /_matrix/federation/v1/hierarchy/{roomId} (`space_hierarchy.yaml`),
whose `room` is the room's summary (room_summary.yaml plus `children_state`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from homeserver.remote.client import FederationClient
from homeserver.remote.errors import RemoteError, RemoteUnreachable

logger = logging.getLogger(__name__)


def parse_hierarchy_room(room_id: str, answer: Any) -> Mapping[str, Any] | None:
    """The `room` of a hierarchy answer, if it is this room's summary with the required
    fields of the right types; None otherwise."""
    room = answer.get("room") if isinstance(answer, dict) else None
    if not isinstance(room, dict) or room.get("room_id") != room_id:
        return None
    members = room.get("num_joined_members")
    if not isinstance(members, int) or isinstance(members, bool) or members < 0:
        return None
    if not isinstance(room.get("world_readable"), bool):
        return None
    if not isinstance(room.get("guest_can_join"), bool):
        return None
    for optional in ("name", "topic", "canonical_alias", "avatar_url", "join_rule", "room_type"):
        if optional in room and not isinstance(room[optional], str):
            return None
    return room


class RemoteRoomSummaries:
    def __init__(self, client: FederationClient, server_name: str) -> None:
        self._client = client
        self._server_name = server_name

    async def __call__(self, room_id: str, servers: Sequence[str]) -> Mapping[str, Any] | None:
        """Ask `servers` in turn; the first good answer, or None."""
        path = f"/_matrix/federation/v1/hierarchy/{quote(room_id, safe='')}"
        for server in servers:
            if server == self._server_name:
                continue
            try:
                answer = await self._client.get_json(server, path, {"suggested_only": "true"})
            except (RemoteError, RemoteUnreachable) as exc:
                logger.info("no summary of %s from %s: %s", room_id, server, exc)
                continue
            room = parse_hierarchy_room(room_id, answer)
            if room is not None:
                return room
            logger.info("malformed hierarchy answer from %s for %s", server, room_id)
        return None
