"""Push rules: the spec's default rules, evaluation of events, and edits."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.services.push_glob import glob_matches
from homeserver.services.push_rules import (
    PushContext,
    PushRule,
    PushRuleSet,
    actions_highlight,
    actions_notify,
    evaluate,
)
from homeserver.services.push_rules_defaults import default_rules
from homeserver.services.push_rules_edit import (
    PushRuleError,
    UserPushRule,
    apply_user_changes,
    get_rule,
    insert_user_rule,
    parse_actions_body,
    parse_enabled_body,
    parse_kind,
    parse_put_rule_body,
    remove_user_rule,
)

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
ROOM = "!room:example.org"

SPEC = Path(os.environ.get("VECHE_MATRIX_SPEC", Path(__file__).parents[3] / "shared/matrix-spec"))

SPEC_OVERRIDE_IDS = [
    ".m.rule.master",
    ".m.rule.suppress_notices",
    ".m.rule.invite_for_me",
    ".m.rule.member_event",
    ".m.rule.is_user_mention",
    ".m.rule.is_room_mention",
    ".m.rule.tombstone",
    ".m.rule.reaction",
    ".m.rule.room.server_acl",
    ".m.rule.suppress_edits",
]
SPEC_UNDERRIDE_IDS = [
    ".m.rule.call",
    ".m.rule.encrypted_room_one_to_one",
    ".m.rule.room_one_to_one",
    ".m.rule.message",
    ".m.rule.encrypted",
]


def message(body: str = "hello", sender: str = BOB, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": sender,
        "room_id": ROOM,
        "event_id": "$event",
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def ctx(
    members: int = 5, display_name: str | None = "Alice", sender_level: int = 0, **pl: Any
) -> PushContext:
    return PushContext(
        user_id=ALICE,
        display_name=display_name,
        room_member_count=members,
        power_levels=pl,
        sender_power_level=sender_level,
    )


def rules_for_alice() -> PushRuleSet:
    return default_rules(ALICE)


# --- The default rule set -------------------------------------------------------------------


def test_default_rules_have_the_spec_ids_in_the_spec_order() -> None:
    rules = rules_for_alice()
    assert [r.rule_id for r in rules.override] == SPEC_OVERRIDE_IDS
    assert [r.rule_id for r in rules.underride] == SPEC_UNDERRIDE_IDS
    assert rules.content == rules.room == rules.sender == ()
    assert all(r.default for _, r in rules.in_priority_order())


def _spec_rule_definitions() -> dict[str, dict[str, Any]]:
    text = (SPEC / "content/client-server-api/modules/push.md").read_text()
    section = text[text.index("#### Predefined Rules") : text.index("#### Push Rules: API")]
    blocks = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    definitions = [json.loads(block.replace("[the user's Matrix ID]", ALICE)) for block in blocks]
    return {d["rule_id"]: d for d in definitions}


@pytest.mark.skipif(not SPEC.is_dir(), reason="matrix-spec checkout not found (VECHE_MATRIX_SPEC)")
def test_default_rules_equal_the_definitions_in_the_spec_text() -> None:
    spec = _spec_rule_definitions()
    ours = {r.rule_id: r.to_json() for _, r in rules_for_alice().in_priority_order()}
    assert list(spec) == SPEC_OVERRIDE_IDS + SPEC_UNDERRIDE_IDS
    assert ours == spec


def _check_against_schema(value: Any, schema: dict[str, Any], base: Path) -> None:
    """A small subset of JSON Schema: $ref, allOf, type, properties, required, items."""
    if "$ref" in schema:
        path = base / schema["$ref"]
        _check_against_schema(value, yaml.safe_load(path.read_text()), path.parent)
        return
    for part in schema.get("allOf", []):
        _check_against_schema(value, part, base)
    types = schema.get("type")
    python_types = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "null": type(None),
    }
    if types is not None:
        allowed = [types] if isinstance(types, str) else types
        assert any(
            isinstance(value, int) and not isinstance(value, bool)
            if t == "integer"
            else isinstance(value, python_types[t])
            for t in allowed
        ), (value, allowed)
    for name in schema.get("required", []):
        assert name in value, (name, value)
    for name, sub in schema.get("properties", {}).items():
        if isinstance(value, dict) and name in value:
            _check_against_schema(value[name], sub, base)
    if "items" in schema and isinstance(value, list):
        for item in value:
            _check_against_schema(item, schema["items"], base)


@pytest.mark.skipif(not SPEC.is_dir(), reason="matrix-spec checkout not found (VECHE_MATRIX_SPEC)")
def test_get_pushrules_body_follows_the_openapi_schema() -> None:
    api = SPEC / "data/api/client-server"
    document = yaml.safe_load((api / "pushrules.yaml").read_text())
    response = document["paths"]["/pushrules/"]["get"]["responses"]["200"]
    schema = response["content"]["application/json"]["schema"]
    rule_set = apply_user_changes(
        rules_for_alice(),
        [
            UserPushRule("content", parse_put_rule_body("content", "cake", _content_body())),
            UserPushRule("room", parse_put_rule_body("room", ROOM, {"actions": []})),
        ],
        {},
        {},
    )
    body = json.loads(json.dumps(rule_set.to_client_json()))
    _check_against_schema(body, schema, api)
    assert set(body["global"]) == {"override", "content", "room", "sender", "underride"}
    assert "conditions" not in body["global"]["room"][0]
    assert body["global"]["content"][0]["pattern"] == "cake"


def _content_body() -> dict[str, Any]:
    return {"pattern": "cake", "actions": ["notify", {"set_tweak": "sound", "value": "cake"}]}


# --- Evaluation -----------------------------------------------------------------------------


def test_plain_message_in_two_person_room_notifies_with_sound() -> None:
    actions = evaluate(rules_for_alice(), message(), ctx(members=2))
    assert actions == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert actions_notify(actions) and not actions_highlight(actions)


def test_evaluated_actions_are_plain_json() -> None:
    event = message("hi", **{"m.mentions": {"user_ids": [ALICE]}})
    actions = evaluate(rules_for_alice(), event, ctx())
    assert json.loads(json.dumps(actions)) == actions


def test_plain_message_in_group_room_notifies_without_sound() -> None:
    assert evaluate(rules_for_alice(), message(), ctx(members=3)) == ["notify"]


def test_user_mention_in_m_mentions_highlights() -> None:
    event = message("hi there", **{"m.mentions": {"user_ids": [ALICE]}})
    actions = evaluate(rules_for_alice(), event, ctx())
    assert actions_notify(actions) and actions_highlight(actions)


def test_mention_of_someone_else_does_not_highlight() -> None:
    event = message("hi there", **{"m.mentions": {"user_ids": [BOB]}})
    assert not actions_highlight(evaluate(rules_for_alice(), event, ctx()))


def test_display_name_in_body_highlights_with_a_contains_display_name_rule() -> None:
    rule = PushRule(
        "name",
        default=False,
        enabled=True,
        conditions=({"kind": "contains_display_name"},),
        actions=("notify", {"set_tweak": "highlight"}),
    )
    rules = apply_user_changes(rules_for_alice(), [UserPushRule("override", rule)], {}, {})
    assert actions_highlight(evaluate(rules, message("hey alice, lunch?"), ctx()))
    assert actions_highlight(evaluate(rules, message("ALICE!"), ctx()))
    # Word boundaries: "Alice" inside "Alicetown" is not a mention.
    assert not actions_highlight(evaluate(rules, message("Alicetown is far"), ctx()))
    assert not actions_highlight(evaluate(rules, message("hi alice"), ctx(display_name=None)))


def test_display_name_is_matched_literally_not_as_a_glob() -> None:
    rule = PushRule("name", False, True, ({"kind": "contains_display_name"},), ("notify",))
    rules = PushRuleSet(override=(rule,))
    assert evaluate(rules, message("hi a*"), ctx(display_name="a*")) == ["notify"]
    assert evaluate(rules, message("hi abc"), ctx(display_name="a*")) is None


def test_notice_is_suppressed() -> None:
    event = message("bot says", msgtype="m.notice")
    actions = evaluate(rules_for_alice(), event, ctx(members=2))
    assert actions == []
    assert not actions_notify(actions)


def test_room_mention_needs_notification_power() -> None:
    event = message("@room hi", **{"m.mentions": {"room": True}})
    weak = evaluate(rules_for_alice(), event, ctx(sender_level=0))
    assert not actions_highlight(weak) and weak == ["notify"]  # falls through to .m.rule.message
    strong = evaluate(rules_for_alice(), event, ctx(sender_level=50))
    assert actions_highlight(strong)
    lowered = evaluate(rules_for_alice(), event, ctx(sender_level=10, notifications={"room": 10}))
    assert actions_highlight(lowered)


def test_room_mention_must_be_boolean_true() -> None:
    event = message("@room hi", **{"m.mentions": {"room": "true"}})
    assert not actions_highlight(evaluate(rules_for_alice(), event, ctx(sender_level=100)))


def test_invite_for_me_notifies_and_other_member_events_do_not() -> None:
    invite = {
        "type": "m.room.member",
        "sender": BOB,
        "room_id": ROOM,
        "state_key": ALICE,
        "content": {"membership": "invite"},
    }
    assert evaluate(rules_for_alice(), invite, ctx()) == [
        "notify",
        {"set_tweak": "sound", "value": "default"},
    ]
    someone_else = {**invite, "state_key": "@carol:example.org"}
    assert evaluate(rules_for_alice(), someone_else, ctx()) == []


def test_edits_are_suppressed() -> None:
    edit = message(
        "* fixed",
        **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}},
    )
    assert evaluate(rules_for_alice(), edit, ctx(members=2)) == []


def test_tombstone_state_event_highlights_but_not_as_message_event() -> None:
    tombstone = {"type": "m.room.tombstone", "sender": BOB, "room_id": ROOM, "content": {}}
    assert evaluate(rules_for_alice(), {**tombstone, "state_key": ""}, ctx()) == [
        "notify",
        {"set_tweak": "highlight"},
    ]
    assert evaluate(rules_for_alice(), tombstone, ctx()) is None


def test_own_events_never_notify() -> None:
    assert evaluate(rules_for_alice(), message(sender=ALICE), ctx(members=2)) is None


def test_unknown_event_type_matches_no_rule() -> None:
    event = {"type": "org.example.custom", "sender": BOB, "room_id": ROOM, "content": {}}
    assert evaluate(rules_for_alice(), event, ctx()) is None


def test_master_rule_enabled_silences_everything() -> None:
    rules = apply_user_changes(rules_for_alice(), [], {("override", ".m.rule.master"): True}, {})
    assert evaluate(rules, message(**{"m.mentions": {"user_ids": [ALICE]}}), ctx()) == []


def test_disabled_rules_are_skipped() -> None:
    rules = apply_user_changes(
        rules_for_alice(), [], {("override", ".m.rule.suppress_notices"): False}, {}
    )
    assert evaluate(rules, message(msgtype="m.notice"), ctx()) == ["notify"]


def test_user_content_rule_matches_words_in_body() -> None:
    rule = parse_put_rule_body("content", "cake", _content_body())
    rules = apply_user_changes(rules_for_alice(), [UserPushRule("content", rule)], {}, {})
    cake_sound = ["notify", {"set_tweak": "sound", "value": "cake"}]
    assert evaluate(rules, message("Who wants CAKE?"), ctx()) == cake_sound
    assert evaluate(rules, message("cupcakes"), ctx()) == ["notify"]  # not a whole word


def test_sender_and_room_rules_match_by_rule_id() -> None:
    rules = apply_user_changes(
        rules_for_alice(),
        [
            UserPushRule("sender", parse_put_rule_body("sender", BOB, {"actions": []})),
            UserPushRule("room", parse_put_rule_body("room", "!other:x", {"actions": ["notify"]})),
        ],
        {},
        {},
    )
    assert evaluate(rules, message(), ctx()) == []
    carol_elsewhere = {**message(sender="@carol:x"), "room_id": "!other:x"}
    assert evaluate(rules, carol_elsewhere, ctx()) == ["notify"]


def test_room_rule_outranks_sender_rule() -> None:
    rules = PushRuleSet(
        room=(PushRule(ROOM, False, True, None, ("notify",)),),
        sender=(PushRule(BOB, False, True, None, ()),),
    )
    assert evaluate(rules, message(), ctx()) == ["notify"]


def _override(*conditions: dict[str, Any]) -> PushRuleSet:
    return PushRuleSet(override=(PushRule("r", False, True, tuple(conditions), ("notify",)),))


@pytest.mark.parametrize(
    ("is_value", "members", "expected"),
    [
        ("2", 2, True),
        ("==2", 3, False),
        ("<10", 9, True),
        ("<10", 10, False),
        (">10", 11, True),
        ("<=10", 10, True),
        (">=10", 9, False),
        ("ten", 10, False),
        ("=<10", 5, False),
    ],
)
def test_room_member_count_comparisons(is_value: str, members: int, expected: bool) -> None:
    rules = _override({"kind": "room_member_count", "is": is_value})
    assert (evaluate(rules, message(), ctx(members=members)) is not None) is expected


def test_unknown_or_malformed_conditions_never_match() -> None:
    assert evaluate(_override({"kind": "org.example.future"}), message(), ctx()) is None
    assert evaluate(_override({"kind": "event_match", "key": "type"}), message(), ctx()) is None
    assert evaluate(_override({"no_kind": True}), message(), ctx()) is None


def test_event_match_needs_a_string_value_even_for_star() -> None:
    rules = _override({"kind": "event_match", "key": "content.count", "pattern": "*"})
    assert evaluate(rules, message(count=3), ctx()) is None
    assert evaluate(rules, message(), ctx()) is None
    assert evaluate(rules, message(count="3"), ctx()) == ["notify"]


def test_event_match_is_whole_value_except_for_body() -> None:
    topic = {"type": "m.room.topic", "sender": BOB, "state_key": "", "content": {}}
    rules = _override({"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"})
    assert evaluate(rules, {**topic, "content": {"topic": "Lunch plans"}}, ctx()) is not None
    assert evaluate(rules, {**topic, "content": {"topic": "LUNCH"}}, ctx()) is not None
    assert evaluate(rules, {**topic, "content": {"topic": " lunch"}}, ctx()) is None
    assert evaluate(rules, {**topic, "content": {"topic": "lunc"}}, ctx()) is None
    assert evaluate(rules, {**topic, "content": {"topic": None}}, ctx()) is None


def test_event_property_is_does_not_cast_types() -> None:
    rules = _override({"kind": "event_property_is", "key": "content.m\\.federate", "value": True})
    create = {"type": "m.room.create", "sender": BOB, "state_key": ""}
    assert evaluate(rules, {**create, "content": {"m.federate": True}}, ctx()) is not None
    assert evaluate(rules, {**create, "content": {"m.federate": "true"}}, ctx()) is None
    assert evaluate(rules, {**create, "content": {"m.federate": 1}}, ctx()) is None
    assert evaluate(rules, {**create, "content": {"m": {"federate": True}}}, ctx()) is None


def test_event_property_contains_needs_exact_elements() -> None:
    rules = _override(
        {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#a:x.com"}
    )
    alias = {"type": "m.room.canonical_alias", "sender": BOB, "state_key": ""}
    assert evaluate(rules, {**alias, "content": {"alt_aliases": ["#b:x", "#a:x.com"]}}, ctx())
    assert evaluate(rules, {**alias, "content": {"alt_aliases": [":x.com", 1]}}, ctx()) is None
    assert evaluate(rules, {**alias, "content": {"alt_aliases": "#a:x.com"}}, ctx()) is None


def test_historical_actions_are_stripped() -> None:
    rules = PushRuleSet(override=(PushRule("r", False, True, (), ("dont_notify",)),))
    actions = evaluate(rules, message(), ctx())
    assert actions == [] and not actions_notify(actions)


def test_highlight_tweak_value_false_is_not_a_highlight() -> None:
    assert not actions_highlight(["notify", {"set_tweak": "highlight", "value": False}])
    assert actions_highlight(["notify", {"set_tweak": "highlight"}])
    assert not actions_highlight(None)


# --- Globs and paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("ex*ple", "An example event.", True),
        ("ex*ple", "exple", True),
        ("ex*ple", "An exciting triple-whammy", True),
        ("ex*ple", "Anexample", False),
        ("ex*ple", "examples", False),
        ("cake", "i like cake!", True),
        ("cake", "pancakes", False),
        ("c?ke", "CoKe_", False),
        ("c?ke", "(coke)", True),
        ("*", "", True),
        ("a*b*c", "xx a-b-c yy", True),
        ("a*b*c", "a-c-b", False),
    ],
)
def test_body_glob_matches_at_word_boundaries(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value, word_boundary=True) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("m.room.*", "m.room.message", True),
        ("m.room.*", "m.roomy", False),
        ("*.message", "m.room.message", True),
        ("m?room", "m.room", True),
        ("a*a*a*b", "a" * 5000, False),  # no catastrophic backtracking
        ("a*b", "a\nb", True),
        ("[abc]", "a", False),  # only * and ? are special
        ("[abc]", "[ABC]", True),
    ],
)
def test_whole_value_glob(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value) is expected


def test_dot_paths_unescape_dots_and_backslashes() -> None:
    event = {"content": {"m.relates_to": {"rel_type": "x"}, "m\\foo": "y", "a\\xb": "z"}}
    rules = _override({"kind": "event_match", "key": "content.m\\\\foo", "pattern": "y"})
    assert evaluate(rules, {**event, "sender": BOB}, ctx()) is not None
    # Other escapes stay literal: `\x` is a backslash followed by x.
    rules = _override({"kind": "event_match", "key": "content.a\\xb", "pattern": "z"})
    assert evaluate(rules, {**event, "sender": BOB}, ctx()) is not None
    key = "content.m\\.relates_to.rel_type"
    rules = _override({"kind": "event_match", "key": key, "pattern": "x"})
    assert evaluate(rules, {**event, "sender": BOB}, ctx()) is not None


# --- Editing --------------------------------------------------------------------------------


@pytest.mark.parametrize("rule_id", [".mine", "a/b", "a\\b", ""])
def test_put_rejects_reserved_rule_ids(rule_id: str) -> None:
    with pytest.raises(PushRuleError) as error:
        parse_put_rule_body("override", rule_id, {"actions": []})
    assert (error.value.errcode, error.value.status) == ("M_INVALID_PARAM", 400)


@pytest.mark.parametrize(
    ("kind", "body", "errcode"),
    [
        ("override", [], "M_BAD_JSON"),
        ("override", {}, "M_BAD_JSON"),
        ("override", {"actions": "notify"}, "M_BAD_JSON"),
        ("override", {"actions": ["explode"]}, "M_INVALID_PARAM"),
        ("override", {"actions": [{"value": 1}]}, "M_INVALID_PARAM"),
        ("override", {"actions": [], "conditions": {}}, "M_BAD_JSON"),
        ("override", {"actions": [], "conditions": [{"key": "type"}]}, "M_BAD_JSON"),
        ("underride", {"actions": [], "conditions": [{"kind": "event_match"}]}, "M_BAD_JSON"),
        (
            "override",
            {"actions": [], "conditions": [{"kind": "room_member_count", "is": "lots"}]},
            "M_INVALID_PARAM",
        ),
        (
            "override",
            {"actions": [], "conditions": [{"kind": "event_property_is", "key": "a", "value": []}]},
            "M_INVALID_PARAM",
        ),
        ("content", {"actions": []}, "M_BAD_JSON"),
    ],
)
def test_put_rejects_bad_bodies(kind: Any, body: Any, errcode: str) -> None:
    with pytest.raises(PushRuleError) as error:
        parse_put_rule_body(kind, "mine", body)
    assert error.value.errcode == errcode and error.value.status == 400


def test_put_accepts_unknown_condition_kinds_and_strips_historical_actions() -> None:
    body = {"actions": ["notify", "coalesce"], "conditions": [{"kind": "org.example.x"}]}
    rule = parse_put_rule_body("override", "future", body)
    assert rule.enabled and not rule.default
    assert rule.actions == ("notify",)
    assert rule.conditions == ({"kind": "org.example.x"},)


def test_unknown_kind_is_invalid_param() -> None:
    assert parse_kind("underride") == "underride"
    with pytest.raises(PushRuleError) as error:
        parse_kind("global")
    assert error.value.errcode == "M_INVALID_PARAM"


def _user_rule(kind: Any, rule_id: str) -> UserPushRule:
    return UserPushRule(kind, parse_put_rule_body(kind, rule_id, {"actions": ["notify"]}))


def _ids(rules: list[UserPushRule], kind: str) -> list[str]:
    return [r.rule.rule_id for r in rules if r.kind == kind]


def test_new_rule_without_before_or_after_becomes_most_important() -> None:
    rules = [_user_rule("override", "a"), _user_rule("room", ROOM)]
    updated = insert_user_rule(rules, "override", _user_rule("override", "b").rule)
    assert _ids(updated, "override") == ["b", "a"]
    assert _ids(updated, "room") == [ROOM]


def test_before_and_after_place_the_rule_next_to_the_anchor() -> None:
    rules = [_user_rule("override", "a"), _user_rule("override", "c")]
    new = _user_rule("override", "b").rule
    assert _ids(insert_user_rule(rules, "override", new, after="a"), "override") == ["a", "b", "c"]
    assert _ids(insert_user_rule(rules, "override", new, before="a"), "override") == ["b", "a", "c"]
    # Both given: `before` decides.
    placed = insert_user_rule(rules, "override", new, before="c", after="a")
    assert _ids(placed, "override") == ["a", "b", "c"]


def test_moving_an_existing_rule_keeps_one_copy_and_its_enabled_state() -> None:
    disabled = UserPushRule("override", PushRule("a", False, False, (), ()))
    rules = [disabled, _user_rule("override", "b")]
    updated = insert_user_rule(rules, "override", _user_rule("override", "a").rule, after="b")
    assert _ids(updated, "override") == ["b", "a"]
    assert updated[1].rule.enabled is False
    in_place = insert_user_rule(rules, "override", PushRule("a", False, True, (), ("notify",)))
    assert _ids(in_place, "override") == ["a", "b"] and in_place[0].rule.actions == ("notify",)


def test_before_after_must_name_an_existing_user_rule() -> None:
    rules = [_user_rule("override", "a")]
    new = _user_rule("override", "b").rule
    with pytest.raises(PushRuleError) as missing:
        insert_user_rule(rules, "override", new, before="nope")
    assert missing.value.errcode == "M_UNKNOWN" and missing.value.status == 400
    with pytest.raises(PushRuleError) as server_rule:
        insert_user_rule(rules, "override", new, after=".m.rule.master")
    assert server_rule.value.errcode == "M_INVALID_PARAM"
    with pytest.raises(PushRuleError):
        insert_user_rule(rules, "room", new, before="a")  # same ID, other kind


def test_user_rules_rank_below_master_and_above_other_defaults() -> None:
    rules = apply_user_changes(rules_for_alice(), [_user_rule("override", "mine")], {}, {})
    assert [r.rule_id for r in rules.override[:3]] == [
        ".m.rule.master",
        "mine",
        ".m.rule.suppress_notices",
    ]
    underride = apply_user_changes(rules_for_alice(), [_user_rule("underride", "u")], {}, {})
    assert underride.underride[0].rule_id == "u"


def test_actions_override_changes_a_default_rule() -> None:
    rules = apply_user_changes(
        rules_for_alice(), [], {}, {("underride", ".m.rule.message"): ["notify", "dont_notify"]}
    )
    assert get_rule(rules, "underride", ".m.rule.message").actions == ("notify",)
    # Keys are per kind: the same rule ID under another kind is untouched.
    other = apply_user_changes(rules_for_alice(), [], {("override", ".m.rule.message"): False}, {})
    assert get_rule(other, "underride", ".m.rule.message").enabled


def test_get_and_delete_missing_rules_are_not_found() -> None:
    with pytest.raises(PushRuleError) as error:
        get_rule(rules_for_alice(), "content", "nope")
    assert (error.value.errcode, error.value.status) == ("M_NOT_FOUND", 404)
    with pytest.raises(PushRuleError) as deleted:
        remove_user_rule([_user_rule("override", "a")], "underride", "a")
    assert deleted.value.status == 404
    assert remove_user_rule([_user_rule("override", "a")], "override", "a") == []


def test_enabled_and_actions_bodies() -> None:
    assert parse_enabled_body({"enabled": False}) is False
    assert parse_actions_body({"actions": [{"set_tweak": "sound", "value": "bing"}]}) == (
        {"set_tweak": "sound", "value": "bing"},
    )
    for bad in ({"enabled": "yes"}, {}, None):
        with pytest.raises(PushRuleError):
            parse_enabled_body(bad)
    with pytest.raises(PushRuleError):
        parse_actions_body({"actions": [1]})


def test_rules_round_trip_through_json() -> None:
    for _, rule in rules_for_alice().in_priority_order():
        assert PushRule.from_json(rule.to_json()) == rule


def test_rule_set_is_compiled_once_and_equality_ignores_the_memo() -> None:
    rules = rules_for_alice()
    assert rules.compiled() is rules.compiled()
    assert len(rules.compiled()) == len(SPEC_OVERRIDE_IDS) + len(SPEC_UNDERRIDE_IDS) - 1  # master
    assert rules == rules_for_alice()
