"""Client-Server API benchmark against any homeserver on loopback.

    python bench/client.py --base-url http://127.0.0.1:8008 --server-name localhost:8448 \\
        [--shared-secret SECRET] [--pid HOMESERVER_PID] [--db-pid POSTMASTER_PID] \\
        [--only send,delivery,initial_sync,create_rooms,join] [--output results.json]

Measures (see bench/README.md): send throughput with concurrent senders in one room,
send→/sync delivery latency to long-polling receivers, initial /sync of a user in many rooms,
room creation rate (sequential and concurrent), the time of a /join into a large room, and the
server's memory idle and after the runs. Prints a table, and the JSON summary with --json or
--output. A scenario that fails (for instance an endpoint the server does not have yet) is
reported with its error and the others still run.
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
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_scenarios import SCENARIOS, Context, Settings
from common import (
    BenchError,
    MatrixHttp,
    Registrar,
    cpu_snapshot,
    memory_snapshot,
    require_loopback,
    timed,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", required=True, help="client API URL (loopback only)")
    p.add_argument("--server-name", required=True, help="the homeserver's server_name")
    p.add_argument("--shared-secret", help="registration shared secret for "
                   "/_synapse/admin/v1/register; without it (or if it fails) open /register "
                   "with m.login.dummy is used")
    p.add_argument("--pid", type=int, help="homeserver process ID, for memory (VmRSS)")
    p.add_argument("--db-pid", type=int, help="PostgreSQL postmaster PID (its process tree's "
                   "memory is reported separately)")
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    p.add_argument("--output", type=Path, help="also write the JSON summary to this file")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--scenario-timeout", type=float, default=300.0,
                   help="seconds each scenario may take before it is abandoned (default 300)")
    d = Settings()
    for name, helptext in [
        ("senders", "concurrent senders in the throughput room"),
        ("messages", "messages per sender"),
        ("warmup", "unmeasured messages per sender before the throughput run"),
        ("receivers", "long-polling receivers in the delivery room"),
        ("delivery_messages", "messages sent one at a time to the receivers"),
        ("sync_rooms", "rooms of the initial-sync user"),
        ("sync_room_messages", "messages in each of those rooms"),
        ("sync_repeats", "initial syncs measured (each on a new device)"),
        ("rooms_sequential", "rooms created one after another"),
        ("creators", "concurrent room creators"),
        ("rooms_per_creator", "rooms each concurrent creator makes"),
        ("join_members", "members of the room before the measured joins"),
        ("joiners", "users joining the large room one by one (the first is measured alone)"),
        ("setup_concurrency", "parallel requests while registering and setting up rooms"),
    ]:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name),
                       help=f"{helptext} (default {getattr(d, name)})")
    p.add_argument("--delivery-gap", type=float, default=d.delivery_gap,
                   help=f"pause in seconds after each delivered message (default {d.delivery_gap})")
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    for name in ("senders", "messages", "receivers", "delivery_messages", "sync_rooms",
                 "sync_repeats", "rooms_sequential", "creators", "rooms_per_creator",
                 "join_members", "joiners", "setup_concurrency"):
        value = getattr(args, name)
        if not 1 <= value <= 10_000:
            p.error(f"--{name.replace('_', '-')} must be between 1 and 10000, got {value}")
    if args.join_members < 2:
        p.error("--join-members must be at least 2")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    fields = Settings.__dataclass_fields__
    return Settings(**{name: getattr(args, name) for name in fields})


async def server_version(http: MatrixHttp) -> dict[str, Any]:
    """What the server says about itself (Synapse's admin version endpoint, Server header)."""
    info: dict[str, Any] = {}
    status, body, _ = await http.request("GET", "/_synapse/admin/v1/server_version")
    if status == 200 and isinstance(body, dict):
        info["server_version"] = body.get("server_version")
    async with http.session.get(http.base_url + "/_matrix/client/versions") as response:
        info["server_header"] = response.headers.get("Server")
        body = await response.json(content_type=None)
    info["spec_versions"] = (body or {}).get("versions", [])[-3:]
    return info


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base_url = require_loopback(args.base_url)
    summary: dict[str, Any] = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "base_url": base_url,
                 "server_name": args.server_name, "cpus": os.cpu_count(),
                 "python": platform.python_version(), "machine": platform.machine(),
                 "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                 "settings": vars(settings_from(args))},
        "memory": {}, "scenarios": {}}
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        http = MatrixHttp(base_url, session)
        try:
            summary["meta"].update(await server_version(http))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BenchError(f"{base_url} does not answer /_matrix/client/versions: {exc}") from exc
        summary["memory"]["idle"] = memory_snapshot(args.pid, args.db_pid)
        registrar = Registrar(http, args.server_name, args.shared_secret)
        ctx = Context(http, registrar, settings_from(args), run_id=secrets.token_hex(3),
                      password="bench-" + secrets.token_hex(8),
                      cpu_probe=partial(cpu_snapshot, args.pid, args.db_pid))
        chosen = args.only.split(",")
        # Register the shared users first, so no scenario's timings include registration.
        try:
            _, seconds = await timed(asyncio.wait_for(ctx.users(ctx.pool_size(chosen)),
                                                      args.scenario_timeout))
            summary["meta"]["registration_s"] = round(seconds, 1)
            summary["memory"]["after_registration"] = memory_snapshot(args.pid, args.db_pid)
        except (BenchError, aiohttp.ClientError, TimeoutError, KeyError) as exc:
            summary["meta"]["registration_error"] = f"{type(exc).__name__}: {exc}"
            chosen = []  # every scenario needs users
        for name in chosen:
            print(f"… {name}", file=sys.stderr, flush=True)
            started, cpu_before = time.perf_counter(), cpu_snapshot(args.pid, args.db_pid)
            try:
                result = await asyncio.wait_for(SCENARIOS[name](ctx), args.scenario_timeout)
            except (BenchError, aiohttp.ClientError, TimeoutError, KeyError) as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["elapsed_s"] = round(time.perf_counter() - started, 1)
            # Server CPU over the whole scenario (set-up included): less sensitive than wall
            # times to other load on the machine.
            cpu_after = cpu_snapshot(args.pid, args.db_pid)
            result["server_cpu_s"] = {k: round(cpu_after[k] - cpu_before[k], 2)
                                      for k in cpu_after if k in cpu_before}
            if args.pid is not None:
                memory = memory_snapshot(args.pid, None).get("homeserver", {})
                result["homeserver_rss_mb_after"] = memory.get("rss_mb")
            summary["scenarios"][name] = result
        summary["memory"]["after"] = memory_snapshot(args.pid, args.db_pid)
        summary["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        summary["meta"]["registration"] = registrar.method
        summary["meta"]["users_registered"] = len(ctx.pool) + ctx._fresh
        if registrar.notes:
            summary["meta"]["registration_notes"] = registrar.notes[:3]
    return summary


def table(summary: dict[str, Any]) -> str:
    """The headline numbers, one per line."""
    rows: list[tuple[str, str]] = []
    sc = summary["scenarios"]

    def add(label: str, value: Any) -> None:
        rows.append((label, str(value)))

    def failed(name: str) -> bool:
        if name in sc and "error" in sc[name]:
            add(name, "FAILED: " + sc[name]["error"][:100])
            return True
        return name not in sc

    if "registration_error" in summary["meta"]:
        add("registration", "FAILED: " + summary["meta"]["registration_error"][:100])
    if not failed("send"):
        r = sc["send"]
        add(f"send: messages/s ({r['senders']} senders)", r["messages_per_s"])
        add("send: latency p50 / p95 ms",
            f"{r['send_latency']['p50_ms']} / {r['send_latency']['p95_ms']}")
        cpu = r.get("server_cpu_ms_per_message", {})
        if cpu:
            add("send: server CPU ms/message (homeserver / db)",
                " / ".join(str(cpu.get(k, "-")) for k in ("homeserver", "database")))
    if not failed("delivery"):
        r = sc["delivery"]
        lat = r["delivery_latency"]
        add(f"delivery to {r['receivers']} receivers: p50 / p95 ms",
            f"{lat.get('p50_ms')} / {lat.get('p95_ms')} ({lat['count']} deliveries, "
            f"{r['missing_deliveries_after_10s']} missing)")
        first, last = r["first_receiver_latency"], r["last_receiver_latency"]
        add("delivery: first / last receiver p50 ms", f"{first.get('p50_ms')} / "
            f"{last.get('p50_ms')}")
    if not failed("initial_sync"):
        r = sc["initial_sync"]
        add(f"initial sync, {r['rooms']} rooms: first / median ms",
            f"{r['first_ms']} / {r['median_ms']} ({r['response_kb']} KiB)")
    if not failed("create_rooms"):
        r = sc["create_rooms"]
        add("createRoom: rooms/s sequential", r["sequential"]["rooms_per_s"])
        add(f"createRoom: rooms/s {r['concurrent']['creators']} concurrent",
            r["concurrent"]["rooms_per_s"])
    if not failed("join"):
        r = sc["join"]
        add(f"join into {r['members_before']}-member room: first / p50 ms",
            f"{r['first_join_ms']} / {r['joins']['p50_ms']}")
    for when in ("idle", "after_registration", "after"):
        mem = summary["memory"].get(when, {})
        if "homeserver" in mem:
            add(f"RSS {when}: homeserver / with children MB",
                f"{mem['homeserver']['rss_mb']} / {mem['homeserver_with_children']['rss_mb']}")
        if "database_tree" in mem:
            db = mem["database_tree"]
            add(f"database {when}: RSS / PSS MB ({db['processes']} procs)",
                f"{db['rss_mb']} / {db['pss_mb']}")
    width = max((len(label) for label, _ in rows), default=10)
    meta = summary["meta"]
    head = (f"{meta.get('server_version') or meta.get('server_header')} at {meta['base_url']}, "
            f"{meta['date']}, {meta['cpus']} CPUs, load average {meta['loadavg_start'][0]} at "
            f"start, {meta.get('loadavg_end', ['?'])[0]} at end")
    return "\n".join([head] + [f"  {label:<{width}}  {value}" for label, value in rows])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = asyncio.run(run(args))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(summary, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text if args.json else table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
