"""The push rules API through the real application (C-S "Push Rules: API")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, register_users
from tests.http.sync_helpers import send_text, sync

RULE = "/pushrules/global/override/my.rule"


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def users(client: Client) -> list[User]:
    return await register_users(client, "alice", "bob")


async def test_default_rules_are_served(users: list[User]) -> None:
    alice, _ = users
    reply = await alice.call("GET", "/pushrules/")
    assert reply.status == 200
    override_ids = [r["rule_id"] for r in reply.body["global"]["override"]]
    assert override_ids[0] == ".m.rule.master"
    one = await alice.call("GET", "/pushrules/global/override/.m.rule.master")
    assert one.body["enabled"] is False and one.body["default"] is True


async def test_put_get_delete_round_trip(users: list[User]) -> None:
    alice, _ = users
    body = {
        "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "cake"}],
        "actions": ["notify", {"set_tweak": "highlight"}],
    }
    assert (await alice.call("PUT", RULE, body)).status == 200
    got = await alice.call("GET", RULE)
    assert got.body["actions"] == ["notify", {"set_tweak": "highlight"}]
    assert got.body["enabled"] is True and got.body["default"] is False
    overrides = (await alice.call("GET", "/pushrules/global/")).body["override"]
    assert [r["rule_id"] for r in overrides][:2] == [".m.rule.master", "my.rule"]
    assert (await alice.call("DELETE", RULE)).status == 200
    gone = await alice.call("GET", RULE)
    assert (gone.status, gone.body["errcode"]) == (404, "M_NOT_FOUND")
    again = await alice.call("DELETE", RULE)
    assert again.status == 404


async def test_enabled_and_actions_round_trip(users: list[User]) -> None:
    alice, _ = users
    path = "/pushrules/global/underride/.m.rule.message"
    assert (await alice.call("PUT", f"{path}/enabled", {"enabled": False})).status == 200
    assert (await alice.call("GET", f"{path}/enabled")).body == {"enabled": False}
    assert (await alice.call("PUT", f"{path}/actions", {"actions": []})).status == 200
    assert (await alice.call("GET", f"{path}/actions")).body == {"actions": []}
    bad = await alice.call("PUT", f"{path}/enabled", {"enabled": "no"})
    assert (bad.status, bad.body["errcode"]) == (400, "M_BAD_JSON")
    unknown = await alice.call("PUT", "/pushrules/global/override/nope/enabled", {"enabled": True})
    assert unknown.status == 404


async def test_rule_changes_reach_sync_and_counts(users: list[User]) -> None:
    alice, bob = users
    room_id = await alice.create_room(preset="public_chat")
    assert (await bob.join(room_id)).status == 200
    token = (await sync(bob))["next_batch"]
    # The master rule, once enabled, silences everything.
    path = "/pushrules/global/override/.m.rule.master"
    assert (await bob.call("PUT", f"{path}/enabled", {"enabled": True})).status == 200
    body = await sync(bob, since=token)
    pushed = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert pushed, body["account_data"]
    await send_text(alice, room_id, "quiet now")
    counts = (await sync(bob))["rooms"]["join"][room_id]["unread_notifications"]
    assert counts["notification_count"] == 0


async def test_bad_requests(users: list[User]) -> None:
    alice, _ = users
    server_rule = await alice.call("PUT", "/pushrules/global/override/.my", {"actions": []})
    assert (server_rule.status, server_rule.body["errcode"]) == (400, "M_INVALID_PARAM")
    bad_kind = await alice.call("GET", "/pushrules/global/sideways/x")
    assert (bad_kind.status, bad_kind.body["errcode"]) == (400, "M_INVALID_PARAM")
    no_actions = await alice.call("PUT", RULE, {"conditions": []})
    assert no_actions.status == 400
    bad_anchor = await alice.call("PUT", RULE, {"actions": []}, query={"before": "missing"})
    assert bad_anchor.status == 400


async def test_rules_of_one_kind_are_listed_in_priority_order(users: list[User]) -> None:
    alice, _ = users
    for rule_id in ("#older:example.com", "#newer:example.com"):
        path = f"/pushrules/global/room/{rule_id.replace('#', '%23')}"
        assert (await alice.call("PUT", path, {"actions": ["notify"]})).status == 200
    listed = await alice.call("GET", "/pushrules/global/room/")
    assert listed.status == 200
    assert [r["rule_id"] for r in listed.body] == ["#newer:example.com", "#older:example.com"]
    overrides = await alice.call("GET", "/pushrules/global/override/")
    assert overrides.body[0]["rule_id"] == ".m.rule.master"


async def test_incomplete_or_unknown_paths_are_400_and_no_slash_root_is_404(
    users: list[User],
) -> None:
    alice, _ = users
    for method, path in (
        ("PUT", "/pushrules/"),
        ("PUT", "/pushrules/global"),
        ("PUT", "/pushrules/global/room"),
        ("PUT", "/pushrules/global/room/"),
        ("PUT", "/pushrules/not_a_scope/room/x"),
        ("PUT", "/pushrules/global/override/.m.rule.master/not_an_attr"),
        ("GET", "/pushrules/global"),
        ("GET", "/pushrules/global/room"),
        ("GET", "/pushrules/not_a_scope/"),
        ("GET", "/pushrules/global/not_a_template/"),
        ("GET", "/pushrules/global/override/.m.rule.master/not_an_attr"),
    ):
        reply = await alice.call(method, path, {"enabled": True} if method == "PUT" else None)
        assert (reply.status, reply.body.get("errcode")) == (400, "M_INVALID_PARAM"), path
    # Only `/pushrules/` (with the slash) is an endpoint.
    no_slash = await alice.call("GET", "/pushrules")
    assert (no_slash.status, no_slash.body["errcode"]) == (404, "M_UNRECOGNIZED")
    enabled = await alice.call("GET", "/pushrules/global/override/.m.rule.master/enabled")
    assert enabled.body == {"enabled": False}
    missing = await alice.call("GET", "/pushrules/global/override/not_a_rule_id")
    assert (missing.status, missing.body["errcode"]) == (404, "M_NOT_FOUND")
