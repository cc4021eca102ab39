"""The legacy sync endpoints, timestamp_to_event and content reports answer with the bodies the
spec's OpenAPI documents describe (room_initial_sync.yaml, old_sync.yaml, peeking_events.yaml,
room_event_by_timestamp.yaml, report_content.yaml; see tests/openapi_schema.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, Reply, User, q, register_users
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


def conforms(spec: ClientServerSpec, reply: Reply, method: str, path: str) -> Any:
    assert reply.status == 200, (method, path, reply.status, reply.body)
    mismatches = spec.mismatches(path, method, 200, reply.body)
    mismatches += spec.events_mismatches(reply.body)
    assert not mismatches, f"{method} {path}:\n" + "\n".join(mismatches)
    return reply.body


async def test_legacy_and_lookup_endpoints_match_the_spec(
    spec: ClientServerSpec, client: Client
) -> None:
    alice, bob = await register_users(client, "alice", "bob")
    room_id = await alice.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "world_readable"},
            }
        ],
    )
    sent = await alice.send(room_id, {"msgtype": "m.text", "body": "hi"}, "t1")
    event_id = sent.body["event_id"]
    invited = await alice.create_room()
    assert (await alice.invite(invited, bob.user_id)).status == 200

    room = conforms(
        spec,
        await alice.call("GET", f"/rooms/{q(room_id)}/initialSync"),
        "GET",
        "/rooms/{roomId}/initialSync",
    )
    end = room["messages"]["end"]
    conforms(spec, await bob.call("GET", "/initialSync"), "GET", "/initialSync")
    await alice.send(room_id, {"msgtype": "m.text", "body": "more"}, "t2")
    stream = await alice.call("GET", "/events", query={"from": end, "timeout": "0"})
    assert len(conforms(spec, stream, "GET", "/events")["chunk"]) == 1
    peek = await bob.call("GET", "/events", query={"from": end, "timeout": "0", "room_id": room_id})
    conforms(spec, peek, "GET", "/events ")
    one = await alice.call("GET", f"/events/{q(event_id)}")
    conforms(spec, one, "GET", "/events/{eventId}")
    closest = await alice.call(
        "GET",
        f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event",
        query={"ts": "0", "dir": "f"},
    )
    conforms(spec, closest, "GET", "/rooms/{roomId}/timestamp_to_event")
    reports: list[tuple[User, str, str]] = [
        (alice, f"/rooms/{q(room_id)}/report/{q(event_id)}", "/rooms/{roomId}/report/{eventId}"),
        (bob, f"/rooms/{q(room_id)}/report", "/rooms/{roomId}/report"),
        (bob, f"/users/{q(alice.user_id)}/report", "/users/{userId}/report"),
    ]
    for user, path, template in reports:
        conforms(spec, await user.call("POST", path, {"reason": "test"}), "POST", template)
