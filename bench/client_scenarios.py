"""The measurements of `bench/client.py`, one coroutine per scenario.

Each scenario builds its own rooms, measures, and returns a JSON-ready dict. Every loop has a
fixed count; the caller wraps each scenario in a deadline as well.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
from common import (
    CLIENT_V3,
    BenchError,
    MatrixHttp,
    Registrar,
    User,
    bounded_gather,
    create_room,
    join_room,
    latency_summary,
    login,
    q,
    send_text,
    sync,
    timed,
    timeline_bodies,
)

# Receivers ask for a timeline large enough never to be `limited` between two messages, and no
# presence (which would wake long-polls for reasons unrelated to the message).
RECEIVER_FILTER = json.dumps({"room": {"timeline": {"limit": 50}},
                              "presence": {"not_types": ["*"]}}, separators=(",", ":"))


@dataclass
class Settings:
    senders: int = 10
    messages: int = 50
    warmup: int = 2
    receivers: int = 20
    delivery_messages: int = 30
    delivery_gap: float = 0.2
    sync_rooms: int = 50
    sync_room_messages: int = 3
    sync_repeats: int = 3
    rooms_sequential: int = 20
    creators: int = 5
    rooms_per_creator: int = 10
    join_members: int = 50
    joiners: int = 5
    setup_concurrency: int = 5


@dataclass
class Context:
    http: MatrixHttp
    registrar: Registrar
    settings: Settings
    run_id: str
    password: str
    # CPU seconds used so far by the server's processes ({} when no --pid was given).
    cpu_probe: Callable[[], dict[str, float]] = dict
    pool: list[User] = field(default_factory=list)
    _fresh: int = 0

    def pool_size(self, scenarios: list[str]) -> int:
        """How many shared users the chosen scenarios need."""
        s = self.settings
        need = {"send": s.senders, "delivery": s.receivers + 1, "create_rooms": s.creators,
                "join": s.join_members + s.joiners}
        return max((need.get(name, 0) for name in scenarios), default=0)

    async def users(self, count: int) -> list[User]:
        """The first `count` users of the shared pool, registering the missing ones."""
        missing = range(len(self.pool), count)
        self.pool.extend(await bounded_gather(self.settings.setup_concurrency, [
            partial(self.registrar.register, f"bench{self.run_id}u{i}", self.password)
            for i in missing]))
        return self.pool[:count]

    async def fresh_user(self) -> User:
        """A user in no room yet."""
        self._fresh += 1
        return await self.registrar.register(f"bench{self.run_id}f{self._fresh}", self.password)

    async def join_all(self, users: list[User], room_id: str) -> list[float]:
        """Join everyone (bounded concurrency); return the individual /join times."""
        results = await bounded_gather(self.settings.setup_concurrency, [
            partial(timed_join, self.http, u, room_id) for u in users])
        return [seconds for _, seconds in results]


async def timed_join(http: MatrixHttp, user: User, room_id: str) -> tuple[str, float]:
    return await timed(join_room(http, user, room_id))


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# 1. Send throughput: N concurrent senders in one room, each sending sequentially.


async def send_throughput(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    senders = await ctx.users(s.senders)
    room_id = await create_room(ctx.http, senders[0], {"preset": "public_chat",
                                                       "name": "bench send throughput"})
    await ctx.join_all(senders[1:], room_id)

    async def sender(index: int, user: User, count: int, latencies: list[float]) -> None:
        for n in range(count):
            _, seconds = await timed(send_text(ctx.http, user, room_id, f"s{index} m{n}"))
            latencies.append(seconds)

    warm: list[float] = []
    await asyncio.gather(*(sender(i, u, s.warmup, warm) for i, u in enumerate(senders)))
    latencies: list[float] = []
    start, cpu_before = time.perf_counter(), ctx.cpu_probe()
    await asyncio.gather(*(sender(i, u, s.messages, latencies) for i, u in enumerate(senders)))
    wall = time.perf_counter() - start
    cpu_after = ctx.cpu_probe()
    total = s.senders * s.messages
    return {"senders": s.senders, "messages": total, "seconds": round(wall, 3),
            "messages_per_s": rate(total, wall), "send_latency": latency_summary(latencies),
            "server_cpu_ms_per_message": {
                k: round((cpu_after[k] - cpu_before[k]) * 1000 / total, 2) for k in cpu_after}}


# ---------------------------------------------------------------------------------------------
# 2. Delivery latency: one sender, N receivers long-polling /sync?timeout=30000.


async def delivery_latency(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    users = await ctx.users(s.receivers + 1)
    sender, receivers = users[0], users[1:]
    room_id = await create_room(ctx.http, sender, {"preset": "public_chat",
                                                   "name": "bench delivery"})
    await ctx.join_all(receivers, room_id)
    # Initial syncs (not measured) to get each receiver's `since` token.
    filter_json: str | None = RECEIVER_FILTER
    try:
        await sync(ctx.http, receivers[0], filter_json=filter_json)
    except BenchError:
        filter_json = None  # a server without inline filters: plain /sync is still standard
    starts = await bounded_gather(s.setup_concurrency, [
        partial(sync, ctx.http, r, filter_json=filter_json) for r in receivers])

    sent_at: dict[str, float] = {}
    seen_by: dict[str, int] = {}
    everyone_has: dict[str, asyncio.Event] = {}
    latencies: list[float] = []
    per_message: dict[str, list[float]] = {}
    polls = [0]
    errors: list[str] = []
    deadline = time.monotonic() + s.delivery_messages * (s.delivery_gap + 12) + 40

    async def receive(user: User, since: str) -> None:
        got: set[str] = set()
        # Bounded: at most a few polls per message, and never past the deadline.
        for _ in range(s.delivery_messages * 4 + 20):
            if len(got) == s.delivery_messages or time.monotonic() > deadline:
                return
            try:
                body, _ = await sync(ctx.http, user, since=since, timeout_ms=30_000,
                                     filter_json=filter_json)
            except (BenchError, aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{user.user_id}: {exc!r}")
                return
            arrived = time.perf_counter()
            polls[0] += 1
            since = body["next_batch"]
            for text in timeline_bodies(body, room_id):
                if text in sent_at and text not in got:
                    got.add(text)
                    latencies.append(arrived - sent_at[text])
                    per_message.setdefault(text, []).append(arrived - sent_at[text])
                    seen_by[text] += 1
                    if seen_by[text] == len(receivers):
                        everyone_has[text].set()

    tasks = [asyncio.create_task(receive(r, body["next_batch"]))
             for r, (body, _) in zip(receivers, starts, strict=True)]
    await asyncio.sleep(1.0)  # every receiver is now parked in its long-poll
    send_latencies: list[float] = []
    undelivered = 0
    try:
        for n in range(s.delivery_messages):
            text = f"bench delivery {ctx.run_id} {n}"
            seen_by[text] = 0
            everyone_has[text] = asyncio.Event()
            sent_at[text] = time.perf_counter()  # "send start"
            _, seconds = await timed(send_text(ctx.http, sender, room_id, text))
            send_latencies.append(seconds)
            try:
                await asyncio.wait_for(everyone_has[text].wait(), timeout=10)
            except TimeoutError:
                undelivered += len(receivers) - seen_by[text]
            await asyncio.sleep(s.delivery_gap)  # let receivers park again
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result: dict[str, Any] = {
        "receivers": len(receivers), "messages": s.delivery_messages,
        "inline_filter": filter_json is not None,
        "delivery_latency": latency_summary(latencies),
        # The fastest and slowest receiver of each message: wake-up latency vs. fan-out cost.
        "first_receiver_latency": latency_summary([min(v) for v in per_message.values()]),
        "last_receiver_latency": latency_summary([max(v) for v in per_message.values()]),
        "send_latency":
        latency_summary(send_latencies), "sync_responses": polls[0],
        "missing_deliveries_after_10s": undelivered}
    if errors:
        result["receiver_errors"] = errors[:5]
    return result


# ---------------------------------------------------------------------------------------------
# 3. Initial sync of a user in many rooms, each with a few messages.


async def initial_sync(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    user = await ctx.fresh_user()
    room_ids = await bounded_gather(s.setup_concurrency, [
        partial(create_room, ctx.http, user, {"preset": "private_chat",
                                              "name": f"bench sync {i}"})
        for i in range(s.sync_rooms)])
    await bounded_gather(s.setup_concurrency, [
        partial(send_text, ctx.http, user, r, f"message {m}")
        for r in room_ids for m in range(s.sync_room_messages)])
    # Each repeat logs in a new device, so no server can answer from a cached /sync response.
    timings, sizes, rooms_seen, notes = [], [], [], []
    for _ in range(s.sync_repeats):
        try:
            device = await login(ctx.http, user)
        except BenchError as exc:
            notes.append(f"login failed ({exc}); repeated on the registration device")
            device = user
        (body, size), seconds = await timed(sync(ctx.http, device))
        timings.append(seconds)
        sizes.append(size)
        rooms_seen.append(len(body.get("rooms", {}).get("join", {})))
    result: dict[str, Any] = {
        "rooms": s.sync_rooms, "messages_per_room": s.sync_room_messages,
        "first_ms": round(timings[0] * 1000, 1),
        "median_ms": round(statistics.median(timings) * 1000, 1),
        "all_ms": [round(t * 1000, 1) for t in timings],
        "response_kb": round(sizes[0] / 1024, 1), "joined_rooms_in_response": rooms_seen[0]}
    if notes:
        result["notes"] = notes[:1]
    return result


# ---------------------------------------------------------------------------------------------
# 4. Room creation rate, sequential and with concurrent creators.


async def room_creation(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    creators = await ctx.users(s.creators)

    async def create_many(user: User, count: int, tag: str, out: list[float]) -> None:
        for n in range(count):
            _, seconds = await timed(create_room(ctx.http, user, {
                "preset": "private_chat", "name": f"bench create {tag} {n}"}))
            out.append(seconds)

    sequential: list[float] = []
    start = time.perf_counter()
    await create_many(creators[0], s.rooms_sequential, "seq", sequential)
    seq_wall = time.perf_counter() - start
    concurrent: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(create_many(u, s.rooms_per_creator, f"c{i}", concurrent)
                           for i, u in enumerate(creators)))
    conc_wall = time.perf_counter() - start
    return {
        "sequential": {"rooms": s.rooms_sequential, "rooms_per_s": rate(s.rooms_sequential,
                                                                        seq_wall),
                       "latency": latency_summary(sequential)},
        "concurrent": {"creators": s.creators, "rooms": len(concurrent),
                       "rooms_per_s": rate(len(concurrent), conc_wall),
                       "latency": latency_summary(concurrent)}}


# ---------------------------------------------------------------------------------------------
# 5. Joining a room that already has many members.


async def join_large_room(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    users = await ctx.users(s.join_members + s.joiners)
    owner, members, joiners = users[0], users[1:s.join_members], users[s.join_members:]
    room_id = await create_room(ctx.http, owner, {"preset": "public_chat",
                                                  "name": "bench join"})
    start = time.perf_counter()
    setup_joins = await ctx.join_all(members, room_id)
    setup_wall = time.perf_counter() - start
    member_count: int | str
    try:
        joined = await ctx.http.call("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/joined_members",
                                     token=owner.access_token)
        member_count = len(joined.get("joined", {}))
    except BenchError as exc:  # only a cross-check; the joins themselves succeeded
        member_count = f"unknown ({exc})"
    times = []
    for user in joiners:  # one after another: the (members+1)th, (members+2)th, ...
        _, seconds = await timed(join_room(ctx.http, user, room_id))
        times.append(seconds)
    return {"members_before": member_count, "first_join_ms": round(times[0] * 1000, 1),
            "joins": latency_summary(times),
            "setup_joins": {"count": len(setup_joins),
                            "joins_per_s": rate(len(setup_joins), setup_wall),
                            "latency": latency_summary(setup_joins)}}


SCENARIOS = {
    "send": send_throughput,
    "delivery": delivery_latency,
    "initial_sync": initial_sync,
    "create_rooms": room_creation,
    "join": join_large_room,
}
