"""S2S "Querying Keys Through Another Server": we answer as a notary.

`GET /_matrix/key/v2/query/{serverName}` and `POST /_matrix/key/v2/query` return the queried
servers' key responses, each as the server signed it plus our signature (`keys_query.yaml`).
Our own keys come from our key resource; others from the keyring's cache, refreshed from the
server itself when the cache cannot satisfy the query. A server that cannot be reached gets
its last cached responses, so that old signatures can still be checked (`keys_server.yaml`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import asyncpg
import orjson
from aiohttp import web

from federation.ids import is_valid_server_name
from federation.signing import SigningKey, sign_json
from homeserver.errors import MatrixError
from homeserver.http.json_io import json_response, read_json_object
from homeserver.remote.keyring import Keyring
from homeserver.storage import server_keys

# One POST may not make us contact more servers than this (each lookup may go remote).
MAX_SERVERS_PER_QUERY: Final = 100


class KeyQueryResource:
    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        own_key_response: Callable[[], bytes],
        keyring: Keyring,
        db: asyncpg.Pool,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._server_name = server_name
        self._signing_key = signing_key
        self._own_key_response = own_key_response
        self._keyring = keyring
        self._db = db
        self._clock_ms = clock_ms

    async def query_server(self, request: web.Request) -> web.Response:
        """GET /_matrix/key/v2/query/{serverName}[?minimum_valid_until_ts=…]"""
        server_name = request.match_info["serverName"]
        raw_minimum = request.query.get("minimum_valid_until_ts")
        if raw_minimum is None:
            minimum = self._clock_ms()  # as for POST, see _minimums
        else:
            try:
                minimum = int(raw_minimum)
            except ValueError:
                raise MatrixError(
                    400, "M_INVALID_PARAM", "minimum_valid_until_ts must be an integer"
                ) from None
        return json_response({"server_keys": await self._server_keys(server_name, (), minimum)})

    async def query_batch(self, request: web.Request) -> web.Response:
        """POST /_matrix/key/v2/query with `{"server_keys": {server: {key_id: criteria}}}`."""
        criteria = _parse_batch_criteria(await read_json_object(request))
        now = self._clock_ms()
        lookups = []
        for server_name, by_key in criteria.items():
            minimums = _minimums(by_key, now)
            minimum = max(minimums.values(), default=now)
            lookups.append(self._server_keys(server_name, tuple(minimums), minimum))
        results = await asyncio.gather(*lookups)
        return json_response({"server_keys": [entry for entries in results for entry in entries]})

    async def _server_keys(
        self, server_name: str, key_ids: tuple[str, ...], minimum: int
    ) -> list[dict[str, Any]]:
        if server_name == self._server_name:
            return [orjson.loads(self._own_key_response())]
        if not is_valid_server_name(server_name):
            return []
        responses = await self._cached_responses(server_name)
        if not _satisfies(responses, key_ids, minimum):
            await self._keyring.refresh_direct(server_name)
            responses = await self._cached_responses(server_name)
        # "The notary server must sign the keys returned by the queried server."
        return [
            sign_json(response, self._server_name, self._signing_key) for _, response in responses
        ]

    async def _cached_responses(self, server_name: str) -> list[tuple[int, dict[str, Any]]]:
        return [
            (valid_until_ts, orjson.loads(key_json))
            for valid_until_ts, key_json in await server_keys.get_key_responses(
                self._db, server_name
            )
        ]


def _satisfies(
    responses: list[tuple[int, dict[str, Any]]], key_ids: tuple[str, ...], minimum: int
) -> bool:
    if not any(valid_until_ts >= minimum for valid_until_ts, _ in responses):
        return False
    known: set[str] = set()
    for _, response in responses:
        for field in ("verify_keys", "old_verify_keys"):
            keys = response.get(field)
            if isinstance(keys, dict):
                known.update(keys)
    return all(key_id in known for key_id in key_ids)


def _parse_batch_criteria(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    server_keys_criteria = body.get("server_keys")
    if not isinstance(server_keys_criteria, dict):
        raise MatrixError(400, "M_BAD_JSON", "server_keys must be an object")
    if len(server_keys_criteria) > MAX_SERVERS_PER_QUERY:
        raise MatrixError(
            400, "M_BAD_JSON", f"at most {MAX_SERVERS_PER_QUERY} servers may be queried at once"
        )
    for server_name, by_key in server_keys_criteria.items():
        if not isinstance(by_key, dict):
            raise MatrixError(400, "M_BAD_JSON", f"server_keys.{server_name} must be an object")
        for key_id, criteria in by_key.items():
            if not isinstance(criteria, dict):
                raise MatrixError(
                    400, "M_BAD_JSON", f"server_keys.{server_name}.{key_id} must be an object"
                )
            minimum = criteria.get("minimum_valid_until_ts")
            if minimum is not None and (not isinstance(minimum, int) or isinstance(minimum, bool)):
                raise MatrixError(
                    400,
                    "M_BAD_JSON",
                    f"server_keys.{server_name}.{key_id}.minimum_valid_until_ts must be an integer",
                )
    return server_keys_criteria


def _minimums(by_key: Mapping[str, Mapping[str, Any]], now: int) -> dict[str, int]:
    """Key ID → minimum_valid_until_ts; "If not supplied, the notary server MUST use the
    current time"."""
    minimums: dict[str, int] = {}
    for key_id, criteria in by_key.items():
        minimum = criteria.get("minimum_valid_until_ts")
        minimums[key_id] = now if minimum is None else minimum
    return minimums


def add_routes(router: web.UrlDispatcher, resource: KeyQueryResource) -> None:
    router.add_get("/_matrix/key/v2/query/{serverName}", resource.query_server)
    router.add_post("/_matrix/key/v2/query", resource.query_batch)
