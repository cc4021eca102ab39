"""State resolution v2 and v2.1: JSON fixture graphs with expected resolved state, the orderings
on their own, and order independence of the state sets (hypothesis).

Fixtures live in `fixtures/state_res/*.json`; each explains in `why` how its expected state
follows from the spec (`rooms/fragments/v2-state-res.md`, `rooms/v12.md`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from federation.pdu import Event
from federation.room_versions import V1, V10, V11, V12, RoomVersion, room_version
from federation.state_res import (
    StateKey,
    StateResolutionError,
    auth_difference,
    conflicted_state_subgraph,
    full_auth_chain,
    is_power_event,
    iterative_auth_checks,
    resolve_state,
    split_conflicted_state,
)
from federation.state_res_ordering import (
    EventGraph,
    mainline,
    mainline_ordering,
    reverse_topological_power_ordering,
)
from tests.federation.builders import event_id, make_event, room_id_for_create

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "state_res"
FIXTURES = sorted(FIXTURE_DIR.glob("*.json"))

ALICE = "@alice:test"
BOB = "@bob:test"
CHARLIE = "@charlie:test"


# --- Fixture loading ------------------------------------------------------------------------


@dataclass
class Fixture:
    room_version: RoomVersion
    events: dict[str, Event]  # by event ID
    state_sets: list[dict[StateKey, str]]
    expected: dict[StateKey, str]
    rejected: frozenset[str]


def build_graph(version: RoomVersion, specs: list[dict[str, Any]]) -> dict[str, Event]:
    """Events from compact specs: names become `$name:test`; auth/prev list names."""
    create = next(s for s in specs if s["type"] == "m.room.create")
    v12 = version.room_id_from_create_event
    room_id = room_id_for_create(event_id(create["id"])) if v12 else "!room:test"
    events: dict[str, Event] = {}
    for depth, spec in enumerate(specs, start=1):
        is_create = spec["type"] == "m.room.create"
        event = make_event(
            version,
            event_id(spec["id"]),
            spec["type"],
            spec["sender"],
            state_key=spec.get("state_key"),
            content=spec.get("content", {}),
            auth_events=[event_id(a) for a in spec.get("auth", [])],
            prev_events=[event_id(p) for p in spec.get("prev", [])],
            room_id=None if (v12 and is_create) else room_id,
            depth=depth,
            origin_server_ts=spec["ts"],
        )
        events[event.event_id] = event
    return events


def state_map(events: dict[str, Event], names: list[str]) -> dict[StateKey, str]:
    state: dict[StateKey, str] = {}
    for name in names:
        event = events[event_id(name)]
        assert event.state_tuple not in state, f"two events for {event.state_tuple} in a state set"
        state[event.state_tuple] = event.event_id
    return state


def load_fixture(path: Path) -> Fixture:
    data = json.loads(path.read_text())
    assert data["why"], f"{path.name} must explain its expected result"
    version = room_version(data["room_version"])
    events = build_graph(version, data["events"])
    return Fixture(
        room_version=version,
        events=events,
        state_sets=[state_map(events, names) for names in data["state_sets"]],
        expected=state_map(events, data["expected"]),
        rejected=frozenset(event_id(n) for n in data.get("rejected", [])),
    )


def auth_chains(fixture_events: dict[str, Event], state_sets: list[dict[StateKey, str]],
                *, with_state_events: bool) -> list[set[str]]:  # fmt: skip
    """The spec's full auth chains; optionally also counting the state events themselves, as
    Synapse does. Fixtures expect the same result either way."""
    chains = []
    for state in state_sets:
        chain = full_auth_chain(state.values(), fixture_events)
        if with_state_events:
            chain |= set(state.values())
        chains.append(chain)
    return chains


def resolve_fixture(fixture: Fixture, state_sets: list[dict[StateKey, str]],
                    *, with_state_events: bool = False) -> dict[StateKey, str]:  # fmt: skip
    return resolve_state(
        fixture.room_version,
        state_sets,
        auth_chains(fixture.events, state_sets, with_state_events=with_state_events),
        fixture.events,
        rejected_event_ids=fixture.rejected,
    )


def names(state: dict[StateKey, str]) -> dict[StateKey, str]:
    """`$PA:test` → `PA`, for readable assertion diffs."""
    return {key: value[1:].split(":")[0] for key, value in state.items()}


# --- The fixtures ---------------------------------------------------------------------------


def test_fixtures_cover_the_classic_and_v2_1_cases() -> None:
    found = {path.stem for path in FIXTURES}
    assert {
        "ban_vs_power_levels",
        "join_rules_evasion",
        "offtopic_power_levels",
        "topic_reset",
        "mainline_sort",
        "unconflicted_only",
        "v12_stale_join_rules_kept",
        "v12_stale_power_levels_replayed",
    } <= found


@pytest.mark.parametrize("with_state_events", [False, True], ids=["spec-chains", "with-state"])
@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_resolves_to_expected_state(path: Path, with_state_events: bool) -> None:
    fixture = load_fixture(path)
    resolved = resolve_fixture(fixture, fixture.state_sets, with_state_events=with_state_events)
    assert names(resolved) == names(fixture.expected)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_result_does_not_depend_on_state_set_order(path: Path) -> None:
    fixture = load_fixture(path)
    for permutation in itertools.permutations(fixture.state_sets):
        assert resolve_fixture(fixture, list(permutation)) == fixture.expected


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_events_are_allowed_by_their_own_auth_events(path: Path) -> None:
    """The fixture graphs are honest: every event passes the auth rules against the events it
    cites (what a server checked on receipt)."""
    fixture = load_fixture(path)
    graph = EventGraph(fixture.room_version, fixture.events)
    for event in fixture.events.values():
        if event.event_id in fixture.rejected:
            continue
        check_auth_rules(event, graph.auth_events_state(event))


# --- Stale state: the v2.1 changes, side by side ------------------------------------------


def test_v11_resets_join_rules_that_v12_keeps() -> None:
    v11 = resolve_fixture(*_fixture_and_sets("v11_stale_join_rules_reset"))
    v12 = resolve_fixture(*_fixture_and_sets("v12_stale_join_rules_kept"))
    assert ("m.room.join_rules", "") not in v11
    assert names(v12)[("m.room.join_rules", "")] == "JR2"


def test_v11_resets_power_levels_that_v12_replays() -> None:
    v11 = resolve_fixture(*_fixture_and_sets("v11_stale_power_levels_reset"))
    v12 = resolve_fixture(*_fixture_and_sets("v12_stale_power_levels_replayed"))
    assert names(v11)[("m.room.power_levels", "")] == "IPOWER"
    assert names(v12)[("m.room.power_levels", "")] == "PC"


def _fixture_and_sets(stem: str) -> tuple[Fixture, list[dict[StateKey, str]]]:
    fixture = load_fixture(FIXTURE_DIR / f"{stem}.json")
    return fixture, fixture.state_sets


def test_conflicted_state_subgraph_holds_the_paths_between_conflicted_events() -> None:
    fixture = load_fixture(FIXTURE_DIR / "v12_stale_power_levels_replayed.json")
    graph = EventGraph(fixture.room_version, fixture.events)
    subgraph = conflicted_state_subgraph(graph, {event_id("PC"), event_id("IPOWER")})
    assert subgraph == {event_id(n) for n in ("PC", "PB", "IMB", "IJR", "IPOWER")}


def test_conflicted_state_subgraph_of_unrelated_events_is_just_them() -> None:
    fixture = load_fixture(FIXTURE_DIR / "v12_stale_join_rules_kept.json")
    graph = EventGraph(fixture.room_version, fixture.events)
    conflicted = {event_id("JR1"), event_id("JR2")}
    assert conflicted_state_subgraph(graph, conflicted) == conflicted


# --- Definitions: split, auth difference, power events --------------------------------------


def test_split_puts_a_key_missing_from_one_set_in_the_conflicted_set() -> None:
    unconflicted, conflicted = split_conflicted_state(
        [{("a", ""): "$1", ("b", ""): "$2"}, {("a", ""): "$1", ("c", ""): "$3"}]
    )
    assert unconflicted == {("a", ""): "$1"}
    assert conflicted == {"$2", "$3"}


def test_split_with_different_events_for_a_key_conflicts_all_of_them() -> None:
    unconflicted, conflicted = split_conflicted_state(
        [{("a", ""): "$1"}, {("a", ""): "$2"}, {("a", ""): "$1"}]
    )
    assert unconflicted == {}
    assert conflicted == {"$1", "$2"}


def test_auth_difference_is_union_minus_intersection() -> None:
    assert auth_difference([{"$a", "$b"}, {"$b", "$c"}, {"$b", "$d"}]) == {"$a", "$c", "$d"}
    assert auth_difference([{"$a"}, {"$a"}]) == set()
    assert auth_difference([]) == set()


@pytest.mark.parametrize(
    ("type_", "sender", "state_key", "membership", "expected"),
    [
        ("m.room.power_levels", ALICE, "", None, True),
        ("m.room.join_rules", ALICE, "", None, True),
        ("m.room.member", ALICE, BOB, "ban", True),
        ("m.room.member", ALICE, BOB, "leave", True),  # a kick
        ("m.room.member", BOB, BOB, "leave", False),  # leaving yourself
        ("m.room.member", ALICE, BOB, "invite", False),
        ("m.room.topic", ALICE, "", None, False),
    ],
)
def test_power_events(
    type_: str, sender: str, state_key: str, membership: str | None, expected: bool
) -> None:
    content = {} if membership is None else {"membership": membership}
    event = make_event(V11, event_id("e"), type_, sender, state_key=state_key, content=content)
    assert is_power_event(event) is expected


# --- Reverse topological power ordering -----------------------------------------------------


def _small_room(version: RoomVersion = V11) -> dict[str, Event]:
    """CREATE, alice joins, PL (alice 100, bob 50, charlie 50), public join rules, bob and
    charlie join."""
    users = {BOB: 50, CHARLIE: 50} if version.privileged_room_creators else {
        ALICE: 100, BOB: 50, CHARLIE: 50
    }  # fmt: skip
    create_content: dict[str, Any] = {"room_version": version.identifier}
    if not version.implicit_room_creator:
        create_content["creator"] = ALICE
    c = [] if version.room_id_from_create_event else ["CREATE"]
    specs: list[dict[str, Any]] = [
        {"id": "CREATE", "type": "m.room.create", "sender": ALICE, "state_key": "",
         "content": create_content, "ts": 0},
        {"id": "IMA", "type": "m.room.member", "sender": ALICE, "state_key": ALICE,
         "content": {"membership": "join"}, "auth": c, "prev": ["CREATE"], "ts": 1},
        {"id": "IPOWER", "type": "m.room.power_levels", "sender": ALICE, "state_key": "",
         "content": {"users": users}, "auth": [*c, "IMA"], "ts": 2},
        {"id": "IJR", "type": "m.room.join_rules", "sender": ALICE, "state_key": "",
         "content": {"join_rule": "public"}, "auth": [*c, "IMA", "IPOWER"], "ts": 3},
        {"id": "IMB", "type": "m.room.member", "sender": BOB, "state_key": BOB,
         "content": {"membership": "join"}, "auth": [*c, "IPOWER", "IJR"], "ts": 4},
        {"id": "IMC", "type": "m.room.member", "sender": CHARLIE, "state_key": CHARLIE,
         "content": {"membership": "join"}, "auth": [*c, "IPOWER", "IJR"], "ts": 5},
    ]  # fmt: skip
    return build_graph(version, specs)


def _add(events: dict[str, Event], version: RoomVersion, name: str, type_: str, sender: str,
         auth: list[str], ts: int, content: dict[str, Any] | None = None,
         state_key: str = "") -> str:  # fmt: skip
    create = events[event_id("CREATE")]
    v12 = version.room_id_from_create_event
    auth_ids = [event_id(a) for a in auth if not (v12 and a == "CREATE")]
    event = make_event(
        version, event_id(name), type_, sender, state_key=state_key, content=content or {},
        auth_events=auth_ids, room_id=create.room_id, origin_server_ts=ts,
    )  # fmt: skip
    events[event.event_id] = event
    return event.event_id


def test_power_ordering_puts_the_higher_power_sender_first() -> None:
    events = _small_room()
    low = _add(events, V11, "LOW", "m.room.topic", BOB, ["CREATE", "IPOWER", "IMB"], ts=1)
    high = _add(events, V11, "HIGH", "m.room.topic", ALICE, ["CREATE", "IPOWER", "IMA"], ts=9)
    graph = EventGraph(V11, events)
    assert reverse_topological_power_ordering(graph, [low, high]) == [high, low]


def test_power_ordering_breaks_power_ties_by_timestamp_then_event_id() -> None:
    events = _small_room()
    auth = ["CREATE", "IPOWER", "IMB"]
    late = _add(events, V11, "A", "m.room.topic", BOB, auth, ts=7)
    early = _add(events, V11, "B", "m.room.topic", CHARLIE, ["CREATE", "IPOWER", "IMC"], ts=3)
    tie = _add(events, V11, "C", "m.room.topic", BOB, auth, ts=7)
    graph = EventGraph(V11, events)
    assert reverse_topological_power_ordering(graph, [tie, late, early]) == [early, late, tie]


def test_power_ordering_respects_auth_events_over_power() -> None:
    events = _small_room()
    # Bob (50) sends power levels; alice's (100) later change cites bob's, so it must follow.
    bobs = _add(events, V11, "PB", "m.room.power_levels", BOB, ["CREATE", "IPOWER", "IMB"], 5,
                {"users": {ALICE: 100, BOB: 50, CHARLIE: 50}})  # fmt: skip
    alices = _add(events, V11, "PA", "m.room.power_levels", ALICE, ["CREATE", "PB", "IMA"], 6,
                  {"users": {ALICE: 100, BOB: 0}})  # fmt: skip
    graph = EventGraph(V11, events)
    assert reverse_topological_power_ordering(graph, [alices, bobs]) == [bobs, alices]


def test_power_ordering_of_v12_creator_outranks_any_power_level() -> None:
    events = _small_room(V12)
    assert events[event_id("IMB")].room_id == "!CREATE:test"
    bob = _add(events, V12, "B", "m.room.topic", BOB, ["IPOWER", "IMB"], ts=1)
    alice = _add(events, V12, "A", "m.room.topic", ALICE, ["IPOWER", "IMA"], ts=2)
    graph = EventGraph(V12, events)
    assert graph.sender_power_level(events[alice]) == float("inf")
    assert reverse_topological_power_ordering(graph, [bob, alice]) == [alice, bob]


def test_power_ordering_uses_the_creator_default_without_power_levels() -> None:
    events = _small_room()
    graph = EventGraph(V11, events)
    assert graph.sender_power_level(events[event_id("IMA")]) == 100  # cites only the create


def test_power_ordering_rejects_a_cycle() -> None:
    events = _small_room()
    _add(events, V11, "X", "m.room.topic", ALICE, ["CREATE", "Y"], ts=1)
    _add(events, V11, "Y", "m.room.topic", ALICE, ["CREATE", "X"], ts=1)
    graph = EventGraph(V11, events)
    with pytest.raises(StateResolutionError, match="cycle"):
        reverse_topological_power_ordering(graph, [event_id("X"), event_id("Y")])


# --- Mainline ordering ----------------------------------------------------------------------


def _power_chain(events: dict[str, Event]) -> tuple[str, str]:
    p1 = _add(events, V11, "P1", "m.room.power_levels", ALICE, ["CREATE", "IPOWER", "IMA"], 10,
              {"users": {ALICE: 100, BOB: 50}})  # fmt: skip
    p2 = _add(events, V11, "P2", "m.room.power_levels", ALICE, ["CREATE", "P1", "IMA"], 11,
              {"users": {ALICE: 100, BOB: 60}})  # fmt: skip
    return p1, p2


def test_mainline_follows_power_levels_auth_events() -> None:
    events = _small_room()
    p1, p2 = _power_chain(events)
    graph = EventGraph(V11, events)
    assert mainline(graph, p2) == [p2, p1, event_id("IPOWER")]
    assert mainline(graph, None) == []


def test_mainline_ordering_puts_events_based_on_older_power_levels_first() -> None:
    events = _small_room()
    _, p2 = _power_chain(events)
    on_p2 = _add(events, V11, "T2", "m.room.topic", ALICE, ["CREATE", "P2", "IMA"], ts=1)
    on_p1 = _add(events, V11, "T1", "m.room.topic", ALICE, ["CREATE", "P1", "IMA"], ts=50)
    no_pl = _add(events, V11, "T0", "m.room.topic", ALICE, ["CREATE", "IMA"], ts=99)
    graph = EventGraph(V11, events)
    # Positions: T0 infinity (no power levels), T1 1, T2 0 — greater positions first.
    assert mainline_ordering(graph, [on_p2, on_p1, no_pl], p2) == [no_pl, on_p1, on_p2]


def test_mainline_ordering_walks_off_mainline_power_levels_to_the_mainline() -> None:
    events = _small_room()
    _, p2 = _power_chain(events)
    fork = _add(events, V11, "PF", "m.room.power_levels", ALICE, ["CREATE", "P1", "IMA"], 12,
                {"users": {ALICE: 100, BOB: 70}})  # fmt: skip
    on_fork = _add(events, V11, "TF", "m.room.topic", ALICE, ["CREATE", fork, "IMA"], ts=1)
    on_p2 = _add(events, V11, "T2", "m.room.topic", ALICE, ["CREATE", "P2", "IMA"], ts=2)
    graph = EventGraph(V11, events)
    # TF → PF (off the mainline) → P1: position 1, so it sorts before T2 (position 0).
    assert mainline_ordering(graph, [on_p2, on_fork], p2) == [on_fork, on_p2]


def test_mainline_ordering_breaks_ties_by_timestamp_then_event_id() -> None:
    events = _small_room()
    auth = ["CREATE", "IPOWER", "IMA"]
    b = _add(events, V11, "B", "m.room.topic", ALICE, auth, ts=5)
    a = _add(events, V11, "A", "m.room.topic", ALICE, auth, ts=5)
    first = _add(events, V11, "Z", "m.room.topic", ALICE, auth, ts=1)
    graph = EventGraph(V11, events)
    assert mainline_ordering(graph, [b, a, first], event_id("IPOWER")) == [first, a, b]


# --- Iterative auth checks and rejected events ----------------------------------------------


def test_iterative_auth_checks_skip_disallowed_events_and_keep_going() -> None:
    events = _small_room()
    initial = {e.state_tuple: e.event_id for e in events.values()}
    ban = _add(events, V11, "BAN", "m.room.member", ALICE, ["CREATE", "IPOWER", "IMA", "IMB"], 6,
               {"membership": "ban"}, state_key=BOB)  # fmt: skip
    topic = _add(events, V11, "T", "m.room.topic", BOB, ["CREATE", "IPOWER", "IMB"], ts=7)
    result = iterative_auth_checks(V11, initial, [ban, topic], events)
    assert result[("m.room.member", BOB)] == ban
    assert ("m.room.topic", "") not in result  # bob was banned first


def test_rejected_auth_events_are_not_used() -> None:
    events = _small_room()
    # Bob's topic cites a power-levels event giving him 100, but that event was rejected.
    bad_pl = _add(events, V11, "BADPL", "m.room.power_levels", BOB, ["CREATE", "IPOWER", "IMB"],
                  5, {"users": {ALICE: 100, BOB: 100}})  # fmt: skip
    topic = _add(events, V11, "T", "m.room.topic", BOB, ["CREATE", bad_pl, "IMB"], ts=6)
    start = {("m.room.create", ""): event_id("CREATE"), ("m.room.member", BOB): event_id("IMB")}
    kept = iterative_auth_checks(V11, start, [topic], events)
    assert kept[("m.room.topic", "")] == topic  # bob at 100 by BADPL may set the topic
    dropped = iterative_auth_checks(V11, start, [topic], events, rejected_event_ids={bad_pl})
    assert ("m.room.topic", "") not in dropped  # without BADPL: no power levels, bob has 0


def test_power_ordering_reads_sender_power_from_rejected_auth_events_too() -> None:
    events = _small_room()
    bad_pl = _add(events, V11, "BADPL", "m.room.power_levels", BOB, ["CREATE", "IPOWER", "IMB"],
                  5, {"users": {ALICE: 100, BOB: 100}})  # fmt: skip
    topic = _add(events, V11, "T", "m.room.topic", BOB, ["CREATE", bad_pl, "IMB"], ts=6)
    graph = EventGraph(V11, events, rejected_event_ids={bad_pl})
    # "when looking at their respective auth_events": only the iterative auth checks skip
    # rejected events.
    assert graph.sender_power_level(events[topic]) == 100


def test_partial_state_wins_over_the_events_own_auth_events() -> None:
    events = _small_room()
    state = {e.state_tuple: e.event_id for e in events.values()}
    demote = _add(events, V11, "DEMOTE", "m.room.power_levels", ALICE,
                  ["CREATE", "IPOWER", "IMA"], 6, {"users": {ALICE: 100}})  # fmt: skip
    topic = _add(events, V11, "T", "m.room.topic", BOB, ["CREATE", "IPOWER", "IMB"], ts=7)
    state[("m.room.power_levels", "")] = demote
    result = iterative_auth_checks(V11, state, [topic], events)
    assert ("m.room.topic", "") not in result  # checked against DEMOTE, not its own IPOWER


# --- Bad input ------------------------------------------------------------------------------


def test_missing_conflicted_event_is_a_clear_error() -> None:
    events = _small_room()
    with pytest.raises(StateResolutionError, match="not in the event map"):
        resolve_state(V11, [{("m.room.topic", ""): "$gone:test"}, {}], [set(), set()], events)


def test_one_auth_chain_per_state_set_is_required() -> None:
    with pytest.raises(StateResolutionError, match="one auth chain per state set"):
        resolve_state(V11, [{}, {}], [set()], {})


def test_state_resolution_v1_rooms_are_refused() -> None:
    with pytest.raises(StateResolutionError, match="v1"):
        resolve_state(V1, [{}], [set()], {})


def test_no_state_sets_resolve_to_empty_state() -> None:
    assert resolve_state(V10, [], [], {}) == {}


def test_a_non_state_event_in_state_is_a_clear_error() -> None:
    events = _small_room()
    message = make_event(V11, event_id("MSG"), "m.room.message", ALICE, room_id="!room:test")
    events[message.event_id] = message
    with pytest.raises(StateResolutionError, match="not a state event"):
        resolve_state(V11, [{("m.room.message", ""): message.event_id}, {}], [set(), set()],
                      events)  # fmt: skip


# --- Property: the order of the state sets does not matter ----------------------------------

_USERS = [ALICE, BOB, CHARLIE, "@dave:test"]
_OPS = st.tuples(
    st.sampled_from(["promote", "demote", "ban", "kick", "join", "leave", "topic", "jr"]),
    st.sampled_from(_USERS),  # sender
    st.sampled_from(_USERS),  # target
    st.integers(min_value=0, max_value=3),  # timestamp jitter
)


class _Fork:
    """A fork grown from a shared state; an op that fails the auth rules is dropped."""

    def __init__(self, version: RoomVersion, events: dict[str, Event],
                 state: dict[StateKey, Event], prefix: str) -> None:  # fmt: skip
        self.version, self.events, self.state, self.prefix = version, events, dict(state), prefix
        self.count = 0

    def apply(self, op: tuple[str, str, str, int]) -> None:
        kind, sender, target, jitter = op
        levels = {ALICE: 100, BOB: 50, CHARLIE: 50}
        content: dict[str, Any]
        type_, state_key = "m.room.member", target
        if kind in ("promote", "demote"):
            type_, state_key = "m.room.power_levels", ""
            levels[target] = 50 if kind == "promote" else 0
            content = {"users": levels}
        elif kind in ("ban", "kick"):
            content = {"membership": "ban" if kind == "ban" else "leave"}
        elif kind in ("join", "leave"):
            state_key, content = sender, {"membership": kind}
        elif kind == "topic":
            type_, state_key, content = "m.room.topic", "", {"topic": target}
        else:
            type_, state_key = "m.room.join_rules", ""
            content = {"join_rule": "invite" if jitter % 2 else "public"}
        self.count += 1
        keys = auth_types_for_event(self.version, type_, sender, state_key, content)
        event = make_event(
            self.version, event_id(f"{self.prefix}{self.count}"), type_, sender,
            state_key=state_key, content=content, room_id="!room:test",
            auth_events=[self.state[k].event_id for k in keys if k in self.state],
            origin_server_ts=10 + self.count + jitter,
        )  # fmt: skip
        try:
            check_auth_rules(event, self.state)
        except AuthError:
            return
        self.events[event.event_id] = event
        self.state[event.state_tuple] = event


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    forks=st.lists(st.lists(_OPS, min_size=1, max_size=6), min_size=2, max_size=3),
    data=st.data(),
)
def test_resolution_does_not_depend_on_the_order_of_state_sets(
    forks: list[list[tuple[str, str, str, int]]], data: st.DataObject
) -> None:
    events = _small_room()
    base = {e.state_tuple: e for e in events.values()}
    state_sets: list[dict[StateKey, str]] = []
    for index, ops in enumerate(forks):
        fork = _Fork(V11, events, base, prefix=f"f{index}x")
        for op in ops:
            fork.apply(op)
        state_sets.append({k: e.event_id for k, e in fork.state.items()})
    chains = [full_auth_chain(s.values(), events) for s in state_sets]
    expected = resolve_state(V11, state_sets, chains, events)
    order = data.draw(st.permutations(range(len(state_sets))))
    permuted = resolve_state(
        V11, [state_sets[i] for i in order], [chains[i] for i in order], events
    )
    assert permuted == expected
    # Keys every fork agrees on are never changed by resolution.
    for key, value in state_sets[0].items():
        if all(s.get(key) == value for s in state_sets):
            assert expected[key] == value
