"""Filters: parsing with clear errors, event and room matching, event_fields."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.services.filters import (
    DEFAULT_TIMELINE_LIMIT,
    MAX_EVENT_LIMIT,
    EventFilter,
    FilterError,
    RoomEventFilter,
    apply_event_fields,
    event_limit,
    event_matches,
    parse_filter,
    parse_inline_filter,
    room_allowed,
)

ROOM = "!room:example.org"
SPAM = "@spam:example.org"


def event(
    type_: str = "m.room.message", sender: str = "@bob:example.org", **content: Any
) -> dict[str, Any]:
    return {
        "type": type_,
        "sender": sender,
        "room_id": ROOM,
        "event_id": "$e",
        "content": {"body": "hi", **content},
    }


# --- Parsing --------------------------------------------------------------------------------


def test_spec_example_filter_parses_and_round_trips() -> None:
    body = {
        "room": {
            "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
            "timeline": {
                "limit": 10,
                "types": ["m.room.message"],
                "not_rooms": ["!726s6s6q:example.com"],
                "not_senders": ["@spam:example.com"],
            },
            "ephemeral": {"types": ["m.receipt", "m.typing"]},
        },
        "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
        "event_format": "client",
        "event_fields": ["type", "content", "sender"],
    }
    parsed = parse_filter(body)
    assert parsed.room.timeline.limit == 10
    assert parsed.room.state.types == ("m.room.*",)
    assert parsed.presence.not_senders == ("@alice:example.com",)
    assert parsed.to_json() == body


def test_empty_filter_has_the_defaults() -> None:
    parsed = parse_filter({})
    assert parsed.event_format == "client"
    assert parsed.event_fields is None
    assert parsed.room.include_leave is False
    assert parsed.room.timeline.lazy_load_members is False
    assert parsed.room.timeline.contains_url is None
    assert event_limit(parsed.room.timeline) == DEFAULT_TIMELINE_LIMIT == 10
    assert parsed.to_json() == {}


def test_unknown_keys_are_ignored() -> None:
    assert parse_filter({"org.example.future": 1, "room": {"x": []}}).to_json() == {"room": {}}


@pytest.mark.parametrize(
    ("body", "errcode", "path"),
    [
        ([], "M_BAD_JSON", ""),
        ({"room": {"timeline": {"limit": 0}}}, "M_INVALID_PARAM", "room.timeline.limit"),
        ({"room": {"timeline": {"limit": -5}}}, "M_INVALID_PARAM", "room.timeline.limit"),
        ({"room": {"timeline": {"limit": "10"}}}, "M_BAD_JSON", "room.timeline.limit"),
        ({"room": {"timeline": {"limit": 2.5}}}, "M_BAD_JSON", "room.timeline.limit"),
        ({"room": {"timeline": {"limit": True}}}, "M_BAD_JSON", "room.timeline.limit"),
        ({"room": {"state": {"types": "m.room.*"}}}, "M_BAD_JSON", "room.state.types"),
        ({"room": {"state": {"types": ["ok", 3]}}}, "M_BAD_JSON", "room.state.types[1]"),
        ({"room": {"rooms": ["#alias:x"]}}, "M_INVALID_PARAM", "room.rooms[0]"),
        ({"presence": {"senders": ["bob"]}}, "M_INVALID_PARAM", "presence.senders[0]"),
        ({"event_format": "xml"}, "M_INVALID_PARAM", "event_format"),
        ({"room": {"include_leave": "yes"}}, "M_BAD_JSON", "room.include_leave"),
        ({"room": {"ephemeral": []}}, "M_BAD_JSON", "room.ephemeral"),
        ({"event_fields": [None]}, "M_BAD_JSON", "event_fields[0]"),
    ],
)
def test_bad_filters_name_the_field(body: Any, errcode: str, path: str) -> None:
    with pytest.raises(FilterError) as error:
        parse_filter(body)
    assert error.value.errcode == errcode
    assert f"{path}:" in error.value.message or not path


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(FilterError) as error:
        parse_filter({"room": {"timeline": {"limit": 0, "types": [1]}}, "event_format": 3})
    message = error.value.message
    assert "room.timeline.limit" in message
    assert "room.timeline.types[0]" in message
    assert "event_format" in message
    assert error.value.errcode == "M_BAD_JSON"  # a wrong type makes it malformed JSON


def test_inline_filter_json() -> None:
    parsed = parse_inline_filter('{"room": {"timeline": {"limit": 3}}}')
    assert parsed.room.timeline.limit == 3
    for text in ("{not json", '{"room": {"timeline": {"limit": NaN}}}'):
        with pytest.raises(FilterError) as error:
            parse_inline_filter(text)
        assert error.value.errcode == "M_NOT_JSON"


def test_limit_is_capped_and_defaulted() -> None:
    assert event_limit(RoomEventFilter(limit=5)) == 5
    assert event_limit(RoomEventFilter(limit=10**9)) == MAX_EVENT_LIMIT
    assert event_limit(None) == DEFAULT_TIMELINE_LIMIT
    assert event_limit(EventFilter(), default=20) == 20


# --- Matching -------------------------------------------------------------------------------


def test_types_with_wildcards() -> None:
    state_only = EventFilter(types=("m.room.*",))
    assert event_matches(state_only, event("m.room.member"))
    assert not event_matches(state_only, event("m.reaction"))
    assert event_matches(EventFilter(types=("*",)), event("anything"))
    assert event_matches(EventFilter(types=("m.*.member",)), event("m.room.member"))
    assert not event_matches(EventFilter(types=("m.room",)), event("m.room.message"))
    # Only `*` is special in filters.
    assert not event_matches(EventFilter(types=("m.room.?essage",)), event("m.room.message"))


def test_not_types_wins_over_types() -> None:
    both = EventFilter(types=("m.room.*",), not_types=("m.room.member",))
    assert event_matches(both, event("m.room.message"))
    assert not event_matches(both, event("m.room.member"))
    assert not event_matches(EventFilter(not_types=("*",)), event("m.room.message"))


def test_senders_and_not_senders() -> None:
    assert not event_matches(EventFilter(not_senders=(SPAM,)), event(sender=SPAM))
    only_spam = EventFilter(senders=(SPAM,), not_senders=(SPAM,))
    assert not event_matches(only_spam, event(sender=SPAM))
    assert not event_matches(EventFilter(senders=(SPAM,)), event())
    assert event_matches(EventFilter(senders=(SPAM,)), event(sender=SPAM))


def test_rooms_and_not_rooms_on_room_event_filters() -> None:
    other = {**event(), "room_id": "!other:example.org"}
    assert event_matches(RoomEventFilter(rooms=(ROOM,)), event())
    assert not event_matches(RoomEventFilter(rooms=(ROOM,)), other)
    assert not event_matches(RoomEventFilter(rooms=(ROOM,), not_rooms=(ROOM,)), event())
    # The room can be given for events that do not carry it (e.g. ephemeral events).
    typing = {"type": "m.typing", "content": {"user_ids": []}}
    assert not event_matches(RoomEventFilter(not_rooms=(ROOM,)), typing, room_id=ROOM)
    assert event_matches(RoomEventFilter(not_rooms=(ROOM,)), typing)


def test_contains_url() -> None:
    image = event(url="mxc://example.org/abc")
    assert event_matches(RoomEventFilter(contains_url=True), image)
    assert not event_matches(RoomEventFilter(contains_url=True), event())
    assert event_matches(RoomEventFilter(contains_url=False), event())
    assert not event_matches(RoomEventFilter(contains_url=False), image)
    assert event_matches(RoomEventFilter(), image)


def test_no_filter_matches_everything_but_typeless_events_never_match() -> None:
    assert event_matches(None, event())
    assert not event_matches(EventFilter(), {"sender": SPAM})


def test_room_allowed() -> None:
    room_filter = parse_filter({"room": {"rooms": [ROOM, "!b:x"], "not_rooms": ["!b:x"]}}).room
    assert room_allowed(room_filter, ROOM)
    assert not room_allowed(room_filter, "!b:x")
    assert not room_allowed(room_filter, "!c:x")
    assert room_allowed(parse_filter({}).room, "!c:x")
    assert room_allowed(None, "!c:x")


# --- event_fields ---------------------------------------------------------------------------


def test_event_fields_keep_only_the_listed_paths() -> None:
    original = {
        "type": "m.room.message",
        "sender": SPAM,
        "content": {"body": "hi", "msgtype": "m.text", "m.relates_to": {"rel_type": "x"}},
        "unsigned": {"age": 5},
    }
    kept = apply_event_fields(original, ["type", "content.body", "content.m\\.relates_to"])
    assert kept == {
        "type": "m.room.message",
        "content": {"body": "hi", "m.relates_to": {"rel_type": "x"}},
    }
    assert original["content"]["msgtype"] == "m.text"  # the event itself is untouched


def test_event_fields_whole_property_wins_over_a_subpath_in_either_order() -> None:
    original = {"content": {"body": "hi", "msgtype": "m.text"}}
    for fields in (["content", "content.body"], ["content.body", "content"]):
        assert apply_event_fields(original, fields) == original


def test_event_fields_skip_missing_and_non_object_paths() -> None:
    original = {"type": "t", "content": {"body": "hi"}}
    assert apply_event_fields(original, ["content.nope", "type.x", "state_key"]) == {}
    assert apply_event_fields(original, None) == original
    assert apply_event_fields(original, []) == {}
