"""Editing push rules: request bodies of `/pushrules/global/{kind}/{ruleId}[/enabled|/actions]`
and merging a user's stored changes over the server-default rules.

Spec: C-S "Push Rules: API" (`data/api/client-server/pushrules.yaml`) and "Predefined Rules"
(user-defined rules rank above server-default ones, except `.m.rule.master`). Pure: storage keeps
the user's rules (per kind, most important first) and the enabled/actions changes, and hands
them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from homeserver.services.push_rules import (
    RULE_KINDS,
    Action,
    Condition,
    PushRule,
    PushRuleSet,
    RuleKind,
    is_plain_value,
    parse_member_count,
    strip_historical_actions,
)

MASTER_RULE_ID: Final = ".m.rule.master"
_KNOWN_ACTIONS: Final = frozenset({"notify", "dont_notify", "coalesce"})


class PushRuleError(Exception):
    """A Matrix error for a push rule request: `errcode`, HTTP `status` and a message."""

    def __init__(self, errcode: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class UserPushRule:
    """A user-defined rule as stored: its kind and the rule."""

    kind: RuleKind
    rule: PushRule


# Enabled and actions changes are keyed by (kind, rule_id): rule IDs are unique only within a
# kind (C-S "Push Rules"), so a room rule and an override rule may share one.
RuleKey = tuple[RuleKind, str]


def parse_kind(kind: str) -> RuleKind:
    """The `{kind}` path parameter."""
    for known in RULE_KINDS:
        if kind == known:
            return known
    raise PushRuleError("M_INVALID_PARAM", f"Unknown push rule kind: {kind!r}")


def check_user_rule_id(rule_id: str) -> None:
    """`PUT …/{ruleId}`: a leading "." is reserved for server-default rules; no "/" or "\\"."""
    if not rule_id:
        raise PushRuleError("M_INVALID_PARAM", "The rule ID must not be empty")
    if rule_id.startswith("."):
        raise PushRuleError("M_INVALID_PARAM", "Rule IDs starting with '.' are server-default")
    if "/" in rule_id or "\\" in rule_id:
        raise PushRuleError("M_INVALID_PARAM", "Rule IDs must not contain '/' or '\\'")


def parse_put_rule_body(kind: RuleKind, rule_id: str, body: Any) -> PushRule:
    """Validate a `PUT /pushrules/global/{kind}/{ruleId}` body into a new, enabled user rule.

    `conditions` apply only to override/underride rules and `pattern` only to content rules;
    other kinds ignore them.
    """
    check_user_rule_id(rule_id)
    if not isinstance(body, Mapping):
        raise PushRuleError("M_BAD_JSON", "The push rule must be a JSON object")
    if "actions" not in body:
        raise PushRuleError("M_BAD_JSON", "Missing 'actions'")
    actions = parse_actions(body["actions"])
    conditions: tuple[Condition, ...] | None = None
    pattern: str | None = None
    if kind in ("override", "underride"):
        conditions = parse_conditions(body.get("conditions", []))
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise PushRuleError("M_BAD_JSON", "Content rules need a string 'pattern'")
    return PushRule(
        rule_id=rule_id,
        default=False,
        enabled=True,  # "When creating push rules, they MUST be enabled by default."
        conditions=conditions,
        actions=actions,
        pattern=pattern,
    )


def parse_actions(actions: Any, where: str = "actions") -> tuple[Action, ...]:
    """A list of actions: "notify", or an object with a string `set_tweak`.

    Historical `dont_notify`/`coalesce` are accepted and stripped (C-S "Historical Actions").
    """
    if not isinstance(actions, list):
        raise PushRuleError("M_BAD_JSON", f"'{where}' must be a list")
    for index, action in enumerate(actions):
        place = f"{where}[{index}]"
        if isinstance(action, str):
            if action not in _KNOWN_ACTIONS:
                raise PushRuleError("M_INVALID_PARAM", f"{place}: unknown action {action!r}")
        elif isinstance(action, Mapping):
            if not isinstance(action.get("set_tweak"), str):
                raise PushRuleError("M_INVALID_PARAM", f"{place}: expected a 'set_tweak' string")
            if action["set_tweak"] == "highlight" and not isinstance(
                action.get("value", True), bool
            ):
                raise PushRuleError("M_INVALID_PARAM", f"{place}: highlight value must be bool")
        else:
            raise PushRuleError("M_BAD_JSON", f"{place}: must be a string or an object")
    return strip_historical_actions(
        [action if isinstance(action, str) else dict(action) for action in actions]
    )


def parse_conditions(conditions: Any) -> tuple[Condition, ...]:
    """Check the parameters of the condition kinds this server knows (push_condition.yaml).

    Unknown kinds are kept as given: they are valid to store and simply never match.
    """
    if not isinstance(conditions, list):
        raise PushRuleError("M_BAD_JSON", "'conditions' must be a list")
    parsed: list[Condition] = []
    for index, condition in enumerate(conditions):
        place = f"conditions[{index}]"
        if not isinstance(condition, Mapping) or not isinstance(condition.get("kind"), str):
            raise PushRuleError("M_BAD_JSON", f"{place}: must be an object with a string 'kind'")
        _check_condition_params(condition, place)
        parsed.append(dict(condition))
    return tuple(parsed)


def _require_string(condition: Mapping[str, Any], name: str, place: str) -> None:
    if not isinstance(condition.get(name), str):
        raise PushRuleError("M_BAD_JSON", f"{place}.{name}: must be a string")


def _check_condition_params(condition: Mapping[str, Any], place: str) -> None:
    kind = condition["kind"]
    if kind in ("event_match", "event_property_is", "event_property_contains"):
        _require_string(condition, "key", place)
    if kind == "event_match":
        _require_string(condition, "pattern", place)
    elif kind in ("event_property_is", "event_property_contains"):
        if "value" not in condition:
            raise PushRuleError("M_BAD_JSON", f"{place}.value: missing")
        if not is_plain_value(condition["value"]):
            raise PushRuleError(
                "M_INVALID_PARAM", f"{place}.value: must be a string, integer, boolean or null"
            )
    elif kind == "room_member_count":
        _require_string(condition, "is", place)
        if parse_member_count(condition["is"]) is None:
            raise PushRuleError("M_INVALID_PARAM", f"{place}.is: expected e.g. '2' or '<=10'")
    elif kind == "sender_notification_permission":
        _require_string(condition, "key", place)


def parse_enabled_body(body: Any) -> bool:
    """`PUT …/enabled` body: `{"enabled": bool}`."""
    if not isinstance(body, Mapping) or not isinstance(body.get("enabled"), bool):
        raise PushRuleError("M_BAD_JSON", 'Expected {"enabled": true|false}')
    enabled: bool = body["enabled"]
    return enabled


def parse_actions_body(body: Any) -> tuple[Action, ...]:
    """`PUT …/actions` body: `{"actions": [...]}`."""
    if not isinstance(body, Mapping) or "actions" not in body:
        raise PushRuleError("M_BAD_JSON", 'Expected {"actions": [...]}')
    return parse_actions(body["actions"])


def get_rule(rule_set: PushRuleSet, kind: RuleKind, rule_id: str) -> PushRule:
    """The rule, or M_NOT_FOUND (404) as every `/pushrules/global/{kind}/{ruleId}` endpoint."""
    rule = rule_set.find(kind, rule_id)
    if rule is None:
        raise PushRuleError("M_NOT_FOUND", "The push rule was not found.", status=404)
    return rule


def insert_user_rule(
    user_rules: Sequence[UserPushRule],
    kind: RuleKind,
    rule: PushRule,
    *,
    before: str | None = None,
    after: str | None = None,
) -> list[UserPushRule]:
    """The user's rules after `PUT /pushrules/global/{kind}/{ruleId}?before=&after=`.

    An existing rule with the same kind and ID is replaced (keeping its enabled state), in place
    unless `before`/`after` moves it. With both, `before` wins; a new rule with neither becomes
    the most important user rule of its kind. `before`/`after` must name user rules.
    """
    existing = next(
        (r for r in user_rules if r.kind == kind and r.rule.rule_id == rule.rule_id), None
    )
    if existing is not None:
        rule = replace(rule, enabled=existing.rule.enabled)
    anchor = before if before is not None else after
    new = UserPushRule(kind, rule)
    if anchor is None:
        if existing is not None:
            return [new if r is existing else r for r in user_rules]
        first_of_kind = next((i for i, r in enumerate(user_rules) if r.kind == kind), None)
        position = len(user_rules) if first_of_kind is None else first_of_kind
        return [*user_rules[:position], new, *user_rules[position:]]
    if anchor.startswith("."):
        raise PushRuleError("M_INVALID_PARAM", "Cannot add a rule relative to a server rule")
    if anchor == rule.rule_id:
        raise PushRuleError("M_INVALID_PARAM", "A rule cannot be placed relative to itself")
    others = [r for r in user_rules if r is not existing]
    index = next(
        (i for i, r in enumerate(others) if r.kind == kind and r.rule.rule_id == anchor), None
    )
    if index is None:
        # Error shape from the spec's example response for this endpoint.
        raise PushRuleError("M_UNKNOWN", f"before/after rule not found: {anchor}")
    position = index if before is not None else index + 1
    return [*others[:position], new, *others[position:]]


def remove_user_rule(
    user_rules: Sequence[UserPushRule], kind: RuleKind, rule_id: str
) -> list[UserPushRule]:
    """The user's rules after `DELETE /pushrules/global/{kind}/{ruleId}`."""
    if rule_id.startswith("."):
        raise PushRuleError("M_INVALID_PARAM", "Server-default rules cannot be deleted")
    kept = [r for r in user_rules if not (r.kind == kind and r.rule.rule_id == rule_id)]
    if len(kept) == len(user_rules):
        raise PushRuleError("M_NOT_FOUND", "The push rule was not found.", status=404)
    return kept


def apply_user_changes(
    defaults: PushRuleSet,
    user_rules: Iterable[UserPushRule],
    enabled_overrides: Mapping[RuleKey, bool],
    actions_overrides: Mapping[RuleKey, Sequence[Action]],
) -> PushRuleSet:
    """The user's effective rule set.

    C-S "Predefined Rules": server-default rules rank below user-defined rules of the same
    kind, except `.m.rule.master`, which stays above everything. `user_rules` are in priority
    order within each kind; enabled/actions changes apply to default and user rules alike.
    """
    by_kind: dict[RuleKind, list[PushRule]] = {kind: [] for kind in RULE_KINDS}
    for stored in user_rules:
        by_kind[stored.kind].append(stored.rule)

    def merged(kind: RuleKind) -> tuple[PushRule, ...]:
        server = defaults.rules_of(kind)
        master = [r for r in server if r.rule_id == MASTER_RULE_ID]
        rest = [r for r in server if r.rule_id != MASTER_RULE_ID]
        rules = [*master, *by_kind[kind], *rest]
        return tuple(_with_overrides(kind, r, enabled_overrides, actions_overrides) for r in rules)

    return PushRuleSet(**{kind: merged(kind) for kind in RULE_KINDS})


def _with_overrides(
    kind: RuleKind,
    rule: PushRule,
    enabled_overrides: Mapping[RuleKey, bool],
    actions_overrides: Mapping[RuleKey, Sequence[Action]],
) -> PushRule:
    key = (kind, rule.rule_id)
    enabled = enabled_overrides.get(key, rule.enabled)
    actions = actions_overrides.get(key)
    if enabled == rule.enabled and actions is None:
        return rule
    return replace(
        rule,
        enabled=enabled,
        actions=rule.actions if actions is None else strip_historical_actions(actions),
    )
