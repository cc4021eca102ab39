"""Pushers (pusher.yaml) and HTTP pushers talking to a push gateway (push-gateway-api.md),
through the real application on a real database, with a small gateway of our own on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from homeserver.services.pushers_gateway import GatewayClient, GatewayError
from tests.http.account_helpers import PASSWORD, running_server
from tests.http.room_helpers import Client, User, register_users
from tests.http.sync_helpers import send_text

NOTIFY = "/_matrix/push/v1/notify"
LOOPBACK_GATEWAYS = {
    "pushers": {"gateway_ip_range_allowlist": ["127.0.0.0/8"], "allow_http_gateways": True}
}


@dataclass
class Gateway:
    """A push gateway double: records every /notify body, answers as told."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered first, one per request
    rejected: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def notify(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            return web.json_response({"errcode": "M_UNKNOWN"}, status=status)
        return web.json_response({"rejected": self.rejected})

    async def wait_for(self, count: int, limit_s: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(limit_s):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    double = Gateway()
    app = web.Application()
    app.router.add_post(NOTIFY, double.notify)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    double.url = f"http://127.0.0.1:{port}{NOTIFY}"
    yield double
    await runner.cleanup()


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool, **LOOPBACK_GATEWAYS) as client:
        assert client.deps.pushers is not None
        client.deps.pushers.pool.backoff_initial_s = 0.05
        yield client
        await client.deps.pushers.close()


@pytest.fixture
async def room(client: Client) -> tuple[User, User, str]:
    alice, bob = await register_users(client, "alice", "bob")
    room_id = await alice.create_room(preset="private_chat", invite=[bob.user_id])
    assert (await bob.join(room_id)).status == 200
    return alice, bob, room_id


def pusher_body(url: str, **extra: Any) -> dict[str, Any]:
    body = {
        "kind": "http",
        "app_id": "org.example.app.ios",
        "pushkey": "key-1",
        "app_display_name": "Example",
        "device_display_name": "Bob's phone",
        "lang": "en",
        "data": {"url": url, "custom": "kept"},
    }
    return {**body, **extra}


async def set_pusher(user: User, body: dict[str, Any]) -> Any:
    return await user.call("POST", "/pushers/set", body)


async def pushers(user: User) -> list[dict[str, Any]]:
    reply = await user.call("GET", "/pushers")
    assert reply.status == 200, reply.body
    found: list[dict[str, Any]] = reply.body["pushers"]
    return found


async def test_set_pusher_is_listed_and_null_kind_deletes_it(room: tuple[User, User, str]) -> None:
    _, bob, _ = room
    url = "https://push.example.org" + NOTIFY
    reply = await set_pusher(bob, pusher_body(url, profile_tag="tag"))
    assert (reply.status, reply.body) == (200, {})
    assert await pushers(bob) == [
        {
            "pushkey": "key-1",
            "kind": "http",
            "app_id": "org.example.app.ios",
            "app_display_name": "Example",
            "device_display_name": "Bob's phone",
            "profile_tag": "tag",
            "lang": "en",
            "data": {"url": url, "custom": "kept"},
        }
    ]
    body = {"kind": None, "app_id": "org.example.app.ios", "pushkey": "key-1"}
    assert (await set_pusher(bob, body)).status == 200
    assert await pushers(bob) == []


@pytest.mark.parametrize(
    ("change", "errcode"),
    [
        ({"kind": "sms"}, "M_INVALID_PARAM"),
        ({"data": {}}, "M_INVALID_PARAM"),  # no url
        ({"data": {"url": "https://push.example.org/notify"}}, "M_INVALID_PARAM"),
        ({"data": {"url": "ftp://push.example.org" + NOTIFY}}, "M_INVALID_PARAM"),
        ({"lang": None, "data": None}, "M_MISSING_PARAM"),
        ({"app_id": "a" * 65}, "M_INVALID_PARAM"),
        ({"pushkey": "é" * 300}, "M_INVALID_PARAM"),  # 600 bytes
        ({"append": "yes"}, "M_BAD_JSON"),
    ],
)
async def test_invalid_pushers_are_refused(
    room: tuple[User, User, str], change: dict[str, Any], errcode: str
) -> None:
    _, bob, _ = room
    body = {k: v for k, v in {**pusher_body("https://p.example" + NOTIFY), **change}.items()}
    reply = await set_pusher(bob, {k: v for k, v in body.items() if v is not None})
    assert (reply.status, reply.body["errcode"]) == (400, errcode)
    assert await pushers(bob) == []


async def test_missing_kind_is_refused(room: tuple[User, User, str]) -> None:
    _, bob, _ = room
    reply = await set_pusher(bob, {"app_id": "a", "pushkey": "k"})
    assert (reply.status, reply.body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_pushkey_moves_between_users_unless_appended(room: tuple[User, User, str]) -> None:
    alice, bob, _ = room
    url = "https://push.example.org" + NOTIFY
    assert (await set_pusher(alice, pusher_body(url))).status == 200
    assert (await set_pusher(bob, pusher_body(url, append=True))).status == 200
    assert len(await pushers(alice)) == 1 and len(await pushers(bob)) == 1
    assert (await set_pusher(bob, pusher_body(url, device_display_name="new"))).status == 200
    assert await pushers(alice) == []
    assert [p["device_display_name"] for p in await pushers(bob)] == ["new"]


async def test_logging_out_deletes_the_devices_pushers(
    client: Client, room: tuple[User, User, str]
) -> None:
    _, bob, _ = room
    login = await client.call(
        "POST",
        "/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "bob"},
            "password": PASSWORD,
        },
    )
    assert login.status == 200, login.body
    phone = User(client, bob.user_id, login.body["access_token"])
    assert (await set_pusher(phone, pusher_body("https://p.example" + NOTIFY))).status == 200
    assert len(await pushers(bob)) == 1
    assert (await phone.call("POST", "/logout", {})).status == 200
    assert await pushers(bob) == []


async def test_message_is_pushed_to_the_gateway_in_full(
    room: tuple[User, User, str], gateway: Gateway
) -> None:
    alice, bob, room_id = room
    assert (await set_pusher(bob, pusher_body(gateway.url))).status == 200
    event_id = await send_text(alice, room_id, "hello bob")
    (body,) = await gateway.wait_for(1)
    notification = body["notification"]
    assert notification["event_id"] == event_id
    assert notification["room_id"] == room_id
    assert notification["type"] == "m.room.message"
    assert notification["sender"] == alice.user_id
    assert notification["sender_display_name"] == "alice"
    assert notification["content"] == {"msgtype": "m.text", "body": "hello bob"}
    assert notification["counts"] == {"unread": 1}
    assert notification["prio"] == "high"
    (device,) = notification["devices"]
    assert device["app_id"] == "org.example.app.ios" and device["pushkey"] == "key-1"
    assert device["data"] == {"custom": "kept"}  # without the url
    assert device["tweaks"] == {"sound": "default"}  # .m.rule.room_one_to_one
    assert isinstance(device["pushkey_ts"], int)


async def test_event_id_only_format_leaves_out_the_event(
    room: tuple[User, User, str], gateway: Gateway
) -> None:
    alice, bob, room_id = room
    data = {"url": gateway.url, "format": "event_id_only"}
    assert (await set_pusher(bob, pusher_body(gateway.url, data=data))).status == 200
    event_id = await send_text(alice, room_id, "secret")
    (body,) = await gateway.wait_for(1)
    notification = body["notification"]
    assert notification["event_id"] == event_id and notification["room_id"] == room_id
    assert notification["counts"] == {"unread": 1}
    assert "content" not in notification and "sender" not in notification
    assert notification["devices"][0]["data"] == {"format": "event_id_only"}


async def test_failed_gateway_is_retried_and_counts_grow(
    room: tuple[User, User, str], gateway: Gateway
) -> None:
    alice, bob, room_id = room
    assert (await set_pusher(bob, pusher_body(gateway.url))).status == 200
    gateway.statuses = [500, 503]
    first = await send_text(alice, room_id, "one")
    received = await gateway.wait_for(3)  # two failures, then success
    assert [r["notification"]["event_id"] for r in received] == [first] * 3
    second = await send_text(alice, room_id, "two")
    received = await gateway.wait_for(4)
    assert received[3]["notification"]["event_id"] == second
    assert received[3]["notification"]["counts"] == {"unread": 2}


async def test_rejected_pushkey_removes_the_pusher(
    room: tuple[User, User, str], gateway: Gateway
) -> None:
    alice, bob, room_id = room
    assert (await set_pusher(bob, pusher_body(gateway.url))).status == 200
    gateway.rejected = ["key-1"]
    await send_text(alice, room_id, "one")
    await gateway.wait_for(1)
    for _ in range(50):
        if not await pushers(bob):
            break
        await asyncio.sleep(0.05)
    assert await pushers(bob) == []
    await send_text(alice, room_id, "two")
    await asyncio.sleep(0.3)
    assert len(gateway.received) == 1


async def test_gateway_client_refuses_loopback_unless_allowed(gateway: Gateway) -> None:
    strict = GatewayClient(timeout_s=2.0)
    try:
        with pytest.raises(GatewayError):
            await strict.notify(gateway.url, {"notification": {"devices": []}})
    finally:
        await strict.close()
    assert gateway.received == []
    allowed = GatewayClient(allowlist=["127.0.0.0/8"], timeout_s=2.0)
    try:
        assert await allowed.notify(gateway.url, {"notification": {"devices": []}}) == []
    finally:
        await allowed.close()


async def test_https_is_required_unless_configured(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        (bob,) = await register_users(client, "bob")
        reply = await set_pusher(bob, pusher_body("http://push.example.org" + NOTIFY))
        assert (reply.status, reply.body["errcode"]) == (400, "M_INVALID_PARAM")
        assert (
            await set_pusher(bob, pusher_body("https://push.example.org" + NOTIFY))
        ).status == 200
