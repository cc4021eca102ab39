"""A fake peer homeserver on loopback for the outbound federation tests, and the wiring of a
real `FederationSender` (room engine, remote services, sender) around a test database.

The peer is a real TLS server named `127.0.0.1:<port>` (an IP literal with a port: no DNS).
It checks our X-Matrix signature on every `/send/{txnId}`, records each attempt, and can be
told to answer 500, to hang, or be stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from federation.keys import build_server_keys
from federation.pdu import Event
from federation.room_versions import V11
from federation.signing import (
    SignatureError,
    SigningKey,
    add_hashes_and_signatures,
    generate_signing_key,
)
from federation.xmatrix import (
    XMatrixError,
    build_authorization_header,
    parse_authorization_header,
    verify_request,
)
from homeserver.config import parse_config
from homeserver.remote.client import ClientLimits
from homeserver.remote.factory import RemoteServices, create_remote_services
from homeserver.services.federation_queue import Backoff, QueueLimits
from homeserver.services.federation_sender import FederationSender
from homeserver.storage.federation_outbound import FederationOutboundStore, RetryState
from tests.remote.fakes import free_port
from tests.remote.support import LoopbackCertificate
from tests.services.pipeline_harness import SERVER, Harness

# Fast enough for tests, the same shape as production: doubling, capped, no jitter.
FAST_BACKOFF = Backoff(initial_ms=50, multiplier=2.0, max_ms=200, jitter=0.0)


@dataclass
class Attempt:
    txn_id: str
    status: int
    body: dict[str, Any]


@dataclass
class FakePeer:
    cert: LoopbackCertificate
    our_key: SigningKey
    key: SigningKey = field(default_factory=lambda: generate_signing_key("peer"))
    port: int = field(default_factory=free_port)
    attempts: list[Attempt] = field(default_factory=list)
    fail_next: int = 0  # answer this many /send requests with 500
    hang: bool = False  # never answer /send (until stopped)
    hung: int = 0  # requests left hanging
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def server_name(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def user_id(self) -> str:
        return f"@carol:{self.server_name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/_matrix/federation/v1/send/{txnId}", self._send)
        app.router.add_get("/_matrix/key/v2/server", self._keys)
        self._release = asyncio.Event()
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, ssl_context=self.cert.server_context()
        )
        await site.start()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _keys(self, request: web.Request) -> web.Response:
        """S2S "Publishing Keys", so that we can verify this peer's requests to us."""
        valid_until_ts = int(time.time() * 1000) + 24 * 3600 * 1000
        return web.json_response(build_server_keys(self.server_name, self.key, valid_until_ts))

    def authorization(self, method: str, uri: str, destination: str, content: Any = None) -> str:
        """The X-Matrix header of a request this peer makes to `destination`."""
        return build_authorization_header(
            method, uri, self.server_name, destination, content, self.key
        )

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        txn_id = request.match_info["txnId"]
        try:
            auth = parse_authorization_header(request.headers.get("Authorization", ""))
            assert auth.origin == SERVER and auth.key_id == self.our_key.key_id
            verify_request(
                auth, "PUT", request.raw_path, self.server_name, body, self.our_key.public_key
            )
        except (XMatrixError, SignatureError, AssertionError) as exc:
            self.attempts.append(Attempt(txn_id, 401, body))
            return web.json_response({"errcode": "M_UNAUTHORIZED", "error": str(exc)}, status=401)
        if self.hang:
            self.hung += 1
            await self._release.wait()
            return web.json_response({"errcode": "M_UNKNOWN", "error": "stopping"}, status=503)
        if self.fail_next > 0:
            self.fail_next -= 1
            self.attempts.append(Attempt(txn_id, 500, body))
            return web.json_response({"errcode": "M_UNKNOWN", "error": "try later"}, status=500)
        self.attempts.append(Attempt(txn_id, 200, body))
        return web.json_response({"pdus": {event_id_of(pdu): {} for pdu in body["pdus"]}})

    # --- what the peer got ----------------------------------------------------------------

    @property
    def accepted(self) -> list[Attempt]:
        return [attempt for attempt in self.attempts if attempt.status == 200]

    def received_event_ids(self) -> list[str]:
        return [event_id_of(pdu) for a in self.accepted for pdu in a.body["pdus"]]

    def received_edus(self) -> list[dict[str, Any]]:
        return [edu for a in self.accepted for edu in a.body.get("edus", [])]

    def join_event(self, room_id: str, prev: Event, auth: list[Event]) -> Event:
        """Our user carol's join, built and signed by this peer as if sent over federation."""
        return self.event(
            room_id, "m.room.member", {"membership": "join"}, prev, auth, state_key=self.user_id
        )

    def event(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        prev: Event,
        auth: list[Event],
        state_key: str | None = None,
    ) -> Event:
        pdu: dict[str, Any] = {
            "room_id": room_id,
            "type": event_type,
            "sender": self.user_id,
            "content": content,
            "depth": prev.depth + 1,
            "origin_server_ts": int(time.time() * 1000),
            "prev_events": [prev.event_id],
            "auth_events": [e.event_id for e in auth],
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu = add_hashes_and_signatures(pdu, V11, self.server_name, self.key)
        return Event.from_pdu(pdu, V11)


class RecordingStore(FederationOutboundStore):
    """The real store, remembering every retry state written (in order)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.retry_states: list[tuple[str, RetryState]] = []

    async def set_retry_state(self, destination: str, state: RetryState) -> None:
        self.retry_states.append((destination, state))
        await super().set_retry_state(destination, state)


def event_id_of(pdu: dict[str, Any]) -> str:
    # Room v11 PDUs carry no event_id; the peer names them by reference hash like any server.
    return Event.from_pdu(pdu, V11).event_id


@asynccontextmanager
async def running_peer(cert: LoopbackCertificate, our_key: SigningKey) -> AsyncIterator[FakePeer]:
    peer = FakePeer(cert, our_key)
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def remote_services(
    tmp_path: Path, pool: asyncpg.Pool, key: SigningKey, **federation: Any
) -> RemoteServices:
    """The real outbound stack; loopback allowed, TLS not verified (self-signed peers)."""
    settings: dict[str, Any] = {"verify_tls": False, "ip_range_allowlist": ["127.0.0.0/8"]}
    data: dict[str, Any] = {
        "server_name": SERVER,
        "data_dir": str(tmp_path),
        "listeners": [{"type": "client", "bind": "127.0.0.1", "port": 0}],
        "federation": {**settings, **federation},
    }
    config = parse_config(data, base_dir=tmp_path)
    return create_remote_services(
        config, pool, key, limits=ClientLimits(timeout_s=5.0, connect_timeout_s=1.0)
    )


@asynccontextmanager
async def running_sender(
    h: Harness,
    remote: RemoteServices,
    pool: asyncpg.Pool,
    *,
    enabled: bool = True,
    backoff: Backoff = FAST_BACKOFF,
    limits: QueueLimits | None = None,
    store: FederationOutboundStore | None = None,
    joined_members: Callable[[str], Awaitable[Mapping[str, str]]] | None = None,
) -> AsyncIterator[FederationSender]:
    sender = FederationSender(
        store=store or FederationOutboundStore(pool),
        client=remote.client,
        stream=h.tracker,
        server_name=SERVER,
        server_policy=remote.server_policy,
        enabled=enabled,
        backoff=backoff,
        limits=limits,
        joined_members=joined_members,
    )
    h.pipeline.add_persisted_hook(sender.on_events_persisted)
    await sender.start()
    try:
        yield sender
    finally:
        await sender.close()
