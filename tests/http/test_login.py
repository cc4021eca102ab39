"""GET/POST /login, /refresh, /logout, /logout/all and token handling, against the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from homeserver.services.auth import token_hash
from tests.http.account_helpers import PASSWORD, SERVER_NAME, Client, running_server

ALICE = f"@alice:{SERVER_NAME}"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        await client.register("alice", inhibit_login=True)
        yield client


async def test_get_login_offers_password_login(client: Client) -> None:
    reply = await client.call("GET", "/login")
    assert reply.status == 200
    assert reply.body == {"flows": [{"type": "m.login.password"}]}


@pytest.mark.parametrize("user", ["alice", ALICE, "ALICE", f"@Alice:{SERVER_NAME}"])
async def test_login_by_localpart_or_user_id_ignoring_case(client: Client, user: str) -> None:
    reply = await client.login(user)
    assert reply.status == 200, reply.body
    assert reply.body["user_id"] == ALICE
    assert reply.body["home_server"] == SERVER_NAME
    assert reply.body["well_known"]["m.homeserver"]["base_url"].startswith("http")
    assert reply.body["access_token"].startswith("vat_")
    assert "refresh_token" not in reply.body and "expires_in_ms" not in reply.body
    me = await client.whoami(reply.body["access_token"])
    assert me.body["device_id"] == reply.body["device_id"]


async def test_legacy_user_field_logs_in(client: Client) -> None:
    reply = await client.call(
        "POST", "/login", {"type": "m.login.password", "user": "alice", "password": PASSWORD}
    )
    assert reply.status == 200
    assert reply.body["user_id"] == ALICE


@pytest.mark.parametrize(
    "user, password",
    [("alice", "wrong"), ("nobody", PASSWORD), ("@alice:elsewhere.test", PASSWORD)],
)
async def test_bad_credentials_are_forbidden(client: Client, user: str, password: str) -> None:
    reply = await client.login(user, password)
    assert reply.status == 403
    assert reply.body["errcode"] == "M_FORBIDDEN"


async def test_unknown_login_type_is_400(client: Client) -> None:
    reply = await client.call("POST", "/login", {"type": "m.login.token", "token": "x"})
    assert reply.status == 400
    assert reply.body["errcode"] == "M_UNKNOWN"


async def test_third_party_identifier_is_forbidden(client: Client) -> None:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"},
        "password": PASSWORD,
    }
    reply = await client.call("POST", "/login", body)
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    "body, errcode",
    [
        ({"identifier": {"type": "m.id.user", "user": "alice"}}, "M_MISSING_PARAM"),
        ({"password": PASSWORD}, "M_MISSING_PARAM"),
        ({"identifier": "alice", "password": PASSWORD}, "M_BAD_JSON"),
        ({"identifier": {"type": "m.id.user", "user": 7}, "password": PASSWORD}, "M_BAD_JSON"),
        ({"user": "alice", "password": PASSWORD, "device_id": 3}, "M_BAD_JSON"),
        ({"user": "alice", "password": PASSWORD, "device_id": ""}, "M_INVALID_PARAM"),
    ],
)
async def test_malformed_login_bodies_are_400(
    client: Client, body: dict[str, object], errcode: str
) -> None:
    reply = await client.call("POST", "/login", {"type": "m.login.password", **body})
    assert reply.status == 400
    assert reply.body["errcode"] == errcode


async def test_missing_type_is_missing_param(client: Client) -> None:
    reply = await client.call("POST", "/login", {"user": "alice", "password": PASSWORD})
    assert (reply.status, reply.body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_each_login_gets_a_new_device(client: Client) -> None:
    first = await client.login("alice")
    second = await client.login("alice")
    assert first.body["device_id"] != second.body["device_id"]
    assert (await client.whoami(first.body["access_token"])).status == 200
    assert (await client.whoami(second.body["access_token"])).status == 200


async def test_reusing_a_device_id_revokes_its_old_token_and_keeps_its_name(
    client: Client,
) -> None:
    first = await client.login("alice", device_id="LAPTOP", initial_device_display_name="Old")
    second = await client.login("alice", device_id="LAPTOP", initial_device_display_name="New")
    assert second.body["device_id"] == "LAPTOP"
    stale = await client.whoami(first.body["access_token"])
    assert (stale.status, stale.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert stale.body.get("soft_logout", False) is False
    token = second.body["access_token"]
    device = await client.call("GET", "/devices/LAPTOP", token=token)
    assert device.body["display_name"] == "Old"


async def test_missing_token_and_unknown_token(client: Client) -> None:
    missing = await client.call("GET", "/account/whoami")
    assert (missing.status, missing.body["errcode"]) == (401, "M_MISSING_TOKEN")
    unknown = await client.whoami("vat_not-a-token")
    assert (unknown.status, unknown.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert unknown.body["soft_logout"] is False


async def test_non_bearer_authorization_is_a_missing_token(client: Client) -> None:
    async with client.http.get(
        client.base_url + "/_matrix/client/v3/account/whoami",
        headers={"Authorization": "Basic YWxpY2U6cGFzcw=="},
    ) as response:
        body = await response.json()
    assert (response.status, body["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_deprecated_access_token_query_parameter_still_works(client: Client) -> None:
    token = (await client.login("alice")).body["access_token"]
    reply = await client.call("GET", "/account/whoami", query={"access_token": token})
    assert reply.status == 200
    assert reply.body["user_id"] == ALICE


async def test_tokens_are_stored_only_as_hashes(client: Client, pool: asyncpg.Pool) -> None:
    token = (await client.login("alice")).body["access_token"]
    stored = await pool.fetchval("SELECT token_hash FROM access_tokens WHERE user_id = $1", ALICE)
    assert stored == token_hash(token)
    assert token.encode() not in stored


async def test_logout_revokes_the_token_and_deletes_the_device(client: Client) -> None:
    login = (await client.login("alice")).body
    other = (await client.login("alice")).body
    reply = await client.call("POST", "/logout", {}, token=login["access_token"])
    assert (reply.status, reply.body) == (200, {})
    assert (await client.whoami(login["access_token"])).status == 401
    devices = await client.call("GET", "/devices", token=other["access_token"])
    assert [d["device_id"] for d in devices.body["devices"]] == [other["device_id"]]


async def test_logout_all_revokes_every_token(client: Client) -> None:
    tokens = [(await client.login("alice")).body["access_token"] for _ in range(3)]
    reply = await client.call("POST", "/logout/all", {}, token=tokens[0])
    assert reply.status == 200
    for token in tokens:
        assert (await client.whoami(token)).status == 401


async def test_logout_needs_a_token(client: Client) -> None:
    reply = await client.call("POST", "/logout", {})
    assert (reply.status, reply.body["errcode"]) == (401, "M_MISSING_TOKEN")


# ---- refresh tokens ---------------------------------------------------------------------------


async def test_refresh_rotates_tokens_and_the_old_access_token_dies(client: Client) -> None:
    login = (await client.login("alice", refresh_token=True)).body
    assert login["expires_in_ms"] == 5 * 60_000
    reply = await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})
    assert reply.status == 200
    fresh = reply.body
    assert set(fresh) == {"access_token", "refresh_token", "expires_in_ms"}
    assert fresh["refresh_token"] != login["refresh_token"]
    assert (await client.whoami(login["access_token"])).status == 401
    me = await client.whoami(fresh["access_token"])
    assert me.body["device_id"] == login["device_id"]  # still bound to the same device


async def test_old_refresh_token_works_until_the_new_access_token_is_used(
    client: Client,
) -> None:
    login = (await client.login("alice", refresh_token=True)).body
    lost = await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})
    retry = await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})
    assert retry.status == 200  # the first answer never arrived: repeat the refresh
    assert (await client.whoami(lost.body["access_token"])).status == 401
    assert (await client.whoami(retry.body["access_token"])).status == 200
    again = await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})
    assert (again.status, again.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def test_using_the_new_refresh_token_revokes_the_old_one(client: Client) -> None:
    login = (await client.login("alice", refresh_token=True)).body
    first = (await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})).body
    second = await client.call("POST", "/refresh", {"refresh_token": first["refresh_token"]})
    assert second.status == 200
    old = await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})
    assert (old.status, old.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def test_expired_access_token_is_a_soft_logout_and_refresh_recovers(
    client: Client, pool: asyncpg.Pool
) -> None:
    login = (await client.login("alice", refresh_token=True)).body
    await pool.execute("UPDATE access_tokens SET expires_ts = 1 WHERE user_id = $1", ALICE)
    expired = await client.whoami(login["access_token"])
    assert (expired.status, expired.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert expired.body["soft_logout"] is True
    fresh = await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})
    assert (await client.whoami(fresh.body["access_token"])).status == 200


async def test_unknown_refresh_token_is_unknown_token(client: Client) -> None:
    reply = await client.call("POST", "/refresh", {"refresh_token": "vrt_nope"})
    assert (reply.status, reply.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    missing = await client.call("POST", "/refresh", {})
    assert (missing.status, missing.body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_logout_kills_the_refresh_token(client: Client) -> None:
    login = (await client.login("alice", refresh_token=True)).body
    await client.call("POST", "/logout", {}, token=login["access_token"])
    reply = await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})
    assert reply.status == 401


async def test_login_is_rate_limited_per_ip(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(
        tmp_path, migrated_db_dsn, pool, rate_limits={"per_second": 1.0, "burst": 3}
    ) as limited:
        statuses = [(await limited.login("nobody", "x")).status for _ in range(4)]
        assert statuses == [403, 403, 403, 429]
