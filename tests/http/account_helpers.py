"""The real application on an ephemeral port, and a tiny client, for the account tests.

Password hashing stays argon2id but with `CHEAP_COST` in the test server (the production
cost, tens of milliseconds per hash on the shared test machine, would dominate the run time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from federation.signing import generate_signing_key
from homeserver.app import Dependencies, build_dependencies, build_listener_apps
from homeserver.config import parse_config
from homeserver.server import start_listeners, stop_listeners
from homeserver.services.passwords import CHEAP_COST, PasswordHashing
from homeserver.storage.migrations import latest_version, load_migrations

SERVER_NAME = "accounts.test"
CLIENT_V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery staple"


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


@dataclass
class Client:
    http: aiohttp.ClientSession
    base_url: str
    deps: Dependencies

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        query: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        """`path` is relative to /_matrix/client/v3 unless it starts with /_."""
        url = self.base_url + (path if path.startswith("/_") else CLIENT_V3 + path)
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        async with self.http.request(
            method, url, data=data, headers=headers, params=query
        ) as response:
            text = await response.read()
            parsed = orjson.loads(text) if text else None
            return Reply(response.status, parsed, response.headers)

    async def register(self, username: str, password: str | None = PASSWORD, **extra: Any) -> Any:
        """Open registration through the m.login.dummy UIA flow; the 200 body."""
        body: dict[str, Any] = {"username": username, **extra}
        if password is not None:
            body["password"] = password
        challenge = await self.call("POST", "/register", body)
        assert challenge.status == 401, challenge.body
        body["auth"] = {"type": "m.login.dummy", "session": challenge.body["session"]}
        done = await self.call("POST", "/register", body)
        assert done.status == 200, done.body
        return done.body

    async def login(self, user: str, password: str = PASSWORD, **extra: Any) -> Reply:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            **extra,
        }
        return await self.call("POST", "/login", body)

    async def whoami(self, token: str) -> Reply:
        return await self.call("GET", "/account/whoami", token=token)


def accounts_config(tmp_path: Path, dsn: str, **extra: Any) -> Any:
    return parse_config(
        {
            "server_name": SERVER_NAME,
            "data_dir": str(tmp_path),
            "signing_key_path": str(tmp_path / "signing.key"),
            "database": {"dsn": dsn, "min_connections": 1, "max_connections": 4},
            "listeners": [{"type": "client", "bind": "127.0.0.1", "port": 0}],
            "federation": {"enabled": False},
            "registration": {"enabled": True},
            "rate_limits": {"enabled": False},
            # Presence updates wake room members' long-polls; the presence tests turn it on.
            "presence": {"enabled": False},
            **extra,
        },
        base_dir=tmp_path,
    )


@asynccontextmanager
async def running_server(
    tmp_path: Path, dsn: str, pool: asyncpg.Pool, **config: Any
) -> AsyncIterator[Client]:
    deps = await build_dependencies(
        accounts_config(tmp_path, dsn, **config),
        pool,
        generate_signing_key(),
        latest_version(load_migrations()),
        password_hashing=PasswordHashing(CHEAP_COST),
    )
    runners = await start_listeners(build_listener_apps(deps), deps.config)
    port = int(runners[0].addresses[0][1])
    try:
        async with aiohttp.ClientSession() as http:
            yield Client(http, f"http://127.0.0.1:{port}", deps)
    finally:
        await stop_listeners(runners)
        deps.password_hashing.close()
