"""Push rules: the model, its client JSON, and evaluation of an event against a rule set.

Spec: C-S "Push Notifications" → "Push Rules" (modules/push.md); JSON shapes from
`data/api/client-server/definitions/push_rule.yaml`, `push_ruleset.yaml`, `push_condition.yaml`.
Pure: callers hand in the event (client format) and the room facts in a `PushContext`.
The server-default rules live in `push_rules_defaults.py`; edits (PUT/DELETE bodies, merging
a user's changes over the defaults) in `push_rules_edit.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from homeserver.services.event_paths import MISSING, lookup_path, split_dot_path
from homeserver.services.push_glob import compile_glob

RuleKind = Literal["override", "content", "room", "sender", "underride"]
# C-S "Push Rules": the kinds, in the order they are checked.
RULE_KINDS: Final[tuple[RuleKind, ...]] = ("override", "content", "room", "sender", "underride")

# An action is a string ("notify") or an object ({"set_tweak": "sound", "value": "default"}).
Action = str | Mapping[str, Any]
Condition = Mapping[str, Any]

# C-S "Historical Actions": these MUST be ignored, e.g. by stripping them.
HISTORICAL_ACTIONS: Final = frozenset({"dont_notify", "coalesce"})

# C-S "event_property_is": only non-compound canonical JSON values, integers within ±(2**53-1).
_MAX_SAFE_INT: Final = 2**53 - 1


@dataclass(frozen=True, slots=True)
class PushRule:
    """One push rule. `conditions` is None for content/room/sender rules, whose conditions
    are implied by `pattern` (content) or by `rule_id` (room ID, sender user ID)."""

    rule_id: str
    default: bool
    enabled: bool
    conditions: tuple[Condition, ...] | None
    actions: tuple[Action, ...]
    pattern: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `PushRule` JSON object (push_rule.yaml)."""
        body: dict[str, Any] = {
            "rule_id": self.rule_id,
            "default": self.default,
            "enabled": self.enabled,
            "actions": [_action_json(action) for action in self.actions],
        }
        if self.conditions is not None:
            body["conditions"] = [dict(condition) for condition in self.conditions]
        if self.pattern is not None:
            body["pattern"] = self.pattern
        return body

    @staticmethod
    def from_json(obj: Mapping[str, Any], *, default: bool = False) -> PushRule:
        """Rebuild a rule from JSON this module produced (e.g. read back from storage).

        Trusted input: client bodies go through `push_rules_edit.parse_put_rule_body` first.
        """
        conditions = obj.get("conditions")
        return PushRule(
            rule_id=str(obj["rule_id"]),
            default=bool(obj.get("default", default)),
            enabled=bool(obj.get("enabled", True)),
            conditions=None if conditions is None else tuple(conditions),
            actions=strip_historical_actions(obj.get("actions", ())),
            pattern=obj.get("pattern"),
        )


@dataclass(frozen=True, slots=True)
class PushRuleSet:
    """The `global` rule set: each kind's rules in priority order (most important first)."""

    override: tuple[PushRule, ...] = ()
    content: tuple[PushRule, ...] = ()
    room: tuple[PushRule, ...] = ()
    sender: tuple[PushRule, ...] = ()
    underride: tuple[PushRule, ...] = ()
    # Memo of `compile_rules(self)`; the rule set is immutable, so it never goes stale.
    _compiled: tuple[CompiledRule, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def compiled(self) -> tuple[CompiledRule, ...]:
        compiled = self._compiled
        if compiled is None:
            compiled = compile_rules(self)
            object.__setattr__(self, "_compiled", compiled)
        return compiled

    def rules_of(self, kind: RuleKind) -> tuple[PushRule, ...]:
        rules: tuple[PushRule, ...] = getattr(self, kind)
        return rules

    def in_priority_order(self) -> Iterator[tuple[RuleKind, PushRule]]:
        for kind in RULE_KINDS:
            for rule in self.rules_of(kind):
                yield kind, rule

    def find(self, kind: RuleKind, rule_id: str) -> PushRule | None:
        for rule in self.rules_of(kind):
            if rule.rule_id == rule_id:
                return rule
        return None

    def ruleset_json(self) -> dict[str, list[dict[str, Any]]]:
        """The `Ruleset` object (push_ruleset.yaml), as served by `GET /pushrules/global/`."""
        return {kind: [rule.to_json() for rule in self.rules_of(kind)] for kind in RULE_KINDS}

    def to_client_json(self) -> dict[str, Any]:
        """`GET /pushrules/` response body, also the content of the `m.push_rules` event."""
        return {"global": self.ruleset_json()}


def _action_json(action: Action) -> str | dict[str, Any]:
    return action if isinstance(action, str) else dict(action)


def strip_historical_actions(actions: Sequence[Action]) -> tuple[Action, ...]:
    """C-S "Historical Actions": drop `dont_notify` and `coalesce`."""
    return tuple(a for a in actions if not (isinstance(a, str) and a in HISTORICAL_ACTIONS))


def actions_notify(actions: Sequence[Action] | None) -> bool:
    """Whether the actions generate a notification (C-S "Actions": `notify`)."""
    return actions is not None and "notify" in actions


def actions_highlight(actions: Sequence[Action] | None) -> bool:
    """The `highlight` tweak: true if given without a value, false if not given at all.

    Only the tweak; callers counting highlights should also require `actions_notify`.
    """
    highlight = False
    for action in actions or ():
        if isinstance(action, Mapping) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return highlight


@dataclass(frozen=True, slots=True)
class PushContext:
    """What evaluation needs to know besides the event, for one recipient in one room."""

    user_id: str
    display_name: str | None
    room_member_count: int
    power_levels: Mapping[str, Any] = field(default_factory=dict)  # m.room.power_levels content
    sender_power_level: int = 0


def evaluate(
    rule_set: PushRuleSet, event: Mapping[str, Any], ctx: PushContext
) -> list[Action] | None:
    """The actions of the first enabled rule that matches `event`, or None if none matches.

    C-S "Push Rules": kinds are checked override → content → room → sender → underride;
    disabled rules never match. Events the user sent themselves never notify, so they give None.
    """
    if event.get("sender") == ctx.user_id:
        return None
    for rule in rule_set.compiled():
        for check in rule.checks:
            if not check(event, ctx):
                break
        else:  # every condition held (a rule without conditions always matches)
            return [_action_json(action) for action in rule.actions]  # fresh, JSON-ready
    return None


# A compiled condition: patterns, paths and comparisons are prepared once per rule set, since
# the same rules run for every event the user can see.
Check = Callable[[Mapping[str, Any], PushContext], bool]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    actions: tuple[Action, ...]  # historical actions already stripped
    checks: tuple[Check, ...]


def compile_rules(rule_set: PushRuleSet) -> tuple[CompiledRule, ...]:
    """The enabled rules in priority order, with their conditions compiled."""
    return tuple(
        CompiledRule(strip_historical_actions(rule.actions), _rule_checks(kind, rule))
        for kind, rule in rule_set.in_priority_order()
        if rule.enabled
    )


def _rule_checks(kind: RuleKind, rule: PushRule) -> tuple[Check, ...]:
    if kind == "content":
        # C-S "Push Rules": `pattern` against `content.body`, at word boundaries.
        if rule.pattern is None:
            return (_never,)
        return (_event_match({"key": "content.body", "pattern": rule.pattern}),)
    if kind == "room":  # the rule ID is the room ID
        return (_property_equals("room_id", rule.rule_id),)
    if kind == "sender":  # the rule ID is the sender's user ID
        return (_property_equals("sender", rule.rule_id),)
    return tuple(compile_condition(condition) for condition in rule.conditions or ())


def compile_condition(condition: Condition) -> Check:
    """C-S "Conditions". Unrecognised or malformed conditions MUST NOT match."""
    kind = condition.get("kind")
    compiler = _CONDITIONS.get(kind) if isinstance(kind, str) else None
    return _never if compiler is None else compiler(condition)


def condition_matches(condition: Condition, event: Mapping[str, Any], ctx: PushContext) -> bool:
    return compile_condition(condition)(event, ctx)


def _never(event: Mapping[str, Any], ctx: PushContext) -> bool:
    return False


def _property_equals(name: str, expected: str) -> Check:
    return lambda event, ctx: event.get(name) == expected


def _event_match(condition: Condition) -> Check:
    key, pattern = condition.get("key"), condition.get("pattern")
    if not isinstance(key, str) or not isinstance(pattern, str):
        return _never
    path = split_dot_path(key)
    # `content.body` is matched at word boundaries, every other key on its whole value.
    glob = compile_glob(pattern, word_boundary=key == "content.body")

    def check(event: Mapping[str, Any], ctx: PushContext) -> bool:
        value = lookup_path(event, path)
        # Absent or not a string: no match, even for `*`.
        return isinstance(value, str) and glob.matches(value)

    return check


def is_plain_value(value: Any) -> bool:
    """A non-compound canonical JSON value: string, bool, null, or a safe-range integer."""
    if value is None or isinstance(value, str | bool):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _same_value(a: Any, b: Any) -> bool:
    # Exact match without casts: `True` is not `1`, `"true"` is not `True`.
    return type(a) is type(b) and a == b


def _event_property_is(condition: Condition) -> Check:
    key, wanted = condition.get("key"), condition.get("value", MISSING)
    if not isinstance(key, str) or not is_plain_value(wanted):
        return _never
    path = split_dot_path(key)
    return lambda event, ctx: _same_value(lookup_path(event, path), wanted)


def _event_property_contains(condition: Condition) -> Check:
    key, wanted = condition.get("key"), condition.get("value", MISSING)
    if not isinstance(key, str) or not is_plain_value(wanted):
        return _never
    path = split_dot_path(key)

    def check(event: Mapping[str, Any], ctx: PushContext) -> bool:
        value = lookup_path(event, path)
        return isinstance(value, list | tuple) and any(_same_value(v, wanted) for v in value)

    return check


def _contains_display_name(condition: Condition) -> Check:
    # Deprecated since v1.17 but still defined: the owner's display name in `content.body`,
    # at word boundaries, taken literally (a name like "a*" is not a glob).
    def check(event: Mapping[str, Any], ctx: PushContext) -> bool:
        if not ctx.display_name:
            return False
        body = lookup_path(event, ("content", "body"))
        if not isinstance(body, str):
            return False
        return compile_glob(ctx.display_name, word_boundary=True, literal=True).matches(body)

    return check


_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")
_COMPARE: Final[dict[str, Callable[[int, int], bool]]] = {
    "==": lambda count, n: count == n,
    "<": lambda count, n: count < n,
    ">": lambda count, n: count > n,
    "<=": lambda count, n: count <= n,
    ">=": lambda count, n: count >= n,
}


def parse_member_count(is_value: str) -> tuple[str, int] | None:
    """`is` of `room_member_count`: a decimal integer with an optional ==, <, >, <=, >= prefix."""
    found = _MEMBER_COUNT.fullmatch(is_value)
    if found is None or len(found.group(2)) > 16:
        return None
    return found.group(1) or "==", int(found.group(2))


def _room_member_count(condition: Condition) -> Check:
    is_value = condition.get("is")
    parsed = parse_member_count(is_value) if isinstance(is_value, str) else None
    if parsed is None:
        return _never
    compare, number = _COMPARE[parsed[0]], parsed[1]
    return lambda event, ctx: compare(ctx.room_member_count, number)


# m.room.power_levels: `notifications.room` defaults to 50.
DEFAULT_NOTIFICATION_LEVEL: Final = 50


def _as_int(value: Any) -> int | None:
    # Room versions before 10 allow power levels as strings of integers.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,16}", value.strip()):
        return int(value.strip())
    return None


def notification_power_level(power_levels: Mapping[str, Any], key: str) -> int:
    """The level the sender needs to trigger a `key` notification (`notifications.<key>`)."""
    notifications = power_levels.get("notifications")
    if isinstance(notifications, Mapping):
        level = _as_int(notifications.get(key))
        if level is not None:
            return level
    return DEFAULT_NOTIFICATION_LEVEL


def _sender_notification_permission(condition: Condition) -> Check:
    key = condition.get("key")
    if not isinstance(key, str):
        return _never
    return lambda event, ctx: (
        ctx.sender_power_level >= notification_power_level(ctx.power_levels, key)
    )


_CONDITIONS: Final[dict[str, Callable[[Condition], Check]]] = {
    "event_match": _event_match,
    "event_property_is": _event_property_is,
    "event_property_contains": _event_property_contains,
    "contains_display_name": _contains_display_name,
    "room_member_count": _room_member_count,
    "sender_notification_permission": _sender_notification_permission,
}
