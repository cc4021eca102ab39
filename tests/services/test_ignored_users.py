"""IgnoredUsers: who each user ignores, from m.ignored_user_list, cached until that user's
account data moves; concurrent readers share one read."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.services.account_data import AccountDataService
from homeserver.services.ignored_users import IGNORED_USER_LIST, IgnoredUsers, parse_ignored_users
from homeserver.services.sync_streams import AuxStream
from homeserver.storage.sync_data import GLOBAL


class FakeStore:
    """The two account data calls AccountDataService makes, in memory, counting reads."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.reads = 0

    async def put_account_data(
        self, user_id: str, room_id: str, data_type: str, content: dict[str, Any], position: int
    ) -> None:
        self.data[(user_id, room_id, data_type)] = content

    async def get_account_data(
        self, user_id: str, room_id: str, data_type: str
    ) -> dict[str, Any] | None:
        self.reads += 1
        await asyncio.sleep(0)  # let concurrent callers pile up
        return self.data.get((user_id, room_id, data_type))


def build() -> tuple[FakeStore, AccountDataService, IgnoredUsers]:
    store = FakeStore()
    account_data = AccountDataService(store, AuxStream.in_memory("account_data"))  # type: ignore[arg-type]
    return store, account_data, IgnoredUsers(account_data)


async def test_list_is_read_once_and_reread_after_a_change() -> None:
    store, account_data, ignored = build()
    assert await ignored.ignored_by("@a:x") == frozenset()
    assert await ignored.ignored_by("@a:x") == frozenset()
    assert store.reads == 1
    await account_data.put("@a:x", GLOBAL, IGNORED_USER_LIST, {"ignored_users": {"@b:x": {}}})
    assert await ignored.ignored_by("@a:x") == {"@b:x"}
    assert store.reads == 2
    # Someone else's account data does not make @a's list stale.
    await account_data.put("@c:x", GLOBAL, "m.other", {})
    assert await ignored.ignored_by("@a:x") == {"@b:x"}
    assert store.reads == 2


async def test_concurrent_readers_share_one_read() -> None:
    store, _, ignored = build()
    answers = await asyncio.gather(*(ignored.ignored_by("@a:x") for _ in range(20)))
    assert set(answers) == {frozenset()}
    assert store.reads == 1


def test_malformed_content_ignores_nobody() -> None:
    assert parse_ignored_users({"ignored_users": ["@b:x"]}) == frozenset()
    assert parse_ignored_users({}) == frozenset()
    assert parse_ignored_users({"ignored_users": {"@b:x": {}, "@c:x": {}}}) == {"@b:x", "@c:x"}
