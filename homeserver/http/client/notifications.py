"""`GET /notifications` (C-S "Listing notifications", notifications.yaml)."""

from __future__ import annotations

import time
from typing import Any, Final

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response
from homeserver.services.auth import Requester
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_events import EventView, client_event
from homeserver.storage.push_data import PushDataStore

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100


def _int_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{name}' must be a non-negative integer")
    return int(value)


def add_routes(
    router: web.UrlDispatcher, auth: ClientAuth, store: PushDataStore, state: RoomStateCache
) -> None:
    @auth.user
    async def get_notifications(request: web.Request, requester: Requester) -> web.Response:
        before = _int_param(request.query.get("from"), "from")
        limit = _int_param(request.query.get("limit"), "limit") or DEFAULT_LIMIT
        only = request.query.get("only")
        rows = await store.get_notifications(
            requester.user_id, before, min(limit, MAX_LIMIT), only == "highlight"
        )
        events = await state.get_events(row.event_id for row in rows)
        now_ms = int(time.time() * 1000)
        notifications: list[dict[str, Any]] = []
        for row in rows:
            event = events.get(row.event_id)
            if event is None:
                continue
            notifications.append(
                {
                    "actions": row.actions,
                    "event": client_event(
                        EventView(event, row.stream_ordering), now_ms, with_room_id=True
                    ),
                    "read": row.read,
                    "room_id": row.room_id,
                    "ts": row.ts,
                }
            )
        body: dict[str, Any] = {"notifications": notifications}
        if len(rows) == min(limit, MAX_LIMIT) and rows:
            body["next_token"] = str(rows[-1].stream_ordering)
        return json_response(body)

    add_client_route(router, "GET", "/notifications", get_notifications)
