"""A "remote server" test double and our real application, for the inbound federation tests.

`RemoteServer` runs on loopback over TLS (self-signed; our `federation.verify_tls` is off and
`federation.ip_range_allowlist` lets 127.0.0.0/8 in), named `127.0.0.1:<port>`. It serves its
signing keys at /_matrix/key/v2/server, signs requests to us with X-Matrix and events with its
own key, and answers /event, /event_auth, /state and /get_missing_events from the events it
holds, so our receiver can fetch what it misses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from yarl import URL

from federation.hashing import compute_event_id
from federation.keys import build_server_keys
from federation.room_versions import V11, RoomVersion
from federation.signing import SigningKey, add_hashes_and_signatures, generate_signing_key
from federation.xmatrix import build_authorization_header
from homeserver.app import Dependencies, build_dependencies, build_listener_apps
from homeserver.config import parse_config
from homeserver.server import start_listeners, stop_listeners
from homeserver.storage.migrations import latest_version, load_migrations
from tests.remote.support import make_certificate, serve

OUR_NAME = "veche.test"
DAY_MS = 24 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Reply:
    status: int
    body: Any


@dataclass
class RemoteServer:
    key: SigningKey
    port: int = 0
    # Events this server holds, by ID (what it answers /event, /get_missing_events … from).
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    # State before each held event, as event IDs (what it answers /state with).
    state_at: dict[str, list[str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None
    # While set and not yet released, /event, /event_auth, /state and /get_missing_events hang
    # (a dead origin); set the event to release them.
    stalled: asyncio.Event | None = None

    async def _stall(self) -> None:
        if self.stalled is not None:
            await self.stalled.wait()

    @property
    def server_name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    # --- events -------------------------------------------------------------------------

    def sign_event(
        self, pdu: Mapping[str, Any], room_version: RoomVersion = V11
    ) -> tuple[str, dict[str, Any]]:
        """Hash and sign a PDU as this server; remember it. Returns `(event_id, pdu)`."""
        signed = add_hashes_and_signatures(pdu, room_version, self.server_name, self.key)
        event_id = compute_event_id(signed, room_version)
        self.events[event_id] = signed
        return event_id, signed

    def build_event(
        self,
        room_id: str,
        event_type: str,
        sender: str,
        content: Mapping[str, Any],
        *,
        prev_events: Sequence[str],
        auth_events: Sequence[str],
        depth: int,
        state_key: str | None = None,
        room_version: RoomVersion = V11,
    ) -> tuple[str, dict[str, Any]]:
        pdu: dict[str, Any] = {
            "room_id": room_id,
            "type": event_type,
            "sender": sender,
            "content": dict(content),
            "prev_events": list(prev_events),
            "auth_events": list(auth_events),
            "depth": depth,
            "origin_server_ts": now_ms(),
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        return self.sign_event(pdu, room_version)

    # --- requests to our server -------------------------------------------------------------

    def authorization(
        self, method: str, uri: str, content: Any | None, *, destination: str = OUR_NAME
    ) -> str:
        return build_authorization_header(
            method, uri, self.server_name, destination, content, self.key
        )

    async def call(
        self,
        base_url: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        authorization: str | None = None,
        sign: bool = True,
    ) -> Reply:
        """A request to our federation listener; `path` includes any query string."""
        assert self.http is not None
        headers = {}
        if sign:
            headers["Authorization"] = authorization or self.authorization(method, path, body)
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        # encoded=True: the request target goes out exactly as it was signed.
        url = URL(base_url + path, encoded=True)
        async with self.http.request(method, url, data=data, headers=headers) as response:
            raw = await response.read()
            return Reply(response.status, orjson.loads(raw) if raw else None)

    # --- what it serves ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_matrix/key/v2/server", self._keys)
        app.router.add_get("/_matrix/federation/v1/event/{eventId}", self._event)
        app.router.add_get("/_matrix/federation/v1/event_auth/{roomId}/{eventId}", self._auth)
        app.router.add_get("/_matrix/federation/v1/state/{roomId}", self._state)
        app.router.add_post("/_matrix/federation/v1/get_missing_events/{roomId}", self._missing)
        return app

    async def _keys(self, request: web.Request) -> web.Response:
        self.requests.append("keys")
        return web.json_response(build_server_keys(self.server_name, self.key, now_ms() + DAY_MS))

    async def _event(self, request: web.Request) -> web.Response:
        self.requests.append("event")
        await self._stall()
        pdu = self.events.get(request.match_info["eventId"])
        if pdu is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)
        body = {"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": [pdu]}
        return web.json_response(body)

    def _auth_chain(self, event_ids: Sequence[str]) -> list[dict[str, Any]]:
        chain: dict[str, dict[str, Any]] = {}
        todo = list(event_ids)
        while todo:
            pdu = self.events.get(todo.pop())
            for auth_id in pdu["auth_events"] if pdu else []:
                if auth_id not in chain and auth_id in self.events:
                    chain[auth_id] = self.events[auth_id]
                    todo.append(auth_id)
        return list(chain.values())

    async def _auth(self, request: web.Request) -> web.Response:
        self.requests.append("event_auth")
        await self._stall()
        chain = self._auth_chain([request.match_info["eventId"]])
        return web.json_response({"auth_chain": chain})

    async def _state(self, request: web.Request) -> web.Response:
        self.requests.append("state")
        await self._stall()
        state_ids = self.state_at.get(request.query["event_id"], [])
        return web.json_response(
            {
                "pdus": [self.events[i] for i in state_ids],
                "auth_chain": self._auth_chain(state_ids),
            }
        )

    async def _missing(self, request: web.Request) -> web.Response:
        self.requests.append("get_missing_events")
        body = await request.json()
        await self._stall()
        earliest = set(body["earliest_events"])
        found: list[dict[str, Any]] = []
        todo = [p for e in body["latest_events"] for p in self.events[e]["prev_events"]]
        while todo and len(found) < body.get("limit", 10):
            event_id = todo.pop()
            if event_id in earliest or event_id not in self.events:
                continue
            found.append(self.events[event_id])
            todo.extend(self.events[event_id]["prev_events"])
        return web.json_response({"events": found})


@dataclass
class World:
    deps: Dependencies
    federation_url: str
    remote: RemoteServer
    other: RemoteServer  # a second remote server, with no user in any room


def federation_config(tmp_path: Path, dsn: str, **extra: Any) -> Any:
    return parse_config(
        {
            "server_name": OUR_NAME,
            "data_dir": str(tmp_path),
            "signing_key_path": str(tmp_path / "signing.key"),
            "database": {"dsn": dsn, "min_connections": 1, "max_connections": 4},
            "listeners": [
                {"type": "client", "bind": "127.0.0.1", "port": 0},
                {"type": "federation", "bind": "127.0.0.1", "port": 0},
            ],
            "federation": {
                "verify_tls": False,
                "ip_range_allowlist": ["127.0.0.0/8"],
                **extra.pop("federation", {}),
            },
            "rate_limits": {"enabled": False},
            **extra,
        },
        base_dir=tmp_path,
    )


@asynccontextmanager
async def running_world(
    tmp_path: Path, dsn: str, pool: asyncpg.Pool, **config: Any
) -> AsyncIterator[World]:
    cert = make_certificate(tmp_path / "tls", ["localhost"], ["127.0.0.1"])
    remote = RemoteServer(generate_signing_key("remote1"))
    other = RemoteServer(generate_signing_key("other1"))
    async with (
        serve(remote.app(), tls=cert.server_context()) as remote_port,
        serve(other.app(), tls=cert.server_context()) as other_port,
        aiohttp.ClientSession() as http,
    ):
        remote.port, other.port = remote_port, other_port
        remote.http = other.http = http
        deps = await build_dependencies(
            federation_config(tmp_path, dsn, **config),
            pool,
            generate_signing_key("ours"),
            latest_version(load_migrations()),
        )
        apps = build_listener_apps(deps)
        runners = await start_listeners(apps, deps.config)
        federation_index = next(i for i, (spec, _) in enumerate(apps) if "federation" in spec.types)
        port = int(runners[federation_index].addresses[0][1])
        try:
            yield World(deps, f"http://127.0.0.1:{port}", remote, other)
        finally:
            await stop_listeners(runners)
            await deps.close()


def path_of(template: str, *segments: str) -> str:
    return template.format(*(quote(s, safe="") for s in segments))
