"""The server-default push rules (C-S "Push Notifications" → "Predefined Rules").

Transcribed from modules/push.md, in the spec's order. Since v1.17 the legacy rules that looked
for mentions in `body` (`.m.rule.contains_display_name`, `.m.rule.contains_user_name`,
`.m.rule.roomnotif`) are removed from the spec, so they are not served; mentions come from
`m.mentions` (`.m.rule.is_user_mention`, `.m.rule.is_room_mention`). The
`contains_display_name` *condition* is still evaluated for users' own rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from homeserver.services.push_rules import Action, Condition, PushRule, PushRuleSet

# Read-only: these action objects are shared by every user's rule set.
_SOUND_DEFAULT: Mapping[str, Any] = MappingProxyType({"set_tweak": "sound", "value": "default"})
_SOUND_RING: Mapping[str, Any] = MappingProxyType({"set_tweak": "sound", "value": "ring"})
_HIGHLIGHT: Mapping[str, Any] = MappingProxyType({"set_tweak": "highlight"})


def _rule(
    rule_id: str,
    conditions: list[Condition],
    actions: list[Action],
    *,
    enabled: bool = True,
) -> PushRule:
    return PushRule(
        rule_id=rule_id,
        default=True,
        enabled=enabled,
        conditions=tuple(conditions),
        actions=tuple(actions),
    )


def _event_match(key: str, pattern: str) -> Condition:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _state_key_empty() -> Condition:
    # Rules meant for state events need an explicit `state_key` condition (C-S "event_match").
    return _event_match("state_key", "")


def default_override_rules(user_id: str) -> tuple[PushRule, ...]:
    """C-S "Default Override Rules"."""
    return (
        _rule(".m.rule.master", [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_event_match("content.msgtype", "m.notice")], []),
        _rule(
            ".m.rule.invite_for_me",
            [
                _event_match("type", "m.room.member"),
                _event_match("content.membership", "invite"),
                _event_match("state_key", user_id),
            ],
            ["notify", _SOUND_DEFAULT],
        ),
        _rule(".m.rule.member_event", [_event_match("type", "m.room.member")], []),
        _rule(
            ".m.rule.is_user_mention",
            [
                {
                    "kind": "event_property_contains",
                    "key": "content.m\\.mentions.user_ids",
                    "value": user_id,
                }
            ],
            ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
        ),
        _rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", _HIGHLIGHT],
        ),
        _rule(
            ".m.rule.tombstone",
            [_event_match("type", "m.room.tombstone"), _state_key_empty()],
            ["notify", _HIGHLIGHT],
        ),
        _rule(".m.rule.reaction", [_event_match("type", "m.reaction")], []),
        _rule(
            ".m.rule.room.server_acl",
            [_event_match("type", "m.room.server_acl"), _state_key_empty()],
            [],
        ),
        _rule(
            ".m.rule.suppress_edits",
            [
                {
                    "kind": "event_property_is",
                    "key": "content.m\\.relates_to.rel_type",
                    "value": "m.replace",
                }
            ],
            [],
        ),
    )


def default_underride_rules() -> tuple[PushRule, ...]:
    """C-S "Default Underride Rules"."""
    one_to_one: Condition = {"kind": "room_member_count", "is": "2"}
    return (
        _rule(".m.rule.call", [_event_match("type", "m.call.invite")], ["notify", _SOUND_RING]),
        _rule(
            ".m.rule.encrypted_room_one_to_one",
            [one_to_one, _event_match("type", "m.room.encrypted")],
            ["notify", _SOUND_DEFAULT],
        ),
        _rule(
            ".m.rule.room_one_to_one",
            [one_to_one, _event_match("type", "m.room.message")],
            ["notify", _SOUND_DEFAULT],
        ),
        _rule(".m.rule.message", [_event_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_event_match("type", "m.room.encrypted")], ["notify"]),
    )


def default_rules(user_id: str) -> PushRuleSet:
    """The server-default rule set for `user_id` (no default content, room or sender rules)."""
    return PushRuleSet(
        override=default_override_rules(user_id),
        underride=default_underride_rules(),
    )
