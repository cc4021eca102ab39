"""Helpers for the /sync tests: a running server with users, and sync calls."""

from __future__ import annotations

from typing import Any

import orjson

from tests.http.room_helpers import User, q


async def sync(user: User, **query: Any) -> dict[str, Any]:
    """`GET /sync` with these query parameters (dicts become inline JSON filters)."""
    params = {
        k: orjson.dumps(v).decode()
        if isinstance(v, dict)
        else str(v).lower()
        if isinstance(v, bool)
        else str(v)
        for k, v in query.items()
    }
    reply = await user.call("GET", "/sync", query=params)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def timeline(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body["rooms"]["join"][room_id]["timeline"]["events"]
    return events


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


async def send_text(user: User, room_id: str, text: str) -> str:
    reply = await user.send(room_id, {"msgtype": "m.text", "body": text}, txn_id=f"t-{text}")
    assert reply.status == 200, reply.body
    event_id: str = reply.body["event_id"]
    return event_id


async def receipt(user: User, room_id: str, event_id: str, kind: str = "m.read") -> None:
    reply = await user.call("POST", f"/rooms/{q(room_id)}/receipt/{kind}/{q(event_id)}", {})
    assert reply.status == 200, reply.body
