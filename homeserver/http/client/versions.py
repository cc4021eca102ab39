"""Server discovery for clients: `/_matrix/client/versions` and the `.well-known` files.

C-S "Server Discovery" (`/.well-known/matrix/client`), "API Versions" (`/versions`) and S2S
"Resolving server names" (`/.well-known/matrix/server`).
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from federation.ids import parse_server_name
from homeserver.config import Config
from homeserver.http.json_io import json_response

# The spec versions Veche implements (C-S "API Versions"): every release from v1.1 to v1.19.
SUPPORTED_SPEC_VERSIONS: Final = tuple(f"v1.{minor}" for minor in range(1, 20))


def client_base_url(config: Config) -> str:
    """`public_baseurl`, or the first client listener reached under the server name's host."""
    if config.public_baseurl is not None:
        return config.public_baseurl.rstrip("/")
    listener = next(listener for listener in config.listeners if listener.type == "client")
    host, _ = parse_server_name(config.server_name)
    scheme = "https" if listener.tls_certificate is not None else "http"
    return f"{scheme}://{host}:{listener.port}"


def delegated_server_name(config: Config) -> str | None:
    """Where peers reach our federation listener, or None if we do not federate."""
    if not config.federation.enabled:
        return None
    host, port = parse_server_name(config.server_name)
    if port is not None:
        return config.server_name  # peers use host:port directly; nothing to delegate
    for listener in config.listeners:
        if listener.type == "federation":
            return f"{host}:{listener.port}"
    return None


def add_routes(router: web.UrlDispatcher, config: Config) -> None:
    versions_body: dict[str, Any] = {
        "versions": list(SUPPORTED_SPEC_VERSIONS),
        "unstable_features": {},
    }
    client_well_known = {"m.homeserver": {"base_url": client_base_url(config)}}
    server_delegation = delegated_server_name(config)

    async def get_versions(request: web.Request) -> web.Response:
        return json_response(versions_body)

    async def get_well_known_client(request: web.Request) -> web.Response:
        return json_response(client_well_known)

    async def get_well_known_server(request: web.Request) -> web.Response:
        if server_delegation is None:
            return json_response(
                {"errcode": "M_NOT_FOUND", "error": "This server does not federate"}, 404
            )
        return json_response({"m.server": server_delegation})

    router.add_get("/_matrix/client/versions", get_versions)
    router.add_get("/.well-known/matrix/client", get_well_known_client)
    router.add_get("/.well-known/matrix/server", get_well_known_server)
