"""Federation benchmark of any homeserver (issue 5, "Performance"): a remote join into a big
room, and inbound `/send` throughput.

The script plays a fake remote homeserver `localhost:<--fake-port>` (HTTPS on 127.0.0.1, see
`federation_fake.py`) holding a room with `--members` joined users and `--state-events` state
events. It then

1. registers a user on the target and times `POST /join/{roomId}?server_name=<fake>` until it
   returns, and until the room shows up in the user's `/sync`;
2. sends `--pdus` message PDUs from the fake server's users in sequential `/send` transactions
   of `--txn-size` (X-Matrix signed, each PDU on the previous one), as fast as the target
   acknowledges them, and checks the last one is the newest event of the user's `/messages`.

Only loopback addresses are used. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (
    CLIENT_V3,
    BenchError,
    MatrixHttp,
    Registrar,
    User,
    cpu_snapshot,
    latency_summary,
    q,
    require_loopback,
)
from federation_fake import FakeServer, build_room, start_fake_server

from federation.signing import generate_signing_key
from federation.xmatrix import build_authorization_header


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True, help="target client API (http://127.0.0.1:…)")
    p.add_argument("--federation-url", required=True,
                   help="target federation API (https://127.0.0.1:…)")
    p.add_argument("--server-name", required=True, help="target server name")
    p.add_argument("--shared-secret", help="shared-secret registration; else open /register")
    p.add_argument("--fake-port", type=int, default=38448)
    p.add_argument("--members", type=int, default=500)
    p.add_argument("--state-events", type=int, default=2000)
    p.add_argument("--room-version", default="10")
    p.add_argument("--pdus", type=int, default=2000)
    p.add_argument("--txn-size", type=int, default=50)
    p.add_argument("--join-timeout", type=float, default=600.0)
    p.add_argument("--pid", type=int, help="homeserver PID, for CPU seconds")
    p.add_argument("--db-pid", type=int, help="database postmaster PID, for CPU seconds")
    p.add_argument("--output", help="write the JSON summary here")
    return p.parse_args()


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 2) for k in before}


async def wait_for_join_in_sync(http: MatrixHttp, user: User, room_id: str,
                                deadline: float) -> None:
    """Long-poll `/sync` until `room_id` is among the joined rooms (or the deadline passes)."""
    since: str | None = None
    filter_json = json.dumps({"room": {"timeline": {"limit": 1}, "state": {"lazy_load_members":
                                                                           True}},
                              "presence": {"types": []}})
    while time.monotonic() < deadline:
        params = {"timeout": "5000", "filter": filter_json}
        if since:
            params["since"] = since
        status, body, _ = await http.request("GET", f"{CLIENT_V3}/sync", token=user.access_token,
                                             params=params, time_limit=60)
        if status != 200 or not isinstance(body, dict):
            raise BenchError(f"GET /sync -> {status}")
        if room_id in body.get("rooms", {}).get("join", {}):
            return
        since = body.get("next_batch")
    raise BenchError("the room never appeared in /sync")


async def remote_join(http: MatrixHttp, user: User, room_id: str, fake_name: str,
                      time_limit: float) -> dict[str, Any]:
    start = time.perf_counter()
    status, body, _ = await http.request(
        "POST", f"{CLIENT_V3}/join/{q(room_id)}?server_name={q(fake_name)}",
        token=user.access_token, body={}, time_limit=time_limit)
    join_s = time.perf_counter() - start
    if status != 200:
        raise BenchError(f"POST /join -> {status} {body}")
    await wait_for_join_in_sync(http, user, room_id, time.monotonic() + 120)
    sync_s = time.perf_counter() - start
    return {"join_ms": round(join_s * 1000, 1), "join_until_sync_ms": round(sync_s * 1000, 1)}


async def send_transactions(session: aiohttp.ClientSession, federation_url: str,
                            target_name: str, fake: FakeServer, pdus: int,
                            txn_size: int) -> dict[str, Any]:
    """Pre-build `pdus` messages (not timed), then send them in sequential transactions."""
    room = fake.room
    suffix = ":" + room.server_name
    senders = [state_key for (event_type, state_key) in room.state
               if event_type == "m.room.member" and state_key.endswith(suffix)]
    built = [room.build("m.room.message", senders[i % len(senders)],
                        {"msgtype": "m.text", "body": f"fed bench {i}"})
             for i in range(pdus)]
    last_event_id = room.latest
    latencies: list[float] = []
    rejected: dict[str, Any] = {}
    start = time.perf_counter()
    for offset in range(0, pdus, txn_size):
        txn_id = f"bench{time.time_ns()}"
        content = {"origin": room.server_name, "origin_server_ts": int(time.time() * 1000),
                   "pdus": built[offset:offset + txn_size], "edus": []}
        uri = f"/_matrix/federation/v1/send/{txn_id}"
        header = build_authorization_header("PUT", uri, room.server_name, target_name,
                                            content, room.key)
        t0 = time.perf_counter()
        async with session.put(federation_url + uri, json=content, ssl=False,
                               headers={"Authorization": header},
                               timeout=aiohttp.ClientTimeout(total=300)) as response:
            answer = await response.json(content_type=None)
            if response.status != 200:
                raise BenchError(f"PUT /send -> {response.status} {str(answer)[:200]}")
        latencies.append(time.perf_counter() - t0)
        for event_id, result in (answer.get("pdus") or {}).items():
            if isinstance(result, dict) and result.get("error"):
                rejected[event_id] = result["error"]
    elapsed = time.perf_counter() - start
    return {"pdus": pdus, "txn_size": txn_size, "seconds": round(elapsed, 2),
            "pdus_per_s": round(pdus / elapsed, 1), "txn_latency": latency_summary(latencies),
            "rejected": len(rejected), "rejected_sample": dict(list(rejected.items())[:3]),
            "last_event_id": last_event_id}


async def last_visible(http: MatrixHttp, user: User, room_id: str, event_id: str) -> dict[str, Any]:
    """Poll `/messages?dir=b&limit=1` (bounded) until the newest event is `event_id`."""
    start = time.perf_counter()
    newest = None
    for _ in range(120):
        body = await http.call("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/messages",
                               token=user.access_token, params={"dir": "b", "limit": "1"})
        chunk = body.get("chunk") or []
        newest = chunk[0].get("event_id") if chunk else None
        if newest == event_id:
            return {"visible": True, "after_last_ack_ms": round((time.perf_counter() - start)
                                                                * 1000, 1)}
        await asyncio.sleep(0.5)
    return {"visible": False, "newest_seen": newest}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base_url = require_loopback(args.base_url)
    federation_url = require_loopback(args.federation_url)
    fake_name = f"localhost:{args.fake_port}"
    key = generate_signing_key()
    t0 = time.perf_counter()
    room = build_room(fake_name, key, members=args.members, state_events=args.state_events,
                      version_id=args.room_version)
    summary: dict[str, Any] = {"meta": {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_average_start": os.getloadavg(), "python": platform.python_version(),
        "target": args.server_name, "fake_server": fake_name, "room_version": args.room_version,
        "members": args.members, "state_events": len(room.state),
        "room_build_s": round(time.perf_counter() - t0, 2)}}
    fake = FakeServer(room)
    runner = await start_fake_server(fake, args.fake_port)
    try:
        async with aiohttp.ClientSession() as session:
            http = MatrixHttp(base_url, session)
            registrar = Registrar(http, args.server_name, args.shared_secret)
            user = await registrar.register(f"fedbench{secrets.token_hex(4)}", "bench-password")
            cpu0 = cpu_snapshot(args.pid, args.db_pid)
            try:
                summary["join"] = await remote_join(http, user, room.room_id, fake_name,
                                                    args.join_timeout)
            except (TimeoutError, BenchError, aiohttp.ClientError) as exc:
                summary["join"] = {"error": str(exc) or type(exc).__name__}
            summary["join"]["server_cpu_s"] = cpu_delta(cpu0, cpu_snapshot(args.pid, args.db_pid))
            summary["join"]["fake_server_hits"] = dict(fake.hits)
            if "error" not in summary["join"]:
                await asyncio.sleep(2)  # let post-join background work settle
                fake.hits.clear()
                cpu0 = cpu_snapshot(args.pid, args.db_pid)
                try:
                    inbound = await send_transactions(session, federation_url, args.server_name,
                                                      fake, args.pdus, args.txn_size)
                    inbound["server_cpu_s"] = cpu_delta(cpu0, cpu_snapshot(args.pid,
                                                                           args.db_pid))
                    inbound.update(await last_visible(http, user, room.room_id,
                                                      inbound["last_event_id"]))
                except (TimeoutError, BenchError, aiohttp.ClientError) as exc:
                    inbound = {"error": str(exc) or type(exc).__name__}
                inbound["fake_server_hits"] = dict(fake.hits)
                summary["inbound"] = inbound
    finally:
        await runner.cleanup()
    summary["meta"]["load_average_end"] = os.getloadavg()
    return summary


def main() -> None:
    args = parse_args()
    summary = asyncio.run(run(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
