"""POST /createRoom through the real application on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.http.account_helpers import running_server
from tests.http.room_helpers import Client, User, current_state, register_users


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def alice(client: Client) -> User:
    (alice,) = await register_users(client, "alice")
    return alice


async def test_private_chat_preset_sets_invite_only_shared_can_join(
    client: Client, alice: User
) -> None:
    room_id = await alice.create_room(preset="private_chat")
    state = await current_state(client.deps, room_id)
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    assert state[("m.room.history_visibility", "")] == {"history_visibility": "shared"}
    assert state[("m.room.guest_access", "")] == {"guest_access": "can_join"}
    assert state[("m.room.member", alice.user_id)]["membership"] == "join"
    assert state[("m.room.power_levels", "")]["users"] == {alice.user_id: 100}
    assert state[("m.room.power_levels", "")]["invite"] == 0
    assert state[("m.room.create", "")]["room_version"] == "11"
    assert "creator" not in state[("m.room.create", "")]
