"""Filters: parse a client's filter JSON and apply it to events.

Spec: C-S "Filtering" (client-server-api/_index.md) and `data/api/client-server/filter.yaml`
with `definitions/sync_filter.yaml`, `event_filter.yaml`, `room_event_filter.yaml`; event
fields use appendices "Dot-separated property paths". Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from homeserver.services.event_paths import MISSING, lookup_path, split_dot_path

# event_filter.yaml: "Servers should apply a default value, and impose a maximum value".
DEFAULT_TIMELINE_LIMIT: Final = 10
MAX_EVENT_LIMIT: Final = 1000

UserIdStr = Annotated[StrictStr, Field(pattern=r"^@")]
RoomIdStr = Annotated[StrictStr, Field(pattern=r"^!")]
# "must be an integer greater than 0"
Limit = Annotated[StrictInt, Field(ge=1)]


class FilterError(ValueError):
    """A filter the client sent is unusable; `errcode` is the Matrix error code."""

    def __init__(self, errcode: str, message: str) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message


class _FilterModel(BaseModel):
    # Unknown keys are ignored so newer clients' filters still work.
    model_config = ConfigDict(frozen=True, extra="ignore")


class EventFilter(_FilterModel):
    """event_filter.yaml. Absent lists mean "no restriction"."""

    limit: Limit | None = None
    not_senders: tuple[UserIdStr, ...] | None = None
    not_types: tuple[StrictStr, ...] | None = None
    senders: tuple[UserIdStr, ...] | None = None
    types: tuple[StrictStr, ...] | None = None


class RoomEventFilter(EventFilter):
    """room_event_filter.yaml."""

    unread_thread_notifications: StrictBool = False
    lazy_load_members: StrictBool = False
    include_redundant_members: StrictBool = False
    not_rooms: tuple[RoomIdStr, ...] | None = None
    rooms: tuple[RoomIdStr, ...] | None = None
    # True: only events whose content has `url`; False: only those without; None: either.
    contains_url: StrictBool | None = None


class RoomFilter(_FilterModel):
    """sync_filter.yaml `room`. `rooms`/`not_rooms` apply before the inner filters."""

    not_rooms: tuple[RoomIdStr, ...] | None = None
    rooms: tuple[RoomIdStr, ...] | None = None
    ephemeral: RoomEventFilter = RoomEventFilter()
    include_leave: StrictBool = False
    state: RoomEventFilter = RoomEventFilter()
    timeline: RoomEventFilter = RoomEventFilter()
    account_data: RoomEventFilter = RoomEventFilter()


class Filter(_FilterModel):
    """sync_filter.yaml: the whole filter uploaded to `/user/{userId}/filter` or inlined."""

    event_fields: tuple[StrictStr, ...] | None = None
    event_format: Literal["client", "federation"] = "client"
    presence: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    room: RoomFilter = RoomFilter()

    def to_json(self) -> dict[str, Any]:
        """The filter as the client gave it (minus unknown keys), for `GET …/filter/{id}`."""
        return self.model_dump(mode="json", exclude_unset=True)


# Pydantic error types meaning "valid JSON type, unacceptable value"; all others mean the JSON
# has the wrong shape.
_VALUE_ERRORS: Final = frozenset({"greater_than_equal", "string_pattern_mismatch", "literal_error"})


# Messages in JSON terms (pydantic speaks of tuples and model instances).
_MESSAGES: Final = {
    "tuple_type": "must be a list",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be a boolean",
}


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or "(filter)"


def parse_filter(obj: Any) -> Filter:
    """Validate a decoded filter; every problem is reported at once, each with its field path.

    Raises FilterError with M_BAD_JSON for wrong JSON types, M_INVALID_PARAM for bad values
    (a `limit` below 1, an `event_format` other than client/federation, IDs of the wrong kind).
    """
    if not isinstance(obj, Mapping):
        raise FilterError("M_BAD_JSON", "The filter must be a JSON object")
    try:
        return Filter.model_validate(obj)
    except PydanticValidationError as exc:
        errors = exc.errors(include_url=False)
        errcode = (
            "M_INVALID_PARAM"
            if all(error["type"] in _VALUE_ERRORS for error in errors)
            else "M_BAD_JSON"
        )
        details = "; ".join(
            f"{_field_path(e['loc'])}: {_MESSAGES.get(e['type'], e['msg'])}" for e in errors
        )
        raise FilterError(errcode, f"Invalid filter: {details}") from None


def _reject_constant(name: str) -> Any:
    raise FilterError("M_NOT_JSON", f"Invalid JSON value in filter: {name}")


def parse_inline_filter(text: str) -> Filter:
    """A filter given inline as JSON text (e.g. `/sync?filter={...}`)."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, FilterError):
            raise
        raise FilterError("M_NOT_JSON", "The filter is not valid JSON") from None
    return parse_filter(obj)


def event_limit(
    event_filter: EventFilter | None,
    default: int = DEFAULT_TIMELINE_LIMIT,
    maximum: int = MAX_EVENT_LIMIT,
) -> int:
    """The number of events to return: the filter's `limit`, else `default`, capped."""
    limit = default if event_filter is None or event_filter.limit is None else event_filter.limit
    return min(limit, maximum)


@lru_cache(maxsize=4096)
def _type_pattern(pattern: str) -> re.Pattern[str]:
    # event_filter.yaml: "A `*` can be used as a wildcard to match any sequence of characters."
    return re.compile(".*".join(re.escape(piece) for piece in pattern.split("*")), re.DOTALL)


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether `event_type` matches a `types`/`not_types` entry (exact, or with `*`)."""
    if "*" not in pattern:
        return pattern == event_type
    return _type_pattern(pattern).fullmatch(event_type) is not None


def _any_type_matches(patterns: Sequence[str], event_type: str) -> bool:
    return any(type_matches(pattern, event_type) for pattern in patterns)


def _id_allowed(
    value: str | None, include: Sequence[str] | None, exclude: Sequence[str] | None
) -> bool:
    # An excluded ID is excluded even if it is also listed as included.
    if exclude is not None and value in exclude:
        return False
    return include is None or value in include


def room_allowed(room_filter: RoomFilter | RoomEventFilter | None, room_id: str) -> bool:
    """Whether `rooms`/`not_rooms` let `room_id` through (`not_rooms` wins)."""
    if room_filter is None:
        return True
    return _id_allowed(room_id, room_filter.rooms, room_filter.not_rooms)


def event_matches(
    event_filter: EventFilter | RoomEventFilter | None,
    event: Mapping[str, Any],
    *,
    room_id: str | None = None,
) -> bool:
    """Whether `event` (client format) passes the filter.

    Checks `not_types`/`types`, `not_senders`/`senders`, and for room event filters
    `not_rooms`/`rooms` (against `room_id`, else the event's own `room_id`; skipped if neither
    is known, e.g. for ephemeral events) and `contains_url`. `limit` is the caller's to apply.
    """
    if event_filter is None:
        return True
    event_type = event.get("type")
    if not isinstance(event_type, str):
        return False
    if event_filter.not_types is not None and _any_type_matches(event_filter.not_types, event_type):
        return False
    if event_filter.types is not None and not _any_type_matches(event_filter.types, event_type):
        return False
    sender = event.get("sender")
    if not _id_allowed(
        sender if isinstance(sender, str) else None, event_filter.senders, event_filter.not_senders
    ):
        return False
    if isinstance(event_filter, RoomEventFilter):
        return _room_event_matches(event_filter, event, room_id)
    return True


def _room_event_matches(
    event_filter: RoomEventFilter, event: Mapping[str, Any], room_id: str | None
) -> bool:
    if room_id is None and isinstance(event.get("room_id"), str):
        room_id = event["room_id"]
    if room_id is not None and not room_allowed(event_filter, room_id):
        return False
    if event_filter.contains_url is not None:
        content = event.get("content")
        has_url = isinstance(content, Mapping) and "url" in content
        return has_url == event_filter.contains_url
    return True


def apply_event_fields(event: Mapping[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """Keep only the `event_fields` paths of `event` (sync_filter.yaml `event_fields`).

    No `fields` keeps everything. Paths that are absent, or run through a non-object, are
    skipped. The result is a new dict; kept values are shared with `event`, never mutated.
    """
    if fields is None:
        return dict(event)
    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        parts = split_dot_path(path)
        for name in parts[:-1]:
            child = node.setdefault(name, {})
            if child is _WHOLE:
                break  # an enclosing property is already kept whole
            node = child
        else:
            node[parts[-1]] = _WHOLE
    return _project(event, tree)


_WHOLE: Final[dict[str, Any]] = {}


def _project(value: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, subtree in tree.items():
        found = lookup_path(value, (name,))
        if found is MISSING:
            continue
        if subtree is _WHOLE:
            result[name] = found
        elif isinstance(found, Mapping):
            projected = _project(found, subtree)
            if projected:
                result[name] = projected
    return result
