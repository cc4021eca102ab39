"""/account/whoami, /account/password, /account/deactivate and /capabilities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from federation.room_versions import KNOWN_ROOM_VERSIONS
from tests.http.account_helpers import PASSWORD, SERVER_NAME, Client, running_server

ALICE = f"@alice:{SERVER_NAME}"
NEW_PASSWORD = "a brand new password"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def alice(client: Client) -> Any:
    return await client.register("alice")


def password_auth(session: str, user: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "session": session,
    }


async def test_whoami_names_user_and_device(client: Client, alice: Any) -> None:
    reply = await client.whoami(alice["access_token"])
    assert reply.status == 200
    assert reply.body == {"user_id": ALICE, "device_id": alice["device_id"], "is_guest": False}


# ---- password change --------------------------------------------------------------------------


async def test_password_change_asks_for_the_password_stage(client: Client, alice: Any) -> None:
    body = {"new_password": NEW_PASSWORD}
    reply = await client.call("POST", "/account/password", body, token=alice["access_token"])
    assert reply.status == 401
    assert reply.body["flows"] == [{"stages": ["m.login.password"]}]
    assert reply.body["session"]


async def change_password(client: Client, token: str | None, **extra: Any) -> Any:
    body: dict[str, Any] = {"new_password": NEW_PASSWORD, **extra}
    challenge = await client.call("POST", "/account/password", body, token=token)
    assert challenge.status == 401
    body["auth"] = password_auth(challenge.body["session"])
    return await client.call("POST", "/account/password", body, token=token)


async def test_password_change_logs_out_other_devices_by_default(
    client: Client, alice: Any
) -> None:
    other = (await client.login("alice")).body
    reply = await change_password(client, alice["access_token"])
    assert (reply.status, reply.body) == (200, {})
    assert (await client.whoami(alice["access_token"])).status == 200  # the caller stays
    assert (await client.whoami(other["access_token"])).status == 401
    assert (await client.login("alice", PASSWORD)).status == 403
    assert (await client.login("alice", NEW_PASSWORD)).status == 200


async def test_password_change_can_keep_other_devices(client: Client, alice: Any) -> None:
    other = (await client.login("alice")).body
    reply = await change_password(client, alice["access_token"], logout_devices=False)
    assert reply.status == 200
    assert (await client.whoami(other["access_token"])).status == 200


async def test_wrong_current_password_gets_401_with_forbidden(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    body: dict[str, Any] = {"new_password": NEW_PASSWORD}
    session = (await client.call("POST", "/account/password", body, token=token)).body["session"]
    body["auth"] = password_auth(session, password="wrong")
    reply = await client.call("POST", "/account/password", body, token=token)
    assert reply.status == 401
    assert reply.body["errcode"] == "M_FORBIDDEN"
    assert reply.body["session"] == session
    assert reply.body["flows"] == [{"stages": ["m.login.password"]}]
    body["auth"] = password_auth(session)  # a second attempt in the same session
    assert (await client.call("POST", "/account/password", body, token=token)).status == 200


async def test_another_users_password_does_not_authorise(client: Client, alice: Any) -> None:
    await client.register("bob")
    token = alice["access_token"]
    body: dict[str, Any] = {"new_password": NEW_PASSWORD}
    session = (await client.call("POST", "/account/password", body, token=token)).body["session"]
    body["auth"] = password_auth(session, user="bob")
    reply = await client.call("POST", "/account/password", body, token=token)
    assert (reply.status, reply.body["errcode"]) == (401, "M_FORBIDDEN")


async def test_session_cannot_be_reused_for_another_operation(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    challenge = await client.call(
        "POST", "/account/password", {"new_password": NEW_PASSWORD}, token=token
    )
    body = {"auth": password_auth(challenge.body["session"])}
    reply = await client.call("POST", "/account/deactivate", body, token=token)
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")


async def test_password_change_without_a_token_uses_the_password_stage(
    client: Client, alice: Any
) -> None:
    reply = await change_password(client, None)
    assert reply.status == 200
    assert (await client.whoami(alice["access_token"])).status == 401  # every device logged out
    assert (await client.login("alice", NEW_PASSWORD)).status == 200


async def test_new_password_is_required(client: Client, alice: Any) -> None:
    reply = await client.call("POST", "/account/password", {}, token=alice["access_token"])
    assert (reply.status, reply.body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_account_without_password_confirms_with_dummy_stage(client: Client) -> None:
    nopass = await client.register("nopass", password=None)
    token = nopass["access_token"]
    body: dict[str, Any] = {"new_password": NEW_PASSWORD}
    challenge = await client.call("POST", "/account/password", body, token=token)
    assert challenge.body["flows"] == [{"stages": ["m.login.dummy"]}]
    body["auth"] = {"type": "m.login.dummy", "session": challenge.body["session"]}
    assert (await client.call("POST", "/account/password", body, token=token)).status == 200
    assert (await client.login("nopass", NEW_PASSWORD)).status == 200


# ---- deactivation -----------------------------------------------------------------------------


async def test_deactivation_ends_sessions_and_refuses_login(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    challenge = await client.call("POST", "/account/deactivate", {}, token=token)
    assert challenge.status == 401
    assert challenge.body["flows"] == [{"stages": ["m.login.password"]}]
    body = {"auth": password_auth(challenge.body["session"])}
    reply = await client.call("POST", "/account/deactivate", body, token=token)
    assert (reply.status, reply.body) == (200, {"id_server_unbind_result": "success"})
    assert (await client.whoami(token)).status == 401
    login = await client.login("alice")
    assert (login.status, login.body["errcode"]) == (403, "M_USER_DEACTIVATED")
    again = await client.call("POST", "/register", {"username": "alice"})
    assert again.body["errcode"] == "M_USER_IN_USE"  # the user ID stays reserved


async def test_deactivation_with_wrong_password_changes_nothing(client: Client, alice: Any) -> None:
    token = alice["access_token"]
    session = (await client.call("POST", "/account/deactivate", {}, token=token)).body["session"]
    body = {"auth": password_auth(session, password="nope")}
    reply = await client.call("POST", "/account/deactivate", body, token=token)
    assert (reply.status, reply.body["errcode"]) == (401, "M_FORBIDDEN")
    assert (await client.whoami(token)).status == 200


# ---- capabilities -----------------------------------------------------------------------------


async def test_capabilities_describe_what_users_can_do(client: Client, alice: Any) -> None:
    reply = await client.call("GET", "/capabilities", token=alice["access_token"])
    assert reply.status == 200
    caps = reply.body["capabilities"]
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == {"enabled": False}
    assert caps["m.room_versions"]["default"] == "11"
    assert caps["m.room_versions"]["available"] == {v: "stable" for v in KNOWN_ROOM_VERSIONS}


async def test_capabilities_follow_the_configured_default_room_version(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(tmp_path, migrated_db_dsn, pool, default_room_version="10") as c:
        token = (await c.register("zoe"))["access_token"]
        reply = await c.call("GET", "/capabilities", token=token)
        assert reply.body["capabilities"]["m.room_versions"]["default"] == "10"


async def test_capabilities_need_a_token(client: Client) -> None:
    reply = await client.call("GET", "/capabilities")
    assert (reply.status, reply.body["errcode"]) == (401, "M_MISSING_TOKEN")
