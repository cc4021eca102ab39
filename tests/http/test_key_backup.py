"""Server-side key backups (/room_keys/version, /room_keys/keys...) against the real app and
PostgreSQL, with responses checked against key_backup.yaml."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, q, register_users
from tests.openapi_schema import client_server_spec

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:elsewhere.test"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


def conforms(path: str, method: str, status: int, body: Any) -> None:
    assert client_server_spec().mismatches(path, method, status, body) == []


def key(index: int, forwarded: int = 0, verified: bool = False, tag: str = "x") -> dict[str, Any]:
    return {
        "first_message_index": index,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": {"ciphertext": tag, "ephemeral": "e", "mac": "m"},
    }


async def create(user: User, **auth_data: Any) -> str:
    reply = await user.call(
        "POST", "/room_keys/version", {"algorithm": ALGORITHM, "auth_data": auth_data}
    )
    assert reply.status == 200, reply.body
    conforms("/room_keys/version", "post", 200, reply.body)
    version: str = reply.body["version"]
    return version


async def put_session(user: User, version: str, session: str, data: dict[str, Any]) -> Any:
    path = f"/room_keys/keys/{q(ROOM)}/{q(session)}"
    return await user.call("PUT", path, data, query={"version": version})


async def test_created_backup_is_current_with_count_and_etag(users: list[User]) -> None:
    alice, bob = users
    missing = await alice.call("GET", "/room_keys/version")
    assert (missing.status, missing.body["errcode"]) == (404, "M_NOT_FOUND")
    version = await create(alice, public_key="abc")
    current = await alice.call("GET", "/room_keys/version")
    assert current.status == 200
    conforms("/room_keys/version", "get", 200, current.body)
    assert current.body["version"] == version
    assert current.body["auth_data"] == {"public_key": "abc"}
    assert current.body["count"] == 0
    # Backups are per user.
    assert (await bob.call("GET", "/room_keys/version")).status == 404
    newer = await create(alice, public_key="def")
    assert int(newer) > int(version)
    by_number = await alice.call("GET", f"/room_keys/version/{version}")
    assert by_number.status == 200 and by_number.body["auth_data"] == {"public_key": "abc"}
    conforms("/room_keys/version/{version}", "get", 200, by_number.body)
    assert (await alice.call("GET", "/room_keys/version")).body["version"] == newer


async def test_keys_stored_read_back_in_three_shapes(users: list[User]) -> None:
    alice, _ = users
    version = await create(alice)
    stored = await put_session(alice, version, "s1", key(3))
    assert stored.status == 200, stored.body
    conforms("/room_keys/keys/{roomId}/{sessionId}", "put", 200, stored.body)
    assert stored.body["count"] == 1
    room_put = await alice.call(
        "PUT",
        f"/room_keys/keys/{q(ROOM)}",
        {"sessions": {"s2": key(0)}},
        query={"version": version},
    )
    assert room_put.body["count"] == 2
    all_put = await alice.call(
        "PUT",
        "/room_keys/keys",
        {"rooms": {"!other:elsewhere.test": {"sessions": {"s3": key(1)}}}},
        query={"version": version},
    )
    assert all_put.body["count"] == 3
    everything = await alice.call("GET", "/room_keys/keys", query={"version": version})
    conforms("/room_keys/keys", "get", 200, everything.body)
    assert set(everything.body["rooms"]) == {ROOM, "!other:elsewhere.test"}
    assert everything.body["rooms"][ROOM]["sessions"]["s1"] == key(3)
    room = await alice.call("GET", f"/room_keys/keys/{q(ROOM)}", query={"version": version})
    conforms("/room_keys/keys/{roomId}", "get", 200, room.body)
    assert set(room.body["sessions"]) == {"s1", "s2"}
    one = await alice.call("GET", f"/room_keys/keys/{q(ROOM)}/s2", query={"version": version})
    conforms("/room_keys/keys/{roomId}/{sessionId}", "get", 200, one.body)
    assert one.body == key(0)
    info = await alice.call("GET", "/room_keys/version")
    assert info.body["count"] == 3 and info.body["etag"] == all_put.body["etag"]
    empty_room = await alice.call(
        "GET", f"/room_keys/keys/{q('!none:x.test')}", query={"version": version}
    )
    assert empty_room.body == {"sessions": {}}
    absent = await alice.call("GET", f"/room_keys/keys/{q(ROOM)}/nope", query={"version": version})
    assert (absent.status, absent.body["errcode"]) == (404, "M_NOT_FOUND")


async def test_replacement_rules_keep_the_better_key(users: list[User]) -> None:
    alice, _ = users
    version = await create(alice)
    await put_session(alice, version, "s", key(5, forwarded=2, tag="first"))

    async def stored_tag() -> str:
        reply = await alice.call("GET", f"/room_keys/keys/{q(ROOM)}/s", query={"version": version})
        tag: str = reply.body["session_data"]["ciphertext"]
        return tag

    etag = (await alice.call("GET", "/room_keys/version")).body["etag"]
    # Higher first_message_index loses; the etag does not move when nothing changed.
    worse = await put_session(alice, version, "s", key(6, tag="later-index"))
    assert await stored_tag() == "first" and worse.body["etag"] == etag
    # Equal index, lower forwarded_count wins.
    await put_session(alice, version, "s", key(5, forwarded=1, tag="fewer-forwards"))
    assert await stored_tag() == "fewer-forwards"
    # Lower index wins.
    await put_session(alice, version, "s", key(2, forwarded=9, tag="earlier"))
    assert await stored_tag() == "earlier"
    # Verified beats everything; then an unverified one never replaces it.
    verified = await put_session(alice, version, "s", key(9, forwarded=9, verified=True, tag="v"))
    assert await stored_tag() == "v" and verified.body["etag"] != etag
    await put_session(alice, version, "s", key(0, tag="unverified"))
    assert await stored_tag() == "v"
    assert (await alice.call("GET", "/room_keys/version")).body["count"] == 1


async def test_writes_to_an_old_version_name_the_current_one(users: list[User]) -> None:
    alice, _ = users
    no_backup = await put_session(alice, "1", "s", key(0))
    assert (no_backup.status, no_backup.body["errcode"]) == (404, "M_NOT_FOUND")
    old = await create(alice)
    new = await create(alice)
    wrong = await put_session(alice, old, "s", key(0))
    assert wrong.status == 403
    assert wrong.body == {
        "errcode": "M_WRONG_ROOM_KEYS_VERSION",
        "error": wrong.body["error"],
        "current_version": new,
    }
    conforms("/room_keys/keys/{roomId}/{sessionId}", "put", 403, wrong.body)
    garbage = await put_session(alice, "not-a-version", "s", key(0))
    assert garbage.status == 403 and garbage.body["current_version"] == new


async def test_deleting_versions_and_keys(users: list[User]) -> None:
    alice, _ = users
    old = await create(alice)
    version = await create(alice)
    for session in ("a", "b", "c"):
        await put_session(alice, version, session, key(0))
    one = await alice.call("DELETE", f"/room_keys/keys/{q(ROOM)}/a", query={"version": version})
    assert one.status == 200 and one.body["count"] == 2
    conforms("/room_keys/keys/{roomId}/{sessionId}", "delete", 200, one.body)
    room = await alice.call("DELETE", f"/room_keys/keys/{q(ROOM)}", query={"version": version})
    assert room.body["count"] == 0 and room.body["etag"] != one.body["etag"]
    await put_session(alice, version, "d", key(0))
    gone = await alice.call("DELETE", f"/room_keys/version/{version}")
    assert gone.status == 200 and gone.body == {}
    # Deleted again: still fine. Its keys are gone with it; the older version is current.
    assert (await alice.call("DELETE", f"/room_keys/version/{version}")).status == 200
    reread = await alice.call("GET", f"/room_keys/version/{version}")
    assert (reread.status, reread.body["errcode"]) == (404, "M_NOT_FOUND")
    keys = await alice.call("GET", "/room_keys/keys", query={"version": version})
    assert (keys.status, keys.body["errcode"]) == (404, "M_NOT_FOUND")
    assert (await alice.call("GET", "/room_keys/version")).body["version"] == old
    never = await alice.call("DELETE", "/room_keys/version/999")
    assert (never.status, never.body["errcode"]) == (404, "M_NOT_FOUND")
    # A new version never reuses a deleted number.
    assert int(await create(alice)) > int(version)


async def test_updating_auth_data(users: list[User]) -> None:
    alice, _ = users
    version = await create(alice, public_key="abc")
    path = f"/room_keys/version/{version}"
    ok = await alice.call(
        "PUT",
        path,
        {"algorithm": ALGORITHM, "auth_data": {"public_key": "new"}, "version": version},
    )
    assert ok.status == 200 and ok.body == {}
    assert (await alice.call("GET", path)).body["auth_data"] == {"public_key": "new"}
    other_algorithm = await alice.call("PUT", path, {"algorithm": "m.other", "auth_data": {}})
    assert (other_algorithm.status, other_algorithm.body["errcode"]) == (400, "M_INVALID_PARAM")
    other_version = await alice.call(
        "PUT", path, {"algorithm": ALGORITHM, "auth_data": {}, "version": "77"}
    )
    assert (other_version.status, other_version.body["errcode"]) == (400, "M_INVALID_PARAM")
    unknown = await alice.call(
        "PUT", "/room_keys/version/77", {"algorithm": ALGORITHM, "auth_data": {}}
    )
    assert (unknown.status, unknown.body["errcode"]) == (404, "M_NOT_FOUND")


async def test_bad_requests_are_refused_clearly(users: list[User]) -> None:
    alice, _ = users
    no_algorithm = await alice.call("POST", "/room_keys/version", {"auth_data": {}})
    assert no_algorithm.status == 400
    version = await create(alice)
    no_version = await alice.call("GET", "/room_keys/keys")
    assert (no_version.status, no_version.body["errcode"]) == (400, "M_MISSING_PARAM")
    bad = {**key(0), "first_message_index": "zero"}
    refused = await put_session(alice, version, "s", bad)
    assert (refused.status, refused.body["errcode"]) == (400, "M_BAD_JSON")
    boolean_index = await put_session(alice, version, "s", {**key(0), "forwarded_count": True})
    assert boolean_index.status == 400
    not_rooms = await alice.call(
        "PUT", "/room_keys/keys", {"rooms": []}, query={"version": version}
    )
    assert (not_rooms.status, not_rooms.body["errcode"]) == (400, "M_BAD_JSON")
    unauthenticated = await alice.client.call("GET", "/room_keys/version")
    assert unauthenticated.status == 401
