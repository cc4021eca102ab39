"""Stored events in the client format (`definitions/client_event.yaml`), with `unsigned` and
bundled aggregations.

C-S "Room Event Format": `event_id`, `type`, `content`, `sender`, `origin_server_ts`,
`room_id`, `state_key` (state events only) and `unsigned`:
- `age`: milliseconds since the event was sent;
- `redacted_because`: the redaction, for redacted events, which are served redacted
  (C-S "Redactions");
- `transaction_id`: only for the device that sent the event;
- `prev_content` and `replaces_state`: the state event this one replaced;
- `membership`: the requesting user's membership at the event (when the caller knows it);
- `m.relations`: bundled aggregations (C-S "Aggregations of child events") of `m.replace`
  (newest valid edit, not for redacted originals), `m.thread` (count, latest event, whether the
  user took part) and `m.reference` (the referencing event IDs). State events get none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from federation.redaction import redact
from homeserver.services.state import RoomStateCache
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage.event_rows import EventRow
from homeserver.storage.room_reads import RoomReadsStore

REPLACE: Final = "m.replace"
THREAD: Final = "m.thread"
REFERENCE: Final = "m.reference"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who the events are for: their membership-dependent fields depend on it."""

    user_id: str
    device_id: str | None


def base_client_event(row: EventRow, now: int) -> dict[str, Any]:
    """The event's client-format fields, redacted if a redaction applies to it, with `age`."""
    event = row.event
    pdu: Mapping[str, Any] = event.pdu
    if row.redacted_because is not None:
        pdu = redact(pdu, event.room_version)
    content = pdu.get("content")
    formatted: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "content": dict(content) if isinstance(content, Mapping) else {},
        "sender": event.sender,
        "origin_server_ts": event.origin_server_ts,
        "room_id": event.room_id,
        "unsigned": {"age": max(0, now - event.origin_server_ts)},
    }
    if event.state_key is not None:
        formatted["state_key"] = event.state_key
    if event.redacts is not None:
        # Top-level `redacts` before v11, in content from v11; clients read either.
        formatted["redacts"] = event.redacts
    return formatted


class ClientEventFormatter:
    """Turns `EventRow`s into client events for one viewer."""

    def __init__(
        self,
        cache: RoomStateCache,
        store: RoomReadsStore,
        visibility: HistoryVisibility,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._cache = cache
        self._store = store
        self._visibility = visibility
        self._clock = clock

    async def format_events(
        self,
        rows: Sequence[EventRow],
        viewer: Viewer,
        *,
        bundle: bool = True,
        replaced_state: bool = True,
        memberships: Mapping[str, str] | None = None,
        _in_thread_summary: bool = False,
    ) -> list[dict[str, Any]]:
        """Client events for `rows`, in order. `bundle`: add bundled aggregations;
        `replaced_state`: add `replaces_state`/`prev_content` (off for whole state listings,
        where each event would need the state before it); `memberships`: `event_id → the
        viewer's membership at the event` where known (`unsigned.membership`)."""
        if not rows:
            return []
        now = self._clock()
        formatted = [base_client_event(row, now) for row in rows]
        for row, event in zip(rows, formatted, strict=True):
            unsigned = event["unsigned"]
            if (
                row.txn_id is not None
                and row.txn_device_id == viewer.device_id
                and row.event.sender == viewer.user_id
            ):
                unsigned["transaction_id"] = row.txn_id
            if memberships is not None and row.event.event_id in memberships:
                unsigned["membership"] = memberships[row.event.event_id]
        await self._add_redacted_because(rows, formatted, now)
        if replaced_state:
            await self._add_replaced_state(rows, formatted, now)
        if bundle:
            await self._add_bundles(rows, formatted, viewer, with_threads=not _in_thread_summary)
        return formatted

    async def format_event(
        self, row: EventRow, viewer: Viewer, *, bundle: bool = True
    ) -> dict[str, Any]:
        (formatted,) = await self.format_events([row], viewer, bundle=bundle)
        return formatted

    async def _add_redacted_because(
        self, rows: Sequence[EventRow], formatted: list[dict[str, Any]], now: int
    ) -> None:
        redaction_ids = {r.redacted_because for r in rows if r.redacted_because is not None}
        if not redaction_ids:
            return
        redactions = await self._store.get_event_rows(redaction_ids)
        for row, event in zip(rows, formatted, strict=True):
            redaction = redactions.get(row.redacted_because or "")
            if redaction is not None:
                event["unsigned"]["redacted_because"] = base_client_event(redaction, now)

    async def _add_replaced_state(
        self, rows: Sequence[EventRow], formatted: list[dict[str, Any]], now: int
    ) -> None:
        """`replaces_state` and `prev_content` from the state before each state event."""
        state_events = [row.event for row in rows if row.event.state_key is not None]
        if not state_events:
            return
        groups = await self._cache.get_state_groups_for_events(e.event_id for e in state_events)
        replaced: dict[str, str] = {}
        for state_event in state_events:
            if state_event.event_id not in groups:
                continue
            _, before_group = groups[state_event.event_id]
            before = await self._cache.get_state_group_state(before_group)
            previous = before.get(state_event.state_tuple)
            if previous is not None:
                replaced[state_event.event_id] = previous
        if not replaced:
            return
        # The replaced event was part of the state before: it may be an outlier.
        previous_rows = await self._store.get_state_event_rows(set(replaced.values()))
        for row, event in zip(rows, formatted, strict=True):
            previous_id = replaced.get(row.event.event_id)
            if previous_id is None:
                continue
            event["unsigned"]["replaces_state"] = previous_id
            previous_row = previous_rows.get(previous_id)
            if previous_row is not None:
                event["unsigned"]["prev_content"] = base_client_event(previous_row, now)["content"]

    # --- bundled aggregations -------------------------------------------------------------

    async def _add_bundles(
        self,
        rows: Sequence[EventRow],
        formatted: list[dict[str, Any]],
        viewer: Viewer,
        *,
        with_threads: bool,
    ) -> None:
        # "State events do not currently receive bundled aggregations."
        parents = [row for row in rows if row.event.state_key is None]
        if not parents:
            return
        parent_ids = [row.event.event_id for row in parents]
        unredacted = [
            (r.event.event_id, r.event.sender, r.event.type)
            for r in parents
            if r.redacted_because is None
        ]
        edits = await self._store.get_latest_edits(unredacted)
        # A thread's latest event is bundled one level deep only (no loops, bounded work).
        threads = (
            await self._store.get_thread_summaries(parent_ids, viewer.user_id)
            if with_threads
            else {}
        )
        references = await self._store.get_references(parent_ids)
        if not (edits or threads or references):
            return
        child_ids = set(edits.values()) | {t.latest_event_id for t in threads.values()}
        children = await self._visible_children(child_ids, viewer)
        latest_rows = [
            children[t.latest_event_id] for t in threads.values() if t.latest_event_id in children
        ]
        latest_events = await self.format_events(latest_rows, viewer, _in_thread_summary=True)
        latest_formatted = {e["event_id"]: e for e in latest_events}
        now = self._clock()
        for row, event in zip(rows, formatted, strict=True):
            event_id = row.event.event_id
            relations: dict[str, Any] = {}
            edit = children.get(edits.get(event_id, ""))
            if edit is not None:
                relations[REPLACE] = base_client_event(edit, now)
            thread = threads.get(event_id)
            if thread is not None and thread.latest_event_id in latest_formatted:
                relations[THREAD] = {
                    "latest_event": latest_formatted[thread.latest_event_id],
                    "count": thread.count,
                    "current_user_participated": thread.participated
                    or row.event.sender == viewer.user_id,
                }
            if event_id in references:
                relations[REFERENCE] = {"chunk": [{"event_id": i} for i in references[event_id]]}
            if relations:
                event["unsigned"]["m.relations"] = relations

    async def _visible_children(self, event_ids: set[str], viewer: Viewer) -> dict[str, EventRow]:
        if not event_ids:
            return {}
        found = await self._store.get_event_rows(event_ids)
        visible = await self._visibility.filter_events(viewer.user_id, list(found.values()))
        return {row.event.event_id: row for row in visible}
