"""Two Veche servers exchanging presence (S2S "Presence"): a user's status set on one server
reaches the other server's users who share a room, through its /sync and GET /status."""

from __future__ import annotations

from typing import Any

from tests.integration.test_two_servers import Servers, User, eventually, q
from tests.integration.test_two_servers_edus import shared_room


async def status_of(reader: User, user_id: str) -> dict[str, Any]:
    status, body = await reader.call("GET", f"/_matrix/client/v3/presence/{q(user_id)}/status")
    assert status == 200, body
    found: dict[str, Any] = body
    return found


async def test_status_set_on_one_server_reaches_the_other(servers: Servers) -> None:
    alice, bob, _ = await shared_room(servers, "presence-lobby")
    status, reply = await alice.call(
        "PUT",
        f"/_matrix/client/v3/presence/{q(alice.user_id)}/status",
        {"presence": "unavailable", "status_msg": "at the dentist"},
    )
    assert status == 200, reply

    async def bob_sees_it() -> bool:
        seen = await status_of(bob, alice.user_id)
        return (seen["presence"], seen.get("status_msg")) == ("unavailable", "at the dentist")

    await eventually(bob_sees_it)
    status, sync = await bob.call("GET", "/_matrix/client/v3/sync?timeout=0&set_presence=offline")
    assert status == 200, sync
    events = [e for e in sync["presence"]["events"] if e["sender"] == alice.user_id]
    assert events and events[-1]["content"]["status_msg"] == "at the dentist"
