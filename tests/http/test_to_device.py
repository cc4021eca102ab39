"""Send-to-device messaging through the real application (C-S "Send-to-Device messaging")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.e2e_helpers import DeviceUser, register_device_users
from tests.http.room_helpers import Client, q
from tests.http.sync_helpers import sync


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def pair(client: Client) -> tuple[DeviceUser, DeviceUser]:
    alice, bob = await register_device_users(client, "alice", "bob")
    return alice, bob


async def send(sender: DeviceUser, messages: dict[str, Any], txn_id: str) -> None:
    path = f"/sendToDevice/{q('m.test')}/{q(txn_id)}"
    reply = await sender.call("PUT", path, {"messages": messages})
    assert reply.status == 200, reply.body


def contents(body: dict[str, Any]) -> list[Any]:
    return [(e["sender"], e["type"], e["content"]) for e in body["to_device"]["events"]]


async def test_message_is_delivered_once_and_removed_after_next_sync(
    pair: tuple[DeviceUser, DeviceUser],
) -> None:
    alice, bob = pair
    token = (await sync(bob))["next_batch"]
    poll = asyncio.create_task(sync(bob, since=token, timeout=5000))
    await asyncio.sleep(0.2)
    await send(alice, {bob.user_id: {bob.device_id: {"n": 1}}}, "t1")
    first = await asyncio.wait_for(poll, 3)
    assert contents(first) == [(alice.user_id, "m.test", {"n": 1})]
    # Repeating the same since token gets the message again: it is not acknowledged yet.
    assert contents(await sync(bob, since=token)) == contents(first)
    second = await sync(bob, since=first["next_batch"])
    assert contents(second) == []
    rows = await bob.client.deps.pool.fetchval("SELECT count(*) FROM device_inbox")
    assert rows == 0


async def test_retried_txn_id_is_not_sent_again(pair: tuple[DeviceUser, DeviceUser]) -> None:
    alice, bob = pair
    await send(alice, {bob.user_id: {bob.device_id: {"n": 1}}}, "same")
    await send(alice, {bob.user_id: {bob.device_id: {"n": 1}}}, "same")
    assert contents(await sync(bob)) == [(alice.user_id, "m.test", {"n": 1})]


async def test_star_reaches_every_device_of_the_user(
    client: Client, pair: tuple[DeviceUser, DeviceUser]
) -> None:
    alice, bob = pair
    login = await client.login("bob")
    assert login.status == 200, login.body
    second = DeviceUser(client, bob.user_id, login.body["access_token"], login.body["device_id"])
    await send(alice, {bob.user_id: {"*": {"all": True}}}, "star")
    assert contents(await sync(bob)) == [(alice.user_id, "m.test", {"all": True})]
    assert contents(await sync(second)) == [(alice.user_id, "m.test", {"all": True})]
    assert contents(await sync(alice)) == []


async def test_malformed_messages_are_rejected(pair: tuple[DeviceUser, DeviceUser]) -> None:
    alice, _ = pair
    reply = await alice.call("PUT", "/sendToDevice/m.test/bad", {"messages": {"nobody": {}}})
    assert reply.status == 400
    reply = await alice.call("PUT", "/sendToDevice/m.test/bad2", {"messages": []})
    assert reply.status == 400 and reply.body["errcode"] == "M_BAD_JSON"


async def test_more_messages_than_one_response_holds_arrive_over_consecutive_syncs(
    pair: tuple[DeviceUser, DeviceUser],
) -> None:
    alice, bob = pair
    token = (await sync(bob))["next_batch"]
    for n in range(150):
        await send(alice, {bob.user_id: {bob.device_id: {"n": n}}}, f"many{n}")
    first = await sync(bob, since=token, timeout=10_000)
    # The rest is waiting, so the next /sync answers at once instead of long-polling.
    second = await asyncio.wait_for(sync(bob, since=first["next_batch"], timeout=10_000), 5)
    numbers = [e["content"]["n"] for body in (first, second) for e in body["to_device"]["events"]]
    assert len(first["to_device"]["events"]) == 100
    assert numbers == list(range(150))
    third = await sync(bob, since=second["next_batch"], timeout=0)
    assert contents(third) == []
    rows = await bob.client.deps.pool.fetchval("SELECT count(*) FROM device_inbox")
    assert rows == 0
