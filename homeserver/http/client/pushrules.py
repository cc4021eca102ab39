"""The push rules API (C-S "Push Rules: API", pushrules.yaml).

Besides the spec's endpoints, `GET /pushrules/global/{kind}/` lists the rules of one kind (an
older spec endpoint; Synapse and SyTest still use it). Partial paths under `/pushrules/` (no
kind, no rule ID, an unknown attribute) address the push rules API with a missing or bad
parameter, so they answer 400 M_INVALID_PARAM rather than 404 M_UNRECOGNIZED; `GET /pushrules`
without the trailing slash is not an endpoint at all (404), as in the spec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.client.auth_helpers import ClientAuth
from homeserver.http.client.routing import add_client_route
from homeserver.http.json_io import json_response, read_json_object
from homeserver.services.auth import Requester
from homeserver.services.push import PushService
from homeserver.services.push_rules import RULE_KINDS, RuleKind
from homeserver.services.push_rules_edit import PushRuleError, get_rule, parse_kind

RuleHandler = Callable[[web.Request, Requester, RuleKind, str], Awaitable[web.Response]]


def _check_scope(request: web.Request) -> None:
    if request.match_info["scope"] != "global":
        raise MatrixError(400, "M_INVALID_PARAM", "Only the 'global' scope exists")


def _parse_kind(request: web.Request) -> RuleKind:
    try:
        return parse_kind(request.match_info["kind"])
    except PushRuleError as e:
        raise MatrixError(e.status, e.errcode, e.message) from None


def _rule_route(
    handler: RuleHandler,
) -> Callable[[web.Request, Requester], Awaitable[web.Response]]:
    """Parse `{scope}/{kind}/{ruleId}` and turn push rule errors into Matrix errors."""

    async def wrapper(request: web.Request, requester: Requester) -> web.Response:
        _check_scope(request)
        kind = _parse_kind(request)
        try:
            return await handler(request, requester, kind, request.match_info["ruleId"])
        except PushRuleError as e:
            raise MatrixError(e.status, e.errcode, e.message) from None

    return wrapper


def add_routes(router: web.UrlDispatcher, auth: ClientAuth, push: PushService) -> None:
    @auth.user
    async def get_all(request: web.Request, requester: Requester) -> web.Response:
        return json_response((await push.get_rule_set(requester.user_id)).to_client_json())

    @auth.user
    async def get_global(request: web.Request, requester: Requester) -> web.Response:
        _check_scope(request)
        return json_response((await push.get_rule_set(requester.user_id)).ruleset_json())

    @auth.user
    async def get_kind(request: web.Request, requester: Requester) -> web.Response:
        """GET /pushrules/global/{kind}/: the rules of one kind, in priority order."""
        _check_scope(request)
        kind = _parse_kind(request)
        rules = (await push.get_rule_set(requester.user_id)).ruleset_json()[kind]
        return json_response(rules)

    @auth.user
    async def incomplete_path(request: web.Request, requester: Requester) -> web.Response:
        """A push rules path missing its scope, kind or rule ID."""
        if "scope" in request.match_info:
            _check_scope(request)
        if "kind" in request.match_info:
            _parse_kind(request)
            raise MatrixError(400, "M_INVALID_PARAM", "The push rule ID is missing")
        if "scope" in request.match_info:
            kinds = ", ".join(RULE_KINDS)
            raise MatrixError(400, "M_INVALID_PARAM", f"The rule kind ({kinds}) is missing")
        raise MatrixError(400, "M_INVALID_PARAM", "The scope ('global') is missing")

    @auth.user
    async def unknown_attribute(request: web.Request, requester: Requester) -> web.Response:
        _check_scope(request)
        _parse_kind(request)
        attribute = request.match_info["attr"]
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Unknown push rule attribute {attribute!r} (enabled, actions)"
        )

    async def get_one(
        request: web.Request, requester: Requester, kind: RuleKind, rule_id: str
    ) -> web.Response:
        rule = get_rule(await push.get_rule_set(requester.user_id), kind, rule_id)
        return json_response(rule.to_json())

    async def put_one(
        request: web.Request, requester: Requester, kind: RuleKind, rule_id: str
    ) -> web.Response:
        body = await read_json_object(request)
        query = request.query
        await push.put_rule(
            requester.user_id, kind, rule_id, body, query.get("before"), query.get("after")
        )
        return json_response({})

    async def delete_one(
        request: web.Request, requester: Requester, kind: RuleKind, rule_id: str
    ) -> web.Response:
        await push.delete_rule(requester.user_id, kind, rule_id)
        return json_response({})

    async def get_enabled(
        request: web.Request, requester: Requester, kind: RuleKind, rule_id: str
    ) -> web.Response:
        rule = get_rule(await push.get_rule_set(requester.user_id), kind, rule_id)
        return json_response({"enabled": rule.enabled})

    async def put_enabled(
        request: web.Request, requester: Requester, kind: RuleKind, rule_id: str
    ) -> web.Response:
        await push.set_enabled(requester.user_id, kind, rule_id, await read_json_object(request))
        return json_response({})

    async def get_actions(
        request: web.Request, requester: Requester, kind: RuleKind, rule_id: str
    ) -> web.Response:
        rule = get_rule(await push.get_rule_set(requester.user_id), kind, rule_id)
        return json_response({"actions": rule.to_json()["actions"]})

    async def put_actions(
        request: web.Request, requester: Requester, kind: RuleKind, rule_id: str
    ) -> web.Response:
        await push.set_actions(requester.user_id, kind, rule_id, await read_json_object(request))
        return json_response({})

    add_client_route(router, "GET", "/pushrules/", get_all)
    add_client_route(router, "GET", "/pushrules/{scope}/", get_global)
    add_client_route(router, "GET", "/pushrules/{scope}/{kind}/", get_kind)
    for method in ("PUT", "DELETE"):
        add_client_route(router, method, "/pushrules/", incomplete_path)
        add_client_route(router, method, "/pushrules/{scope}/", incomplete_path)
        add_client_route(router, method, "/pushrules/{scope}/{kind}/", incomplete_path)
    for method in ("GET", "PUT", "DELETE"):
        add_client_route(router, method, "/pushrules/{scope}", incomplete_path)
        add_client_route(router, method, "/pushrules/{scope}/{kind}", incomplete_path)
    rule_path = "/pushrules/{scope}/{kind}/{ruleId}"
    for method, path, handler in (
        ("GET", rule_path, get_one),
        ("PUT", rule_path, put_one),
        ("DELETE", rule_path, delete_one),
        ("GET", rule_path + "/enabled", get_enabled),
        ("PUT", rule_path + "/enabled", put_enabled),
        ("GET", rule_path + "/actions", get_actions),
        ("PUT", rule_path + "/actions", put_actions),
    ):
        add_client_route(router, method, path, auth.user(_rule_route(handler)))
    # Registered after the `enabled` and `actions` routes, which take precedence.
    for method in ("GET", "PUT"):
        add_client_route(router, method, rule_path + "/{attr}", unknown_attribute)
