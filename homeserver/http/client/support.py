"""GET /.well-known/matrix/support (C-S "Server Discovery" > "Getting the support
information", `support.yaml`): the `support` config section; 404 while it is empty."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.config import SupportConfig
from homeserver.errors import MatrixError
from homeserver.http.json_io import json_response


def support_body(config: SupportConfig) -> dict[str, Any] | None:
    """The response, or None when no contact and no page is configured."""
    body: dict[str, Any] = {}
    if config.contacts:
        body["contacts"] = [
            {key: value for key, value in contact.model_dump().items() if value is not None}
            for contact in config.contacts
        ]
    if config.support_page is not None:
        body["support_page"] = config.support_page
    return body or None


def add_routes(router: web.UrlDispatcher, config: SupportConfig) -> None:
    body = support_body(config)

    async def get_support(request: web.Request) -> web.Response:
        if body is None:
            raise MatrixError(404, "M_NOT_FOUND", "No support information is configured")
        return json_response(body)

    router.add_get("/.well-known/matrix/support", get_support)
