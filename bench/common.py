"""Shared pieces of the Client-Server API benchmarks (`bench/client.py`).

Only the standard Matrix Client-Server API over HTTP (plus Synapse's shared-secret registration
admin endpoint, which Veche also serves), so the same code measures any homeserver. Everything
here refuses to talk to anything but a loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp

T = TypeVar("T")

CLIENT_V3 = "/_matrix/client/v3"
# Synapse's shared-secret registration endpoint (nonce + HMAC-SHA1), served by Veche too.
ADMIN_REGISTER = "/_synapse/admin/v1/register"


class BenchError(Exception):
    """A request failed in a way the benchmark cannot work around; the message says which."""


@dataclass(frozen=True)
class User:
    user_id: str
    access_token: str
    device_id: str
    localpart: str
    password: str


# ---------------------------------------------------------------------------------------------
# Safety: loopback only


def require_loopback(base_url: str) -> str:
    """Return `base_url` without a trailing slash if every address it resolves to is loopback."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BenchError(f"--base-url must be an http(s) URL, got {base_url!r}")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise BenchError(f"cannot resolve {parts.hostname!r}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_loopback:
            raise BenchError(f"{parts.hostname!r} resolves to {address}: benchmarks target "
                             "loopback addresses only")
    return base_url.rstrip("/")


# ---------------------------------------------------------------------------------------------
# HTTP


class MatrixHttp:
    """A thin JSON-over-HTTP client: one shared connection pool, per-request deadlines."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession,
                 request_timeout: float = 60.0) -> None:
        self.base_url = base_url
        self.session = session
        self.request_timeout = request_timeout

    async def request(self, method: str, path: str, *, token: str | None = None,
                      body: Any = None, params: dict[str, str] | None = None,
                      time_limit: float | None = None) -> tuple[int, Any, int]:
        """Send one request; return (status, decoded JSON or None, response size in bytes)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client_timeout = aiohttp.ClientTimeout(total=time_limit or self.request_timeout)
        async with self.session.request(method, self.base_url + path, headers=headers,
                                        json=body, params=params,
                                        timeout=client_timeout) as response:
            raw = await response.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return response.status, decoded, len(raw)

    async def call(self, method: str, path: str, *, token: str | None = None,
                   body: Any = None, params: dict[str, str] | None = None,
                   time_limit: float | None = None) -> dict[str, Any]:
        """Like `request`, but a non-2xx answer or a non-object body raises BenchError."""
        status, decoded, _ = await self.request(method, path, token=token, body=body,
                                                params=params, time_limit=time_limit)
        if not 200 <= status < 300 or not isinstance(decoded, dict):
            raise BenchError(f"{method} {path.split('?')[0]} -> {status} {describe(decoded)}")
        return decoded


def describe(decoded: Any) -> str:
    """The errcode and error of a Matrix error body, briefly."""
    if isinstance(decoded, dict) and "errcode" in decoded:
        return f"{decoded.get('errcode')}: {str(decoded.get('error', ''))[:160]}"
    return str(decoded)[:160]


def q(segment: str) -> str:
    """Percent-encode one path segment (room IDs, aliases, event types, txn IDs)."""
    return quote(segment, safe="")


# ---------------------------------------------------------------------------------------------
# Accounts


class Registrar:
    """Registers users: shared-secret admin registration when a secret is given, falling back
    to open `/register` with the `m.login.dummy` stage (client-server-api, "Account
    registration")."""

    def __init__(self, http: MatrixHttp, server_name: str, shared_secret: str | None) -> None:
        self.http = http
        self.server_name = server_name
        self.shared_secret = shared_secret
        self.method = "shared-secret" if shared_secret else "open"
        self.notes: list[str] = []

    async def register(self, localpart: str, password: str) -> User:
        if self.method == "shared-secret":
            try:
                return await self._register_shared_secret(localpart, password)
            except BenchError as exc:
                self.notes.append(f"shared-secret registration failed ({exc}); using /register")
                self.method = "open"
        return await self._register_open(localpart, password)

    async def _register_shared_secret(self, localpart: str, password: str) -> User:
        assert self.shared_secret is not None
        nonce = (await self.http.call("GET", ADMIN_REGISTER))["nonce"]
        # MAC: HMAC-SHA1 keyed with the shared secret over nonce NUL user NUL password NUL
        # "notadmin", hex-encoded (Synapse's admin API "Shared-Secret Registration").
        message = b"\x00".join(s.encode() for s in (nonce, localpart, password, "notadmin"))
        mac = hmac.new(self.shared_secret.encode(), message, hashlib.sha1).hexdigest()
        body = {"nonce": nonce, "username": localpart, "password": password,
                "admin": False, "mac": mac}
        return self._user(await self.http.call("POST", ADMIN_REGISTER, body=body),
                          localpart, password)

    async def _register_open(self, localpart: str, password: str) -> User:
        body: dict[str, Any] = {"username": localpart, "password": password,
                                "auth": {"type": "m.login.dummy"},
                                "initial_device_display_name": "bench"}
        status, decoded, _ = await self.http.request("POST", f"{CLIENT_V3}/register", body=body)
        if status == 401 and isinstance(decoded, dict) and "session" in decoded:
            # User-interactive auth: complete the dummy stage within the server's session.
            body["auth"] = {"type": "m.login.dummy", "session": decoded["session"]}
            status, decoded, _ = await self.http.request("POST", f"{CLIENT_V3}/register",
                                                         body=body)
        if status != 200 or not isinstance(decoded, dict):
            raise BenchError(f"POST /register -> {status} {describe(decoded)}")
        return self._user(decoded, localpart, password)

    def _user(self, answer: dict[str, Any], localpart: str, password: str) -> User:
        user_id = answer.get("user_id") or f"@{localpart}:{self.server_name}"
        if not user_id.endswith(":" + self.server_name):
            self.notes.append(f"user {user_id} is not on --server-name {self.server_name}")
        token = answer.get("access_token")
        if not isinstance(token, str):
            raise BenchError(f"registration of {localpart} returned no access_token")
        return User(user_id, token, str(answer.get("device_id", "")), localpart, password)


async def login(http: MatrixHttp, user: User) -> User:
    """A fresh device for `user` (`m.login.password` with an `m.id.user` identifier)."""
    body = {"type": "m.login.password", "password": user.password,
            "identifier": {"type": "m.id.user", "user": user.localpart}}
    answer = await http.call("POST", f"{CLIENT_V3}/login", body=body)
    return User(user.user_id, answer["access_token"], answer.get("device_id", ""),
                user.localpart, user.password)


# ---------------------------------------------------------------------------------------------
# Room operations


async def create_room(http: MatrixHttp, user: User, body: dict[str, Any]) -> str:
    answer = await http.call("POST", f"{CLIENT_V3}/createRoom", token=user.access_token, body=body)
    return str(answer["room_id"])


async def join_room(http: MatrixHttp, user: User, room_id_or_alias: str) -> str:
    answer = await http.call("POST", f"{CLIENT_V3}/join/{q(room_id_or_alias)}",
                             token=user.access_token, body={})
    return str(answer.get("room_id", room_id_or_alias))


_txn_counter = 0


async def send_text(http: MatrixHttp, user: User, room_id: str, text: str) -> str:
    """PUT /rooms/{roomId}/send/m.room.message/{txnId} with a fresh transaction ID."""
    global _txn_counter
    _txn_counter += 1
    txn_id = f"bench.{os.getpid()}.{time.time_ns()}.{_txn_counter}"
    answer = await http.call(
        "PUT", f"{CLIENT_V3}/rooms/{q(room_id)}/send/m.room.message/{q(txn_id)}",
        token=user.access_token, body={"msgtype": "m.text", "body": text})
    return str(answer["event_id"])


async def sync(http: MatrixHttp, user: User, *, since: str | None = None, timeout_ms: int = 0,
               filter_json: str | None = None) -> tuple[dict[str, Any], int]:
    """GET /sync; returns the body and its size in bytes."""
    params = {"timeout": str(timeout_ms)}
    if since is not None:
        params["since"] = since
    if filter_json is not None:
        params["filter"] = filter_json
    status, decoded, size = await http.request("GET", f"{CLIENT_V3}/sync", token=user.access_token,
                                               params=params, time_limit=timeout_ms / 1000 + 30)
    if status != 200 or not isinstance(decoded, dict) or "next_batch" not in decoded:
        raise BenchError(f"GET /sync -> {status} {describe(decoded)}")
    return decoded, size


def timeline_bodies(sync_body: dict[str, Any], room_id: str) -> list[str]:
    """The `body` of every message in the joined room's timeline in one /sync answer."""
    room = sync_body.get("rooms", {}).get("join", {}).get(room_id, {})
    events = room.get("timeline", {}).get("events", [])
    return [str(e.get("content", {}).get("body")) for e in events if isinstance(e, dict)]


# ---------------------------------------------------------------------------------------------
# Concurrency helpers


async def bounded_gather(concurrency: int, jobs: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the jobs with at most `concurrency` in flight; results in job order."""
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(run(job) for job in jobs)))


async def timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    """Await and return (result, seconds taken)."""
    start = time.perf_counter()
    result = await awaitable
    return result, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """count, p50/p95/max and mean in milliseconds."""
    if not seconds:
        return {"count": 0}
    return {"count": len(seconds),
            "p50_ms": round(percentile(seconds, 50) * 1000, 1),
            "p95_ms": round(percentile(seconds, 95) * 1000, 1),
            "max_ms": round(max(seconds) * 1000, 1),
            "mean_ms": round(sum(seconds) / len(seconds) * 1000, 1)}


# ---------------------------------------------------------------------------------------------
# Memory (/proc)


@dataclass
class ProcessMemory:
    pids: list[int] = field(default_factory=list)
    rss_kb: int = 0
    pss_kb: int = 0
    peak_rss_kb: int = 0  # VmHWM of the root process

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"processes": len(self.pids),
                                  "rss_mb": round(self.rss_kb / 1024, 1),
                                  "pss_mb": round(self.pss_kb / 1024, 1)}
        if self.peak_rss_kb:
            result["peak_rss_mb"] = round(self.peak_rss_kb / 1024, 1)
        return result


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (PostgreSQL's shared buffers) counted once overall."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    """`root` and every process below it, from the parent links in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name may contain spaces and parentheses: split after the last ')'.
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo and len(found) < 10_000:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def memory_of(pids: Sequence[int], root: int | None = None) -> ProcessMemory:
    result = ProcessMemory()
    for pid in pids:
        try:
            result.rss_kb += _status_kb(pid, "VmRSS")
            result.pss_kb += _pss_kb(pid)
            result.pids.append(pid)
        except OSError:
            continue  # exited meanwhile
    if root is not None:
        with contextlib.suppress(OSError):
            result.peak_rss_kb = _status_kb(root, "VmHWM")
    return result


def memory_snapshot(pid: int | None, db_pid: int | None) -> dict[str, Any]:
    """The homeserver process alone, with its child processes, and the database's tree."""
    snapshot: dict[str, Any] = {}
    if pid is not None:
        if not os.path.exists(f"/proc/{pid}"):
            return {"error": f"no process {pid}"}
        snapshot["homeserver"] = memory_of([pid], root=pid).as_dict()
        snapshot["homeserver_with_children"] = memory_of(descendants(pid)).as_dict()
    if db_pid is not None and os.path.exists(f"/proc/{db_pid}"):
        snapshot["database_tree"] = memory_of(descendants(db_pid)).as_dict()
    return snapshot


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of the processes and of their children already reaped (/proc/PID/stat
    fields utime, stime, cutime, cstime), so a process tree's total survives exited workers."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: fields[0] is state (field 3), so utime (14) is fields[11].
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pid: int | None, db_pid: int | None) -> dict[str, float]:
    """CPU seconds used so far by the homeserver tree and the database tree."""
    snapshot = {}
    if pid is not None:
        snapshot["homeserver"] = cpu_seconds(descendants(pid))
    if db_pid is not None:
        snapshot["database"] = cpu_seconds(descendants(db_pid))
    return snapshot

