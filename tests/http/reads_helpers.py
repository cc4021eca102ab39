"""Helpers for the room-reading tests: rooms built through the real application's endpoints
(/createRoom, /join, /send, /state), read back through /messages, /context, /event …"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from tests.http.room_helpers import Reply, User, q

_txn_ids = itertools.count()


def text(body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body}


async def send(
    user: User, room_id: str, content: Mapping[str, Any], event_type: str = "m.room.message"
) -> str:
    """Send an event; its event ID."""
    reply = await user.send(room_id, content, f"t{next(_txn_ids)}", event_type)
    assert reply.status == 200, reply.body
    event_id: str = reply.body["event_id"]
    return event_id


async def say(user: User, room_id: str, body: str) -> str:
    return await send(user, room_id, text(body))


async def set_state(
    user: User, room_id: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
) -> str:
    reply = await user.put_state(room_id, event_type, content, state_key)
    assert reply.status == 200, reply.body
    event_id: str = reply.body["event_id"]
    return event_id


async def create_room(
    user: User, *, history_visibility: str = "shared", preset: str = "public_chat"
) -> str:
    """A room with the given preset and history visibility, created by `user`."""
    return await user.create_room(
        preset=preset,
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": history_visibility},
            }
        ],
    )


async def join(user: User, room_id: str) -> None:
    reply = await user.join(room_id)
    assert reply.status == 200, reply.body


async def leave(user: User, room_id: str) -> None:
    reply = await user.leave(room_id)
    assert reply.status == 200, reply.body


async def get(user: User, path: str, **query: Any) -> Reply:
    """GET `path` (under /_matrix/client/v3 unless it starts with /_) with query parameters."""
    params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
    return await user.call("GET", path, query=params)


async def messages(user: User, room_id: str, **query: Any) -> Reply:
    return await get(user, f"/rooms/{q(room_id)}/messages", **query)


async def messages_ok(user: User, room_id: str, **query: Any) -> Any:
    reply = await messages(user, room_id, **query)
    assert reply.status == 200, reply.body
    return reply.body


def bodies(events: list[dict[str, Any]]) -> list[str]:
    """The `body` of each message event, in order (other events skipped)."""
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


async def visible_bodies(user: User, room_id: str) -> list[str]:
    """Every message body `user` can page back through, oldest first."""
    found: list[dict[str, Any]] = []
    query: dict[str, Any] = {"dir": "b", "limit": 100}
    while True:
        page = await messages_ok(user, room_id, **query)
        found.extend(page["chunk"])
        if "end" not in page:
            return list(reversed(bodies(found)))
        query["from"] = page["end"]
