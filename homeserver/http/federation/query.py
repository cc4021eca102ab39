"""S2S "Querying for information": `GET /v1/query/directory` and `GET /v1/query/profile`.

Only this server's own aliases and users are answered; anything else is 404 M_NOT_FOUND.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from federation.ids import is_valid_room_alias, is_valid_user_id, server_name_of
from homeserver.errors import MatrixError
from homeserver.http.federation.auth import FederationAuth, FederationRequest
from homeserver.http.json_io import json_response

PREFIX = "/_matrix/federation/v1/query"


class AliasResolver(Protocol):
    """homeserver/services/aliases.py `AliasService`."""

    async def resolve_alias(self, alias: str) -> Any: ...


class ProfileReader(Protocol):
    """homeserver/services/profiles.py `ProfileService` (404 for unknown users)."""

    async def get_profile(self, user_id: str) -> dict[str, Any]: ...


def _required(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing query parameter {name}")
    return value


def add_routes(
    router: web.UrlDispatcher,
    auth: FederationAuth,
    server_name: str,
    aliases: AliasResolver,
    profiles: ProfileReader,
) -> None:
    def is_ours(identifier: str) -> bool:
        return server_name_of(identifier) == server_name

    @auth
    async def query_directory(request: web.Request, fed: FederationRequest) -> web.Response:
        alias = _required(request, "room_alias")
        if not is_valid_room_alias(alias):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias")
        if not is_ours(alias):
            raise MatrixError(404, "M_NOT_FOUND", "Room alias not found")
        resolved = await aliases.resolve_alias(alias)
        return json_response({"room_id": resolved.room_id, "servers": list(resolved.servers)})

    @auth
    async def query_profile(request: web.Request, fed: FederationRequest) -> web.Response:
        user_id = _required(request, "user_id")
        if not is_valid_user_id(user_id, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
        if not is_ours(user_id):
            raise MatrixError(404, "M_NOT_FOUND", "User not found")
        profile = await profiles.get_profile(user_id)
        field = request.query.get("field")
        if field is None:
            return json_response(profile)
        if field not in profile:
            raise MatrixError(404, "M_NOT_FOUND", f"Profile field {field} not set")
        return json_response({field: profile[field]})

    router.add_get(PREFIX + "/directory", query_directory)
    router.add_get(PREFIX + "/profile", query_profile)
