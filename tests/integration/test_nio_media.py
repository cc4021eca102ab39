"""Media through a real client (matrix-nio), as users would: Alice uploads a picture with
`AsyncClient.upload`, posts it to a room and makes it her avatar; Bob sees the event, downloads
the picture and a thumbnail of it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from nio import (
    AsyncClient,
    MemoryDownloadResponse,
    ProfileGetAvatarResponse,
    ProfileSetAvatarResponse,
    ResizingMethod,
    RoomMessageImage,
    RoomSendResponse,
    ThumbnailResponse,
    UploadResponse,
)
from PIL import Image

from tests.http.account_helpers import Client, running_server
from tests.integration.test_nio_chat import ALICE, BOB, Chat, logged_in, synced


def picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (400, 300), "blue").save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def server(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as server:
        yield server


@pytest.fixture
async def chat(server: Client) -> AsyncIterator[Chat]:
    alice = await logged_in(server.base_url, "alice", ALICE)
    bob = await logged_in(server.base_url, "bob", BOB)
    try:
        created = await alice.room_create(invite=[BOB])
        room_id = created.room_id
        await bob.join(room_id)
        await synced(alice)
        await synced(bob)
        yield Chat(alice, bob, room_id)
    finally:
        await alice.close()
        await bob.close()


async def upload_picture(client: AsyncClient, data: bytes) -> str:
    uploaded, keys = await client.upload(
        io.BytesIO(data), content_type="image/png", filename="holiday.png", filesize=len(data)
    )
    assert isinstance(uploaded, UploadResponse), uploaded
    assert keys is None
    uri: str = uploaded.content_uri
    return uri


async def test_a_picture_posted_by_alice_is_downloaded_by_bob(chat: Chat) -> None:
    alice, bob, room_id = chat.alice, chat.bob, chat.room_id
    data = picture()
    uri = await upload_picture(alice, data)
    sent = await alice.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.image",
            "body": "holiday.png",
            "url": uri,
            "info": {"mimetype": "image/png"},
        },
    )
    assert isinstance(sent, RoomSendResponse), sent

    update = await synced(bob)
    images = [
        event
        for event in update.rooms.join[room_id].timeline.events
        if isinstance(event, RoomMessageImage)
    ]
    assert [image.url for image in images] == [uri]

    downloaded = await bob.download(images[0].url)
    assert isinstance(downloaded, MemoryDownloadResponse), downloaded
    assert downloaded.body == data
    assert downloaded.content_type == "image/png"
    assert downloaded.filename == "holiday.png"

    server_name, media_id = uri.removeprefix("mxc://").split("/")
    thumbnail = await bob.thumbnail(server_name, media_id, 32, 32, ResizingMethod.crop)
    assert isinstance(thumbnail, ThumbnailResponse), thumbnail
    assert thumbnail.content_type == "image/png"
    assert Image.open(io.BytesIO(thumbnail.body)).size == (32, 32)


async def test_an_uploaded_picture_becomes_alices_avatar(chat: Chat) -> None:
    alice, bob = chat.alice, chat.bob
    uri = await upload_picture(alice, picture())
    assert isinstance(await alice.set_avatar(uri), ProfileSetAvatarResponse)
    seen = await bob.get_avatar(ALICE)
    assert isinstance(seen, ProfileGetAvatarResponse) and seen.avatar_url == uri
    avatar = await bob.download(uri)
    assert isinstance(avatar, MemoryDownloadResponse) and avatar.body == picture()
