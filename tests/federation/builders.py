"""Builders for hand-made events and rooms in tests (auth rules, state resolution, …).

Events get readable IDs (`$create:test`) instead of reference hashes; `Event.from_pdu` still
validates the event format of the room version. `Room` keeps a current state and picks each
event's `auth_events` with the auth events selection algorithm, so tests only say what changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from federation.auth_rules import auth_types_for_event, check_auth_rules
from federation.pdu import Event
from federation.room_versions import RoomVersion

DEFAULT_ROOM_ID = "!room:test"
FAKE_HASHES = {"sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}


def event_id(name: str) -> str:
    """A readable event ID, valid in every room version: `$name:test`."""
    return name if name.startswith("$") else f"${name}:test"


def room_id_for_create(create_event_id: str) -> str:
    """v12: the room ID is the create event's ID with the `!` sigil."""
    return "!" + create_event_id[1:]


def _references(ids: Iterable[str], room_version: RoomVersion) -> list[Any]:
    if room_version.has_event_id_field:  # v1–v2: [event_id, hashes] pairs
        return [[i, dict(FAKE_HASHES)] for i in ids]
    return list(ids)


def make_pdu(
    room_version: RoomVersion,
    event_id: str,
    type: str,
    sender: str,
    *,
    state_key: str | None = None,
    content: Mapping[str, Any] | None = None,
    auth_events: Sequence[str] = (),
    prev_events: Sequence[str] = (),
    room_id: str | None = DEFAULT_ROOM_ID,
    depth: int = 1,
    origin_server_ts: int = 0,
    redacts: str | None = None,
    signatures: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A PDU dict; `room_id=None` leaves the key out (the v12 create event)."""
    sender_server = sender.partition(":")[2]
    pdu: dict[str, Any] = {
        "type": type,
        "sender": sender,
        "content": dict(content or {}),
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": _references(prev_events, room_version),
        "auth_events": _references(auth_events, room_version),
        "hashes": dict(FAKE_HASHES),
        "signatures": (
            {k: dict(v) for k, v in signatures.items()}
            if signatures is not None
            else {sender_server: {"ed25519:test": "c2ln"}}
        ),
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if room_version.has_event_id_field:
        pdu["event_id"] = event_id
    if redacts is not None:
        if room_version.redacts_in_content:
            pdu["content"]["redacts"] = redacts
        else:
            pdu["redacts"] = redacts
    pdu.update(extra or {})
    return pdu


def make_event(
    room_version: RoomVersion,
    event_id: str,
    type: str,
    sender: str,
    **kwargs: Any,
) -> Event:
    """An `Event` with the chosen `event_id`; keyword arguments as for `make_pdu`.

    For v12 non-create events pass `room_id=room_id_for_create(create.event_id)`.
    """
    pdu = make_pdu(room_version, event_id, type, sender, **kwargs)
    return Event.from_pdu(pdu, room_version, event_id=event_id)


class Room:
    """A linear room history: each new event follows the last, cites its auth events from the
    current state (by the auth events selection algorithm), and updates the state."""

    def __init__(
        self,
        room_version: RoomVersion,
        creator: str = "@creator:test",
        *,
        create_content: Mapping[str, Any] | None = None,
        server: str = "test",
    ) -> None:
        self.room_version = room_version
        self.creator = creator
        self.server = server
        self.events: dict[str, Event] = {}
        self.state: dict[tuple[str, str], Event] = {}
        self._count = 0
        content: dict[str, Any] = {"room_version": room_version.identifier}
        if not room_version.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        create_id = f"$create:{server}"
        v12 = room_version.room_id_from_create_event
        self.room_id = room_id_for_create(create_id) if v12 else f"!room:{server}"
        self.create = make_event(
            room_version, create_id, "m.room.create", creator,
            state_key="", content=content, room_id=None if v12 else self.room_id,
        )  # fmt: skip
        self._add(self.create)

    def _add(self, event: Event) -> None:
        self.events[event.event_id] = event
        if event.state_key is not None:
            self.state[event.state_tuple] = event
        self.last = event

    def build(
        self,
        type: str,
        sender: str,
        content: Mapping[str, Any] | None = None,
        *,
        state_key: str | None = None,
        name: str | None = None,
        auth_events: Sequence[str] | None = None,
        prev_events: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Event:
        """Build (but do not add) the next event; `auth_events`/`prev_events` override."""
        self._count += 1
        kwargs.setdefault("room_id", self.room_id)
        content = dict(content or {})
        if auth_events is None:
            keys = auth_types_for_event(self.room_version, type, sender, state_key, content)
            auth_events = [self.state[k].event_id for k in keys if k in self.state]
        return make_event(
            self.room_version,
            event_id(name or f"e{self._count}"),
            type,
            sender,
            state_key=state_key,
            content=content,
            auth_events=auth_events,
            prev_events=[self.last.event_id] if prev_events is None else prev_events,
            depth=self.last.depth + 1,
            origin_server_ts=self.last.origin_server_ts + 1,
            **kwargs,
        )

    def add(self, *args: Any, checked: bool = False, **kwargs: Any) -> Event:
        """Build the next event and apply it to the state; `checked` runs the auth rules
        against the current state first (raising `AuthError`)."""
        event = self.build(*args, **kwargs)
        if checked:
            check_auth_rules(event, self.state)
        self._add(event)
        return event

    def member(
        self,
        user: str,
        membership: str,
        sender: str | None = None,
        *,
        checked: bool = False,
        **extra: Any,
    ) -> Event:
        return self.add(
            "m.room.member",
            sender or user,
            {"membership": membership, **extra},
            state_key=user,
            checked=checked,
        )

    def member_event(
        self, user: str, membership: str, sender: str | None = None, **extra: Any
    ) -> Event:
        """Build (but do not add) a membership event."""
        return self.build(
            "m.room.member", sender or user, {"membership": membership, **extra}, state_key=user
        )

    def set_join_rule(self, join_rule: str) -> None:
        """Send m.room.join_rules as the creator, unless the rule is already in force."""
        current = self.state.get(("m.room.join_rules", ""))
        if current is None or current.content.get("join_rule") != join_rule:
            content = {"join_rule": join_rule}
            self.add("m.room.join_rules", self.creator, content, state_key="", checked=True)

    def auth_state(self) -> dict[tuple[str, str], Event]:
        """A copy of the current state, usable as `auth_state` for `check_auth_rules`."""
        return dict(self.state)


def standard_room(
    room_version: RoomVersion,
    *,
    join_rule: str = "public",
    users: Mapping[str, int] | None = None,
    levels: Mapping[str, Any] | None = None,
    members: Mapping[str, str] | None = None,
    creator: str = "@creator:test",
    create_content: Mapping[str, Any] | None = None,
) -> Room:
    """A room built with auth-checked events: the creator joins and sets power levels (the
    creator at 100 before v12, where creators may not be listed); each user of `members` gets
    its membership (`join`, `invite`, `leave`, `ban` or `knock`) in a public room (knocks in a
    knock room); last, the join rule is set to `join_rule`."""
    room = Room(room_version, creator, create_content=create_content)
    room.member(creator, "join", checked=True)
    power_users = {} if room_version.privileged_room_creators else {creator: 100}
    power_users.update(users or {})
    power_content = {"users": power_users, **(levels or {})}
    room.add("m.room.power_levels", creator, power_content, state_key="", checked=True)
    room.set_join_rule("public")
    for user, membership in (members or {}).items():
        if membership == "knock":
            room.set_join_rule("knock")
            room.member(user, "knock", checked=True)
            room.set_join_rule("public")
        elif membership in ("ban", "invite"):
            room.member(user, membership, creator, checked=True)
        elif membership in ("join", "leave"):
            room.member(user, "join", checked=True)
            if membership == "leave":
                room.member(user, "leave", checked=True)
        else:
            raise ValueError(f"unknown membership {membership!r}")
    room.set_join_rule(join_rule)
    return room
