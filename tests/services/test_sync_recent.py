"""RecentEvents: the latest committed events of each room that a woken /sync serves."""

from __future__ import annotations

from federation.pdu import Event
from federation.room_versions import V11
from homeserver.services.sync_recent import RecentEvents
from homeserver.storage.event_rows import EventToPersist, PersistBatch
from homeserver.storage.rooms import ClientTransaction
from tests.federation.builders import make_event

ROOM = "!room:test"


def message(name: str) -> Event:
    return make_event(V11, f"${name}:test", "m.room.message", "@alice:test", content={"body": name})


def batch(*items: EventToPersist, redactions: dict[str, str] | None = None) -> PersistBatch:
    return PersistBatch(ROOM, list(items), now_ms=0, redactions_applied=redactions or {})


def item(event: Event, position: int, **kwargs: object) -> EventToPersist:
    return EventToPersist(event, position, **kwargs)  # type: ignore[arg-type]


def test_range_before_recording_started_is_unknown() -> None:
    recent = RecentEvents(lambda: 10)
    recent.record(batch(item(message("a"), 11), item(message("b"), 12)))
    assert recent.events_in_range(ROOM, 9, 12, 10) is None
    assert recent.events_in_range("!other:test", 10, 12, 10) is None
    rows = recent.events_in_range(ROOM, 10, 12, 10)
    assert rows is not None
    assert [r.event.event_id for r in rows] == ["$a:test", "$b:test"]


def test_range_returns_newest_within_bounds_oldest_first() -> None:
    recent = RecentEvents(lambda: 0)
    recent.record(batch(*(item(message(str(n)), n) for n in range(1, 6))))
    rows = recent.events_in_range(ROOM, 1, 4, 2)
    assert rows is not None
    assert [r.stream_ordering for r in rows] == [3, 4]
    assert recent.has_events(ROOM, 5, 9) is False
    assert recent.has_events(ROOM, 4, 9) is True


def test_hidden_events_are_left_out() -> None:
    recent = RecentEvents(lambda: 0)
    recent.record(
        batch(
            item(message("outlier"), 1, outlier=True),
            item(message("soft"), 2, soft_failed=True),
            item(message("rejected"), 3, rejection_reason="auth"),
            item(message("ok"), 4),
        )
    )
    rows = recent.events_in_range(ROOM, 0, 4, 10)
    assert rows is not None
    assert [r.event.event_id for r in rows] == ["$ok:test"]


def test_transaction_id_is_kept_with_the_sending_device() -> None:
    recent = RecentEvents(lambda: 0)
    txn = ClientTransaction("@alice:test", "DEV", "send:x", "txn-1")
    recent.record(batch(item(message("a"), 1, txn=txn)))
    (row,) = recent.events_in_range(ROOM, 0, 1, 10) or []
    assert (row.txn_device_id, row.txn_id) == ("DEV", "txn-1")


def test_redaction_applied_later_marks_the_kept_target() -> None:
    recent = RecentEvents(lambda: 0)
    recent.record(batch(item(message("a"), 1)))
    redaction = make_event(
        V11, "$r", "m.room.redaction", "@alice:test", content={"redacts": "$a:test"}
    )
    recent.record(batch(item(redaction, 2), redactions={"$a:test": "$r"}))
    rows = recent.events_in_range(ROOM, 0, 2, 10) or []
    assert [(r.event.event_id, r.redacted_because) for r in rows] == [
        ("$a:test", "$r"),
        ("$r", None),
    ]


def test_event_born_redacted_keeps_its_redaction() -> None:
    recent = RecentEvents(lambda: 0)
    recent.record(batch(item(message("late"), 3), redactions={"$late:test": "$r"}))
    (row,) = recent.events_in_range(ROOM, 0, 3, 10) or []
    assert row.redacted_because == "$r"


def test_dropping_old_events_moves_coverage_up() -> None:
    recent = RecentEvents(lambda: 0, events_per_room=3)
    recent.record(batch(*(item(message(str(n)), n) for n in range(1, 6))))
    assert recent.events_in_range(ROOM, 1, 5, 10) is None
    rows = recent.events_in_range(ROOM, 2, 5, 10)
    assert rows is not None
    assert [r.stream_ordering for r in rows] == [3, 4, 5]


def test_least_recently_written_room_is_forgotten() -> None:
    recent = RecentEvents(lambda: 0, max_rooms=1)
    recent.record(batch(item(message("a"), 1)))
    other = make_event(V11, "$b", "m.room.message", "@alice:test", room_id="!b:test")
    recent.record(PersistBatch("!b:test", [item(other, 2)], now_ms=0))
    assert recent.events_in_range(ROOM, 0, 2, 10) is None
    assert recent.events_in_range("!b:test", 0, 2, 10) is not None


def test_batch_with_the_create_event_covers_the_room_from_its_start() -> None:
    recent = RecentEvents(lambda: 40)
    create = make_event(V11, "$create", "m.room.create", "@alice:test", state_key="")
    recent.record(batch(item(create, 41), item(message("a"), 42)))
    rows = recent.events_in_range(ROOM, 0, 42, 10)
    assert rows is not None
    assert [r.event.event_id for r in rows] == ["$create", "$a:test"]


def test_positions_of_committed_events() -> None:
    recent = RecentEvents(lambda: 0)
    a, b = message("a"), message("b")
    recent.record(batch(item(a, 7)))
    assert recent.positions_of([a, b]) == {"$a:test": 7}


def room_batch(room_id: str, first: int, count: int) -> PersistBatch:
    events = [
        item(
            make_event(V11, f"${room_id}-{n}", "m.room.message", "@alice:test", room_id=room_id),
            n,
        )
        for n in range(first, first + count)
    ]
    return PersistBatch(room_id, events, now_ms=0)


def test_total_event_budget_is_respected_across_rooms() -> None:
    recent = RecentEvents(lambda: 0, events_per_room=10, max_events=25)
    position = 1
    for index in range(8):
        recent.record(room_batch(f"!r{index}:test", position, 7))
        position += 7
        assert recent.event_count <= 25
    # The three most recently written rooms keep all their events; older ones were emptied.
    kept = [recent.events_in_range(f"!r{i}:test", 0, position, 100) for i in range(8)]
    assert [len(rows) if rows is not None else None for rows in kept[5:]] == [7, 7, 7]
    assert recent.event_count == 21


def test_emptied_room_falls_back_below_its_dropped_events_but_knows_it_is_quiet() -> None:
    recent = RecentEvents(lambda: 0, max_events=3)
    recent.record(room_batch("!old:test", 1, 3))
    recent.record(room_batch("!new:test", 4, 2))
    # !old:test lost its events: any range reaching below its newest dropped event is unknown.
    assert recent.events_in_range("!old:test", 0, 5, 10) is None
    assert recent.events_in_range("!old:test", 2, 5, 10) is None
    assert recent.has_events("!old:test", 0, 5) is None
    # After it, nothing was written to it, and that is still known from memory.
    assert recent.events_in_range("!old:test", 3, 5, 10) == []
    assert recent.has_events("!old:test", 3, 5) is False
    rows = recent.events_in_range("!new:test", 3, 5, 10)
    assert rows is not None and [r.stream_ordering for r in rows] == [4, 5]


def test_single_room_over_budget_keeps_its_newest_events() -> None:
    recent = RecentEvents(lambda: 0, max_events=2)
    recent.record(room_batch(ROOM, 1, 5))
    assert recent.event_count == 2
    assert recent.events_in_range(ROOM, 3, 5, 10) is not None
    assert recent.events_in_range(ROOM, 2, 5, 10) is None
    # Writing again continues from where coverage now starts.
    recent.record(room_batch(ROOM, 6, 1))
    rows = recent.events_in_range(ROOM, 4, 6, 10)
    assert rows is not None and [r.stream_ordering for r in rows] == [5, 6]
    assert recent.events_in_range(ROOM, 3, 6, 10) is None


def test_forgotten_room_frees_its_share_of_the_budget() -> None:
    recent = RecentEvents(lambda: 0, max_rooms=1, max_events=5)
    recent.record(room_batch("!a:test", 1, 4))
    recent.record(room_batch("!b:test", 5, 4))
    assert recent.event_count == 4
    assert recent.events_in_range("!a:test", 0, 8, 10) is None
    rows = recent.events_in_range("!b:test", 4, 8, 10)
    assert rows is not None and len(rows) == 4
