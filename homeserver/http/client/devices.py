"""Device management: `GET /devices`, `GET/PUT/DELETE /devices/{deviceId}`,
`POST /delete_devices` (C-S "Device Management", device_management.yaml).

Deleting devices logs them out, so it asks for the user's password again (UIA), as the
module's security considerations advise. Deleting a device that does not exist succeeds
("The device was successfully removed, or had been removed previously").
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import optional_str, required_str_list
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.accounts import AccountService
from homeserver.services.auth import Requester
from homeserver.services.uia import UserInteractiveAuth
from homeserver.storage.accounts import Device


def device_json(device: Device) -> dict[str, Any]:
    """definitions/client_device.yaml.

    Unknown values are null rather than absent: that is what Synapse sends, and clients such
    as matrix-nio reject device entries that lack any of the four keys.
    """
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }


async def _body_or_empty(request: web.Request) -> dict[str, Any]:
    """DELETE bodies: clients often send none on the first (UIA-less) attempt."""
    if not request.body_exists:
        return {}
    return await read_json_object(request)


def add_routes(
    router: web.UrlDispatcher,
    auth: ClientAuth,
    accounts: AccountService,
    uia: UserInteractiveAuth,
) -> None:
    @auth.user
    async def list_devices(request: web.Request, requester: Requester) -> web.Response:
        devices = await accounts.devices(requester.user_id)
        return json_response({"devices": [device_json(device) for device in devices]})

    @auth.user
    async def get_device(request: web.Request, requester: Requester) -> web.Response:
        device = await accounts.device(requester.user_id, request.match_info["deviceId"])
        return json_response(device_json(device))

    @auth.user
    async def put_device(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        device_id = request.match_info["deviceId"]
        display_name = optional_str(body, "display_name")
        if display_name is None:
            # "If not given, the display name is unchanged" — the device must still exist.
            await accounts.device(requester.user_id, device_id)
        else:
            await accounts.rename_device(requester.user_id, device_id, display_name)
        return json_response({})

    async def authenticate(body: dict[str, Any], requester: Requester) -> None:
        await uia.authenticate(
            body,
            operation="delete_devices",
            flows=await uia.flows_for_user(requester.user_id),
            user_id=requester.user_id,
        )

    # Rate limited: each UIA attempt may be a password guess.
    @auth.user(ratelimit=True)
    async def delete_device(request: web.Request, requester: Requester) -> web.Response:
        body = await _body_or_empty(request)
        await authenticate(body, requester)
        await accounts.delete_devices(requester.user_id, [request.match_info["deviceId"]])
        return json_response({})

    @auth.user(ratelimit=True)
    async def delete_devices(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        device_ids = required_str_list(body, "devices")
        if len(device_ids) > 1000:
            raise MatrixError(400, "M_INVALID_PARAM", "At most 1000 devices at a time")
        await authenticate(body, requester)
        await accounts.delete_devices(requester.user_id, device_ids)
        return json_response({})

    add_client_route(router, "GET", "/devices", list_devices)
    add_client_route(router, "GET", "/devices/{deviceId}", get_device)
    add_client_route(router, "PUT", "/devices/{deviceId}", put_device)
    add_client_route(router, "DELETE", "/devices/{deviceId}", delete_device)
    add_client_route(router, "POST", "/delete_devices", delete_devices)
