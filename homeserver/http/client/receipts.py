"""Receipts and read markers (C-S "Receipts", "Read and unread markers"; receipts.yaml,
read_markers.yaml)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.account_data import room_id_param
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.receipts import ReceiptsService, parse_thread_id


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, receipts: ReceiptsService) -> None:
    @auth.user(ratelimit=True)
    async def post_receipt(request: web.Request, requester: Requester) -> web.Response:
        room_id = room_id_param(request)
        receipt_type = request.match_info["receiptType"]
        # The body is required by the spec, but older clients send none: treat it as {}.
        body = await read_json_object(request) if request.can_read_body else {}
        thread_id = parse_thread_id(body, receipt_type)
        await receipts.post_receipt(
            requester.user_id, room_id, receipt_type, request.match_info["eventId"], thread_id
        )
        return json_response({})

    @auth.user(ratelimit=True)
    async def post_read_markers(request: web.Request, requester: Requester) -> web.Response:
        room_id = room_id_param(request)
        body = await read_json_object(request)
        await receipts.set_read_markers(requester.user_id, room_id, body)
        return json_response({})

    add_client_route(
        router, "POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", post_receipt
    )
    add_client_route(router, "POST", "/rooms/{roomId}/read_markers", post_read_markers)
