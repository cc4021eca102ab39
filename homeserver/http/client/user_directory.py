"""POST /user_directory/search (C-S "User directory", `users.yaml`)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import required_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.storage.user_directory import DirectoryEntry, UserDirectoryStore

# users.yaml: "The maximum number of results to return. Defaults to 10."
DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 100
MAX_TERM_LENGTH: Final = 256


def entry_json(entry: DirectoryEntry) -> dict[str, Any]:
    result: dict[str, Any] = {"user_id": entry.user_id}
    if entry.display_name is not None:
        result["display_name"] = entry.display_name
    if entry.avatar_url is not None:
        result["avatar_url"] = entry.avatar_url
    return result


def parse_search_limit(body: dict[str, Any]) -> int:
    limit = body.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise MatrixError(400, "M_BAD_JSON", "'limit' must be an integer")
    if limit < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "'limit' must not be negative")
    return min(limit, MAX_LIMIT)


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, directory: UserDirectoryStore) -> None:
    @auth.user(ratelimit=True)
    async def search(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        term = required_str(body, "search_term")[:MAX_TERM_LENGTH]
        limit = parse_search_limit(body)
        found = await directory.search(requester.user_id, term, limit + 1)
        return json_response(
            {"results": [entry_json(e) for e in found[:limit]], "limited": len(found) > limit}
        )

    add_client_route(router, "POST", "/user_directory/search", search)
