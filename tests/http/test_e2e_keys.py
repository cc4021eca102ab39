"""Device keys, one-time/fallback keys, cross-signing and device list changes through the real
application on PostgreSQL (C-S "End-to-End Encryption")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import PASSWORD, running_server
from tests.http.e2e_helpers import (
    DeviceUser,
    device_keys,
    register_device_users,
    signed_key,
    upload,
)
from tests.http.room_helpers import Client
from tests.http.sync_helpers import sync


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def pair(client: Client) -> tuple[DeviceUser, DeviceUser]:
    alice, bob = await register_device_users(client, "alice", "bob")
    return alice, bob


async def test_uploaded_device_keys_are_returned_by_query(
    pair: tuple[DeviceUser, DeviceUser],
) -> None:
    alice, bob = pair
    reply = await upload(alice, device_keys=device_keys(alice))
    assert reply.status == 200, reply.body
    assert reply.body["one_time_key_counts"] == {"signed_curve25519": 0}
    query = await bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert query.status == 200, query.body
    served = query.body["device_keys"][alice.user_id][alice.device_id]
    assert served["keys"] == device_keys(alice)["keys"]
    assert query.body["failures"] == {}


async def test_device_keys_for_another_device_are_rejected(
    pair: tuple[DeviceUser, DeviceUser],
) -> None:
    alice, bob = pair
    reply = await upload(alice, device_keys=device_keys(bob))
    assert reply.status == 400
    assert reply.body["errcode"] == "M_BAD_JSON"


async def test_claimed_one_time_key_is_gone_and_fallback_follows(
    pair: tuple[DeviceUser, DeviceUser],
) -> None:
    alice, bob = pair
    reply = await upload(
        alice,
        one_time_keys={"signed_curve25519:AAAA": signed_key("otk-1")},
        fallback_keys={"signed_curve25519:FFFF": signed_key("fallback")},
    )
    assert reply.body["one_time_key_counts"] == {"signed_curve25519": 1}
    request = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    first = await bob.call("POST", "/keys/claim", request)
    assert first.status == 200, first.body
    assert first.body["one_time_keys"][alice.user_id][alice.device_id] == {
        "signed_curve25519:AAAA": signed_key("otk-1")
    }
    body = await sync(alice)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    second = await bob.call("POST", "/keys/claim", request)
    assert second.body["one_time_keys"][alice.user_id][alice.device_id] == {
        "signed_curve25519:FFFF": signed_key("fallback")
    }
    assert (await sync(alice))["device_unused_fallback_key_types"] == []


async def test_concurrent_claims_never_share_a_key(pair: tuple[DeviceUser, DeviceUser]) -> None:
    alice, bob = pair
    keys = {f"signed_curve25519:K{i}": signed_key(f"k{i}") for i in range(5)}
    await upload(alice, one_time_keys=keys)
    request = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    replies = await asyncio.gather(*(bob.call("POST", "/keys/claim", request) for _ in range(5)))
    claimed = [next(iter(r.body["one_time_keys"][alice.user_id][alice.device_id])) for r in replies]
    assert sorted(claimed) == sorted(keys)


async def test_other_member_uploading_keys_shows_in_device_lists_changed(
    pair: tuple[DeviceUser, DeviceUser],
) -> None:
    alice, bob = pair
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    token = (await sync(alice))["next_batch"]
    poll = asyncio.create_task(sync(alice, since=token, timeout=5000))
    await asyncio.sleep(0.2)
    assert (await upload(bob, device_keys=device_keys(bob))).status == 200
    body = await asyncio.wait_for(poll, 3)
    assert bob.user_id in body["device_lists"]["changed"]
    changes = await alice.call(
        "GET", "/keys/changes", query={"from": token, "to": body["next_batch"]}
    )
    assert changes.status == 200 and bob.user_id in changes.body["changed"]


async def test_user_leaving_the_only_shared_room_is_listed_as_left(
    pair: tuple[DeviceUser, DeviceUser],
) -> None:
    alice, bob = pair
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    token = (await sync(alice))["next_batch"]
    assert (await bob.leave(room_id)).status == 200
    body = await sync(alice, since=token)
    assert body["device_lists"]["left"] == [bob.user_id]


async def test_cross_signing_upload_needs_uia_only_to_replace_keys(
    pair: tuple[DeviceUser, DeviceUser],
) -> None:
    alice, bob = pair

    def master(key: str) -> dict[str, object]:
        return {"user_id": alice.user_id, "usage": ["master"], "keys": {f"ed25519:{key}": key}}

    first = await alice.call("POST", "/keys/device_signing/upload", {"master_key": master("M1")})
    assert first.status == 200, first.body
    again = await alice.call("POST", "/keys/device_signing/upload", {"master_key": master("M1")})
    assert again.status == 200, again.body
    replace = await alice.call("POST", "/keys/device_signing/upload", {"master_key": master("M2")})
    assert replace.status == 401 and "session" in replace.body
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD,
        "session": replace.body["session"],
    }
    done = await alice.call(
        "POST", "/keys/device_signing/upload", {"master_key": master("M2"), "auth": auth}
    )
    assert done.status == 200, done.body
    query = await bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert query.body["master_keys"][alice.user_id]["keys"] == {"ed25519:M2": "M2"}
    assert alice.user_id not in query.body["user_signing_keys"]


async def test_deleted_device_loses_its_keys_and_is_a_device_list_change(
    client: Client, pair: tuple[DeviceUser, DeviceUser]
) -> None:
    alice, bob = pair
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    login = await client.login("bob", device_id="LAPTOP")
    assert login.status == 200, login.body
    laptop = DeviceUser(client, bob.user_id, login.body["access_token"], "LAPTOP")
    keys = {"signed_curve25519:AAAA": signed_key("otk")}
    fallback = {"signed_curve25519:FB": signed_key("fb")}
    reply = await upload(
        laptop, device_keys=device_keys(laptop), one_time_keys=keys, fallback_keys=fallback
    )
    assert reply.status == 200, reply.body
    inbox = {"messages": {bob.user_id: {"LAPTOP": {"n": 1}}}}
    assert (await alice.call("PUT", "/sendToDevice/m.test/t1", inbox)).status == 200
    token = (await sync(alice))["next_batch"]

    challenge = await bob.call("DELETE", "/devices/LAPTOP")
    assert challenge.status == 401 and "session" in challenge.body
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": bob.user_id},
        "password": PASSWORD,
        "session": challenge.body["session"],
    }
    deleted = await bob.call("DELETE", "/devices/LAPTOP", {"auth": auth})
    assert deleted.status == 200, deleted.body

    query = await alice.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
    assert query.status == 200 and "LAPTOP" not in query.body["device_keys"].get(bob.user_id, {})
    body = await sync(alice, since=token)
    assert bob.user_id in body["device_lists"]["changed"]
    pool = client.deps.pool
    for table in ("device_keys", "one_time_keys", "fallback_keys", "device_inbox"):
        left = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE device_id = 'LAPTOP'")
        assert left == 0, table
