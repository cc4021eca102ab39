"""Client-API steps the multi-server tests share: rooms, state, messages, waiting for
federation to deliver."""

from __future__ import annotations

from typing import Any

from tests.integration.test_two_servers import User, eventually, q, send_text, state_of

__all__ = ["eventually", "q", "send_text", "state_of"]

# How long federation gets to deliver something before a test gives up.
DELIVERY_TIMEOUT_S = 15.0


async def create_public_room(creator: User, **extra: Any) -> str:
    status, created = await creator.call(
        "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat", **extra}
    )
    assert status == 200, created
    return str(created["room_id"])


async def join_via(user: User, room_id: str, server_name: str) -> None:
    status, joined = await user.call(
        "POST", f"/_matrix/client/v3/join/{q(room_id)}?server_name={q(server_name)}", {}
    )
    assert status == 200, joined


async def put_state(
    user: User, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
) -> str:
    status, reply = await user.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}",
        content,
    )
    assert status == 200, reply
    return str(reply["event_id"])


async def get_state_content(user: User, room_id: str, event_type: str) -> Any:
    status, content = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/{q(event_type)}/"
    )
    assert status == 200, content
    return content


async def message_bodies(user: User, room_id: str, limit: int = 100) -> list[str]:
    """The room's messages as `user`'s server holds them, oldest first."""
    status, page = await user.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit={limit}"
    )
    assert status == 200, page
    chunk = [e for e in page["chunk"] if e["type"] == "m.room.message"]
    return [e["content"]["body"] for e in reversed(chunk)]


async def wait_until_seen(user: User, room_id: str, *bodies: str) -> None:
    async def seen() -> bool:
        return set(bodies) <= set(await message_bodies(user, room_id))

    await eventually(seen, DELIVERY_TIMEOUT_S)


async def wait_for_same_state(room_id: str, *users: User) -> dict[tuple[str, str], str]:
    """Wait until every user's server reports the same current state; return it."""
    states: list[dict[tuple[str, str], str]] = []

    async def same() -> bool:
        states[:] = [await state_of(user, room_id) for user in users]
        return all(state == states[0] for state in states)

    try:
        await eventually(same, DELIVERY_TIMEOUT_S)
    except AssertionError:
        raise AssertionError(f"state differs: {_differences(states)}") from None
    return states[0]


def _differences(states: list[dict[tuple[str, str], str]]) -> dict[tuple[str, str], list[Any]]:
    keys = set().union(*states)
    return {
        key: [state.get(key) for state in states]
        for key in keys
        if len({state.get(key) for state in states}) > 1
    }
