"""Three real Veche servers A, B and C on loopback (issue 5 "Tests"): a room of A joined from
B and C; messages from each reach the other two, state changes converge, leave and ban flow
to every server, and a banned user cannot join again.
"""

from __future__ import annotations

from tests.integration.cluster import ThreeServers
from tests.integration.rooms import (
    create_public_room,
    get_state_content,
    join_via,
    put_state,
    q,
    send_text,
    wait_for_same_state,
    wait_until_seen,
)
from tests.integration.test_two_servers import User


async def _room_of_three(servers: ThreeServers) -> tuple[str, User, User, User]:
    alice = await servers.a.register("alice")
    bob = await servers.b.register("bob")
    carol = await servers.c.register("carol")
    room_id = await create_public_room(alice, name="Three")
    await join_via(bob, room_id, servers.a.name)
    await join_via(carol, room_id, servers.a.name)
    return room_id, alice, bob, carol


async def test_every_server_learns_every_join_and_messages_reach_the_other_two(
    three_servers: ThreeServers,
) -> None:
    room_id, alice, bob, carol = await _room_of_three(three_servers)

    # B learns of carol's join (made through A) without any message from C.
    state = await wait_for_same_state(room_id, alice, bob, carol)
    assert {("m.room.member", u.user_id) for u in (alice, bob, carol)} <= set(state)

    await send_text(alice, room_id, "a1", "from alice")
    await send_text(bob, room_id, "b1", "from bob")
    await send_text(carol, room_id, "c1", "from carol")
    for user in (alice, bob, carol):
        await wait_until_seen(user, room_id, "from alice", "from bob", "from carol")


async def test_name_topic_and_power_level_changes_converge_on_all_three_servers(
    three_servers: ThreeServers,
) -> None:
    room_id, alice, bob, carol = await _room_of_three(three_servers)
    await wait_for_same_state(room_id, alice, bob, carol)

    levels = await get_state_content(alice, room_id, "m.room.power_levels")
    levels["users"][bob.user_id] = 50
    await put_state(alice, room_id, "m.room.power_levels", levels)
    await put_state(alice, room_id, "m.room.name", {"name": "Renamed by alice"})
    # bob, now a moderator, changes the topic from B once B has his new power level.
    await wait_for_same_state(room_id, alice, bob)
    await put_state(bob, room_id, "m.room.topic", {"topic": "set on B"})

    state = await wait_for_same_state(room_id, alice, bob, carol)
    assert ("m.room.topic", "") in state
    for user in (alice, bob, carol):
        assert (await get_state_content(user, room_id, "m.room.name"))["name"] == (
            "Renamed by alice"
        )
        assert (await get_state_content(user, room_id, "m.room.topic"))["topic"] == "set on B"
        power = await get_state_content(user, room_id, "m.room.power_levels")
        assert power["users"][bob.user_id] == 50


async def test_leave_and_ban_reach_every_server_and_the_banned_user_cannot_rejoin(
    three_servers: ThreeServers,
) -> None:
    room_id, alice, bob, carol = await _room_of_three(three_servers)
    await wait_for_same_state(room_id, alice, bob, carol)

    status, reply = await bob.call("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {})
    assert status == 200, reply
    await wait_for_same_state(room_id, alice, bob, carol)
    for user in (alice, bob, carol):
        assert (await _membership(user, room_id, bob.user_id))["membership"] == "leave"

    status, reply = await alice.call(
        "POST",
        f"/_matrix/client/v3/rooms/{q(room_id)}/ban",
        {"user_id": carol.user_id, "reason": "testing bans"},
    )
    assert status == 200, reply

    # C hears of the ban though carol's server has no joined member left.
    await wait_for_same_state(room_id, alice, carol)
    for user in (alice, carol):
        assert await _membership(user, room_id, carol.user_id) == {
            "membership": "ban",
            "reason": "testing bans",
        }
    status, rooms = await carol.call("GET", "/_matrix/client/v3/joined_rooms")
    assert status == 200 and room_id not in rooms["joined_rooms"]

    status, reply = await carol.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(three_servers.a.name)}", {}
    )
    assert status == 403, reply
    assert reply["errcode"] == "M_FORBIDDEN"
    member = await _membership(alice, room_id, carol.user_id)
    assert member["membership"] == "ban"

    # Those still in the room go on talking.
    await send_text(alice, room_id, "a2", "after the ban")
    await wait_until_seen(alice, room_id, "after the ban")


async def _membership(user: User, room_id: str, target: str) -> dict[str, object]:
    status, content = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(target)}"
    )
    assert status == 200, content
    return {k: v for k, v in content.items() if k in ("membership", "reason")}
