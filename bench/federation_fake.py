"""The fake remote homeserver of `bench/federation.py`: a pre-built room and the federation
endpoints a joining server needs, served over HTTPS on loopback.

Events are real: hashed, signed and identified with Veche's pure `federation/` library, so any
homeserver accepts them. Incoming requests are not authenticated (`X-Matrix` is not checked):
the fake server only serves a public room on loopback to the server under test.
"""

from __future__ import annotations

import ssl
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from federation.hashing import compute_event_id
from federation.keys import build_server_keys
from federation.room_versions import RoomVersion, room_version
from federation.signing import SigningKey, add_hashes_and_signatures, sign_event
from homeserver.tls import build_self_signed_certificate

CUSTOM_STATE_TYPE = "org.example.state"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class FakeRoom:
    """A linear room DAG owned by `server_name`: every event's only prev event is the one
    before it, so "the state" is simply the latest event of each (type, state_key)."""

    server_name: str
    key: SigningKey
    version: RoomVersion
    room_id: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    state: dict[tuple[str, str], str] = field(default_factory=dict)
    depth: int = 0

    @property
    def latest(self) -> str:
        return self.order[-1]

    def user(self, n: int) -> str:
        return f"@u{n:04d}:{self.server_name}"

    def auth_for(self, event_type: str, sender: str, state_key: str | None) -> list[str]:
        """The auth events a new event selects (S2S "Auth events selection")."""
        wanted = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender)]
        if event_type == "m.room.member":
            wanted += [("m.room.member", state_key or ""), ("m.room.join_rules", "")]
        ids: list[str] = []
        for key in wanted:
            event_id = self.state.get(key)
            if event_id is not None and event_id not in ids:
                ids.append(event_id)
        return ids

    def build(self, event_type: str, sender: str, content: dict[str, Any],
              state_key: str | None = None, *, record: bool = True) -> dict[str, Any]:
        """Build, hash and sign the next event of the chain; `record` appends it to the room."""
        self.depth += 1
        pdu: dict[str, Any] = {
            "auth_events": self.auth_for(event_type, sender, state_key),
            "content": content,
            "depth": self.depth,
            "origin_server_ts": now_ms(),
            "prev_events": [self.latest] if self.order else [],
            "room_id": self.room_id,
            "sender": sender,
            "type": event_type,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        signed = add_hashes_and_signatures(pdu, self.version, self.server_name, self.key)
        if record:
            self.add(signed)
        return signed

    def add(self, pdu: dict[str, Any]) -> str:
        event_id = compute_event_id(pdu, self.version)
        self.events[event_id] = pdu
        self.order.append(event_id)
        self.depth = max(self.depth, int(pdu["depth"]))
        if "state_key" in pdu:
            self.state[(pdu["type"], pdu["state_key"])] = event_id
        return event_id

    def auth_chain(self, event_ids: Iterable[str]) -> list[str]:
        """Every event reachable through auth_events from `event_ids` (not including them)."""
        seen: set[str] = set()
        todo = [a for e in event_ids for a in self.events[e]["auth_events"]]
        while todo:
            event_id = todo.pop()
            if event_id not in seen:
                seen.add(event_id)
                todo.extend(self.events[event_id]["auth_events"])
        return [e for e in self.order if e in seen]


def build_room(server_name: str, key: SigningKey, *, members: int, state_events: int,
               version_id: str = "10") -> FakeRoom:
    """A public room: `members` joined users of `server_name` and `state_events` state events
    in all (create, power levels, join rules, history visibility, the members, then custom
    `org.example.state` events under distinct state keys to make up the count)."""
    if members < 1 or state_events < members + 4:
        raise ValueError("need at least one member and members + 4 state events")
    version = room_version(version_id)
    room = FakeRoom(server_name, key, version, f"!bench{now_ms()}:{server_name}")
    creator = room.user(0)
    create_content: dict[str, Any] = {"room_version": version_id}
    if version_id in {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}:
        create_content["creator"] = creator
    room.build("m.room.create", creator, create_content, "")
    room.build("m.room.member", creator, {"membership": "join"}, creator)
    room.build("m.room.power_levels", creator, {
        "users": {creator: 100}, "users_default": 0, "events": {}, "events_default": 0,
        "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0}, "")
    room.build("m.room.join_rules", creator, {"join_rule": "public"}, "")
    room.build("m.room.history_visibility", creator, {"history_visibility": "shared"}, "")
    for n in range(1, members):
        user = room.user(n)
        room.build("m.room.member", user, {"membership": "join", "displayname": f"U {n}"}, user)
    for n in range(state_events - members - 4):
        room.build(CUSTOM_STATE_TYPE, creator, {"n": n, "text": f"state {n}"}, f"k{n:05d}")
    return room


# ---------------------------------------------------------------------------------------------
# The federation endpoints


class FakeServer:
    """Serves `room` to the server under test; counts the requests it gets by endpoint."""

    def __init__(self, room: FakeRoom) -> None:
        self.room = room
        self.hits: dict[str, int] = {}
        self.joined_event_id: str | None = None
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)

    def _hit(self, name: str) -> None:
        self.hits[name] = self.hits.get(name, 0) + 1

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        if parts[:4] == ["_matrix", "key", "v2", "server"]:
            self._hit("key")
            return web.json_response(build_server_keys(
                self.room.server_name, self.room.key, now_ms() + 24 * 3600 * 1000))
        if parts[:2] != ["_matrix", "federation"] or len(parts) < 4:
            self._hit("other:" + request.path[:60])
            return self._unrecognized()
        endpoint = parts[2] + "/" + parts[3]
        args = parts[4:]
        self._hit(endpoint)
        handler = {
            "v1/version": self.version,
            "v1/make_join": self.make_join,
            "v2/send_join": self.send_join,
            "v1/event": self.event,
            "v1/state_ids": self.state_ids,
            "v1/state": self.state,
            "v1/event_auth": self.event_auth,
            "v1/get_missing_events": self.get_missing_events,
            "v1/send": self.send,
        }.get(endpoint)
        if handler is None:
            return self._unrecognized()
        try:
            return await handler(request, args)
        except KeyError:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown"}, status=404)

    def _unrecognized(self) -> web.Response:
        return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "not served"},
                                 status=404)

    async def version(self, request: web.Request, args: list[str]) -> web.Response:
        return web.json_response({"server": {"name": "veche-bench-fake", "version": "0"}})

    async def make_join(self, request: web.Request, args: list[str]) -> web.Response:
        # S2S "Joining Rooms": GET /make_join/{roomId}/{userId} answers an event template.
        room = self.room
        user_id = args[1]
        if args[0] != room.room_id:
            raise KeyError(args[0])
        template = {
            "auth_events": room.auth_for("m.room.member", user_id, user_id),
            "content": {"membership": "join"},
            "depth": room.depth + 1,
            "origin_server_ts": now_ms(),
            "prev_events": [room.latest],
            "room_id": room.room_id,
            "sender": user_id,
            "state_key": user_id,
            "type": "m.room.member",
        }
        return web.json_response({"room_version": room.version.identifier, "event": template})

    async def send_join(self, request: web.Request, args: list[str]) -> web.Response:
        # PUT /v2/send_join: co-sign the join as the resident server, answer the state before
        # it and the auth chain (members_omitted false: the full state, whatever was asked).
        room = self.room
        pdu = await request.json()
        state_ids = list(room.state.values())
        signed = sign_event(pdu, room.version, room.server_name, room.key)
        self.joined_event_id = room.add(signed)
        chain = room.auth_chain([*state_ids, self.joined_event_id])
        return web.json_response({
            "origin": room.server_name,
            "members_omitted": False,
            "state": [room.events[e] for e in state_ids],
            "auth_chain": [room.events[e] for e in chain],
            "event": signed,
        })

    async def event(self, request: web.Request, args: list[str]) -> web.Response:
        pdu = self.room.events[args[0]]
        return web.json_response({"origin": self.room.server_name,
                                  "origin_server_ts": now_ms(), "pdus": [pdu]})

    async def state_ids(self, request: web.Request, args: list[str]) -> web.Response:
        # The state at any event after the room was built is the current state (only message
        # events follow), except the joined user's own membership before their join.
        state_ids = self._state_at(request.query.get("event_id", ""))
        return web.json_response({"pdu_ids": state_ids,
                                  "auth_chain_ids": self.room.auth_chain(state_ids)})

    async def state(self, request: web.Request, args: list[str]) -> web.Response:
        state_ids = self._state_at(request.query.get("event_id", ""))
        return web.json_response({
            "pdus": [self.room.events[e] for e in state_ids],
            "auth_chain": [self.room.events[e] for e in self.room.auth_chain(state_ids)]})

    def _state_at(self, event_id: str) -> list[str]:
        room = self.room
        position = room.order.index(event_id)
        state: dict[tuple[str, str], str] = {}
        for e in room.order[: position + 1]:
            pdu = room.events[e]
            if "state_key" in pdu:
                state[(pdu["type"], pdu["state_key"])] = e
        return list(state.values())

    async def event_auth(self, request: web.Request, args: list[str]) -> web.Response:
        chain = self.room.auth_chain([args[1]])
        return web.json_response({"auth_chain": [self.room.events[e] for e in chain]})

    async def get_missing_events(self, request: web.Request, args: list[str]) -> web.Response:
        body = await request.json()
        room = self.room
        earliest = set(body.get("earliest_events", []))
        limit = int(body.get("limit", 10))
        latest = [e for e in body.get("latest_events", []) if e in room.events]
        found: list[str] = []
        if latest:
            # Walk back the linear chain from the newest asked-for event.
            position = max(room.order.index(e) for e in latest) - 1
            while position >= 0 and len(found) < limit and room.order[position] not in earliest:
                found.append(room.order[position])
                position -= 1
        return web.json_response({"events": [room.events[e] for e in reversed(found)]})

    async def send(self, request: web.Request, args: list[str]) -> web.Response:
        body = await request.json()
        # Follow the target's own events (its user's messages, if any) so our chain stays on
        # the room's forward extremity.
        for pdu in body.get("pdus", []):
            if pdu.get("room_id") == self.room.room_id:
                event_id = compute_event_id(pdu, self.room.version)
                if event_id not in self.room.events:
                    self.room.add(pdu)
        return web.json_response({"pdus": {}})


def ssl_context() -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for localhost / 127.0.0.1."""
    cert_pem, key_pem = build_self_signed_certificate(["localhost"], ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        context.load_cert_chain(cert, key)
    return context


async def start_fake_server(server: FakeServer, port: int) -> web.AppRunner:
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context()).start()
    return runner
