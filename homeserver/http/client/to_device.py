"""PUT /sendToDevice/{eventType}/{txnId} (C-S "Send-to-Device messaging", to_device.yaml).
The rules live in homeserver/services/to_device.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.room_send import device_key
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.to_device import ToDeviceService


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, to_device: ToDeviceService) -> None:
    @auth.user
    async def send_to_device(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        match = request.match_info
        await to_device.send(
            requester.user_id, device_key(requester), match["eventType"], match["txnId"], body
        )
        return json_response({})

    add_client_route(router, "PUT", "/sendToDevice/{eventType}/{txnId}", send_to_device)
