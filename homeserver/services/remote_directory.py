"""Resolving a room alias of another server: the `RemoteDirectoryQuery` seam of
homeserver/services/aliases.py over S2S "Querying for information" (`GET /v1/query/directory`).
"""

from __future__ import annotations

import logging
from typing import Any

from federation.ids import is_valid_room_id, server_name_of
from homeserver.errors import MatrixError
from homeserver.remote.client import FederationClient
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.services.aliases import ResolvedAlias

logger = logging.getLogger(__name__)


def parse_directory_response(answer: Any) -> ResolvedAlias | None:
    """`{"room_id": ..., "servers": [...]}`; None when the answer is not of that shape."""
    if not isinstance(answer, dict):
        return None
    room_id = answer.get("room_id")
    if not isinstance(room_id, str) or not is_valid_room_id(room_id):
        return None
    servers = answer.get("servers")
    if not isinstance(servers, list):
        servers = []
    return ResolvedAlias(room_id, [s for s in servers if isinstance(s, str)])


class RemoteDirectoryClient:
    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def __call__(self, alias: str) -> ResolvedAlias | None:
        """Ask the alias's server; None for its 404 (no such alias), a 502 when it cannot be
        asked. The alias's server is kept as a join candidate when it does not list itself."""
        server = server_name_of(alias)
        try:
            answer = await self._client.get_json(
                server, "/_matrix/federation/v1/query/directory", {"room_alias": alias}
            )
        except RemoteError as exc:
            if exc.status == 404:
                return None
            raise MatrixError(
                502, "M_UNKNOWN", f"{server} could not resolve {alias}: {exc}"
            ) from exc
        except RemoteUnreachable as exc:
            raise MatrixError(502, "M_UNKNOWN", f"Could not reach {server}: {exc}") from exc
        resolved = parse_directory_response(answer)
        if resolved is None:
            logger.info("malformed directory answer from %s for %s", server, alias)
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered badly for {alias}")
        if server not in resolved.servers:
            resolved.servers.append(server)
        return resolved
