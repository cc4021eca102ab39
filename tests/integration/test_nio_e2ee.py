"""End-to-end encryption with a real client library (matrix-nio with its e2e extra, backed by
vodozemac): two clients with their own key stores upload device and one-time keys, Alice
creates an encrypted room and invites Bob, shares a Megolm session over to-device messages
(Olm, after claiming one of Bob's one-time keys), and Bob decrypts her message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysUploadResponse,
    LoginResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from tests.http.account_helpers import SERVER_NAME, Client, running_server

PASSWORD = "nio e2ee password"


@pytest.fixture
async def server(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


async def encrypting_client(base_url: str, username: str, store: Path) -> AsyncClient:
    user_id = f"@{username}:{SERVER_NAME}"
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = AsyncClient(base_url, user_id, store_path=str(store), config=config)
    registered = await client.register(username, PASSWORD)
    assert isinstance(registered, RegisterResponse), registered
    await client.close()
    client = AsyncClient(base_url, user_id, store_path=str(store), config=config)
    login = await client.login(PASSWORD, device_name=f"{username}'s e2ee device")
    assert isinstance(login, LoginResponse), login
    assert client.olm is not None
    return client


async def sync_and_upload(client: AsyncClient) -> SyncResponse:
    """One sync, then whatever key work the client asks for (as its sync loop would)."""
    response = await client.sync(timeout=0, full_state=True)
    assert isinstance(response, SyncResponse), response
    if client.should_upload_keys:
        uploaded = await client.keys_upload()
        assert isinstance(uploaded, KeysUploadResponse), uploaded
    if client.should_query_keys:
        await client.keys_query()
    return response


async def test_bob_decrypts_alices_message_in_an_encrypted_room(
    server: Client, tmp_path: Path
) -> None:
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
    alice = await encrypting_client(server.base_url, "alice", tmp_path / "alice")
    bob = await encrypting_client(server.base_url, "bob", tmp_path / "bob")
    try:
        await sync_and_upload(alice)
        await sync_and_upload(bob)
        created = await alice.room_create(
            invite=[bob.user_id],
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        assert isinstance(created, RoomCreateResponse), created
        await sync_and_upload(bob)
        joined = await bob.join(created.room_id)
        assert isinstance(joined, JoinResponse), joined
        await sync_and_upload(alice)
        await sync_and_upload(alice)  # Bob's keys, now that he is a member
        assert alice.rooms[created.room_id].encrypted
        assert bob.device_id in alice.device_store[bob.user_id]

        sent = await alice.room_send(
            created.room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": "only bob can read this"},
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, RoomSendResponse), sent
        stored = await server.deps.pool.fetchval(
            "SELECT json FROM events WHERE event_id = $1", sent.event_id
        )
        assert "m.room.encrypted" in stored and "only bob can read this" not in stored

        response = await bob.sync(timeout=0)
        assert isinstance(response, SyncResponse), response
        events = response.rooms.join[created.room_id].timeline.events
        texts = [e.body for e in events if isinstance(e, RoomMessageText)]
        assert texts == ["only bob can read this"]
    finally:
        await alice.close()
        await bob.close()
