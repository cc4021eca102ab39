"""Our `m.device_list_update` EDUs form a per-user sequence (S2S "Device Management"): each
carries a unique `stream_id` and, in `prev_id`, the stream ID of the user's previous update,
so a receiving server can tell when it missed one."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from typing import Any, cast

from homeserver.services.device_lists import DeviceLists
from homeserver.services.sync_streams import AuxStream
from homeserver.storage.e2e_keys import E2eKeysStore

ALICE = "@alice:here.test"
BOB = "@bob:there.test"


class FakeStore:
    """The part of E2eKeysStore DeviceLists uses: one room shared by alice and bob."""

    def __init__(self) -> None:
        self.changes: list[tuple[int, str]] = []

    async def get_local_users_sharing_rooms(self, user_id: str) -> set[str]:
        return {ALICE}

    async def get_users_sharing_rooms(self, user_id: str) -> set[str]:
        return {ALICE, BOB}

    async def add_device_list_change(self, stream_id: int, user_id: str) -> None:
        await asyncio.sleep(0)  # lets concurrent changes interleave
        self.changes.append((stream_id, user_id))

    async def get_device_list_stream_id(self, user_id: str) -> int:
        await asyncio.sleep(0)
        return max((s for s, u in self.changes if u == user_id), default=0)


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[list[str], str, dict[str, Any]]] = []

    async def send_edu(
        self,
        destinations: str | Iterable[str],
        edu_type: str,
        content: Mapping[str, Any],
        *,
        durable: bool | None = None,
    ) -> None:
        targets = [destinations] if isinstance(destinations, str) else list(destinations)
        self.sent.append((targets, edu_type, dict(content)))


def make() -> tuple[DeviceLists, FakeStore, FakeSender]:
    store, sender = FakeStore(), FakeSender()
    lists = DeviceLists(
        cast(E2eKeysStore, store), AuxStream.in_memory("device_lists"), "here.test", sender
    )
    return lists, store, sender


async def test_the_second_update_names_the_first_updates_stream_id_as_prev_id() -> None:
    lists, _, sender = make()
    first = await lists.mark_changed(ALICE, "DEV1", keys={"device_id": "DEV1"})
    second = await lists.mark_changed(ALICE, "DEV1", deleted=True)
    assert [edu_type for _, edu_type, _ in sender.sent] == ["m.device_list_update"] * 2
    (targets, _, one), (_, _, two) = sender.sent
    assert targets == ["there.test"]
    assert (one["stream_id"], one["prev_id"]) == (first, [])
    assert (two["stream_id"], two["prev_id"]) == (second, [first])
    assert second > first
    assert one["keys"] == {"device_id": "DEV1"} and one["deleted"] is False
    assert two["deleted"] is True and "keys" not in two


async def test_a_change_without_an_edu_still_links_the_sequence() -> None:
    """A cross-signing change moves the position GET /user/devices reports; the next update
    is relative to it, so a server that resynced at that position applies it directly."""
    lists, store, sender = make()
    first = await lists.mark_changed(ALICE, "DEV1")
    keys_change = await lists.mark_changed(ALICE)
    third = await lists.mark_changed(ALICE, "DEV2")
    assert [content["prev_id"] for _, _, content in sender.sent] == [[], [keys_change]]
    assert keys_change > first and sender.sent[1][2]["stream_id"] == third
    assert await store.get_device_list_stream_id(ALICE) == third


async def test_concurrent_updates_of_one_user_chain_in_stream_order() -> None:
    lists, _, sender = make()
    positions = await asyncio.gather(*(lists.mark_changed(ALICE, f"DEV{i}") for i in range(5)))
    contents = [content for _, _, content in sender.sent]
    assert sorted(c["stream_id"] for c in contents) == sorted(positions)
    chain = sorted(contents, key=lambda c: c["stream_id"])
    assert chain[0]["prev_id"] == []
    for before, after in itertools.pairwise(chain):
        assert after["prev_id"] == [before["stream_id"]]


async def test_remote_users_changes_send_nothing() -> None:
    lists, store, sender = make()
    position = await lists.mark_changed(BOB, "THEIRS")
    assert store.changes == [(position, BOB)]
    assert sender.sent == []
