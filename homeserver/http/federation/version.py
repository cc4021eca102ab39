"""S2S "Server implementation": `GET /_matrix/federation/v1/version`."""

from __future__ import annotations

from importlib import metadata
from typing import Final

from aiohttp import web

from homeserver.http.json_io import json_response

SERVER_SOFTWARE_NAME: Final = "Veche"


def server_version() -> str:
    try:
        return metadata.version("veche")
    except metadata.PackageNotFoundError:
        return "unknown"


def add_routes(router: web.UrlDispatcher) -> None:
    body = {"server": {"name": SERVER_SOFTWARE_NAME, "version": server_version()}}

    async def get_version(request: web.Request) -> web.Response:
        return json_response(body)

    router.add_get("/_matrix/federation/v1/version", get_version)
