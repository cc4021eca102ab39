"""What guest accounts may call (C-S "Guest Access", "Client behaviour").

A guest's access token works only on the endpoints listed there; every other endpoint that
needs authentication answers 403 `M_GUEST_ACCESS_FORBIDDEN`. A few endpoints are added that
the spec's list leaves out but a guest client needs to use the listed ones, as Synapse allows
them too: filters (for /sync), `POST /join/{roomIdOrAlias}`, the legacy POST send form, typing,
receipts and read markers, `/joined_rooms`, and logging out. Endpoints whose authentication is
optional (profile reads, the public room list) are never restricted.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from homeserver.errors import MatrixError

# (method, path after /_matrix/client/{version}) as the routes are registered.
GUEST_ENDPOINTS: Final = frozenset(
    {
        # Retrieving events.
        ("GET", "/rooms/{roomId}/state"),
        ("GET", "/rooms/{roomId}/context/{eventId}"),
        ("GET", "/rooms/{roomId}/event/{eventId}"),
        ("GET", "/rooms/{roomId}/state/{eventType}"),
        ("GET", "/rooms/{roomId}/state/{eventType}/{stateKey}"),
        ("GET", "/rooms/{roomId}/messages"),
        ("GET", "/rooms/{roomId}/members"),
        ("GET", "/rooms/{roomId}/initialSync"),
        ("GET", "/sync"),
        ("GET", "/events"),
        # Sending events.
        ("POST", "/rooms/{roomId}/join"),
        ("POST", "/rooms/{roomId}/leave"),
        ("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}"),
        ("PUT", "/rooms/{roomId}/state/{eventType}"),
        ("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey}"),
        ("PUT", "/sendToDevice/{eventType}/{txnId}"),
        # Account maintenance (the profile only for `displayname`, checked below).
        ("PUT", "/profile/{userId}/{keyName}"),
        ("DELETE", "/profile/{userId}/{keyName}"),
        ("GET", "/devices"),
        ("GET", "/devices/{deviceId}"),
        ("PUT", "/devices/{deviceId}"),
        ("GET", "/account/whoami"),
        # End-to-end encryption.
        ("POST", "/keys/upload"),
        ("POST", "/keys/query"),
        ("POST", "/keys/claim"),
        # Not in the spec's list; needed alongside it (see the module docstring).
        ("POST", "/user/{userId}/filter"),
        ("GET", "/user/{userId}/filter/{filterId}"),
        ("POST", "/join/{roomIdOrAlias}"),
        ("POST", "/rooms/{roomId}/send/{eventType}"),
        ("PUT", "/rooms/{roomId}/typing/{userId}"),
        ("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}"),
        ("POST", "/rooms/{roomId}/read_markers"),
        ("GET", "/joined_rooms"),
        ("POST", "/logout"),
    }
)

_CLIENT_PREFIX: Final = re.compile(r"^/_matrix/client/[^/]+")


def _endpoint(request: web.Request) -> tuple[str, str] | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return request.method, _CLIENT_PREFIX.sub("", resource.canonical, count=1)


def check_guest_allowed(request: web.Request) -> None:
    """403 `M_GUEST_ACCESS_FORBIDDEN` unless a guest may call this endpoint."""
    endpoint = _endpoint(request)
    if endpoint not in GUEST_ENDPOINTS:
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed here")
    # "Guest users may only modify their display name; other profile fields may not be changed."
    if endpoint[1] == "/profile/{userId}/{keyName}" and (
        request.match_info.get("keyName") != "displayname"
    ):
        raise MatrixError(
            403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may only change their display name"
        )
