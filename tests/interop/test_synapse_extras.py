"""Veche ↔ Synapse beyond joins and messages: history from before the join (backfill),
typing and read receipts, redactions, concurrent state changes, profile and public room
directory queries — both ways where Synapse allows it (fixtures in conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.interop.support import (
    Client,
    Synapse,
    Veche,
    bodies_seen,
    create_room,
    eventually,
    q,
    send_text,
    set_state,
    state_content,
    wait_membership,
    wait_message,
    wait_same_state,
    wait_state,
)

pytestmark = pytest.mark.interop


async def join_remote(user: Client, room_id: str, server: str) -> None:
    await user.ok("POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(server)}", {})


class SyncFollower:
    """Incremental /sync as a client does it (Synapse caches answers per request)."""

    def __init__(self, user: Client) -> None:
        self.user = user
        self.since = ""

    async def next(self) -> dict[str, Any]:
        sync = await self.user.ok("GET", f"/_matrix/client/v3/sync?timeout=300{self.since}")
        self.since = f"&since={q(sync['next_batch'])}"
        return dict(sync)


async def ephemeral_types(follower: SyncFollower, room_id: str, seen: list[dict[str, Any]]) -> None:
    sync = await follower.next()
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    seen.extend(room.get("ephemeral", {}).get("events", []))


async def test_history_from_before_the_join_is_backfilled_both_ways(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice, v_bob = await synapse.user("alice11"), await veche.user("bob11")
    s_room = await create_room(s_alice, preset="public_chat")
    v_room = await create_room(v_bob, preset="public_chat")
    for i in range(3):
        await send_text(s_alice, s_room, f"old synapse {i}")
        await send_text(v_bob, v_room, f"old veche {i}")

    await join_remote(s_alice, v_room, veche.name)
    await wait_message(s_alice, v_room, "old veche 0", synapse.peer)
    await join_remote(v_bob, s_room, synapse.name)
    await wait_message(v_bob, s_room, "old synapse 0", synapse.peer)


async def test_typing_and_receipts_flow_both_ways(synapse: Synapse, veche: Veche) -> None:
    s_alice, v_bob = await synapse.user("alice12"), await veche.user("bob12")
    room_id = await create_room(v_bob, preset="public_chat")
    await join_remote(s_alice, room_id, veche.name)
    await wait_membership(v_bob, room_id, s_alice.user_id, "join", synapse.peer)
    s_sync, v_sync = SyncFollower(s_alice), SyncFollower(v_bob)
    await s_sync.next()
    await v_sync.next()

    await v_bob.ok(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/typing/{q(v_bob.user_id)}",
        {"typing": True, "timeout": 20000},
    )
    seen: list[dict[str, Any]] = []

    async def alice_sees_bob_typing() -> bool:
        await ephemeral_types(s_sync, room_id, seen)
        return any(
            e["type"] == "m.typing" and v_bob.user_id in e["content"]["user_ids"] for e in seen
        )

    await eventually(alice_sees_bob_typing, "Veche typing on Synapse", synapse.peer)

    await s_alice.ok(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/typing/{q(s_alice.user_id)}",
        {"typing": True, "timeout": 20000},
    )
    seen_v: list[dict[str, Any]] = []

    async def bob_sees_alice_typing() -> bool:
        await ephemeral_types(v_sync, room_id, seen_v)
        return any(
            e["type"] == "m.typing" and s_alice.user_id in e["content"]["user_ids"]
            for e in seen_v
        )

    await eventually(bob_sees_alice_typing, "Synapse typing on Veche", synapse.peer)

    from_veche = await send_text(v_bob, room_id, "read me")
    await wait_message(s_alice, room_id, "read me", synapse.peer)
    await s_alice.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(from_veche)}", {}
    )

    async def bob_sees_receipt() -> bool:
        await ephemeral_types(v_sync, room_id, seen_v)
        return any(
            e["type"] == "m.receipt" and s_alice.user_id in str(e["content"].get(from_veche))
            for e in seen_v
        )

    await eventually(bob_sees_receipt, "Synapse receipt on Veche", synapse.peer)

    from_synapse = await send_text(s_alice, room_id, "read me too")
    await wait_message(v_bob, room_id, "read me too", synapse.peer)
    await v_bob.ok(
        "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(from_synapse)}", {}
    )

    async def alice_sees_receipt() -> bool:
        await ephemeral_types(s_sync, room_id, seen)
        return any(
            e["type"] == "m.receipt" and v_bob.user_id in str(e["content"].get(from_synapse))
            for e in seen
        )

    await eventually(alice_sees_receipt, "Veche receipt on Synapse", synapse.peer)


async def test_redactions_flow_both_ways(synapse: Synapse, veche: Veche) -> None:
    s_alice, v_bob = await synapse.user("alice13"), await veche.user("bob13")
    room_id = await create_room(s_alice, preset="public_chat")
    await join_remote(v_bob, room_id, synapse.name)
    from_veche = await send_text(v_bob, room_id, "oops from veche")
    from_synapse = await send_text(s_alice, room_id, "oops from synapse")
    await wait_message(s_alice, room_id, "oops from veche", synapse.peer)
    await wait_message(v_bob, room_id, "oops from synapse", synapse.peer)

    await v_bob.ok(
        "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/redact/{q(from_veche)}/r1", {}
    )
    await s_alice.ok(
        "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/redact/{q(from_synapse)}/r2", {}
    )

    async def gone(viewer: Client, body: str) -> bool:
        return body not in await bodies_seen(viewer, room_id)

    await eventually(lambda: gone(s_alice, "oops from veche"), "redaction on Synapse", synapse.peer)
    await eventually(lambda: gone(v_bob, "oops from synapse"), "redaction on Veche", synapse.peer)


async def test_concurrent_state_changes_converge(synapse: Synapse, veche: Veche) -> None:
    s_alice, v_bob = await synapse.user("alice14"), await veche.user("bob14")
    room_id = await create_room(
        s_alice,
        preset="public_chat",
        # Room v12 (Synapse's default): the creator's power is implicit, not in `users`.
        power_level_content_override={"users": {v_bob.user_id: 100}},
    )
    await join_remote(v_bob, room_id, synapse.name)
    await wait_membership(s_alice, room_id, v_bob.user_id, "join", synapse.peer)
    await set_state(s_alice, room_id, "m.room.name", {"name": "from synapse"})
    await set_state(v_bob, room_id, "m.room.name", {"name": "from veche"})

    async def same_name() -> bool:
        a = await state_content(s_alice, room_id, "m.room.name")
        b = await state_content(v_bob, room_id, "m.room.name")
        return a is not None and a == b

    await eventually(same_name, "one room name on both servers", synapse.peer)
    await send_text(s_alice, room_id, "after the conflict")
    await wait_message(v_bob, room_id, "after the conflict", synapse.peer)
    await wait_same_state(s_alice, v_bob, room_id, synapse.peer)


async def test_profiles_and_public_rooms_are_queried_both_ways(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice, v_bob = await synapse.user("alice15"), await veche.user("bob15")
    await s_alice.ok(
        "PUT", f"/_matrix/client/v3/profile/{q(s_alice.user_id)}/displayname",
        {"displayname": "Alice on Synapse"},
    )
    await v_bob.ok(
        "PUT", f"/_matrix/client/v3/profile/{q(v_bob.user_id)}/displayname",
        {"displayname": "Bob on Veche"},
    )
    profile = await v_bob.ok("GET", f"/_matrix/client/v3/profile/{q(s_alice.user_id)}")
    assert profile.get("displayname") == "Alice on Synapse"
    profile = await s_alice.ok("GET", f"/_matrix/client/v3/profile/{q(v_bob.user_id)}")
    assert profile.get("displayname") == "Bob on Veche"

    v_room = await create_room(v_bob, preset="public_chat", visibility="public", name="V pub")
    # Synapse answers other servers' /publicRooms with 403 unless configured to
    # (allow_public_rooms_over_federation), which synapse-peer.sh does not: a clean refusal.
    status, reply = await v_bob.call(
        "GET", f"/_matrix/client/v3/publicRooms?server={q(synapse.name)}"
    )
    assert status in (403, 502) and "errcode" in reply, reply
    listed = await s_alice.ok("GET", f"/_matrix/client/v3/publicRooms?server={q(veche.name)}")
    assert v_room in [r["room_id"] for r in listed["chunk"]]


async def test_a_veche_user_is_seen_with_a_display_name_in_a_synapse_room(
    synapse: Synapse, veche: Veche
) -> None:
    s_alice, v_bob = await synapse.user("alice16"), await veche.user("bob16")
    room_id = await create_room(s_alice, preset="public_chat")
    await join_remote(v_bob, room_id, synapse.name)
    await v_bob.ok(
        "PUT", f"/_matrix/client/v3/profile/{q(v_bob.user_id)}/displayname",
        {"displayname": "Renamed Bob"},
    )

    async def renamed() -> bool:
        content = await state_content(s_alice, room_id, "m.room.member", v_bob.user_id)
        return content is not None and content.get("displayname") == "Renamed Bob"

    await eventually(renamed, "the new display name on Synapse", synapse.peer)
    await wait_state(v_bob, room_id, "m.room.create", "room_version", "12", synapse.peer)
