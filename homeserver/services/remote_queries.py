"""Client API lookups answered by another server: the `RemoteProfileQuery` seam of
homeserver/services/profiles.py (S2S "Querying for information", `GET /v1/query/profile`) and
the `RemotePublicRooms` seam of homeserver/services/room_directory.py (S2S "Public Room
Directory", `GET`/`POST /v1/publicRooms`).

A remote 404 means "no such thing"; an unreachable server or an unusable answer is a 502 to the
client, never a crash.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from federation.ids import server_name_of
from homeserver.errors import MatrixError
from homeserver.remote.client import FederationClient
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.services.room_directory import PublicRoomsQuery

logger = logging.getLogger(__name__)

PROFILE_PATH: Final = "/_matrix/federation/v1/query/profile"
PUBLIC_ROOMS_PATH: Final = "/_matrix/federation/v1/publicRooms"


def _bad_gateway(server: str, what: str, exc: Exception | None = None) -> MatrixError:
    detail = f": {exc}" if exc is not None else ""
    return MatrixError(502, "M_UNKNOWN", f"{server} could not answer {what}{detail}")


class RemoteProfileClient:
    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def __call__(self, user_id: str) -> dict[str, Any] | None:
        """The whole profile of `user_id` from their server; None when it knows no such user."""
        server = server_name_of(user_id)
        try:
            answer = await self._client.get_json(server, PROFILE_PATH, {"user_id": user_id})
        except RemoteError as exc:
            if exc.status == 404:
                return None
            raise _bad_gateway(server, f"the profile of {user_id}", exc) from exc
        except RemoteUnreachable as exc:
            raise _bad_gateway(server, f"the profile of {user_id}", exc) from exc
        if not isinstance(answer, dict):
            logger.info("malformed profile of %s from %s", user_id, server)
            raise _bad_gateway(server, f"the profile of {user_id}")
        return answer


def public_rooms_request(query: PublicRoomsQuery) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """`(POST body, GET query)`: a filter needs the POST form; otherwise GET suffices
    (S2S "Public Room Directory")."""
    params: dict[str, Any] = {}
    if query.limit is not None:
        params["limit"] = query.limit
    if query.since is not None:
        params["since"] = query.since
    if query.search_term is None and query.room_types is None:
        return None, params
    filter_: dict[str, Any] = {}
    if query.search_term is not None:
        filter_["generic_search_term"] = query.search_term
    if query.room_types is not None:
        filter_["room_types"] = list(query.room_types)
    return {**params, "filter": filter_}, {}


class RemotePublicRoomsClient:
    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def __call__(self, server: str, query: PublicRoomsQuery) -> dict[str, Any]:
        """`server`'s published rooms, in the client API's response shape (the same one)."""
        body, params = public_rooms_request(query)
        try:
            if body is None:
                answer = await self._client.get_json(server, PUBLIC_ROOMS_PATH, params)
            else:
                answer = await self._client.post_json(server, PUBLIC_ROOMS_PATH, body)
        except RemoteError as exc:
            raise _bad_gateway(server, "its public rooms", exc) from exc
        except RemoteUnreachable as exc:
            raise _bad_gateway(server, "its public rooms", exc) from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list):
            logger.info("malformed public rooms list from %s", server)
            raise _bad_gateway(server, "its public rooms")
        answer["chunk"] = [room for room in answer["chunk"] if isinstance(room, dict)]
        return answer
