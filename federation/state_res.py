"""State resolution v2 (room versions 2–11) and v2.1 (room version 12).

Spec: `rooms/fragments/v2-state-res.md`; the v2.1 changes in `rooms/v12.md` "State resolution":
the *conflicted state subgraph* joins the full conflicted set, and the first iterative auth checks
start from an empty state map. Pure and synchronous: every input is handed in, nothing is fetched.
The orderings live in `state_res_ordering.py`.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from typing import Final

from federation.auth_error import AuthError
from federation.auth_rules import auth_types_for_event, check_auth_rules
from federation.pdu import Event
from federation.room_state import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS, StateKey
from federation.room_versions import RoomVersion, StateResAlgorithm
from federation.state_res_ordering import (
    EventGraph,
    StateResolutionError,
    mainline_ordering,
    reverse_topological_power_ordering,
)

__all__ = [
    "StateKey",
    "StateResolutionError",
    "auth_difference",
    "conflicted_state_subgraph",
    "full_auth_chain",
    "is_power_event",
    "iterative_auth_checks",
    "resolve_state",
    "split_conflicted_state",
]

_POWER_LEVELS_KEY: Final = (POWER_LEVELS, "")


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    auth_chains: Sequence[Collection[str]],
    event_map: Mapping[str, Event],
    *,
    rejected_event_ids: Container[str] = frozenset(),
) -> dict[StateKey, str]:
    """The resolution of `state_sets` (v2 "Algorithm", steps 1–5; v2.1 in room version 12).

    `auth_chains[i]` is the full auth chain of `state_sets[i]`: the union of the auth chains of its
    events, as the spec defines it (see `full_auth_chain`). Synapse also counts the state events
    themselves; that can only add state events to the auth difference, and gives the same result
    in every fixture, but not necessarily in every graph. `event_map` must hold every conflicted
    state event and every event of the auth chains. `rejected_event_ids` names events rejected on
    receipt: they are never used as auth events during the iterative auth checks.
    Raises `StateResolutionError` for unusable input.
    """
    if room_version.state_res is StateResAlgorithm.V1:
        raise StateResolutionError(
            f"room version {room_version.identifier} uses state resolution v1, not supported"
        )
    if len(auth_chains) != len(state_sets):
        raise StateResolutionError("need exactly one auth chain per state set")
    unconflicted, conflicted = split_conflicted_state(state_sets)
    if not conflicted:
        return unconflicted

    graph = EventGraph(room_version, event_map, rejected_event_ids)
    v2_1 = room_version.state_res is StateResAlgorithm.V2_1
    full_conflicted = conflicted | auth_difference(auth_chains)
    if v2_1:  # v12: "the union of the conflicted state set, the conflicted state subgraph, …"
        full_conflicted |= conflicted_state_subgraph(graph, conflicted)
    for event_id in full_conflicted:
        graph.get_state_event(event_id)

    # Step 1: power events and their auth ancestors in the full conflicted set, power-ordered.
    power_events = {e for e in full_conflicted if is_power_event(graph.get(e))}
    power_closure = _add_conflicted_auth_ancestors(graph, power_events, full_conflicted)
    sorted_power_events = reverse_topological_power_ordering(graph, power_closure)

    # Step 2: iterative auth checks from the unconflicted state (v2.1: from an empty map).
    initial_state: dict[StateKey, str] = {} if v2_1 else dict(unconflicted)
    partial = _iterative_auth_checks(graph, initial_state, sorted_power_events)

    # Step 3: the other events, by mainline ordering on the partially resolved power levels.
    others = (e for e in full_conflicted if e not in power_closure)
    sorted_others = mainline_ordering(graph, others, partial.get(_POWER_LEVELS_KEY))

    # Step 4: iterative auth checks on top of the partially resolved state.
    resolved = _iterative_auth_checks(graph, partial, sorted_others)

    # Step 5: the unconflicted state map wins for every key it has.
    resolved.update(unconflicted)
    return resolved


def split_conflicted_state(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], set[str]]:
    """v2 "Unconflicted state map and conflicted state set".

    A key present in every state set with the same event is unconflicted; otherwise every event
    any set has for it is conflicted (a key missing from some set is conflicted too).
    """
    if not state_sets:
        return {}, set()
    first, rest = state_sets[0], state_sets[1:]
    unconflicted: dict[StateKey, str] = {}
    conflicted: set[str] = set()
    for key, event_id in first.items():
        others = [state.get(key) for state in rest]
        if all(other == event_id for other in others):
            unconflicted[key] = event_id
        else:
            conflicted.add(event_id)
            conflicted.update(other for other in others if other is not None)
    for state in rest:
        for key, event_id in state.items():
            if key not in first:
                conflicted.add(event_id)
    return unconflicted, conflicted


def auth_difference(auth_chains: Sequence[Collection[str]]) -> set[str]:
    """v2 "Auth difference": ∪ Ci − ∩ Ci over the full auth chains of the state sets."""
    if not auth_chains:
        return set()
    chains = [c if isinstance(c, set | frozenset) else set(c) for c in auth_chains]
    union: set[str] = set().union(*chains)
    intersection: set[str] = set(chains[0]).intersection(*chains[1:])
    return union - intersection


def conflicted_state_subgraph(graph: EventGraph, conflicted: Collection[str]) -> set[str]:
    """v12 "Conflicted state subgraph": every event on an auth-events path between two
    conflicted state events, endpoints included.

    Those are the events that are auth ancestors of some conflicted event (reached by walking
    `auth_events` from it) and that themselves reach a conflicted event. Two linear walks: one
    down the auth DAG from the conflicted set, one back up along the reversed edges met on the way.
    """
    conflicted_set = set(conflicted)
    auth_children: dict[str, list[str]] = {}  # auth event → events citing it, within the walk
    seen: set[str] = set(conflicted_set)
    stack = list(conflicted_set)
    while stack:
        event_id = stack.pop()
        for auth_id in graph.get(event_id).auth_event_ids:
            auth_children.setdefault(auth_id, []).append(event_id)
            if auth_id not in seen:
                seen.add(auth_id)
                stack.append(auth_id)

    # Every event met below a conflicted event is an ancestor of one; keep those that also lead
    # down to a conflicted event (walking the citing edges back up from the conflicted set).
    reaches_conflicted: set[str] = set(conflicted_set)
    stack = list(conflicted_set)
    while stack:
        event_id = stack.pop()
        for child in auth_children.get(event_id, ()):
            if child not in reaches_conflicted:
                reaches_conflicted.add(child)
                stack.append(child)
    return reaches_conflicted


def is_power_event(event: Event) -> bool:
    """v2 "Power events": power levels, join rules, and a leave or ban of someone else.

    The m.room.create event counts too, as in deployed implementations; it has no auth events,
    so it sorts first either way.
    """
    if event.state_key is None:
        return False
    if event.type in (POWER_LEVELS, JOIN_RULES, CREATE) and event.state_key == "":
        return True
    return (
        event.type == MEMBER
        and event.membership in ("leave", "ban")
        and event.sender != event.state_key
    )


def _add_conflicted_auth_ancestors(
    graph: EventGraph, power_events: Iterable[str], full_conflicted: Container[str]
) -> set[str]:
    """Step 1: enlarge X by the auth ancestors of each power event in the full conflicted set.

    The walk follows `auth_events` links through members of the full conflicted set only, which
    is how the deployed implementations (Synapse, ruma) read this step; with v2.1 the conflicted
    state subgraph makes that walk reach every conflicted ancestor.
    """
    selected = set(power_events)
    stack = list(selected)
    while stack:
        for auth_id in graph.get(stack.pop()).auth_event_ids:
            if auth_id in full_conflicted and auth_id not in selected:
                selected.add(auth_id)
                stack.append(auth_id)
    return selected


def iterative_auth_checks(
    room_version: RoomVersion,
    initial_state: Mapping[StateKey, str],
    event_ids: Iterable[str],
    event_map: Mapping[str, Event],
    *,
    rejected_event_ids: Container[str] = frozenset(),
) -> dict[StateKey, str]:
    """v2 "Iterative auth checks", on its own: apply each event allowed by the auth rules."""
    graph = EventGraph(room_version, event_map, rejected_event_ids)
    return _iterative_auth_checks(graph, dict(initial_state), event_ids)


def _iterative_auth_checks(
    graph: EventGraph, initial_state: Mapping[StateKey, str], event_ids: Iterable[str]
) -> dict[StateKey, str]:
    """v2 "Iterative auth checks": apply each event in order if the auth rules allow it.

    The auth state of an event is the partially resolved state for the keys the auth events
    selection asks for; a key missing there comes from the event's own auth events, unless that
    auth event was rejected. Rejected events are never used as auth events, but an event that was
    rejected against the state at it is checked again like any other ("Rejected events").
    """
    room_version = graph.room_version
    state = dict(initial_state)
    for event_id in event_ids:
        event = graph.get_state_event(event_id)
        auth_state = graph.auth_events_state(event)
        for key in auth_types_for_event(
            room_version, event.type, event.sender, event.state_key, event.content
        ):
            state_event_id = state.get(key)
            if state_event_id is not None and not graph.is_rejected(state_event_id):
                auth_state[key] = graph.get(state_event_id)
        try:
            check_auth_rules(event, auth_state)
        except AuthError:
            continue
        state[event.state_tuple] = event_id
    return state


def full_auth_chain(event_ids: Iterable[str], event_map: Mapping[str, Event]) -> set[str]:
    """v2 "Auth chain" of every event in `event_ids`, united (the events themselves excluded).

    For callers that hold the events in memory; servers usually read auth chains from storage.
    """
    chain: set[str] = set()
    stack = list(event_ids)
    while stack:
        event_id = stack.pop()
        event = event_map.get(event_id)
        if event is None:
            raise StateResolutionError(f"event {event_id} is needed but not in the event map")
        for auth_id in event.auth_event_ids:
            if auth_id not in chain:
                chain.add(auth_id)
                stack.append(auth_id)
    return chain
