"""Benchmark of the pure protocol library: `python bench/protocol.py [--repeat N]`.

Builds a real room (hashed, signed events with reference-hash event IDs) of 200 members and
2,000 state events, forks it into two branches of 500 conflicting power-levels and membership
events each, and reports:

- the time of `resolve_state` over the two forks (room version 11, state res v2; and room
  version 12, state res v2.1);
- events per second for hashing + signing, signature verification and `check_auth_rules`.

Everything runs on one core in this process; no server is involved.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from federation.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from federation.hashing import add_content_hash, room_id_for_create_event
from federation.pdu import Event
from federation.room_state import StateKey
from federation.room_versions import V11, V12, RoomVersion
from federation.signing import (
    SigningKey,
    sign_event,
    signing_key_from_seed,
    verify_event_signature,
)
from federation.state_res import full_auth_chain, resolve_state

SERVER = "bench.test"
MEMBERS = 200
STATE_EVENTS = 2_000
FORK_EVENTS = 500
MODERATORS = 20  # users 1..20 hold power level 50; user 1 ("bob") holds 100


def user(i: int) -> str:
    return f"@u{i:03d}:{SERVER}"


@dataclass
class RoomBuilder:
    """Builds signed events on top of a state, checking each against the auth rules."""

    room_version: RoomVersion
    key: SigningKey
    events: dict[str, Event] = field(default_factory=dict)
    state: dict[StateKey, Event] = field(default_factory=dict)
    room_id: str = f"!bench:{SERVER}"
    last: str | None = None
    depth: int = 0
    ts: int = 1_700_000_000_000

    def fork(self) -> RoomBuilder:
        return RoomBuilder(
            self.room_version, self.key, self.events, dict(self.state), self.room_id,
            self.last, self.depth, self.ts,
        )  # fmt: skip

    def send(
        self, type_: str, sender: str, content: dict[str, Any], state_key: str | None = None
    ) -> Event | None:
        """Build, hash and sign the next event; add it if the auth rules allow it."""
        self.depth += 1
        self.ts += 1
        keys = auth_types_for_event(self.room_version, type_, sender, state_key, content)
        pdu: dict[str, Any] = {
            "type": type_,
            "sender": sender,
            "content": content,
            "depth": self.depth,
            "origin_server_ts": self.ts,
            "prev_events": [self.last] if self.last else [],
            "auth_events": [self.state[k].event_id for k in keys if k in self.state],
            "room_id": self.room_id,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        is_v12_create = type_ == "m.room.create" and self.room_version.room_id_from_create_event
        if is_v12_create:
            del pdu["room_id"]
        pdu = sign_event(add_content_hash(pdu), self.room_version, SERVER, self.key)
        event = Event.from_pdu(pdu, self.room_version)
        if is_v12_create:
            self.room_id = room_id_for_create_event(pdu, self.room_version)
        try:
            check_auth_rules(event, self.state)
        except AuthError:
            return None
        self.events[event.event_id] = event
        if event.state_key is not None:
            self.state[event.state_tuple] = event
        self.last = event.event_id
        return event


def build_room(room_version: RoomVersion, key: SigningKey) -> RoomBuilder:
    """200 members (two admins, moderators) and 2,000 state events in all."""
    room = RoomBuilder(room_version, key)
    creator = user(0)
    create_content: dict[str, Any] = {"room_version": room_version.identifier}
    if not room_version.implicit_room_creator:
        create_content["creator"] = creator
    room.send("m.room.create", creator, create_content, "")
    room.send("m.room.member", creator, {"membership": "join"}, creator)
    levels = {user(i): 50 for i in range(2, MODERATORS + 1)}
    levels[user(1)] = 100
    if not room_version.privileged_room_creators:
        levels[creator] = 100
    room.send("m.room.power_levels", creator, {"users": levels}, "")
    room.send("m.room.join_rules", creator, {"join_rule": "public"}, "")
    for i in range(1, MEMBERS):
        room.send("m.room.member", user(i), {"membership": "join"}, user(i))
    n = 0
    while len(room.state) < STATE_EVENTS:
        sender = user(n % (MODERATORS + 1))
        room.send("org.veche.bench", sender, {"n": n}, f"key{n}")
        n += 1
    return room


def grow_fork(fork: RoomBuilder, admin: str, rng: random.Random) -> int:
    """Add FORK_EVENTS allowed power-levels and membership events; returns the attempts made."""
    added = attempts = 0
    while added < FORK_EVENTS:
        attempts += 1
        target = user(rng.randrange(MODERATORS + 1, MEMBERS))
        kind = rng.random()
        if kind < 0.35:  # change someone's power level
            content = dict(fork.state[("m.room.power_levels", "")].content)
            users = dict(content["users"])
            users[target] = rng.choice([0, 10, 25, 40])
            event = fork.send("m.room.power_levels", admin, {**content, "users": users}, "")
        elif kind < 0.6:  # kick or ban (power events)
            membership = rng.choice(["leave", "ban"])
            sender = rng.choice([admin, user(rng.randrange(2, MODERATORS + 1))])
            event = fork.send("m.room.member", sender, {"membership": membership}, target)
        elif kind < 0.8:  # a kicked member rejoins, a banned one is unbanned
            current = fork.state.get(("m.room.member", target))
            if current is not None and current.content.get("membership") == "ban":
                event = fork.send("m.room.member", admin, {"membership": "leave"}, target)
            else:
                event = fork.send("m.room.member", target, {"membership": "join"}, target)
        else:  # a member changes their display name
            event = fork.send(
                "m.room.member", target, {"membership": "join", "displayname": f"n{attempts}"},
                target,
            )  # fmt: skip
        added += event is not None
    return attempts


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_resolution(room_version: RoomVersion, key: SigningKey, repeat: int) -> None:
    start = time.perf_counter()
    room = build_room(room_version, key)
    rng = random.Random(4)
    fork_a, fork_b = room.fork(), room.fork()
    grow_fork(fork_a, user(0), rng)
    grow_fork(fork_b, user(1), rng)
    state_sets = [
        {k: e.event_id for k, e in fork_a.state.items()},
        {k: e.event_id for k, e in fork_b.state.items()},
    ]
    built = time.perf_counter() - start
    start = time.perf_counter()
    chains = [full_auth_chain(s.values(), room.events) for s in state_sets]
    chain_time = time.perf_counter() - start
    conflicted = sum(1 for k in state_sets[0].keys() | state_sets[1].keys()
                     if state_sets[0].get(k) != state_sets[1].get(k))  # fmt: skip
    times = timed(lambda: resolve_state(room_version, state_sets, chains, room.events), repeat)
    resolved = resolve_state(room_version, state_sets, chains, room.events)
    print(
        f"room v{room_version.identifier} ({room_version.state_res.value}): "
        f"{len(room.events)} events, {len(state_sets[0])}/{len(state_sets[1])} state entries, "
        f"{conflicted} conflicted keys, auth difference {len(chains[0] ^ chains[1])} "
        f"(built in {built:.1f} s, auth chains {chain_time * 1000:.0f} ms)"
    )
    print(
        f"  resolve_state: median {statistics.median(times) * 1000:.0f} ms, "
        f"min {min(times) * 1000:.0f} ms over {repeat} runs; {len(resolved)} keys resolved"
    )


def bench_crypto_and_auth(key: SigningKey, count: int) -> None:
    room = build_room(V11, key)
    events = list(room.events.values())[:count]
    pdus = [dict(e.pdu) for e in events]
    unsigned = [{k: v for k, v in p.items() if k not in ("hashes", "signatures")} for p in pdus]

    def hash_and_sign() -> None:
        for pdu in unsigned:
            sign_event(add_content_hash(pdu), V11, SERVER, key)

    def verify() -> None:
        for pdu in pdus:
            verify_event_signature(pdu, V11, SERVER, key.key_id, key.public_key)

    by_id = room.events
    auth_states = []
    for event in events:
        auth_state = {by_id[a].state_tuple: by_id[a] for a in event.auth_event_ids}
        auth_states.append((event, auth_state))

    def auth_checks() -> None:
        for event, auth_state in auth_states:
            check_auth_rules(event, auth_state)

    for name, fn in [("hashing + signing", hash_and_sign), ("signature verification", verify),
                     ("check_auth_rules", auth_checks)]:  # fmt: skip
        best = min(timed(fn, 3))
        print(f"{name}: {len(events) / best:,.0f} events/s ({len(events)} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of resolve_state (default 5)")
    args = parser.parse_args()
    key = signing_key_from_seed(bytes(range(32)), "bench")
    print(f"Python {sys.version.split()[0]}, one core")
    bench_resolution(V11, key, args.repeat)
    bench_resolution(V12, key, args.repeat)
    bench_crypto_and_auth(key, count=2_000)


if __name__ == "__main__":
    main()
