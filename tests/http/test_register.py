"""POST /register and GET /register/available against the real app and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import PASSWORD, SERVER_NAME, Client, running_server


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


async def test_first_request_without_auth_gets_the_dummy_flow_and_a_session(
    client: Client,
) -> None:
    reply = await client.call("POST", "/register", {"username": "alice", "password": PASSWORD})
    assert reply.status == 401
    assert reply.body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert reply.body["params"] == {}
    assert isinstance(reply.body["session"], str) and reply.body["session"]
    assert "errcode" not in reply.body
    assert "completed" not in reply.body


async def test_dummy_stage_completes_registration_and_logs_in(client: Client) -> None:
    body = await client.register("alice", initial_device_display_name="Jungle Phone")
    assert body["user_id"] == f"@alice:{SERVER_NAME}"
    assert body["home_server"] == SERVER_NAME
    assert "refresh_token" not in body and "expires_in_ms" not in body
    me = await client.whoami(body["access_token"])
    assert me.status == 200
    assert me.body == {
        "user_id": body["user_id"],
        "device_id": body["device_id"],
        "is_guest": False,
    }
    device = await client.call("GET", f"/devices/{body['device_id']}", token=body["access_token"])
    assert device.body["display_name"] == "Jungle Phone"


async def test_dummy_auth_without_a_session_is_accepted(client: Client) -> None:
    # matrix-nio and others send the dummy stage straight away.
    reply = await client.call(
        "POST",
        "/register",
        {"username": "bob", "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
    )
    assert reply.status == 200
    assert reply.body["user_id"] == f"@bob:{SERVER_NAME}"


async def test_registered_password_logs_in(client: Client) -> None:
    await client.register("carol")
    login = await client.login("carol")
    assert login.status == 200
    assert login.body["user_id"] == f"@carol:{SERVER_NAME}"


async def test_taken_username_is_refused_before_authentication(client: Client) -> None:
    await client.register("dave")
    reply = await client.call("POST", "/register", {"username": "dave", "password": PASSWORD})
    assert reply.status == 400
    assert reply.body["errcode"] == "M_USER_IN_USE"


async def test_upper_case_username_maps_to_lower_case_and_collides(client: Client) -> None:
    body = await client.register("Erin")
    assert body["user_id"] == f"@erin:{SERVER_NAME}"
    reply = await client.call("POST", "/register", {"username": "ERIN"})
    assert reply.body["errcode"] == "M_USER_IN_USE"


@pytest.mark.parametrize(
    "username",
    ["", "al ice", "al:ice", "émile", "@frank:" + SERVER_NAME, "x" * (255 - len(SERVER_NAME) - 1)],
)
async def test_username_outside_the_grammar_or_too_long_is_invalid(
    client: Client, username: str
) -> None:
    reply = await client.call("POST", "/register", {"username": username, "password": PASSWORD})
    assert reply.status == 400
    assert reply.body["errcode"] == "M_INVALID_USERNAME"


async def test_longest_allowed_username_registers(client: Client) -> None:
    localpart = "x" * (255 - len(SERVER_NAME) - 2)  # "@" + localpart + ":" + server name
    body = await client.register(localpart)
    assert len(body["user_id"]) == 255


async def test_inhibit_login_returns_only_the_user_id(client: Client) -> None:
    body = await client.register("grace", inhibit_login=True)
    assert body == {"user_id": f"@grace:{SERVER_NAME}", "home_server": SERVER_NAME}
    assert (await client.login("grace")).status == 200


async def test_refresh_token_requested_gives_an_expiring_token(client: Client) -> None:
    body = await client.register("heidi", refresh_token=True)
    assert body["refresh_token"].startswith("vrt_")
    assert body["expires_in_ms"] == 5 * 60_000


async def test_client_chosen_device_id_is_used(client: Client) -> None:
    body = await client.register("ivan", device_id="MYPHONE")
    assert body["device_id"] == "MYPHONE"


async def test_omitted_username_gets_a_generated_valid_user_id(client: Client) -> None:
    reply = await client.call(
        "POST", "/register", {"password": PASSWORD, "auth": {"type": "m.login.dummy"}}
    )
    assert reply.status == 200
    localpart, server = reply.body["user_id"][1:].split(":", 1)
    assert server == SERVER_NAME and localpart.isalnum() and localpart.islower()


async def test_guest_registration_gives_a_restricted_guest_account(client: Client) -> None:
    reply = await client.call(
        "POST",
        "/register",
        {"username": "ignored", "initial_device_display_name": "Guest phone"},
        query={"kind": "guest"},
    )
    assert reply.status == 200, reply.body
    token = reply.body["access_token"]
    assert reply.body["user_id"].endswith(f":{SERVER_NAME}")
    assert not reply.body["user_id"].startswith("@ignored:")
    me = await client.call("GET", "/account/whoami", token=token)
    assert me.body["is_guest"] is True
    assert (await client.call("GET", "/sync", token=token)).status == 200
    user_id = reply.body["user_id"]
    name = await client.call(
        "PUT", f"/profile/{user_id}/displayname", {"displayname": "Visitor"}, token=token
    )
    assert name.status == 200, name.body
    # C-S "Guest Access": everything outside the allowed endpoints is forbidden.
    for method, path, body in (
        ("POST", "/createRoom", {}),
        ("PUT", f"/profile/{user_id}/avatar_url", {"avatar_url": "mxc://x/y"}),
        ("GET", "/pushrules/", None),
        ("PUT", f"/user/{user_id}/account_data/org.example", {}),
    ):
        denied = await client.call(method, path, body, token=token)
        assert (denied.status, denied.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN"), path


async def test_guest_registration_is_forbidden_when_registration_is_closed(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(
        tmp_path, migrated_db_dsn, pool, registration={"enabled": False}
    ) as closed:
        reply = await closed.call("POST", "/register", {}, query={"kind": "guest"})
        assert (reply.status, reply.body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_unknown_kind_is_an_invalid_parameter(client: Client) -> None:
    reply = await client.call("POST", "/register", {}, query={"kind": "robot"})
    assert reply.status == 400
    assert reply.body["errcode"] == "M_INVALID_PARAM"


async def test_wrong_auth_type_gets_401_with_flows_and_an_error(client: Client) -> None:
    challenge = await client.call("POST", "/register", {"username": "judy"})
    session = challenge.body["session"]
    reply = await client.call(
        "POST",
        "/register",
        {"username": "judy", "auth": {"type": "m.login.password", "session": session}},
    )
    assert reply.status == 401
    assert reply.body["errcode"] == "M_UNRECOGNIZED"
    assert reply.body["session"] == session
    assert reply.body["flows"] == [{"stages": ["m.login.dummy"]}]


async def test_unknown_session_is_refused(client: Client) -> None:
    reply = await client.call(
        "POST",
        "/register",
        {"username": "ken", "auth": {"type": "m.login.dummy", "session": "nope"}},
    )
    assert reply.status == 400
    assert reply.body["errcode"] == "M_UNKNOWN"


async def test_retrying_a_completed_session_after_a_failure_succeeds(client: Client) -> None:
    challenge = await client.call("POST", "/register", {"username": "leo", "password": 5})
    assert challenge.status == 400  # bad body: refused before UIA, no session
    assert challenge.body["errcode"] == "M_BAD_JSON"
    first = await client.call("POST", "/register", {"username": "leo"})
    auth = {"type": "m.login.dummy", "session": first.body["session"]}
    done = await client.call("POST", "/register", {"username": "leo", "auth": auth})
    assert done.status == 200
    again = await client.call("POST", "/register", {"username": "leo2", "auth": auth})
    assert again.status == 200  # completed stages are not asked for again
    assert again.body["user_id"] == f"@leo2:{SERVER_NAME}"


async def test_bad_field_types_are_bad_json(client: Client) -> None:
    for body in ({"username": 1}, {"inhibit_login": "yes"}, {"auth": "dummy"}):
        reply = await client.call("POST", "/register", body)
        assert reply.status == 400, body
        assert reply.body["errcode"] == "M_BAD_JSON", body


async def test_non_json_body_is_not_json(client: Client) -> None:
    reply = await client.call("POST", "/register", raw=b"{nope")
    assert reply.status == 400
    assert reply.body["errcode"] == "M_NOT_JSON"


async def test_available_answers_true_then_in_use(client: Client) -> None:
    free = await client.call("GET", "/register/available", query={"username": "mallory"})
    assert (free.status, free.body) == (200, {"available": True})
    await client.register("mallory")
    taken = await client.call("GET", "/register/available", query={"username": "mallory"})
    assert (taken.status, taken.body["errcode"]) == (400, "M_USER_IN_USE")
    bad = await client.call("GET", "/register/available", query={"username": "Not Valid"})
    assert (bad.status, bad.body["errcode"]) == (400, "M_INVALID_USERNAME")
    missing = await client.call("GET", "/register/available")
    assert (missing.status, missing.body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_r0_path_registers_too(client: Client) -> None:
    reply = await client.call(
        "POST",
        "/_matrix/client/r0/register",
        {"username": "niaj", "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
    )
    assert reply.status == 200


async def test_closed_registration_is_forbidden(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(
        tmp_path, migrated_db_dsn, pool, registration={"enabled": False}
    ) as closed:
        reply = await closed.call("POST", "/register", {"username": "olivia"})
        assert reply.status == 403
        assert reply.body["errcode"] == "M_FORBIDDEN"
        available = await closed.call("GET", "/register/available", query={"username": "x"})
        assert available.status == 403


async def test_registration_is_rate_limited_per_ip_with_retry_after(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(
        tmp_path,
        migrated_db_dsn,
        pool,
        rate_limits={"enabled": True, "per_second": 0.5, "burst": 2},
    ) as limited:
        for _ in range(2):
            reply = await limited.call("POST", "/register", {"username": "pat"})
            assert reply.status == 401
        reply = await limited.call("POST", "/register", {"username": "pat"})
        assert reply.status == 429
        assert reply.body["errcode"] == "M_LIMIT_EXCEEDED"
        assert 0 < reply.body["retry_after_ms"] <= 2000
        assert reply.headers["Retry-After"] == "2"
