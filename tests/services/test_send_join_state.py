"""Checking a `/send_join` answer (homeserver/services/send_join_state.py and batch_receipt.py):
every event is still verified (signatures, content hashes, auth rules against its listed auth
events) while repeats are checked once and each key is looked up once."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import pytest

from federation.hashing import compute_event_id
from federation.pdu import Event
from federation.room_versions import RoomVersion, room_version
from federation.signing import SigningKey, add_hashes_and_signatures, generate_signing_key
from homeserver.remote.keyring import KeyUnavailableError
from homeserver.services.batch_receipt import KeyLookup, check_received_pdus, distinct_pdus
from homeserver.services.send_join_state import (
    InvalidJoinState,
    SendJoinStateChecker,
    in_auth_order,
)
from homeserver.storage.event_rows import EventRow

V10 = room_version("10")
ORIGIN = "resident.test"
ROOM_ID = "!room:resident.test"
CREATOR = "@creator:resident.test"


class FakeKeyring:
    def __init__(self, keys: dict[tuple[str, str], tuple[bytes, int]]) -> None:
        self.keys = keys
        self.calls: list[tuple[str, str, int]] = []

    async def get_verify_key(self, server: str, key_id: str, minimum: int) -> bytes:
        self.calls.append((server, key_id, minimum))
        found = self.keys.get((server, key_id))
        if found is None or found[1] < minimum:
            raise KeyUnavailableError(f"no {key_id}")
        return found[0]


class FakeEvents:
    """The two reads the checker makes; `stored` events are 'already in the database'."""

    def __init__(self, stored: Iterable[EventRow] = ()) -> None:
        self.rows = {r.event.event_id: r for r in stored}

    async def get_stream_orderings(self, event_ids: Iterable[str]) -> dict[str, int]:
        return {i: 1 for i in event_ids if i in self.rows}

    async def get_event_rows(self, event_ids: Iterable[str]) -> dict[str, EventRow]:
        return {i: self.rows[i] for i in event_ids if i in self.rows}


class RoomBuilder:
    """A linear room of signed events; `state` is the current state by (type, state_key)."""

    def __init__(self, key: SigningKey, version: RoomVersion = V10) -> None:
        self.key = key
        self.version = version
        self.events: dict[str, dict[str, Any]] = {}
        self.last: list[str] = []
        self.state: dict[tuple[str, str], str] = {}
        self.depth = 0
        self.add("m.room.create", CREATOR, {"creator": CREATOR, "room_version": "10"}, "")
        self.add("m.room.member", CREATOR, {"membership": "join"}, CREATOR)
        power = {"users": {CREATOR: 100}, "state_default": 50, "events_default": 0}
        self.add("m.room.power_levels", CREATOR, power, "")
        self.add("m.room.join_rules", CREATOR, {"join_rule": "public"}, "")

    def auth_ids(self, event_type: str, sender: str, state_key: str | None) -> list[str]:
        wanted = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender)]
        if event_type == "m.room.member":
            wanted += [("m.room.member", state_key or ""), ("m.room.join_rules", "")]
        return list(dict.fromkeys(self.state[k] for k in wanted if k in self.state))

    def build(
        self, event_type: str, sender: str, content: dict[str, Any], state_key: str | None
    ) -> dict[str, Any]:
        self.depth += 1
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "room_id": ROOM_ID,
            "content": content,
            "depth": self.depth,
            "origin_server_ts": 1_700_000_000_000 + self.depth,
            "prev_events": list(self.last),
            "auth_events": self.auth_ids(event_type, sender, state_key),
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        return add_hashes_and_signatures(pdu, self.version, ORIGIN, self.key)

    def add(
        self, event_type: str, sender: str, content: dict[str, Any], state_key: str | None = None
    ) -> str:
        pdu = self.build(event_type, sender, content, state_key)
        event_id = compute_event_id(pdu, self.version)
        self.events[event_id] = pdu
        self.last = [event_id]
        if state_key is not None:
            self.state[(event_type, state_key)] = event_id
        return event_id

    def answer(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(state, auth_chain) as a resident would send them: copies, the chain in full."""
        chain: set[str] = set()
        todo = [a for i in self.state.values() for a in self.events[i]["auth_events"]]
        while todo:
            event_id = todo.pop()
            if event_id not in chain:
                chain.add(event_id)
                todo.extend(self.events[event_id]["auth_events"])
        state = [copy.deepcopy(self.events[i]) for i in self.state.values()]
        return state, [copy.deepcopy(self.events[i]) for i in self.events if i in chain]


@pytest.fixture
def key() -> SigningKey:
    return generate_signing_key("r1")


def _keyring(key: SigningKey, valid_until: int = 2**62) -> FakeKeyring:
    return FakeKeyring({(ORIGIN, key.key_id): (key.public_key, valid_until)})


def _join(room: RoomBuilder, user: str = "@new:joiner.test") -> Event:
    pdu = room.build("m.room.member", user, {"membership": "join"}, user)
    return Event.from_pdu(pdu, V10)


async def _check(
    room: RoomBuilder, keyring: FakeKeyring, events: FakeEvents | None = None, **answer: Any
) -> Any:
    state, chain = room.answer()
    checker = SendJoinStateChecker(events=events or FakeEvents(), keyring=keyring)  # type: ignore[arg-type]
    return await checker.check(
        ROOM_ID, V10, answer.get("state", state), answer.get("auth_chain", chain)
    )


async def test_a_valid_answer_gives_the_whole_state_and_allows_our_join(key: SigningKey) -> None:
    room = RoomBuilder(key)
    for n in range(5):
        user = f"@u{n}:resident.test"
        room.add("m.room.member", user, {"membership": "join"}, user)
    room.add("org.example.state", CREATOR, {"n": 1}, "k1")
    joined = await _check(room, _keyring(key))
    assert joined.state_before == room.state
    assert all(item.outlier and item.rejected_reason is None for item in joined.outliers)
    order = [item.event.event_id for item in joined.outliers]
    assert order[0] == room.state[("m.room.create", "")]
    assert len(order) == len(set(order)) == len(room.events)
    join = _join(room)
    assert joined.check_join(join) is None
    to_persist = joined.to_persist(join)
    assert to_persist[-1].event is join and to_persist[-1].state_before == room.state


async def test_events_sent_in_both_lists_are_checked_once_and_each_key_fetched_once(
    key: SigningKey,
) -> None:
    room = RoomBuilder(key)
    for n in range(30):
        room.add("org.example.state", CREATOR, {"n": n}, f"k{n}")
    keyring = _keyring(key)
    state, chain = room.answer()
    unique, positions = distinct_pdus([*chain, *state])
    assert len(unique) == len(room.events)
    assert [unique[p] for p in positions] == [*chain, *state]
    checked = await check_received_pdus([*chain, *state], V10, keyring, chunk_size=8)
    assert set(checked.events) == set(room.events)
    assert len(checked.event_ids) == len(chain) + len(state)
    assert not checked.dropped
    assert len(keyring.calls) <= 5  # once per chunk at most, not once per event


async def test_a_state_event_with_a_bad_signature_is_dropped(key: SigningKey) -> None:
    room = RoomBuilder(key)
    good = room.add("org.example.state", CREATOR, {"n": 1}, "good")
    bad = room.add("org.example.state", CREATOR, {"n": 2}, "bad")
    state, chain = room.answer()
    for pdu in state:
        if compute_event_id(pdu, V10) == bad:
            signature = pdu["signatures"][ORIGIN][key.key_id]
            pdu["signatures"][ORIGIN][key.key_id] = signature[:-4] + "AAAA"
    joined = await _check(room, _keyring(key), state=state, auth_chain=chain)
    assert joined.state_before[("org.example.state", "good")] == good
    assert ("org.example.state", "bad") not in joined.state_before
    assert bad not in {item.event.event_id for item in joined.outliers}


async def test_events_signed_by_an_unknown_key_are_dropped(key: SigningKey) -> None:
    room = RoomBuilder(key)
    with pytest.raises(InvalidJoinState, match=r"no valid m\.room\.create"):
        await _check(room, _keyring(generate_signing_key("other")))


async def test_a_key_expired_before_an_event_does_not_verify_it(key: SigningKey) -> None:
    room = RoomBuilder(key)
    late = room.add("org.example.state", CREATOR, {"n": 1}, "late")
    create_ts = room.events[room.state[("m.room.create", "")]]["origin_server_ts"]
    late_ts = room.events[late]["origin_server_ts"]
    joined = await _check(room, _keyring(key, valid_until=late_ts - 1))
    assert ("org.example.state", "late") not in joined.state_before
    assert joined.state_before[("m.room.create", "")]
    assert create_ts < late_ts


async def test_a_content_hash_mismatch_stores_the_redacted_event(key: SigningKey) -> None:
    room = RoomBuilder(key)
    user = "@alice:resident.test"
    member = room.add("m.room.member", user, {"membership": "join", "displayname": "Al"}, user)
    state, chain = room.answer()
    for pdu in state:
        if compute_event_id(pdu, V10) == member:
            pdu["content"]["displayname"] = "Mallory"  # the signature still holds, the hash not
    joined = await _check(room, _keyring(key), state=state, auth_chain=chain)
    stored = {item.event.event_id: item.event for item in joined.outliers}[member]
    assert dict(stored.content) == {"membership": "join"}
    assert joined.state_before[("m.room.member", user)] == member


async def test_a_state_event_the_auth_rules_refuse_is_rejected_and_not_state(
    key: SigningKey,
) -> None:
    room = RoomBuilder(key)
    user = "@weak:resident.test"
    room.add("m.room.member", user, {"membership": "join"}, user)
    refused = room.add("m.room.topic", user, {"topic": "no power"}, "")
    joined = await _check(room, _keyring(key))
    verdicts = {item.event.event_id: item.rejected_reason for item in joined.outliers}
    assert verdicts[refused] is not None
    assert ("m.room.topic", "") not in joined.state_before
    assert joined.state_before[("m.room.member", user)]


async def test_an_event_whose_auth_events_are_missing_is_left_out(key: SigningKey) -> None:
    room = RoomBuilder(key)
    user = "@alice:resident.test"
    member = room.add("m.room.member", user, {"membership": "join"}, user)
    state, chain = room.answer()
    power_id = room.state[("m.room.power_levels", "")]
    lonely = [p for p in state if compute_event_id(p, V10) != power_id]
    chain = [p for p in chain if compute_event_id(p, V10) != power_id]
    joined = await _check(room, _keyring(key), state=lonely, auth_chain=chain)
    stored = {item.event.event_id for item in joined.outliers}
    assert member not in stored and power_id not in stored
    assert ("m.room.member", user) not in joined.state_before


async def test_already_stored_events_keep_their_verdict_and_are_not_stored_again(
    key: SigningKey,
) -> None:
    room = RoomBuilder(key)
    topic = room.add("m.room.topic", CREATOR, {"topic": "t"}, "")
    event = Event.from_pdu(room.events[topic], V10)
    row = EventRow(event, 7, True, False, "rejected earlier", None, None, None)
    joined = await _check(room, _keyring(key), events=FakeEvents([row]))
    assert topic not in {item.event.event_id for item in joined.outliers}
    assert ("m.room.topic", "") not in joined.state_before


async def test_a_create_event_of_another_room_version_fails(key: SigningKey) -> None:
    room = RoomBuilder(key)
    state, chain = room.answer()
    checker = SendJoinStateChecker(events=FakeEvents(), keyring=_keyring(key))  # type: ignore[arg-type]
    with pytest.raises(InvalidJoinState):
        await checker.check(ROOM_ID, room_version("9"), state, chain)


async def test_our_join_is_checked_against_the_answered_state(key: SigningKey) -> None:
    room = RoomBuilder(key)
    room.add("m.room.join_rules", CREATOR, {"join_rule": "invite"}, "")
    joined = await _check(room, _keyring(key))
    assert joined.check_join(_join(room)) is not None


async def test_key_lookup_uses_one_answer_for_every_smaller_validity() -> None:
    keyring = FakeKeyring({("s", "ed25519:a"): (b"k" * 32, 100)})
    keys = KeyLookup(keyring)
    await keys.prefetch({("s", "ed25519:a"): 90})
    assert await keys.get("s", "ed25519:a", 10) == b"k" * 32
    assert await keys.get("s", "ed25519:a", 150) is None
    assert await keys.get("s", "ed25519:a", 200) is None
    assert keyring.calls == [("s", "ed25519:a", 90), ("s", "ed25519:a", 150)]


def test_in_auth_order_puts_auth_events_first() -> None:
    room = RoomBuilder(generate_signing_key("o"))
    for n in range(3):
        user = f"@u{n}:resident.test"
        room.add("m.room.member", user, {"membership": "join"}, user)
    events = [Event.from_pdu(p, V10) for p in reversed(list(room.events.values()))]
    ordered = in_auth_order(events)
    seen: set[str] = set()
    for event in ordered:
        assert all(a in seen for a in event.auth_event_ids)
        seen.add(event.event_id)
    assert len(ordered) == len(events)
