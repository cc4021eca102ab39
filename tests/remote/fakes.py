"""Fakes for homeserver/remote tests: a remote homeserver on loopback (key endpoint built with
federation.keys, an endpoint that checks our X-Matrix signature, misbehaving endpoints), and the
`World` of servers, DNS and clients a test runs in."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from federation.keys import build_server_keys
from federation.signing import SignatureError, SigningKey, generate_signing_key
from federation.xmatrix import XMatrixError, parse_authorization_header, verify_request
from homeserver.remote.client import ClientLimits, FederationClient
from homeserver.remote.discovery import DnsSrvLookup, ServerResolver
from homeserver.remote.ipfilter import IpRangePolicy, filtered_connector
from homeserver.remote.keyring import Keyring, OwnKeys
from homeserver.remote.policy import ServerPolicy
from homeserver.remote.well_known import WellKnownResolver
from tests.remote.support import FakeDnsServer, LoopbackCertificate, StaticResolver

OUR_NAME = "origin.test"
OUR_KEY = generate_signing_key("ours")
DAY_MS = 24 * 3600 * 1000
LOOPBACK = ["127.0.0.0/8"]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class FakeHomeserver:
    """A remote homeserver on loopback: its key endpoint, an endpoint that checks our
    X-Matrix signature, and a few misbehaving endpoints. `server_name` is `host:port`."""

    host: str
    key: SigningKey
    port: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    # Other server names this server answers to (reached through SRV records).
    aliases: set[str] = field(default_factory=set)
    # Replaces the key response when set (tampering, outages).
    key_response: Callable[[FakeHomeserver], web.Response] | None = None
    # Answers /_matrix/key/v2/query when set (a notary).
    notary: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def server_name(self) -> str:
        return f"{self.host}:{self.port}"

    def signed_keys(self, valid_for_ms: int = DAY_MS) -> dict[str, Any]:
        return build_server_keys(self.server_name, self.key, now_ms() + valid_for_ms)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_matrix/key/v2/server", self._keys)
        app.router.add_post("/_matrix/key/v2/query", self._query)
        app.router.add_route("*", "/_matrix/federation/v1/echo/{rest:.*}", self._echo)
        app.router.add_get("/_matrix/federation/v1/forbidden", self._forbidden)
        app.router.add_get("/_matrix/federation/v1/html", self._html)
        app.router.add_get("/_matrix/federation/v1/huge", self._huge)
        app.router.add_get("/_matrix/federation/v1/slow", self._slow)
        return app

    async def _keys(self, request: web.Request) -> web.Response:
        self.requests["keys"] += 1
        if self.key_response is not None:
            return self.key_response(self)
        return web.json_response(self.signed_keys())

    async def _query(self, request: web.Request) -> web.Response:
        self.requests["query"] += 1
        assert self.notary is not None
        return web.json_response(self.notary(await request.json()))

    async def _echo(self, request: web.Request) -> web.Response:
        """Checks the X-Matrix header as a receiving server would (S2S "Request
        Authentication"), knowing our public key."""
        self.requests["echo"] += 1
        content = await request.json() if request.can_read_body else None
        try:
            auth = parse_authorization_header(request.headers.get("Authorization", ""))
            assert auth.origin == OUR_NAME and auth.key_id == OUR_KEY.key_id
            names = {self.server_name, *self.aliases}
            destination = auth.destination if auth.destination in names else self.server_name
            verify_request(
                auth, request.method, request.raw_path, destination, content, OUR_KEY.public_key
            )
        except (XMatrixError, SignatureError, AssertionError) as exc:
            return web.json_response({"errcode": "M_UNAUTHORIZED", "error": str(exc)}, status=401)
        return web.json_response(
            {"uri": request.raw_path, "host": request.host, "content": content}
        )

    async def _forbidden(self, request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_FORBIDDEN", "error": "go away"}, status=403)

    async def _html(self, request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse early
        await response.prepare(request)
        await response.write(b"[")
        for _ in range(100):
            await response.write(b"0," * 500)
        await response.write(b"0]")
        await response.write_eof()
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({})


@dataclass
class World:
    cert: LoopbackCertificate
    remote: FakeHomeserver
    notary: FakeHomeserver
    dns: FakeDnsServer
    closed_port: int  # nothing listens here: the .well-known lookups fail fast
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    def client(
        self,
        *,
        allowlist: list[str] | None = None,
        server_policy: ServerPolicy | None = None,
        limits: ClientLimits | None = None,
        tls: Any = None,
    ) -> FederationClient:
        ip_policy = IpRangePolicy(LOOPBACK if allowlist is None else allowlist)
        names = {name: ["127.0.0.1"] for name in ("remote.test", "notary.test", "target.test")}
        session = aiohttp.ClientSession(
            connector=filtered_connector(ip_policy, StaticResolver(names))
        )
        self.sessions.append(session)
        tls = self.cert.client_context() if tls is None else tls
        resolver = ServerResolver(
            WellKnownResolver(session, tls=tls, port=self.closed_port),
            DnsSrvLookup(self.dns.resolver()),
        )
        return FederationClient(
            server_name=OUR_NAME,
            signing_key=OUR_KEY,
            session=session,
            resolver=resolver,
            server_policy=server_policy or ServerPolicy(),
            ip_policy=ip_policy,
            tls=tls,
            limits=limits,
        )

    def keyring(
        self, pool: asyncpg.Pool, client: FederationClient | None = None, **options: Any
    ) -> Keyring:
        return Keyring(
            own=OwnKeys(OUR_NAME, OUR_KEY),
            db=pool,
            requester=client or self.client(),
            **options,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
