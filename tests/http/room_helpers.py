"""Helpers for the room tests: users with tokens, and short calls for common room requests.

The server is the real application (tests/http/account_helpers.py `running_server`) on a
fresh test database; users are registered through /register.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from homeserver.app import Dependencies
from tests.http.account_helpers import SERVER_NAME, Client, Reply

__all__ = ["SERVER_NAME", "Client", "Reply", "User", "q", "register_users"]


def q(identifier: str) -> str:
    """Percent-encode a path segment (room IDs, aliases, user IDs, event IDs)."""
    return quote(identifier, safe="")


@dataclass
class User:
    client: Client
    user_id: str
    token: str

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.client.call(method, path, body, token=self.token, **kwargs)

    async def create_room(self, **body: Any) -> str:
        reply = await self.call("POST", "/createRoom", body)
        assert reply.status == 200, reply.body
        room_id: str = reply.body["room_id"]
        return room_id

    async def join(self, room: str, **body: Any) -> Reply:
        return await self.call("POST", f"/join/{q(room)}", body)

    async def invite(self, room_id: str, user_id: str, **body: Any) -> Reply:
        return await self.call("POST", f"/rooms/{q(room_id)}/invite", {"user_id": user_id, **body})

    async def leave(self, room_id: str, **body: Any) -> Reply:
        return await self.call("POST", f"/rooms/{q(room_id)}/leave", body)

    async def send(
        self,
        room_id: str,
        content: Mapping[str, Any],
        txn_id: str,
        event_type: str = "m.room.message",
    ) -> Reply:
        path = f"/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn_id)}"
        return await self.call("PUT", path, dict(content))

    async def put_state(
        self, room_id: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
    ) -> Reply:
        path = f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"
        return await self.call("PUT", path, dict(content))


async def register_users(client: Client, *names: str) -> list[User]:
    users = []
    for name in names:
        body = await client.register(name)
        users.append(User(client, body["user_id"], body["access_token"]))
    return users


async def current_state(deps: Dependencies, room_id: str) -> dict[tuple[str, str], Any]:
    """`(type, state_key) → content` of the room's current state, read from the engine."""
    events = await deps.engine.state.get_current_state(room_id)
    return {key: dict(event.content) for key, event in events.items()}


async def state_event(
    deps: Dependencies, room_id: str, event_type: str, state_key: str = ""
) -> Any:
    """The current state event at `(event_type, state_key)`, or None."""
    events = await deps.engine.state.get_current_state(room_id, [(event_type, state_key)])
    return events.get((event_type, state_key))
