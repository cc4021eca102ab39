"""`GET /sync` (C-S "Syncing", sync.yaml)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.presence import PresenceService
from homeserver.services.sync import SyncRequest, SyncService
from homeserver.services.sync_filters import SyncFilters
from homeserver.services.sync_token import SyncToken

PRESENCE_STATES: Final = frozenset({"online", "offline", "unavailable"})


def parse_bool_param(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value in ("true", "false"):
        return value == "true"
    raise MatrixError(400, "M_INVALID_PARAM", f"'{name}' must be true or false")


def parse_timeout(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise MatrixError(400, "M_INVALID_PARAM", "'timeout' must be a non-negative integer")
    return int(value)


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    sync: SyncService,
    filters: SyncFilters,
    presence: PresenceService | None = None,
) -> None:
    @auth.user
    async def get_sync(request: web.Request, requester: Requester) -> web.Response:
        query = request.query
        set_presence = query.get("set_presence")
        if set_presence is not None and set_presence not in PRESENCE_STATES:
            raise MatrixError(
                400, "M_INVALID_PARAM", "'set_presence' must be online, offline or unavailable"
            )
        since = query.get("since")
        sync_request = SyncRequest(
            user_id=requester.user_id,
            device_id=requester.device_id,
            sync_filter=await filters.resolve(requester.user_id, query.get("filter")),
            since=SyncToken.parse(since) if since else None,
            full_state=parse_bool_param(query.get("full_state"), "full_state"),
            timeout_ms=parse_timeout(query.get("timeout")),
        )
        if presence is None:
            return json_response(await sync.sync(sync_request))
        # C-S "Presence": a syncing user is online unless set_presence says otherwise.
        async with presence.syncing(requester.user_id, set_presence):
            return json_response(await sync.sync(sync_request))

    add_client_route(router, "GET", "/sync", get_sync)
