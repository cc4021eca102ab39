"""Responses of the real application checked against the spec's OpenAPI response schemas.

Every reply below is validated with the JSON schema the Client-Server API documents for that
operation and status code (data/api/client-server/*.yaml, see tests/openapi_schema.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import openapi_schema
from tests.http.account_helpers import PASSWORD, running_server
from tests.http.room_helpers import Client, Reply, User, q, register_users
from tests.http.sync_helpers import send_text, sync
from tests.openapi_schema import ClientServerSpec, SpecMissingError, client_server_spec


@pytest.fixture(scope="module")
def spec() -> ClientServerSpec:
    try:
        return client_server_spec()
    except SpecMissingError as error:
        pytest.fail(str(error))


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


def conforms(
    spec: ClientServerSpec, reply: Reply, method: str, path: str, status: int = 200
) -> Any:
    """Assert the reply has `status` and a body matching the documented schema; the body."""
    assert reply.status == status, (method, path, reply.status, reply.body)
    mismatches = spec.mismatches(path, method, status, reply.body)
    mismatches += spec.events_mismatches(reply.body)
    assert not mismatches, f"{method} {path} {status}:\n" + "\n".join(mismatches)
    return reply.body


# Deliberate deviation (homeserver/http/client/devices.py `device_json`): unknown device fields
# are null instead of absent, as Synapse sends and as matrix-nio requires; the spec's
# client_device.yaml types them as plain string/integer. Only these nulls are tolerated.
NULLABLE_DEVICE_FIELDS = ("display_name", "last_seen_ip", "last_seen_ts")


def without_device_nulls(device: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in device.items() if not (k in NULLABLE_DEVICE_FIELDS and v is None)}


def conforms_error(reply: Reply, spec: ClientServerSpec, status: int) -> str:
    """For error statuses the spec leaves without a body schema: the standard error schema."""
    assert reply.status == status, (reply.status, reply.body)
    mismatches = spec.schema_mismatches("definitions/errors/error.yaml", reply.body)
    assert not mismatches, "\n".join(mismatches)
    errcode: str = reply.body["errcode"]
    return errcode


def conforms_body(spec: ClientServerSpec, body: Any, method: str, path: str) -> None:
    mismatches = spec.mismatches(path, method, 200, body)
    mismatches += spec.events_mismatches(body)
    assert not mismatches, f"{method} {path} 200:\n" + "\n".join(mismatches)


async def test_schema_loader_reports_real_mismatches(spec: ClientServerSpec) -> None:
    # Guards the harness itself: a wrong body must be caught, through a relative $ref too.
    assert spec.mismatches("/account/whoami", "get", 200, {"user_id": "@a:b"}) == []
    assert spec.mismatches("/account/whoami", "get", 200, {"device_id": 1}) != []
    assert spec.mismatches("/account/whoami", "get", 401, {"error": "no errcode"}) != []
    bad_event = {"chunk": [{"type": "m.room.message"}], "start": "s1"}
    assert spec.mismatches("/rooms/{roomId}/messages", "get", 200, bad_event) != []
    member = {
        "type": "m.room.member",
        "state_key": "@a:b",
        "sender": "@a:b",
        "event_id": "$e",
        "origin_server_ts": 1,
        "content": {"membership": "join"},
    }
    assert spec.events_mismatches({"chunk": [member]}) == []
    member["content"] = {"membership": "partying"}
    [problem] = spec.events_mismatches({"chunk": [member]})
    assert problem.startswith("/chunk/0/content/membership: 'partying' is not one of")
    text = {**member, "type": "m.room.message", "content": {"msgtype": "m.text"}}
    assert spec.events_mismatches(text) != []  # m.room.message$m.text.yaml requires a body


async def test_account_endpoints_match_the_spec(spec: ClientServerSpec, client: Client) -> None:
    conforms(spec, await client.call("GET", "/_matrix/client/versions"), "GET", "/versions")

    challenge = await client.call("POST", "/register", {"username": "alice", "password": PASSWORD})
    conforms(spec, challenge, "POST", "/register", 401)
    body = {
        "username": "alice",
        "password": PASSWORD,
        "auth": {"type": "m.login.dummy", "session": challenge.body["session"]},
    }
    registered = conforms(spec, await client.call("POST", "/register", body), "POST", "/register")
    token = registered["access_token"]

    conforms(spec, await client.call("GET", "/login"), "GET", "/login")
    conforms(spec, await client.login("alice"), "POST", "/login")
    conforms(spec, await client.whoami(token), "GET", "/account/whoami")
    devices = await client.call("GET", "/devices", token=token)
    assert devices.status == 200
    devices.body["devices"] = [without_device_nulls(d) for d in devices.body["devices"]]
    conforms(spec, devices, "GET", "/devices")
    device = await client.call("GET", f"/devices/{q(registered['device_id'])}", token=token)
    device.body = without_device_nulls(device.body)
    conforms(spec, device, "GET", "/devices/{deviceId}")
    capabilities = await client.call("GET", "/capabilities", token=token)
    conforms(spec, capabilities, "GET", "/capabilities")
    rules = await client.call("GET", "/pushrules/", token=token)
    conforms(spec, rules, "GET", "/pushrules/")

    user_id = registered["user_id"]
    conforms(spec, await client.call("GET", f"/profile/{q(user_id)}"), "GET", "/profile/{userId}")
    filter_body = {"room": {"timeline": {"limit": 10}}}
    created = await client.call("POST", f"/user/{q(user_id)}/filter", filter_body, token=token)
    conforms(spec, created, "POST", "/user/{userId}/filter")
    fetched = await client.call(
        "GET", f"/user/{q(user_id)}/filter/{q(created.body['filter_id'])}", token=token
    )
    conforms(spec, fetched, "GET", "/user/{userId}/filter/{filterId}")


async def test_room_endpoints_match_the_spec(spec: ClientServerSpec, client: Client) -> None:
    alice, bob = await register_users(client, "alice", "bob")
    created = await alice.call("POST", "/createRoom", {"name": "Lobby", "preset": "public_chat"})
    room_id = conforms(spec, created, "POST", "/createRoom")["room_id"]
    joined = await bob.join(room_id)
    conforms(spec, joined, "POST", "/join/{roomIdOrAlias}")
    sent = await alice.send(room_id, {"msgtype": "m.text", "body": "hi"}, txn_id="t1")
    event_id = conforms(spec, sent, "PUT", "/rooms/{roomId}/send/{eventType}/{txnId}")["event_id"]
    await send_text(bob, room_id, "hello")
    topic = await alice.put_state(room_id, "m.room.topic", {"topic": "chat"})
    conforms(spec, topic, "PUT", "/rooms/{roomId}/state/{eventType}/{stateKey}")

    room = f"/rooms/{q(room_id)}"
    conforms(spec, await alice.call("GET", f"{room}/state"), "GET", "/rooms/{roomId}/state")
    single = await alice.call("GET", f"{room}/state/m.room.name/")
    conforms(spec, single, "GET", "/rooms/{roomId}/state/{eventType}/{stateKey}")
    # The schema here is `oneOf: [{type: object}, state_event.yaml]`, which no event can satisfy
    # (an event matches both branches; `anyOf` was meant), so ?format=event is checked against
    # the state event schema itself.
    as_event = await alice.call("GET", f"{room}/state/m.room.name/", query={"format": "event"})
    assert as_event.status == 200, as_event.body
    state_event = "../../event-schemas/schema/core-event-schema/state_event.yaml"
    assert spec.schema_mismatches(state_event, as_event.body) == []
    assert spec.events_mismatches(as_event.body) == []
    backwards = await alice.call("GET", f"{room}/messages", query={"dir": "b", "limit": "3"})
    page = conforms(spec, backwards, "GET", "/rooms/{roomId}/messages")
    older = await alice.call(
        "GET", f"{room}/messages", query={"dir": "b", "from": page["end"], "limit": "50"}
    )
    conforms(spec, older, "GET", "/rooms/{roomId}/messages")
    context = await alice.call("GET", f"{room}/context/{q(event_id)}", query={"limit": "4"})
    conforms(spec, context, "GET", "/rooms/{roomId}/context/{eventId}")
    conforms(spec, await alice.call("GET", f"{room}/members"), "GET", "/rooms/{roomId}/members")
    members = await alice.call("GET", f"{room}/joined_members")
    conforms(spec, members, "GET", "/rooms/{roomId}/joined_members")
    conforms(spec, await bob.call("GET", "/joined_rooms"), "GET", "/joined_rooms")
    event = await alice.call("GET", f"{room}/event/{q(event_id)}")
    conforms(spec, event, "GET", "/rooms/{roomId}/event/{eventId}")


async def test_sync_matches_the_spec(spec: ClientServerSpec, client: Client) -> None:
    alice, bob = await register_users(client, "alice", "bob")
    room_id = await alice.create_room(name="Lobby", preset="public_chat")
    await send_text(alice, room_id, "one")
    first = await sync(alice)
    conforms_body(spec, first, "GET", "/sync")

    invited_room = await alice.create_room(name="Private", preset="private_chat")
    assert (await alice.invite(invited_room, bob.user_id)).status == 200
    await send_text(alice, room_id, "two")
    assert (await alice.put_state(room_id, "m.room.topic", {"topic": "t"})).status == 200
    incremental = await sync(alice, since=first["next_batch"])
    conforms_body(spec, incremental, "GET", "/sync")

    invite = await sync(bob)
    assert invited_room in invite["rooms"]["invite"]
    conforms_body(spec, invite, "GET", "/sync")
    assert (await bob.leave(invited_room)).status == 200
    left = await sync(bob, since=invite["next_batch"])
    conforms_body(spec, left, "GET", "/sync")
    assert (await bob.join(room_id)).status == 200
    joined = await sync(bob, since=left["next_batch"], full_state=True)
    conforms_body(spec, joined, "GET", "/sync")


async def test_directory_endpoints_match_the_spec(spec: ClientServerSpec, client: Client) -> None:
    (alice,) = await register_users(client, "alice")
    room_id = await alice.create_room(name="Lobby", preset="public_chat", visibility="public")
    alias = "#lobby:accounts.test"
    put = await alice.call("PUT", f"/directory/room/{q(alias)}", {"room_id": room_id})
    conforms(spec, put, "PUT", "/directory/room/{roomAlias}")
    got = await client.call("GET", f"/directory/room/{q(alias)}")
    conforms(spec, got, "GET", "/directory/room/{roomAlias}")
    aliases = await alice.call("GET", f"/rooms/{q(room_id)}/aliases")
    conforms(spec, aliases, "GET", "/rooms/{roomId}/aliases")
    listing = await alice.call("GET", "/publicRooms")
    assert [r["room_id"] for r in listing.body["chunk"]] == [room_id]
    conforms(spec, listing, "GET", "/publicRooms")
    searched = await alice.call("POST", "/publicRooms", {"filter": {"generic_search_term": "lob"}})
    conforms(spec, searched, "POST", "/publicRooms")
    visibility = await client.call("GET", f"/directory/list/room/{q(room_id)}")
    conforms(spec, visibility, "GET", "/directory/list/room/{roomId}")


def _device_keys(user: User, device_id: str) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": "curvekey", f"ed25519:{device_id}": "edkey"},
        "signatures": {user.user_id: {f"ed25519:{device_id}": "sig"}},
    }


async def test_key_endpoints_match_the_spec(spec: ClientServerSpec, client: Client) -> None:
    (alice,) = await register_users(client, "alice")
    whoami = await alice.client.whoami(alice.token)
    device_id = whoami.body["device_id"]
    upload = {
        "device_keys": _device_keys(alice, device_id),
        "one_time_keys": {
            f"signed_curve25519:{n}": {
                "key": f"otk{n}",
                "signatures": {alice.user_id: {f"ed25519:{device_id}": f"sig{n}"}},
            }
            for n in range(2)
        },
    }
    uploaded = await alice.call("POST", "/keys/upload", upload)
    conforms(spec, uploaded, "POST", "/keys/upload")
    queried = await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert device_id in conforms(spec, queried, "POST", "/keys/query")["device_keys"][alice.user_id]
    claim = {"one_time_keys": {alice.user_id: {device_id: "signed_curve25519"}}}
    conforms(spec, await alice.call("POST", "/keys/claim", claim), "POST", "/keys/claim")


async def test_error_responses_match_the_standard_error_schema(
    spec: ClientServerSpec, client: Client
) -> None:
    (alice,) = await register_users(client, "alice")
    unknown_token = await client.whoami("not-a-token")
    assert conforms(spec, unknown_token, "GET", "/account/whoami", 401)["errcode"] == (
        "M_UNKNOWN_TOKEN"
    )
    bad_login = await client.login("alice", "wrong password")
    assert conforms(spec, bad_login, "POST", "/login", 403)["errcode"] == "M_FORBIDDEN"
    taken = await client.call("POST", "/register", {"username": "alice", "password": PASSWORD})
    assert conforms(spec, taken, "POST", "/register", 400)["errcode"] == "M_USER_IN_USE"
    no_room = await alice.call("GET", f"/rooms/{q('!missing:accounts.test')}/state")
    assert conforms_error(no_room, spec, 403) == "M_FORBIDDEN"
    no_alias = await client.call("GET", f"/directory/room/{q('#nowhere:accounts.test')}")
    assert conforms(spec, no_alias, "GET", "/directory/room/{roomAlias}", 404)["errcode"] == (
        "M_NOT_FOUND"
    )
    bad_create = await alice.call("POST", "/createRoom", {"preset": "no_such_preset"})
    conforms(spec, bad_create, "POST", "/createRoom", 400)
    missing_state = await alice.call(
        "GET", f"/rooms/{q(await alice.create_room())}/state/m.room.topic/"
    )
    assert conforms_error(missing_state, spec, 404) == "M_NOT_FOUND"


async def test_more_room_endpoints_match_the_spec(spec: ClientServerSpec, client: Client) -> None:
    alice, bob = await register_users(client, "alice", "bob")
    space = await alice.create_room(name="Space", creation_content={"type": "m.space"})
    room_id = await alice.create_room(name="Lobby", preset="public_chat")
    link = {"via": ["accounts.test"]}
    assert (await alice.put_state(space, "m.space.child", link, state_key=room_id)).status == 200
    assert (await bob.join(room_id)).status == 200
    room = f"/rooms/{q(room_id)}"
    v1_room = f"/_matrix/client/v1{room}"  # relations, threads and hierarchy are v1 endpoints
    root = await send_text(alice, room_id, "root")
    reply = {
        "msgtype": "m.text",
        "body": "in thread",
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root,
        },
    }
    assert (await bob.send(room_id, reply, txn_id="thread-1")).status == 200
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}
    assert (await bob.send(room_id, reaction, "r1", event_type="m.reaction")).status == 200

    relations = await alice.call("GET", f"{v1_room}/relations/{q(root)}")
    conforms(spec, relations, "GET", "/rooms/{roomId}/relations/{eventId}")
    threads = await alice.call("GET", f"{v1_room}/threads")
    conforms(spec, threads, "GET", "/rooms/{roomId}/threads")
    hierarchy = await alice.call("GET", f"/_matrix/client/v1/rooms/{q(space)}/hierarchy")
    conforms(spec, hierarchy, "GET", "/rooms/{roomId}/hierarchy")

    receipt = await bob.call("POST", f"{room}/receipt/m.read/{q(root)}", {})
    conforms(spec, receipt, "POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}")
    typing = await bob.call(
        "PUT",
        f"{room}/typing/{q(bob.user_id)}",
        {
            "typing": True,
            "timeout": 30000,
        },
    )
    conforms(spec, typing, "PUT", "/rooms/{roomId}/typing/{userId}")
    tag = await alice.call(
        "PUT", f"/user/{q(alice.user_id)}/rooms/{q(room_id)}/tags/u.work", {"order": 0.5}
    )
    conforms(spec, tag, "PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}")
    tags = await alice.call("GET", f"/user/{q(alice.user_id)}/rooms/{q(room_id)}/tags")
    conforms(spec, tags, "GET", "/user/{userId}/rooms/{roomId}/tags")
    to_device = {"messages": {bob.user_id: {"*": {"hello": "there"}}}}
    sent = await alice.call("PUT", "/sendToDevice/m.test/td1", to_device)
    conforms(spec, sent, "PUT", "/sendToDevice/{eventType}/{txnId}")

    body = await sync(bob)
    assert [e["type"] for e in body["to_device"]["events"]] == ["m.test"]
    ephemeral = body["rooms"]["join"][room_id]["ephemeral"]["events"]
    assert {e["type"] for e in ephemeral} == {"m.typing", "m.receipt"}
    conforms_body(spec, body, "GET", "/sync")
    redacted = await alice.call("PUT", f"{room}/redact/{q(root)}/red1", {"reason": "oops"})
    conforms(spec, redacted, "PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}")
    kicked = await alice.call("POST", f"{room}/kick", {"user_id": bob.user_id})
    conforms(spec, kicked, "POST", "/rooms/{roomId}/kick")
    after = await sync(bob, since=body["next_batch"])
    assert room_id in after["rooms"]["leave"]
    conforms_body(spec, after, "GET", "/sync")
    history = await alice.call("GET", f"{room}/messages", query={"dir": "b"})
    conforms(spec, history, "GET", "/rooms/{roomId}/messages")

    search = await alice.call("POST", "/user_directory/search", {"search_term": "bob"})
    conforms(spec, search, "POST", "/user_directory/search")
    notifications = await bob.call("GET", "/notifications")
    conforms(spec, notifications, "GET", "/notifications")
    available = await client.call("GET", "/register/available", query={"username": "carol"})
    conforms(spec, available, "GET", "/register/available")
    changes = await alice.call(
        "GET", "/keys/changes", query={"from": body["next_batch"], "to": after["next_batch"]}
    )
    conforms(spec, changes, "GET", "/keys/changes")
    upgraded = await alice.call("POST", f"{room}/upgrade", {"new_version": "10"})
    conforms(spec, upgraded, "POST", "/rooms/{roomId}/upgrade")
    conforms(spec, await bob.call("POST", "/logout", {}), "POST", "/logout")


async def test_account_data_profile_and_membership_endpoints_match_the_spec(
    spec: ClientServerSpec, client: Client
) -> None:
    alice, bob = await register_users(client, "alice", "bob")
    me = q(alice.user_id)
    put_name = await alice.call("PUT", f"/profile/{me}/displayname", {"displayname": "Alice"})
    conforms(spec, put_name, "PUT", "/profile/{userId}/{keyName}")
    name = await client.call("GET", f"/profile/{me}/displayname")
    conforms(spec, name, "GET", "/profile/{userId}/{keyName}")
    data = await alice.call("PUT", f"/user/{me}/account_data/org.example.x", {"a": 1})
    conforms(spec, data, "PUT", "/user/{userId}/account_data/{type}")
    got = await alice.call("GET", f"/user/{me}/account_data/org.example.x")
    conforms(spec, got, "GET", "/user/{userId}/account_data/{type}")
    rule = await alice.call("GET", "/pushrules/global/override/.m.rule.master")
    conforms(spec, rule, "GET", "/pushrules/global/{kind}/{ruleId}")
    enabled = await alice.call("GET", "/pushrules/global/override/.m.rule.master/enabled")
    conforms(spec, enabled, "GET", "/pushrules/global/{kind}/{ruleId}/enabled")
    actions = await alice.call("GET", "/pushrules/global/underride/.m.rule.message/actions")
    conforms(spec, actions, "GET", "/pushrules/global/{kind}/{ruleId}/actions")

    room_id = await alice.create_room(preset="private_chat")
    room = f"/rooms/{q(room_id)}"
    invited = await alice.invite(room_id, bob.user_id)
    conforms(spec, invited, "POST", "/rooms/{roomId}/invite")
    conforms(spec, await bob.call("POST", f"{room}/join", {}), "POST", "/rooms/{roomId}/join")
    markers = await bob.call(
        "POST", f"{room}/read_markers", {"m.fully_read": await send_text(alice, room_id, "x")}
    )
    conforms(spec, markers, "POST", "/rooms/{roomId}/read_markers")
    banned = await alice.call("POST", f"{room}/ban", {"user_id": bob.user_id, "reason": "r"})
    conforms(spec, banned, "POST", "/rooms/{roomId}/ban")
    unbanned = await alice.call("POST", f"{room}/unban", {"user_id": bob.user_id})
    conforms(spec, unbanned, "POST", "/rooms/{roomId}/unban")
    conforms(spec, await alice.leave(room_id), "POST", "/rooms/{roomId}/leave")
    forgot = await alice.call("POST", f"{room}/forget", {})
    conforms(spec, forgot, "POST", "/rooms/{roomId}/forget")


async def test_more_error_paths_match_the_standard_error_schema(
    spec: ClientServerSpec, client: Client
) -> None:
    (alice,) = await register_users(client, "alice")
    no_token = await client.call("GET", "/account/whoami")
    assert conforms(spec, no_token, "GET", "/account/whoami", 401)["errcode"] == ("M_MISSING_TOKEN")
    not_json = await alice.call("POST", "/createRoom", raw=b"{not json")
    assert conforms(spec, not_json, "POST", "/createRoom", 400)["errcode"] == "M_NOT_JSON"
    unknown = await alice.call("GET", "/no/such/endpoint")
    assert conforms_error(unknown, spec, 404) == "M_UNRECOGNIZED"
    gone = f"/rooms/{q('!gone:accounts.test')}/messages"
    no_dir = await alice.call("GET", gone)
    assert conforms_error(no_dir, spec, 400) == "M_MISSING_PARAM"
    stranger = await alice.call("GET", gone, query={"dir": "b"})
    assert conforms_error(stranger, spec, 403) == "M_FORBIDDEN"
    bad_user = await alice.call("GET", f"/profile/{q('@nobody:accounts.test')}")
    assert conforms(spec, bad_user, "GET", "/profile/{userId}", 404)["errcode"] == "M_NOT_FOUND"
    in_use = await client.call("GET", "/register/available", query={"username": "alice"})
    assert conforms(spec, in_use, "GET", "/register/available", 400)["errcode"] == ("M_USER_IN_USE")
    whoami = await alice.client.whoami(alice.token)
    delete = await alice.call("DELETE", f"/devices/{q(whoami.body['device_id'])}", {})
    uia = conforms(spec, delete, "DELETE", "/devices/{deviceId}", 401)
    assert uia["flows"]


async def test_rate_limited_reply_matches_the_spec(
    spec: ClientServerSpec, tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool
) -> None:
    limits = {"per_second": 1.0, "burst": 2}
    async with running_server(tmp_path, migrated_db_dsn, pool, rate_limits=limits) as limited:
        replies = [await limited.login("nobody", "wrong") for _ in range(3)]
    assert [r.status for r in replies] == [403, 403, 429]
    assert conforms(spec, replies[2], "POST", "/login", 429)["errcode"] == "M_LIMIT_EXCEEDED"


def test_missing_spec_checkout_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openapi_schema, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv(openapi_schema.SPEC_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SpecMissingError, match="matrix-spec OpenAPI definitions not found"):
        openapi_schema.spec_root()
    api = tmp_path / "elsewhere" / "data" / "api" / "client-server"
    api.mkdir(parents=True)
    monkeypatch.setenv(openapi_schema.SPEC_ENV, str(tmp_path / "elsewhere"))
    assert openapi_schema.spec_root() == tmp_path / "elsewhere"


async def test_sync_variants_and_less_common_endpoints_match_the_spec(
    spec: ClientServerSpec, client: Client
) -> None:
    alice, bob = await register_users(client, "alice", "bob")
    room_id = await alice.create_room(name="Lobby", preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    await send_text(bob, room_id, "hi")
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
    first = await sync(alice, filter=lazy)
    conforms_body(spec, first, "GET", "/sync")
    await send_text(bob, room_id, "again")
    conforms_body(spec, await sync(alice, since=first["next_batch"], filter=lazy), "GET", "/sync")
    after = await sync(alice, since=first["next_batch"], use_state_after=True)
    conforms_body(spec, after, "GET", "/sync")
    room = f"/rooms/{q(room_id)}"
    filtered = await alice.call(
        "GET", f"{room}/messages", query={"dir": "b", "filter": '{"lazy_load_members":true}'}
    )
    conforms(spec, filtered, "GET", "/rooms/{roomId}/messages")
    visibility = await alice.call(
        "PUT", f"/directory/list/room/{q(room_id)}", {"visibility": "public"}
    )
    conforms(spec, visibility, "PUT", "/directory/list/room/{roomId}")

    refreshing = await client.login("alice", refresh_token=True)
    login = conforms(spec, refreshing, "POST", "/login")
    refreshed = await client.call("POST", "/refresh", {"refresh_token": login["refresh_token"]})
    conforms(spec, refreshed, "POST", "/refresh")

    master = {
        "user_id": alice.user_id,
        "usage": ["master"],
        "keys": {"ed25519:masterkey": "masterkey"},
    }
    cross = await alice.call("POST", "/keys/device_signing/upload", {"master_key": master})
    if cross.status == 401:  # UIA; the password stage completes it
        auth = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": alice.user_id},
            "password": PASSWORD,
            "session": cross.body["session"],
        }
        conforms(spec, cross, "POST", "/keys/device_signing/upload", 401)
        cross = await alice.call(
            "POST", "/keys/device_signing/upload", {"master_key": master, "auth": auth}
        )
    conforms(spec, cross, "POST", "/keys/device_signing/upload")
    queried = await bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
    assert alice.user_id in conforms(spec, queried, "POST", "/keys/query")["master_keys"]
