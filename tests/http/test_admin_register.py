"""Synapse-compatible shared-secret registration: /_synapse/admin/v1/register."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from homeserver.http.client.admin_register import registration_mac
from tests.http.account_helpers import SERVER_NAME, Client, running_server

PATH = "/_synapse/admin/v1/register"
SECRET = "s3cret-shared"


def synapse_mac(
    nonce: str, user: str, password: str, admin: bool, user_type: str | None = None
) -> str:
    """Built the way Synapse's documentation shows, one update at a time."""
    mac = hmac.new(key=SECRET.encode("utf8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf8"))
    mac.update(b"\x00")
    mac.update(user.encode("utf8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf8"))
    return mac.hexdigest()


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(
        tmp_path,
        migrated_db_dsn,
        pool,
        registration={"enabled": False, "shared_secret": SECRET},
    ) as client:
        yield client


async def nonce(client: Client) -> str:
    reply = await client.call("GET", PATH)
    assert reply.status == 200
    return str(reply.body["nonce"])


async def post(client: Client, **body: Any) -> Any:
    return await client.call("POST", PATH, body)


async def signed(
    client: Client, user: str, password: str, admin: bool = False, **extra: Any
) -> Any:
    n = await nonce(client)
    mac = synapse_mac(n, user, password, admin, extra.get("user_type"))
    return await post(
        client, nonce=n, username=user, password=password, admin=admin, mac=mac, **extra
    )


def test_mac_matches_synapse_construction() -> None:
    for admin, user_type in [(False, None), (True, None), (True, "bot")]:
        ours = registration_mac(
            SECRET, "n0nce", "üser", "pässword", admin=admin, user_type=user_type
        )
        assert ours == synapse_mac("n0nce", "üser", "pässword", admin, user_type)


async def test_register_user_with_valid_mac_gets_a_session(client: Client) -> None:
    reply = await signed(client, "alice", "pw", displayname="Alice")
    assert reply.status == 200, reply.body
    assert reply.body["user_id"] == f"@alice:{SERVER_NAME}"
    assert reply.body["home_server"] == SERVER_NAME
    assert reply.body["device_id"]
    me = await client.whoami(reply.body["access_token"])
    assert me.body["user_id"] == f"@alice:{SERVER_NAME}"
    assert (await client.login("alice", "pw")).status == 200


async def test_admin_flag_is_stored(client: Client, pool: asyncpg.Pool) -> None:
    assert (await signed(client, "root", "pw", admin=True)).status == 200
    assert (await signed(client, "plain", "pw", admin=False)).status == 200
    assert await pool.fetchval("SELECT admin FROM users WHERE user_id = $1", f"@root:{SERVER_NAME}")
    assert not await pool.fetchval(
        "SELECT admin FROM users WHERE user_id = $1", f"@plain:{SERVER_NAME}"
    )


async def test_user_type_is_part_of_the_mac(client: Client) -> None:
    assert (await signed(client, "botty", "pw", user_type="bot")).status == 200
    n = await nonce(client)
    wrong = synapse_mac(n, "botty2", "pw", False)  # MAC without the user type
    reply = await post(
        client, nonce=n, username="botty2", password="pw", user_type="bot", mac=wrong
    )
    assert (reply.status, reply.body["errcode"]) == (403, "M_FORBIDDEN")


async def test_wrong_mac_is_forbidden(client: Client) -> None:
    n = await nonce(client)
    mac = synapse_mac(n, "eve", "pw", admin=False)
    reply = await post(client, nonce=n, username="eve", password="pw", admin=True, mac=mac)
    assert reply.status == 403
    assert reply.body == {"errcode": "M_FORBIDDEN", "error": "HMAC incorrect"}


async def test_nonce_is_single_use_even_after_a_failure(client: Client) -> None:
    n = await nonce(client)
    bad = await post(client, nonce=n, username="x", password="pw", mac="00")
    assert bad.status == 403
    good_mac = synapse_mac(n, "x", "pw", False)
    reply = await post(client, nonce=n, username="x", password="pw", mac=good_mac)
    assert (reply.status, reply.body["error"]) == (400, "unrecognised nonce")


async def test_nonce_expires_after_a_minute(client: Client, pool: asyncpg.Pool) -> None:
    n = await nonce(client)
    await pool.execute("UPDATE registration_nonces SET created_ts = created_ts - 61000")
    mac = synapse_mac(n, "late", "pw", False)
    reply = await post(client, nonce=n, username="late", password="pw", mac=mac)
    assert (reply.status, reply.body["errcode"]) == (400, "M_UNKNOWN")


async def test_unknown_nonce_is_refused(client: Client) -> None:
    reply = await post(client, nonce="made-up", username="x", password="pw", mac="00")
    assert (reply.status, reply.body["error"]) == (400, "unrecognised nonce")


@pytest.mark.parametrize(
    "drop, message",
    [
        ("nonce", "nonce must be specified"),
        ("username", "username must be specified"),
        ("password", "password must be specified"),
        ("mac", "mac must be specified"),
    ],
)
async def test_missing_fields_are_bad_json(client: Client, drop: str, message: str) -> None:
    n = await nonce(client)
    body = {"nonce": n, "username": "y", "password": "pw", "mac": synapse_mac(n, "y", "pw", False)}
    del body[drop]
    reply = await post(client, **body)
    assert reply.status == 400
    assert reply.body == {"errcode": "M_BAD_JSON", "error": message}


async def test_invalid_username_and_user_in_use(client: Client) -> None:
    bad = await signed(client, "Not Valid!", "pw")
    assert (bad.status, bad.body["errcode"]) == (400, "M_INVALID_USERNAME")
    assert (await signed(client, "taken", "pw")).status == 200
    again = await signed(client, "taken", "pw")
    assert (again.status, again.body["errcode"]) == (400, "M_USER_IN_USE")


async def test_nul_in_password_is_invalid(client: Client) -> None:
    n = await nonce(client)
    reply = await post(client, nonce=n, username="z", password="p\x00w", mac="00")
    assert (reply.status, reply.body["error"]) == (400, "Invalid password")


async def test_unknown_user_type_is_refused(client: Client) -> None:
    reply = await signed(client, "typed", "pw", user_type="wizard")
    assert (reply.status, reply.body["error"]) == (400, "Invalid user type")


async def test_disabled_without_shared_secret(
    tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(tmp_path, migrated_db_dsn, pool) as plain:
        n = await nonce(plain)  # Synapse hands out nonces regardless
        reply = await plain.call(
            "POST", PATH, {"nonce": n, "username": "a", "password": "b", "mac": "c"}
        )
        assert reply.status == 400
        assert reply.body["error"] == "Shared secret registration is not enabled"
