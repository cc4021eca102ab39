"""Helpers of the Synapse interop tests: calls, waiting for federation, state comparison."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.interop.synapse_peer import SynapsePeer

TIMEOUT_S = 30.0


def q(value: str) -> str:
    return quote(value, safe="")


@dataclass
class Client:
    """A Matrix client of one server, either Veche or Synapse."""

    http: aiohttp.ClientSession
    base_url: str
    user_id: str
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method,
            self.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            return response.status, await response.json(content_type=None)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = await self.call(method, path, body)
        assert status == 200, (method, path, status, reply)
        return reply


@dataclass
class Veche:
    name: str
    client_url: str
    http: aiohttp.ClientSession
    register_user: Callable[[str], Awaitable[tuple[str, str]]]
    # Closes the federation listener (other servers cannot reach us) / opens it again.
    set_federation_reachable: Callable[[bool], Awaitable[None]]

    async def user(self, localpart: str) -> Client:
        user_id, token = await self.register_user(localpart)
        return Client(self.http, self.client_url, user_id, token)


@dataclass
class Synapse:
    peer: SynapsePeer
    http: aiohttp.ClientSession

    @property
    def name(self) -> str:
        return self.peer.server_name

    async def user(self, localpart: str) -> Client:
        user_id, token = await self.peer.register(self.http, localpart)
        return Client(self.http, self.peer.client_url, user_id, token)


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, peer: SynapsePeer | None = None
) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            log = f"\nSynapse log:\n{peer.log_tail()}" if peer else ""
            raise AssertionError(f"timed out waiting for {what}{log}")
        await asyncio.sleep(0.2)


async def create_room(user: Client, **body: Any) -> str:
    reply = await user.ok("POST", "/_matrix/client/v3/createRoom", body)
    return str(reply["room_id"])


async def send_text(user: Client, room_id: str, body: str) -> str:
    txn = f"t{asyncio.get_running_loop().time()}".replace(".", "")
    reply = await user.ok(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": body},
    )
    return str(reply["event_id"])


async def set_state(user: Client, room_id: str, event_type: str, content: dict[str, Any]) -> str:
    reply = await user.ok(
        "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/state/{event_type}/", content
    )
    return str(reply["event_id"])


async def bodies_seen(user: Client, room_id: str) -> list[str]:
    status, page = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=100"
    )
    if status != 200:
        return []
    return [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]


async def state_content(user: Client, room_id: str, event_type: str, state_key: str = "") -> Any:
    status, content = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}"
    )
    return content if status == 200 else None


async def state_ids(user: Client, room_id: str) -> set[tuple[str, str, str]]:
    events = await user.ok("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    return {(e["type"], e["state_key"], e["event_id"]) for e in events}


async def membership_of(viewer: Client, room_id: str, user_id: str) -> str | None:
    content = await state_content(viewer, room_id, "m.room.member", user_id)
    return None if content is None else content.get("membership")


async def wait_membership(
    viewer: Client, room_id: str, user_id: str, membership: str, peer: SynapsePeer
) -> None:
    async def check() -> bool:
        return await membership_of(viewer, room_id, user_id) == membership

    await eventually(check, f"{user_id} {membership} as seen by {viewer.user_id}", peer)


async def wait_message(viewer: Client, room_id: str, body: str, peer: SynapsePeer) -> None:
    async def check() -> bool:
        return body in await bodies_seen(viewer, room_id)

    await eventually(check, f"{body!r} seen by {viewer.user_id}", peer)


async def wait_state(
    viewer: Client,
    room_id: str,
    event_type: str,
    key: str,
    value: str,
    peer: SynapsePeer,
) -> None:
    async def check() -> bool:
        content = await state_content(viewer, room_id, event_type)
        return content is not None and content.get(key) == value

    await eventually(check, f"{event_type} {key}={value!r} seen by {viewer.user_id}", peer)


async def grant_power(admin: Client, room_id: str, user_id: str, level: int) -> None:
    levels = await state_content(admin, room_id, "m.room.power_levels")
    levels.setdefault("users", {})[user_id] = level
    await set_state(admin, room_id, "m.room.power_levels", levels)


async def wait_power(
    viewer: Client, room_id: str, user_id: str, level: int, peer: SynapsePeer
) -> None:
    async def check() -> bool:
        levels = await state_content(viewer, room_id, "m.room.power_levels")
        return levels is not None and levels.get("users", {}).get(user_id) == level

    await eventually(check, f"power {level} for {user_id} seen by {viewer.user_id}", peer)


async def wait_same_state(a: Client, b: Client, room_id: str, peer: SynapsePeer) -> None:
    async def check() -> bool:
        return await state_ids(a, room_id) == await state_ids(b, room_id)

    try:
        await eventually(check, "identical room state on both servers", peer)
    except AssertionError as exc:
        seen_a, seen_b = await state_ids(a, room_id), await state_ids(b, room_id)
        raise AssertionError(
            f"state differs: only {a.user_id}: {seen_a - seen_b};"
            f" only {b.user_id}: {seen_b - seen_a}"
        ) from exc


