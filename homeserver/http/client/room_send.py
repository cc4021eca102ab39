"""Sending events: PUT /rooms/{roomId}/send/{eventType}/{txnId}, PUT /rooms/{roomId}/state/
{eventType}/{stateKey} (the state key and its slash optional when empty), PUT /rooms/{roomId}/
redact/{eventId}/{txnId} (C-S "Sending events to a room", "Redactions").

The legacy `POST /rooms/{roomId}/send/{eventType}` and `POST /rooms/{roomId}/redact/{eventId}`
(no transaction ID; r0-era clients, SyTest and Synapse still use them) behave as the PUT forms
with a fresh server-side transaction ID, so each POST is a new event.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import optional_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.room_send import RoomSendService


def device_key(requester: Requester) -> str:
    """The scope of a transaction ID: the device (C-S "Transaction identifiers"), or for a
    token without a device, the token."""
    if requester.device_id is not None:
        return requester.device_id
    return f"token:{requester.access_token_id}"


def txn_id_of(request: web.Request) -> str:
    """The path's txnId, or for the legacy POST forms a fresh one no client can send twice."""
    txn_id = request.match_info.get("txnId")
    if txn_id is not None:
        return txn_id
    return f"post:{secrets.token_urlsafe(18)}"


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, sending: RoomSendService) -> None:
    @auth.user(ratelimit=True)
    async def send_message(request: web.Request, requester: Requester) -> web.Response:
        content = await read_json_object(request)
        match = request.match_info
        event_id = await sending.send_message_event(
            requester.user_id,
            device_key(requester),
            requester.is_admin,
            match["roomId"],
            match["eventType"],
            txn_id_of(request),
            content,
        )
        return json_response({"event_id": event_id})

    @auth.user(ratelimit=True)
    async def send_state(request: web.Request, requester: Requester) -> web.Response:
        content = await read_json_object(request)
        match = request.match_info
        event_id = await sending.send_state_event(
            requester.user_id,
            match["roomId"],
            match["eventType"],
            match.get("stateKey", ""),
            content,
        )
        return json_response({"event_id": event_id})

    @auth.user(ratelimit=True)
    async def redact(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        match = request.match_info
        event_id = await sending.redact_event(
            requester.user_id,
            device_key(requester),
            requester.is_admin,
            match["roomId"],
            match["eventId"],
            txn_id_of(request),
            optional_str(body, "reason"),
        )
        return json_response({"event_id": event_id})

    add_client_route(router, "PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", send_message)
    # room_state.yaml: "When an empty string, the trailing slash on this endpoint is optional."
    add_client_route(router, "PUT", "/rooms/{roomId}/state/{eventType}", send_state)
    add_client_route(
        router, "PUT", "/rooms/{roomId}/state/{eventType}/{stateKey:[^/]*}", send_state
    )
    add_client_route(router, "PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", redact)
    # Legacy forms without a transaction ID (see the module docstring).
    add_client_route(router, "POST", "/rooms/{roomId}/send/{eventType}", send_message)
    add_client_route(router, "POST", "/rooms/{roomId}/redact/{eventId}", redact)
