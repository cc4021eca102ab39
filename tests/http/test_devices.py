"""/devices, /devices/{deviceId} (GET, PUT, DELETE) and /delete_devices."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import PASSWORD, SERVER_NAME, Client, running_server

ALICE = f"@alice:{SERVER_NAME}"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def alice(client: Client) -> Any:
    return await client.register("alice", device_id="PHONE", initial_device_display_name="Phone")


def password_auth(session: str) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": ALICE},
        "password": PASSWORD,
        "session": session,
    }


async def test_list_devices_shows_every_session(client: Client, alice: Any) -> None:
    await client.login("alice", device_id="LAPTOP", initial_device_display_name="Laptop")
    reply = await client.call("GET", "/devices", token=alice["access_token"])
    assert reply.status == 200
    by_id = {d["device_id"]: d for d in reply.body["devices"]}
    assert set(by_id) == {"PHONE", "LAPTOP"}
    assert by_id["LAPTOP"]["display_name"] == "Laptop"
    # Our own device was just used, so it has been seen.
    assert by_id["PHONE"]["last_seen_ip"] == "127.0.0.1"
    assert isinstance(by_id["PHONE"]["last_seen_ts"], int)
    # Never used yet: unknown values are null (as Synapse sends; nio requires the keys).
    assert by_id["LAPTOP"]["last_seen_ip"] is None
    assert by_id["LAPTOP"]["last_seen_ts"] is None


async def test_devices_of_other_users_are_invisible(client: Client, alice: Any) -> None:
    bob = await client.register("bob", device_id="BOBPHONE")
    reply = await client.call("GET", "/devices/BOBPHONE", token=alice["access_token"])
    assert (reply.status, reply.body["errcode"]) == (404, "M_NOT_FOUND")
    listed = await client.call("GET", "/devices", token=bob["access_token"])
    assert [d["device_id"] for d in listed.body["devices"]] == ["BOBPHONE"]


async def test_get_device(client: Client, alice: Any) -> None:
    reply = await client.call("GET", "/devices/PHONE", token=alice["access_token"])
    assert reply.status == 200
    assert reply.body["device_id"] == "PHONE"
    assert reply.body["display_name"] == "Phone"


async def test_rename_device(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    reply = await client.call("PUT", "/devices/PHONE", {"display_name": "Pocket"}, token=token)
    assert (reply.status, reply.body) == (200, {})
    device = await client.call("GET", "/devices/PHONE", token=token)
    assert device.body["display_name"] == "Pocket"
    unchanged = await client.call("PUT", "/devices/PHONE", {}, token=token)
    assert unchanged.status == 200
    assert (await client.call("GET", "/devices/PHONE", token=token)).body["display_name"] == (
        "Pocket"
    )


async def test_rename_unknown_device_is_404_and_creates_nothing(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    reply = await client.call("PUT", "/devices/GHOST", {"display_name": "x"}, token=token)
    assert (reply.status, reply.body["errcode"]) == (404, "M_NOT_FOUND")
    devices = await client.call("GET", "/devices", token=token)
    assert [d["device_id"] for d in devices.body["devices"]] == ["PHONE"]


async def test_rename_with_wrong_type_is_bad_json(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    reply = await client.call("PUT", "/devices/PHONE", {"display_name": 5}, token=token)
    assert (reply.status, reply.body["errcode"]) == (400, "M_BAD_JSON")


async def test_delete_device_requires_password_then_revokes_its_token(
    client: Client, alice: Any
) -> None:
    laptop = (await client.login("alice", device_id="LAPTOP")).body
    token = alice["access_token"]
    challenge = await client.call("DELETE", "/devices/LAPTOP", token=token)  # no body at all
    assert challenge.status == 401
    assert challenge.body["flows"] == [{"stages": ["m.login.password"]}]
    body = {"auth": password_auth(challenge.body["session"])}
    reply = await client.call("DELETE", "/devices/LAPTOP", body, token=token)
    assert (reply.status, reply.body) == (200, {})
    assert (await client.whoami(laptop["access_token"])).status == 401
    missing = await client.call("GET", "/devices/LAPTOP", token=token)
    assert missing.status == 404


async def test_deleting_a_device_also_deletes_its_refresh_tokens(
    client: Client, alice: Any, pool: asyncpg.Pool
) -> None:
    laptop = (await client.login("alice", device_id="LAPTOP", refresh_token=True)).body
    token = alice["access_token"]
    session = (await client.call("DELETE", "/devices/LAPTOP", {}, token=token)).body["session"]
    await client.call("DELETE", "/devices/LAPTOP", {"auth": password_auth(session)}, token=token)
    refresh = await client.call("POST", "/refresh", {"refresh_token": laptop["refresh_token"]})
    assert refresh.status == 401
    left = await pool.fetchval("SELECT count(*) FROM refresh_tokens WHERE device_id = 'LAPTOP'")
    assert left == 0


async def test_deleting_an_unknown_device_succeeds(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    session = (await client.call("DELETE", "/devices/GHOST", {}, token=token)).body["session"]
    reply = await client.call(
        "DELETE", "/devices/GHOST", {"auth": password_auth(session)}, token=token
    )
    assert reply.status == 200


async def test_bulk_delete_devices(client: Client, alice: Any) -> None:
    others = [(await client.login("alice", device_id=d)).body for d in ("A", "B", "C")]
    token = alice["access_token"]
    body: dict[str, Any] = {"devices": ["A", "B", "NOPE"]}
    challenge = await client.call("POST", "/delete_devices", body, token=token)
    assert challenge.status == 401
    body["auth"] = password_auth(challenge.body["session"])
    reply = await client.call("POST", "/delete_devices", body, token=token)
    assert (reply.status, reply.body) == (200, {})
    listed = await client.call("GET", "/devices", token=token)
    assert sorted(d["device_id"] for d in listed.body["devices"]) == ["C", "PHONE"]
    assert (await client.whoami(others[0]["access_token"])).status == 401
    assert (await client.whoami(others[2]["access_token"])).status == 200


async def test_bulk_delete_needs_a_device_list(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    missing = await client.call("POST", "/delete_devices", {}, token=token)
    assert (missing.status, missing.body["errcode"]) == (400, "M_MISSING_PARAM")
    wrong = await client.call("POST", "/delete_devices", {"devices": [1]}, token=token)
    assert (wrong.status, wrong.body["errcode"]) == (400, "M_BAD_JSON")


async def test_device_endpoints_need_a_token(client: Client) -> None:
    for method, path in [
        ("GET", "/devices"),
        ("GET", "/devices/X"),
        ("PUT", "/devices/X"),
        ("DELETE", "/devices/X"),
        ("POST", "/delete_devices"),
    ]:
        reply = await client.call(method, path, {})
        assert (reply.status, reply.body["errcode"]) == (401, "M_MISSING_TOKEN"), path


async def test_device_deletion_is_rate_limited_per_user(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(
        tmp_path, migrated_db_dsn, pool, rate_limits={"per_second": 0.01, "burst": 2}
    ) as limited:
        token = (await limited.register("alice"))["access_token"]
        statuses = [
            (await limited.call("DELETE", "/devices/X", {}, token=token)).status for _ in range(3)
        ]
        assert statuses == [401, 401, 429]
        # Other endpoints of the same user are not limited.
        assert (await limited.call("GET", "/devices", token=token)).status == 200
