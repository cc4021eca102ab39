"""S2S "Publishing Keys": `GET /_matrix/key/v2/server`, our keys signed by ourselves.

The `/_matrix/key/v2/server/{keyId}` form was removed in spec v1.6, but older servers (and
SyTest's fake servers) still fetch keys that way; it answers with the same full response, as the
spec then allowed ("the response contains all the keys").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Final

import orjson
from aiohttp import web

from federation.keys import build_server_keys
from federation.signing import SigningKey

# The signed body is rebuilt at most this often; it stays valid far longer (key_valid_for).
_REBUILD_EVERY_MS: Final = 60 * 60 * 1000


class ServerKeysResource:
    """Builds and caches the signed key response.

    `valid_until_ts` lies `valid_for` ahead of when the body was built; the spec caps what
    peers accept at 7 days (S2S "Publishing Keys"), the config validates the same bound.
    """

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        valid_for: timedelta,
        old_verify_keys: Mapping[str, tuple[str, int]],
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._server_name = server_name
        self._signing_key = signing_key
        self._valid_for_ms = int(valid_for.total_seconds() * 1000)
        self._old_verify_keys = dict(old_verify_keys)
        self._clock_ms = clock_ms
        self._cached: tuple[int, bytes] | None = None

    def body(self) -> bytes:
        now = self._clock_ms()
        if self._cached is None or now - self._cached[0] >= _REBUILD_EVERY_MS:
            signed = build_server_keys(
                self._server_name,
                self._signing_key,
                now + self._valid_for_ms,
                self._old_verify_keys,
            )
            self._cached = (now, orjson.dumps(signed))
        return self._cached[1]

    async def get_server_keys(self, request: web.Request) -> web.Response:
        return web.Response(body=self.body(), content_type="application/json")


def add_routes(router: web.UrlDispatcher, resource: ServerKeysResource) -> None:
    router.add_get("/_matrix/key/v2/server", resource.get_server_keys)
    # Deprecated (removed in v1.6): the keyId is ignored, all current keys are returned.
    router.add_get("/_matrix/key/v2/server/{keyId}", resource.get_server_keys)
