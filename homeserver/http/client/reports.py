"""Reporting content: POST /rooms/{roomId}/report/{eventId}, POST /rooms/{roomId}/report
(v1.13) and POST /users/{userId}/report (v1.14) (C-S "Reporting Content",
`report_content.yaml`). The rules are in homeserver/services/reports.py.

`reason` is required for rooms and users ("May be blank") and optional for events; the
removed (v1.18) `score` of event reports is ignored. Reports are rate limited per user.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.body import optional_str, required_str
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.reports import ReportService


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, reports: ReportService) -> None:
    @auth.user(ratelimit=True)
    async def report_event(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        match = request.match_info
        await reports.report_event(
            requester.user_id, match["roomId"], match["eventId"], optional_str(body, "reason")
        )
        return json_response({})

    @auth.user(ratelimit=True)
    async def report_room(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        reason = required_str(body, "reason")
        await reports.report_room(requester.user_id, request.match_info["roomId"], reason)
        return json_response({})

    @auth.user(ratelimit=True)
    async def report_user(request: web.Request, requester: Requester) -> web.Response:
        body = await read_json_object(request)
        reason = required_str(body, "reason")
        await reports.report_user(requester.user_id, request.match_info["userId"], reason)
        return json_response({})

    add_client_route(router, "POST", "/rooms/{roomId}/report/{eventId}", report_event)
    add_client_route(router, "POST", "/rooms/{roomId}/report", report_room)
    add_client_route(router, "POST", "/users/{userId}/report", report_user)
