"""Push: each user's rule set (defaults merged with their changes), the push rules API, and
the evaluation of every new event for the room's local users (C-S "Push Notifications",
"Server behaviour": "process push rules for each of the local users in the room (excluding the
sender)").

`on_events_persisted` is an `EventPipeline` persisted hook. Its results (event_push_actions)
give /sync's unread counts and /notifications. "The updated notification count from a new
event MUST appear in the same /sync response as the event itself": the hook marks the room
busy before its first await (so before any woken /sync runs), and /sync waits for
`wait_until_processed` before it counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final

from federation.ids import server_name_of
from federation.pdu import Event
from federation.room_state import user_power_level
from homeserver.services.account_data import PUSH_RULES, AccountDataService
from homeserver.services.push_rules import (
    PushContext,
    PushRuleSet,
    RuleKind,
    actions_highlight,
    actions_notify,
    evaluate,
)
from homeserver.services.push_rules_defaults import default_rules
from homeserver.services.push_rules_edit import (
    apply_user_changes,
    get_rule,
    insert_user_rule,
    parse_actions_body,
    parse_enabled_body,
    parse_put_rule_body,
    remove_user_rule,
)
from homeserver.services.state import RoomStateCache
from homeserver.services.sync_recent import RecentEvents
from homeserver.storage.push_data import PushAction, PushDataStore, UnreadCounts
from homeserver.storage.sync_data import GLOBAL, SyncDataStore

logger = logging.getLogger(__name__)

MEMBER: Final = "m.room.member"
POWER_LEVELS: Final = "m.room.power_levels"
# user_power_level reads the create event (room creators) and the power levels.
_POWER_KEYS: Final = (("m.room.create", ""), (POWER_LEVELS, ""))
_RULE_CACHE_SIZE: Final = 10_000
# (user, room) unread counts kept for /sync (least recently used dropped first).
_UNREAD_CACHE_SIZE: Final = 50_000
# /sync waits at most this long for push evaluation before counting anyway.
_PROCESSING_WAIT_S: Final = 2.0

# Told of the `notify` actions just stored, with their events by ID (the HTTP pushers,
# homeserver/services/pushers_http.py). Must not block: it only queues work.
NotifyListener = Callable[[Sequence[PushAction], Mapping[str, Event]], None]


def _now_ms() -> int:
    return int(time.time() * 1000)


def thread_of(event: Event) -> str:
    """The event's thread for notification counts: its root for an `m.thread` relation, else
    "main" (C-S "Threaded read receipts"; one hop only)."""
    relates_to = event.content.get("m.relates_to")
    if isinstance(relates_to, Mapping) and relates_to.get("rel_type") == "m.thread":
        root = relates_to.get("event_id")
        if isinstance(root, str):
            return root
    return "main"


class PushService:
    def __init__(
        self,
        store: PushDataStore,
        sync_data: SyncDataStore,
        state: RoomStateCache,
        account_data: AccountDataService,
        server_name: str,
        *,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._store = store
        self._sync_data = sync_data
        self._state = state
        self._account_data = account_data
        self._server_name = server_name
        self._clock = clock
        self._rules: OrderedDict[str, PushRuleSet] = OrderedDict()
        self._busy: dict[str, int] = {}  # room_id → hooks running
        self._idle: dict[str, asyncio.Event] = {}
        self._notify_listeners: list[NotifyListener] = []
        # Unread counts change only when push actions are inserted (here: the cached counts
        # grow) or a read position moves (SyncDataStore.advance_read_position tells its
        # listeners: the entry is dropped). `_read_after` keeps the highest read position set
        # in this process per (user, room): an action at or below it may not count, so it
        # drops the entry instead. `_unread_generation` counts changes, so a read overlapping
        # one is not cached.
        self._unread: OrderedDict[tuple[str, str], UnreadCounts] = OrderedDict()
        self._read_after: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._unread_generation = 0
        # The latest events with their positions (set by SyncService): saves reading them.
        self.recent: RecentEvents | None = None
        self._inserting = 0  # inserts in flight: a read overlapping one may count it twice
        sync_data.read_position_listeners.append(self._read_position_moved)
        account_data.set_default(PUSH_RULES, self._push_rules_content)

    # --- rule sets ------------------------------------------------------------------------

    async def get_rule_set(self, user_id: str) -> PushRuleSet:
        cached = self._rules.get(user_id)
        if cached is not None:
            self._rules.move_to_end(user_id)
            return cached
        stored = await self._store.get_push_rules(user_id)
        rule_set = apply_user_changes(
            default_rules(user_id), stored.user_rules, stored.enabled, stored.actions
        )
        self._rules[user_id] = rule_set
        while len(self._rules) > _RULE_CACHE_SIZE:
            self._rules.popitem(last=False)
        return rule_set

    async def _push_rules_content(self, user_id: str) -> dict[str, Any]:
        return (await self.get_rule_set(user_id)).to_client_json()

    async def _changed(self, user_id: str) -> None:
        """After an edit: drop the cached set and tell the user's clients (m.push_rules)."""
        self._rules.pop(user_id, None)
        content = await self._push_rules_content(user_id)
        await self._account_data.put(user_id, GLOBAL, PUSH_RULES, content)

    # --- the push rules API (pushrules.yaml) ----------------------------------------------

    async def put_rule(
        self,
        user_id: str,
        kind: RuleKind,
        rule_id: str,
        body: Any,
        before: str | None,
        after: str | None,
    ) -> None:
        rule = parse_put_rule_body(kind, rule_id, body)
        stored = await self._store.get_push_rules(user_id)
        rules = insert_user_rule(stored.user_rules, kind, rule, before=before, after=after)
        await self._store.replace_user_rules(
            user_id, kind, [r.rule for r in rules if r.kind == kind]
        )
        await self._changed(user_id)

    async def delete_rule(self, user_id: str, kind: RuleKind, rule_id: str) -> None:
        stored = await self._store.get_push_rules(user_id)
        rules = remove_user_rule(stored.user_rules, kind, rule_id)
        await self._store.replace_user_rules(
            user_id, kind, [r.rule for r in rules if r.kind == kind]
        )
        await self._store.delete_rule_changes(user_id, kind, rule_id)
        await self._changed(user_id)

    async def set_enabled(self, user_id: str, kind: RuleKind, rule_id: str, body: Any) -> None:
        enabled = parse_enabled_body(body)
        get_rule(await self.get_rule_set(user_id), kind, rule_id)  # 404 if unknown
        await self._store.set_rule_enabled(user_id, kind, rule_id, enabled)
        await self._changed(user_id)

    async def set_actions(self, user_id: str, kind: RuleKind, rule_id: str, body: Any) -> None:
        actions = parse_actions_body(body)
        get_rule(await self.get_rule_set(user_id), kind, rule_id)
        await self._store.set_rule_actions(user_id, kind, rule_id, actions)
        await self._changed(user_id)

    # --- evaluation (the persisted hook) ----------------------------------------------------

    def add_notify_listener(self, listener: NotifyListener) -> None:
        self._notify_listeners.append(listener)

    async def on_events_persisted(self, events: Sequence[Event]) -> None:
        # Awaited by the room's writer: evaluating in the background would let it commit
        # smaller batches (more transactions per message) for no gain in throughput.
        rooms = {event.room_id for event in events}
        for room_id in rooms:  # before any await: see the module docstring
            self._busy[room_id] = self._busy.get(room_id, 0) + 1
            self._idle.setdefault(room_id, asyncio.Event()).clear()
        try:
            await self._process(events)
        finally:
            for room_id in rooms:
                self._busy[room_id] -= 1
                if not self._busy[room_id]:
                    del self._busy[room_id]
                    self._idle.pop(room_id).set()

    async def close(self) -> None:
        """Nothing runs in the background (evaluation happens in the persisted hook)."""

    async def wait_until_processed(self, room_ids: Iterable[str]) -> None:
        """Wait (briefly) for push evaluation of committed events of these rooms."""
        waits = [self._idle[r].wait() for r in room_ids if r in self._idle]
        if waits:
            try:
                async with asyncio.timeout(_PROCESSING_WAIT_S):
                    await asyncio.gather(*waits)
            except TimeoutError:
                logger.warning("push evaluation is slow; counting without it")

    # --- unread counts (C-S "Receiving notifications") --------------------------------------

    async def unread_counts(
        self, user_id: str, room_ids: Collection[str]
    ) -> dict[str, UnreadCounts]:
        """Notification and highlight counts after the user's read position, per room."""
        result: dict[str, UnreadCounts] = {}
        missing = []
        for room_id in room_ids:
            cached = self._unread.get((user_id, room_id))
            if cached is None:
                missing.append(room_id)
            else:
                self._unread.move_to_end((user_id, room_id))
                result[room_id] = cached
        if not missing:
            return result
        generation = self._unread_generation
        quiet = not self._inserting
        found = await self._store.get_unread_counts(user_id, missing)
        keep = quiet and not self._inserting and generation == self._unread_generation
        for room_id in missing:
            counts = found.get(room_id, UnreadCounts())
            result[room_id] = counts
            if keep:
                self._unread[(user_id, room_id)] = counts
        while len(self._unread) > _UNREAD_CACHE_SIZE:
            self._unread.popitem(last=False)
        return result

    async def _positions(self, events: Sequence[Event]) -> dict[str, int]:
        """Stream positions of committed events: from /sync's recent events, else storage."""
        found = self.recent.positions_of(events) if self.recent is not None else {}
        missing = [e.event_id for e in events if e.event_id not in found]
        if missing:
            found.update(await self._sync_data.get_stream_orderings(missing))
        return found

    def _read_position_moved(self, user_id: str, room_id: str, position: int) -> None:
        key = (user_id, room_id)
        self._unread_generation += 1
        self._unread.pop(key, None)
        self._read_after[key] = max(position, self._read_after.get(key, position))
        self._read_after.move_to_end(key)
        if len(self._read_after) > _UNREAD_CACHE_SIZE:
            # Forgetting a read position could let a stale action count: forget the counts.
            self._read_after.popitem(last=False)
            self._unread.clear()

    def _count_new_actions(self, actions: Sequence[PushAction]) -> None:
        """Inserted actions (of new events) add to the cached counts of their (user, room)."""
        for action in actions:
            key = (action.user_id, action.room_id)
            cached = self._unread.get(key)
            if cached is None:
                continue
            if action.stream_ordering <= self._read_after.get(key, -1):
                del self._unread[key]
                continue
            self._unread[key] = UnreadCounts(
                cached.notification_count + 1, cached.highlight_count + int(action.highlight)
            )

    async def _process(self, events: Sequence[Event]) -> None:
        positions = await self._positions(events)
        actions: list[PushAction] = []
        # C-S "Marking notifications as read": sending an event reads up to it.
        read_up_to: dict[tuple[str, str], int] = {}
        for event in events:
            position = positions.get(event.event_id)
            if position is None:
                continue
            if server_name_of(event.sender) == self._server_name:
                key = (event.sender, event.room_id)
                read_up_to[key] = max(position, read_up_to.get(key, position))
            actions.extend(await self._evaluate_event(event, position))
        self._inserting += 1
        try:
            # One statement for the whole batch (the room's writer waits for it).
            await self._store.record_evaluation(read_up_to, actions)
        except BaseException:
            for action in actions:  # unknown outcome: read them again
                self._unread.pop((action.user_id, action.room_id), None)
            raise
        else:
            for (user_id, room_id), position in read_up_to.items():
                self._read_position_moved(user_id, room_id, position)
            self._count_new_actions(actions)
        finally:
            self._inserting -= 1
            self._unread_generation += 1
        self._tell_notify_listeners(events, actions)

    def _tell_notify_listeners(self, events: Sequence[Event], actions: list[PushAction]) -> None:
        if not actions or not self._notify_listeners:
            return
        by_id: dict[str, Event] = {event.event_id: event for event in events}
        for listener in self._notify_listeners:
            try:
                listener(actions, by_id)
            except Exception:  # pushing to devices must not fail evaluation
                logger.exception("push notify listener failed")

    async def _evaluate_event(self, event: Event, position: int) -> list[PushAction]:
        # Only what the rules need, never the whole state: the joined members (kept per
        # current state by the cache), the local ones' member events, create + power levels.
        joined = await self._state.get_joined_members(event.room_id)
        local = [
            event_id
            for user_id, event_id in joined.items()
            if server_name_of(user_id) == self._server_name and user_id != event.sender
        ]
        member_events = await self._state.get_events(local)
        recipients: dict[str, Mapping[str, Any]] = {
            e.state_key: e.content for e in member_events.values() if e.state_key is not None
        }
        invitee = event.state_key if event.type == MEMBER else None
        if (
            invitee
            and event.membership == "invite"
            and server_name_of(invitee) == self._server_name
        ):
            recipients.setdefault(invitee, {})  # for .m.rule.invite_for_me
        recipients.pop(event.sender, None)
        if not recipients:
            return []
        state = await self._state.get_current_state(event.room_id, _POWER_KEYS)
        power_event = state.get((POWER_LEVELS, ""))
        power_levels = dict(power_event.content) if power_event else {}
        sender_level = user_power_level(state, event.sender)
        client_event = {**event.pdu, "room_id": event.room_id, "event_id": event.event_id}
        result = []
        for user_id, member_content in recipients.items():
            display_name = member_content.get("displayname")
            ctx = PushContext(
                user_id=user_id,
                display_name=display_name if isinstance(display_name, str) else None,
                room_member_count=len(joined),
                power_levels=power_levels,
                sender_power_level=int(min(sender_level, 2**53)),
            )
            found = evaluate(await self.get_rule_set(user_id), client_event, ctx)
            if actions_notify(found):
                assert found is not None
                result.append(
                    PushAction(
                        user_id,
                        event.event_id,
                        event.room_id,
                        position,
                        thread_of(event),
                        found,
                        actions_highlight(found),
                        self._clock(),
                    )
                )
        return result

    def busy_rooms(self) -> Collection[str]:
        return tuple(self._busy)
