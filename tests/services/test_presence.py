"""PresenceService rules without a database: the change log /sync reads, timeouts, activity,
and the EDUs sent to other servers (C-S "Presence", S2S "Presence")."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from federation.edus import PresenceUpdate
from homeserver.services.presence import (
    CURRENTLY_ACTIVE_MS,
    REMOTE_TIMEOUT_MS,
    PresenceService,
)
from homeserver.services.presence_federation import PresenceForwarder
from homeserver.storage.presence import StoredPresence

ALICE = "@alice:here.example"
BOB = "@bob:there.example"
ROOM = "!room:here.example"


class FakeStore:
    def __init__(self) -> None:
        self.saved: list[StoredPresence] = []

    async def load_all(self) -> list[StoredPresence]:
        return []

    async def save(self, state: StoredPresence, now_ms: int) -> None:
        self.saved.append(state)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


async def rooms_of(user_id: str) -> Collection[str]:
    return {ROOM} if user_id in (ALICE, BOB) else set()


def make_service(clock: Clock, store: FakeStore | None = None) -> PresenceService:
    return PresenceService(
        store=store or FakeStore(),  # type: ignore[arg-type]
        stream=PresenceService.new_stream(clock),
        rooms_of_user=rooms_of,
        server_name="here.example",
        idle_timeout_ms=300_000,
        offline_timeout_ms=30_000,
        clock=clock,
    )


async def test_changes_are_listed_after_a_position_and_older_positions_are_unknown() -> None:
    clock = Clock()
    presence = make_service(clock)
    start = presence.stream.current_position
    await presence.set_status(ALICE, "online", None, keep_status=True)
    middle = presence.stream.current_position
    await presence.on_remote_update(PresenceUpdate(BOB, "unavailable", 10, None, False))
    end = presence.stream.current_position
    assert presence.changed_users(start, end) == [ALICE, BOB]
    assert presence.changed_users(middle, end) == [BOB]
    assert presence.changed_users(end, end) == []
    assert presence.changed_users(start - 1, end) is None  # from before this process


async def test_activity_while_currently_active_moves_no_stream_position() -> None:
    clock = Clock()
    presence = make_service(clock)
    await presence.bump_active(ALICE)
    position = presence.stream.current_position
    clock.now += CURRENTLY_ACTIVE_MS // 2
    await presence.bump_active(ALICE)
    assert presence.stream.current_position == position
    state = presence.get(ALICE)
    assert state is not None and state.last_active_ts == clock.now
    clock.now += CURRENTLY_ACTIVE_MS + 1  # no longer currently active: a new update
    await presence.bump_active(ALICE)
    assert presence.stream.current_position > position


async def test_timeouts_idle_then_offline_and_a_running_sync_keeps_online() -> None:
    clock = Clock()
    store = FakeStore()
    presence = make_service(clock, store)
    async with presence.syncing(ALICE, None):
        clock.now += 300_001
        await presence.sweep()  # syncing, but idle for the idle timeout
        state = presence.get(ALICE)
        assert state is not None and state.presence == "unavailable"
    async with presence.syncing(ALICE, "online"):  # idle, not chosen: sync brings her back
        state = presence.get(ALICE)
        assert state is not None and state.presence == "online"
    clock.now += 30_001
    await presence.sweep()
    state = presence.get(ALICE)
    assert state is not None and state.presence == "offline"
    assert [s.presence for s in store.saved] == ["online", "unavailable", "online", "offline"]


async def test_chosen_unavailable_is_not_undone_by_syncing() -> None:
    clock = Clock()
    presence = make_service(clock)
    await presence.set_status(ALICE, "unavailable", "away", keep_status=False)
    async with presence.syncing(ALICE, None):
        state = presence.get(ALICE)
        assert state is not None and (state.presence, state.status_msg) == ("unavailable", "away")


async def test_remote_users_time_out_without_news_and_are_not_saved() -> None:
    clock = Clock()
    store = FakeStore()
    presence = make_service(clock, store)
    await presence.on_remote_update(PresenceUpdate(BOB, "online", 0, "hi", True))
    clock.now += REMOTE_TIMEOUT_MS + 1
    await presence.sweep()
    state = presence.get(BOB)
    assert state is not None and state.presence == "offline"
    assert store.saved == []


async def test_remote_update_about_a_user_in_no_room_is_ignored() -> None:
    presence = make_service(Clock())
    await presence.on_remote_update(PresenceUpdate("@carol:there.example", "online", 0, None, True))
    assert presence.get("@carol:there.example") is None


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[list[str], str, Mapping[str, Any]]] = []

    async def send_edu(
        self, destinations: str | Collection[str], edu_type: str, content: Mapping[str, Any]
    ) -> None:
        self.sent.append((sorted(destinations), edu_type, content))


async def test_local_changes_go_to_the_other_servers_in_the_users_rooms() -> None:
    clock = Clock()
    presence = make_service(clock)
    sender = FakeSender()

    async def joined_servers(rooms: Collection[str]) -> Mapping[str, set[str]]:
        return {room: {"here.example", "there.example", "third.example"} for room in rooms}

    PresenceForwarder(presence, sender, joined_servers, "here.example").attach()
    await presence.set_status(ALICE, "online", "hello", keep_status=False)
    await presence.on_remote_update(PresenceUpdate(BOB, "online", 0, None, True))  # not echoed
    assert sender.sent == [
        (
            ["there.example", "third.example"],
            "m.presence",
            {
                "push": [
                    {
                        "user_id": ALICE,
                        "presence": "online",
                        "last_active_ago": 0,
                        "currently_active": True,
                        "status_msg": "hello",
                    }
                ]
            },
        )
    ]
