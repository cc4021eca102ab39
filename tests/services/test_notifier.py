"""Stream positions and waking long-polling readers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import asyncpg
import pytest

from homeserver.services.notifier import Notifier
from homeserver.services.streams import StreamTracker
from tests.services.pipeline_harness import ALICE, BOB, create_room, make_harness


class FakeSequence:
    """Hands out increasing numbers like a PostgreSQL sequence; can be held mid-call."""

    def __init__(self, start: int = 0) -> None:
        self.last = start
        self.gate: asyncio.Event | None = None

    async def __call__(self, count: int) -> Sequence[int]:
        numbers = list(range(self.last + 1, self.last + count + 1))
        self.last += count
        if self.gate is not None:
            await self.gate.wait()
        return numbers


async def test_tracker_does_not_pass_a_position_still_in_flight() -> None:
    tracker = StreamTracker("events", 10)
    sequence = FakeSequence(10)
    first = tracker.allocate(sequence, 1)
    second = tracker.allocate(sequence, 1)
    [p11] = await first.__aenter__()
    [p12] = await second.__aenter__()

    await second.__aexit__(None, None, None)  # 12 commits before 11
    assert (p11, p12) == (11, 12)
    assert tracker.current_position == 10
    await first.__aexit__(None, None, None)
    assert tracker.current_position == 12


async def test_tracker_waits_for_an_allocation_whose_number_is_not_known_yet() -> None:
    tracker = StreamTracker("events", 0)
    slow = FakeSequence(0)
    slow.gate = asyncio.Event()
    fast = FakeSequence(1)  # the database gave 1 to the slow caller, 2 to the fast one

    async def persist_slowly() -> None:
        async with tracker.allocate(slow, 1):
            pass

    slow_task = asyncio.create_task(persist_slowly())
    await asyncio.sleep(0)
    async with tracker.allocate(fast, 1) as positions:
        assert positions == [2]
    assert tracker.current_position == 0  # 1 may still be committing
    slow.gate.set()
    await slow_task
    assert tracker.current_position == 2


async def test_tracker_counts_a_failed_transaction_as_finished() -> None:
    tracker = StreamTracker("events", 0)
    with pytest.raises(RuntimeError):
        async with tracker.allocate(FakeSequence(0), 3):
            raise RuntimeError("rolled back")
    assert tracker.current_position == 3
    assert list(tracker.in_flight()) == []


async def test_waiter_wakes_within_milliseconds_of_an_event_in_its_room() -> None:
    tracker = StreamTracker("events", 0)
    notifier = Notifier(tracker)
    waiter = asyncio.create_task(notifier.wait_for_events(ALICE, ["!a:x"], 0, 10_000))
    await asyncio.sleep(0.01)
    assert notifier.waiter_count("!a:x") == 1

    started = time.monotonic()
    async with tracker.allocate(FakeSequence(0), 1) as [position]:
        notifier.notify_new_event("!a:x", position)
    result = await asyncio.wait_for(waiter, 1)

    assert result == 1
    assert time.monotonic() - started < 0.05
    assert notifier.waiter_count("!a:x") == 0


async def test_waiter_times_out_when_nothing_happens_in_its_rooms() -> None:
    tracker = StreamTracker("events", 0)
    notifier = Notifier(tracker)
    waiter = asyncio.create_task(notifier.wait_for_events(ALICE, ["!a:x"], 0, 100))
    await asyncio.sleep(0.01)
    async with tracker.allocate(FakeSequence(0), 1) as [position]:
        notifier.notify_new_event("!other:x", position)

    started = time.monotonic()
    result = await waiter
    assert 0.05 < time.monotonic() - started < 0.5
    assert result == 1  # the position moved on, even though nothing here changed
    assert notifier.waiter_count("!a:x") == 0


async def test_reader_behind_the_latest_event_returns_at_once() -> None:
    tracker = StreamTracker("events", 0)
    notifier = Notifier(tracker)
    async with tracker.allocate(FakeSequence(0), 1) as [position]:
        notifier.notify_new_event("!a:x", position)

    result = await asyncio.wait_for(notifier.wait_for_events(ALICE, ["!a:x"], 0, 10_000), 0.1)
    assert result == 1


async def test_membership_change_wakes_the_target_user_without_rooms() -> None:
    tracker = StreamTracker("events", 0)
    notifier = Notifier(tracker)
    waiter = asyncio.create_task(notifier.wait_for_events(BOB, [], 0, 10_000))
    await asyncio.sleep(0.01)
    async with tracker.allocate(FakeSequence(0), 1) as [position]:
        notifier.notify_new_event("!a:x", position, [BOB])
    assert await asyncio.wait_for(waiter, 1) == 1


async def test_event_is_announced_only_when_no_earlier_position_is_in_flight() -> None:
    tracker = StreamTracker("events", 0)
    notifier = Notifier(tracker)
    sequence = FakeSequence(0)
    waiter = asyncio.create_task(notifier.wait_for_events(ALICE, ["!b:x"], 0, 10_000))
    await asyncio.sleep(0.01)
    earlier = tracker.allocate(sequence, 1)
    await earlier.__aenter__()  # room A holds position 1

    async with tracker.allocate(sequence, 1) as [position]:
        notifier.notify_new_event("!b:x", position)
    await asyncio.sleep(0.01)
    assert not waiter.done()  # a reader woken now would read up to 0 and miss event 2

    await earlier.__aexit__(None, None, None)
    assert await asyncio.wait_for(waiter, 1) == 2


async def test_out_of_order_commits_in_two_rooms_never_skip_an_event(pool: asyncpg.Pool) -> None:
    h = await make_harness(pool)
    room_a, _ = await create_room(h)
    room_b, _ = await create_room(h)
    start = h.tracker.current_position
    gate = asyncio.Event()
    real_persist = h.events.persist

    async def persist_after_gate(batch):  # type: ignore[no-untyped-def]
        if batch.room_id == room_a:
            await gate.wait()
        await real_persist(batch)

    h.events.persist = persist_after_gate  # type: ignore[method-assign]
    send_a = asyncio.create_task(
        h.pipeline.create_local_event(room_a, "m.room.message", ALICE, {"body": "a"})
    )
    await asyncio.sleep(0.05)  # room A has its position and is stuck before commit
    event_b = await h.pipeline.create_local_event(room_b, "m.room.message", ALICE, {"body": "b"})

    assert h.tracker.current_position == start
    gate.set()
    event_a = await send_a
    rows = await h.events.get_event_rows([event_a.event_id, event_b.event_id])
    assert rows[event_a.event_id].stream_ordering < rows[event_b.event_id].stream_ordering
    assert h.tracker.current_position == rows[event_b.event_id].stream_ordering
    timeline = await h.events.get_room_events_in_range(
        room_a, start, h.tracker.current_position, 10
    )
    assert [r.event.event_id for r in timeline] == [event_a.event_id]


async def test_token_older_than_the_process_returns_at_once() -> None:
    tracker = StreamTracker("events", 500)  # restarted with events up to 500 in storage
    notifier = Notifier(tracker)
    result = await asyncio.wait_for(notifier.wait_for_events(ALICE, ["!a:x"], 400, 10_000), 0.1)
    assert result == 500
    assert notifier.waiter_count("!a:x") == 0


async def test_rooms_announced_after_names_only_rooms_with_later_announcements() -> None:
    tracker = StreamTracker("events", 10)
    notifier = Notifier(tracker)
    sequence = FakeSequence(10)
    for room_id in ("!a:hs", "!b:hs"):
        async with tracker.allocate(sequence, 1) as [position]:
            notifier.notify_new_event(room_id, position)
    # !a at 11, !b at 12; !c never.
    rooms = ["!a:hs", "!b:hs", "!c:hs"]
    assert notifier.rooms_announced_after(rooms, 10) == ["!a:hs", "!b:hs"]
    assert notifier.rooms_announced_after(rooms, 11) == ["!b:hs"]
    assert notifier.rooms_announced_after(rooms, 12) == []
    # Before the process started nothing is known: the caller must look in storage.
    assert notifier.rooms_announced_after(rooms, 9) is None
