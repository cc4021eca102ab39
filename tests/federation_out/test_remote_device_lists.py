"""The cache of remote users' device lists (S2S "Device Management"): kept current along
`prev_id` chains, resynced through `/user/devices` when an update was missed, and used for
`/user/keys/query` only while a local user shares a room with the list's owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from federation.edus import DeviceListUpdateEdu, SigningKeyUpdateEdu
from federation.signing import generate_signing_key
from homeserver.services.remote_device_lists import KEYS_QUERY_PATH, RemoteDeviceKeys
from homeserver.storage.remote_device_keys import RemoteDeviceKeysStore
from tests.federation_out.peer import FakePeer
from tests.remote.support import LoopbackCertificate, make_certificate
from tests.services.pipeline_harness import SERVER, Harness, create_room, make_harness

OUR_KEY = generate_signing_key("ours")


class FakeKeysClient:
    """Answers keys/query and /user/devices from what the test set; counts the requests."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}  # user → device → keys
        self.stream_id = 0
        self.posts: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.devices_gate = asyncio.Event()
        self.devices_gate.set()

    async def post_json(
        self, destination: str, path: str, content: Any, query: Any = None, *, timeout_s: Any = None
    ) -> Any:
        assert path == KEYS_QUERY_PATH
        self.posts.append(content)
        return {"device_keys": {u: dict(self.keys.get(u, {})) for u in content["device_keys"]}}

    async def get_json(
        self, destination: str, path: str, query: Any = None, *, timeout_s: Any = None
    ) -> Any:
        self.gets.append(path)
        await self.devices_gate.wait()
        user_id = next(
            u for u in self.keys if path.endswith(u.replace("@", "%40").replace(":", "%3A"))
        )
        devices = [{"device_id": d, "keys": k} for d, k in self.keys[user_id].items()]
        return {"user_id": user_id, "stream_id": self.stream_id, "devices": devices}


def keys_of(user_id: str, device_id: str, curve: str = "c") -> dict[str, Any]:
    return {"user_id": user_id, "device_id": device_id, "keys": {f"curve25519:{device_id}": curve}}


@pytest.fixture
def peer(tmp_path: Path) -> FakePeer:
    cert: LoopbackCertificate = make_certificate(tmp_path / "tls", ["localhost"], ["127.0.0.1"])
    return FakePeer(cert, OUR_KEY)


@pytest.fixture
async def harness(pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    h = await make_harness(pool, signing_key=OUR_KEY)
    yield h
    await h.pipeline.close()


async def share_a_room(h: Harness, peer: FakePeer) -> str:
    """alice's room, which the peer's user carol has joined."""
    room_id, events = await create_room(h)
    state_before = dict(await h.cache.get_current_state_ids(room_id))
    join = peer.join_event(room_id, events[-1], [events[0], events[2], events[3]])
    await h.pipeline.persist_remote_event(join, state_before)
    return room_id


async def ask(cache: RemoteDeviceKeys, peer: FakePeer, user_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = await cache.post_json(
        peer.server_name, KEYS_QUERY_PATH, {"device_keys": {user_id: []}}
    )
    return answer


def update(user_id: str, device_id: str, stream_id: int, prev: tuple[int, ...], **extra: Any):
    return DeviceListUpdateEdu(
        user_id=user_id,
        device_id=device_id,
        stream_id=stream_id,
        prev_id=prev,
        deleted=extra.get("deleted", False),
        device_display_name=None,
        keys=extra.get("keys"),
    )


async def test_a_tracked_list_is_asked_for_once_then_kept_current_by_updates(
    harness: Harness, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    await share_a_room(harness, peer)
    carol, client = peer.user_id, FakeKeysClient()
    client.keys[carol] = {"D1": keys_of(carol, "D1")}
    client.stream_id = 5
    cache = RemoteDeviceKeys(RemoteDeviceKeysStore(pool), client, SERVER)
    assert await cache.resync(carol)  # /user/devices: stream_id 5

    # An update relative to 5 applies; one relative to it (6) too; a repeat changes nothing.
    await cache.on_device_list_update(update(carol, "D2", 6, (5,), keys=keys_of(carol, "D2")))
    await cache.on_device_list_update(update(carol, "D1", 7, (6,), deleted=True))
    await cache.on_device_list_update(update(carol, "D2", 6, (5,), keys=keys_of(carol, "D2")))

    answer = await ask(cache, peer, carol)
    assert answer["device_keys"] == {carol: {"D2": keys_of(carol, "D2")}}
    assert client.posts == []  # never asked the peer


async def test_an_update_after_a_missed_one_resyncs_and_queries_go_to_the_server_meanwhile(
    harness: Harness, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    await share_a_room(harness, peer)
    carol, client = peer.user_id, FakeKeysClient()
    client.keys[carol] = {"D1": keys_of(carol, "D1")}
    client.stream_id = 5
    cache = RemoteDeviceKeys(RemoteDeviceKeysStore(pool), client, SERVER)
    await cache.resync(carol)
    client.keys[carol] = {"D1": keys_of(carol, "D1", "new"), "D3": keys_of(carol, "D3")}
    client.stream_id = 9
    client.devices_gate.clear()

    # 8 was never seen: update 9 cannot be applied on top of what we have.
    await cache.on_device_list_update(update(carol, "D3", 9, (8,), keys=keys_of(carol, "D3")))
    await asyncio.sleep(0.05)
    assert len(client.gets) == 2  # the resync is under way
    during = await ask(cache, peer, carol)
    assert len(client.posts) == 1  # not served from a list known to be stale
    assert set(during["device_keys"][carol]) == {"D1", "D3"}

    client.devices_gate.set()
    await asyncio.wait_for(cache.start_resync(carol), 5)
    posts_before = len(client.posts)
    after = await ask(cache, peer, carol)
    assert len(client.posts) == posts_before  # from the cache again
    assert after["device_keys"][carol]["D1"] == keys_of(carol, "D1", "new")
    # Later updates chain on the resynced stream_id.
    await cache.on_device_list_update(update(carol, "D3", 10, (9,), deleted=True))
    assert set((await ask(cache, peer, carol))["device_keys"][carol]) == {"D1"}
    await cache.close()


async def test_a_keys_query_answer_is_cached_only_for_whole_lists_of_users_in_shared_rooms(
    harness: Harness, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    await share_a_room(harness, peer)
    carol, stranger, client = peer.user_id, f"@dan:{peer.server_name}", FakeKeysClient()
    client.keys = {carol: {"D1": keys_of(carol, "D1")}, stranger: {"S": keys_of(stranger, "S")}}
    cache = RemoteDeviceKeys(RemoteDeviceKeysStore(pool), client, SERVER)

    await cache.post_json(peer.server_name, KEYS_QUERY_PATH, {"device_keys": {carol: ["D1"]}})
    await ask(cache, peer, stranger)
    await ask(cache, peer, carol)
    assert len(client.posts) == 3  # a partial list and a stranger's are not cached

    answer = await ask(cache, peer, carol)
    assert len(client.posts) == 3
    assert answer["device_keys"][carol] == {"D1": keys_of(carol, "D1")}
    await ask(cache, peer, stranger)
    assert len(client.posts) == 4


async def test_a_signing_key_update_replaces_the_cached_master_key(
    harness: Harness, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    await share_a_room(harness, peer)
    carol, client = peer.user_id, FakeKeysClient()
    client.keys[carol] = {"D1": keys_of(carol, "D1")}
    cache = RemoteDeviceKeys(RemoteDeviceKeysStore(pool), client, SERVER)
    await ask(cache, peer, carol)
    master = {"user_id": carol, "usage": ["master"], "keys": {"ed25519:M": "M"}}
    forged = {"user_id": "@eve:elsewhere", "usage": ["self_signing"], "keys": {"ed25519:E": "E"}}

    await cache.on_signing_key_update(SigningKeyUpdateEdu(carol, master, forged))

    answer = await ask(cache, peer, carol)
    assert answer["master_keys"] == {carol: master}
    assert answer["self_signing_keys"] == {}  # a key about another user is ignored
    assert len(client.posts) == 1


async def test_updates_for_lists_we_do_not_cache_are_ignored(
    harness: Harness, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    client = FakeKeysClient()
    cache = RemoteDeviceKeys(RemoteDeviceKeysStore(pool), client, SERVER)
    await cache.on_device_list_update(update(peer.user_id, "D", 3, (2,)))
    assert client.gets == []
    assert await pool.fetchval("SELECT count(*) FROM remote_device_lists") == 0


async def test_a_new_join_makes_cached_lists_be_fetched_again_before_use(
    harness: Harness, pool: asyncpg.Pool, peer: FakePeer
) -> None:
    """Updates sent while no room was shared never reached us: a join that may start sharing
    again (the owner's, or a local user's into a room the owner is in) invalidates the list."""
    carol, client = peer.user_id, FakeKeysClient()
    client.keys[carol] = {"D1": keys_of(carol, "D1")}
    cache = RemoteDeviceKeys(RemoteDeviceKeysStore(pool), client, SERVER)
    harness.pipeline.add_persisted_hook(cache.on_events_persisted)
    shared = await share_a_room(harness, peer)
    await ask(cache, peer, carol)
    await ask(cache, peer, carol)
    assert len(client.posts) == 1  # cached

    await create_room(harness)  # alice's new room: a local join
    await ask(cache, peer, carol)
    assert len(client.posts) == 1  # carol is not in it: her list stays valid

    await share_a_room(harness, peer)  # carol joins another room of ours
    client.keys[carol] = {"D1": keys_of(carol, "D1"), "D2": keys_of(carol, "D2")}
    answer = await ask(cache, peer, carol)
    assert len(client.posts) == 2
    assert set(answer["device_keys"][carol]) == {"D1", "D2"}
    await ask(cache, peer, carol)
    assert len(client.posts) == 2  # and cached again

    # A local user joining a room carol is in.
    dave = f"@dave:{SERVER}"
    await harness.pipeline.create_local_event(
        shared, "m.room.member", dave, {"membership": "join"}, state_key=dave
    )
    await ask(cache, peer, carol)
    assert len(client.posts) == 3
