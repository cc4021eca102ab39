"""THE event pipeline: every event, local or remote, ends in the same persist path.

GUIDE.md "How data flows": build (or receive) → auth check → one PostgreSQL transaction
(event, edges, state delta, extremities, current state, memberships, txnId) → commit → update
the in-memory state → wake /sync waiters → hand the events to the `on_persisted` hooks
(federation sending). A client is answered only after the commit. The steps from the
transaction on (the one persist path) are homeserver/services/event_commit.py; this module
builds local events, checks received ones' batches, and hands both to it.

Writes to a room are serialised by one `asyncio.Lock` per room; reads never take it. Local sends
to a room queue up while a transaction is running and the next transaction takes all of them
(up to `max_batch`) as a linear chain: group commit, so a busy room costs one commit per batch
rather than one per message, with the same ordering and the same answer to each client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import orjson

from federation.pdu import Event
from federation.room_state import CREATE, StateKey
from federation.room_versions import RoomVersion
from federation.signing import SigningKey
from homeserver.errors import MatrixError
from homeserver.services.event_builder import (
    NewEvent,
    auth_event_ids_for,
    build_pdu,
    check_local_event,
    choose_prev_events,
    new_room_id,
    parse_built_pdu,
)
from homeserver.services.event_commit import BatchCommitter, PersistedHook
from homeserver.services.notifier import Notifier
from homeserver.services.remote_batch import RemoteBatch, RemoteEvent, open_remote_batch
from homeserver.services.room_batch import BatchApplier, RoomBatch
from homeserver.services.room_writers import RoomWriters
from homeserver.services.state import RoomStateCache
from homeserver.services.streams import StreamTracker
from homeserver.storage.events import EventsStore, TransactionIdTaken
from homeserver.storage.rooms import ClientTransaction, RoomsStore

__all__ = [
    "DEFAULT_MAX_BATCH",
    "EventPipeline",
    "PersistedHook",
    "RemoteBatch",
    "RemoteEvent",
    "now_ms",
]

DEFAULT_MAX_BATCH: Final = 100


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Request:
    new: NewEvent
    prev_event_ids: Sequence[str] | None
    txn: ClientTransaction | None
    future: asyncio.Future[Event]


class EventPipeline:
    def __init__(
        self,
        *,
        events: EventsStore,
        rooms: RoomsStore,
        state: RoomStateCache,
        notifier: Notifier,
        tracker: StreamTracker,
        server_name: str,
        signing_key: SigningKey,
        on_persisted: Sequence[PersistedHook] = (),
        clock: Callable[[], int] = now_ms,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._events = events
        self._rooms = rooms
        self._state = state
        self._server_name = server_name
        self._signing_key = signing_key
        self._clock = clock
        self._committer = BatchCommitter(
            events=events,
            state=state,
            notifier=notifier,
            tracker=tracker,
            hooks=on_persisted,
            clock=clock,
        )
        self._applier = BatchApplier(state, events)
        self._writers: RoomWriters[_Request] = RoomWriters(self._process_local, _fail, max_batch)

    def _is_local(self, user_id: str) -> bool:
        return user_id.startswith("@") and user_id.partition(":")[2] == self._server_name

    def add_persisted_hook(self, hook: PersistedHook) -> None:
        """`hook(events)` runs after each commit with the new accepted timeline events."""
        self._committer.add_persisted_hook(hook)

    # --- local events ---------------------------------------------------------------------

    async def create_local_event(
        self,
        room_id: str,
        event_type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        prev_event_ids: Sequence[str] | None = None,
        extra_pdu_fields: Mapping[str, Any] | None = None,
        txn: ClientTransaction | None = None,
    ) -> Event:
        """Build, authorise and persist a local user's event; return it once committed.

        `prev_event_ids` defaults to the room's forward extremities (at most 20). With `txn`,
        the transaction ID is stored in the same transaction, and a retry returns the original
        event. Raises `MatrixError` (403 M_FORBIDDEN with the auth rule's reason, 404 for an
        unknown room, 400/413 for a malformed event).
        """
        if not self._is_local(sender):
            raise MatrixError(403, "M_FORBIDDEN", f"{sender} is not a user of this server")
        new = NewEvent(event_type, sender, dict(content), state_key, extra_pdu_fields)
        request = _Request(new, prev_event_ids, txn, asyncio.get_running_loop().create_future())
        self._writers.submit(room_id, request)
        # Shielded: a client that goes away does not abort the batch of the others.
        return await asyncio.shield(request.future)

    async def create_room_events(
        self,
        room_version: RoomVersion,
        events: Sequence[NewEvent],
        *,
        room_id: str | None = None,
        is_public: bool = False,
    ) -> list[Event]:
        """Create a room: `events[0]` is its m.room.create, the rest its initial events (creator
        join, power levels, join rules …), each after the previous. All are persisted in one
        transaction, or none if any fails the auth rules. In v12 the room ID is derived from
        the create event (`room_id` must be None); otherwise it is `room_id` or a new one."""
        if not events or events[0].event_type != CREATE or events[0].state_key != "":
            raise ValueError("the first event of a new room is its m.room.create event")
        if room_version.room_id_from_create_event:
            if room_id is not None:
                raise ValueError(f"room version {room_version.identifier} derives the room ID")
        elif room_id is None:
            room_id = new_room_id(self._server_name)
        elif await self._rooms.get_room_version(room_id) is not None:
            raise MatrixError(400, "M_ROOM_IN_USE", f"room {room_id} already exists")
        for new in events:
            if not self._is_local(new.sender):
                raise MatrixError(403, "M_FORBIDDEN", f"{new.sender} is not a local user")
        loop = asyncio.get_running_loop()
        requests = [_Request(new, None, None, loop.create_future()) for new in events]
        batch = RoomBatch.new(room_id, room_version, is_public)
        await self._run_local(batch, requests, atomic=True)
        return [request.future.result() for request in requests]

    async def _process_local(self, room_id: str, requests: list[_Request]) -> None:
        room = await self._state.get_room_state(room_id)
        if room is None:
            _fail(requests, MatrixError(404, "M_NOT_FOUND", f"unknown room {room_id}"))
            return
        requests = _join_repeated_transactions(requests)
        try:
            await self._run_local(RoomBatch.from_room(room), requests, atomic=False)
        except TransactionIdTaken:
            # A retry of a request processed before (the stored txnId stopped the whole
            # transaction, nothing was written): answer it, then build the others again.
            pending = [r for r in requests if not r.future.done()]
            pending = await self._answer_stored_transactions(pending)
            if pending:
                await self._run_local(RoomBatch.from_room(room), pending, atomic=False)

    async def _run_local(self, batch: RoomBatch, requests: list[_Request], atomic: bool) -> None:
        """Build each request's event on top of the previous one, then commit them together.

        A request that fails (auth, format) gets its error and is left out; with `atomic`, any
        failure fails the whole batch.
        """
        state_events = sum(1 for r in requests if r.new.state_key is not None)
        explicit = sum(1 for r in requests if r.prev_event_ids is not None)
        batch.state_group_hint = 1 + state_events + 2 * explicit
        built: list[tuple[_Request, Event]] = []
        for request in requests:
            try:
                event = await self._build_and_add(batch, request)
            except MatrixError as e:
                if atomic:
                    raise
                request.future.set_exception(e)
                continue
            built.append((request, event))
        if built:
            await self._committer.commit(batch)
        for request, event in built:
            if not request.future.done():
                request.future.set_result(event)
        await self._committer.run_hooks([event for _, event in built])

    async def _build_and_add(self, batch: RoomBatch, request: _Request) -> Event:
        new, room_version = request.new, batch.room_version
        if request.prev_event_ids is None:
            extremities = await self._applier.get_events(batch, batch.extremities)
            prev_ids = choose_prev_events(extremities)
            state_before, before_group = batch.state, batch.state_group
        else:
            prev_ids = list(dict.fromkeys(request.prev_event_ids))
            state_before, before_group = await self._applier.state_after_events(batch, prev_ids)
        prev_events = await self._applier.get_events(batch, prev_ids)
        if len(prev_events) != len(prev_ids):
            raise MatrixError(400, "M_INVALID_PARAM", "unknown prev_events")
        auth_ids = auth_event_ids_for(room_version, new, state_before)
        create_id = state_before.get((CREATE, ""))
        # v12 lists no create event in auth_events, but the auth rules still need it.
        auth_events = await self._applier.get_events(
            batch, auth_ids + ([create_id] if create_id else [])
        )
        is_v12_create = room_version.room_id_from_create_event and new.event_type == CREATE
        pdu = build_pdu(
            room_version=room_version,
            room_id=None if is_v12_create else batch.room_id,
            new=new,
            prev_events=[prev_events[i] for i in prev_ids],
            auth_events=[auth_events[i] for i in auth_ids if i in auth_events],
            origin_server_ts=self._clock(),
            server_name=self._server_name,
            signing_key=self._signing_key,
        )
        event = parse_built_pdu(pdu, room_version)
        check_local_event(event, {e.state_tuple: e for e in auth_events.values() if e.is_state})
        if batch.room_id is None:
            batch.room_id = event.room_id  # v12: the create event names the room
        await self._applier.add_event(batch, event, state_before, before_group, txn=request.txn)
        return event

    async def _answer_stored_transactions(self, requests: list[_Request]) -> list[_Request]:
        """Answer retransmitted txnIds with the original event (C-S "Transaction identifiers");
        return the requests still to process."""
        txns = [r.txn for r in requests if r.txn is not None]
        if not txns:
            return requests
        stored = await self._rooms.get_client_transactions(txns)
        remaining: list[_Request] = []
        for request in requests:
            txn = request.txn
            if txn is None or txn not in stored:
                remaining.append(request)
                continue
            event_id = orjson.loads(stored[txn]).get("event_id")
            events = await self._state.get_events([event_id])
            if event_id in events:
                request.future.set_result(events[event_id])
            else:
                request.future.set_exception(
                    MatrixError(500, "M_UNKNOWN", "original event of this txnId not found")
                )
        return remaining

    # --- remote events --------------------------------------------------------------------

    async def persist_remote_event(
        self,
        event: Event,
        state_before: Mapping[StateKey, str] | None,
        *,
        rejected_reason: str | None = None,
        soft_failed: bool = False,
        outlier: bool = False,
        out_of_band_membership: bool = False,
    ) -> int:
        """Persist a received event after the S2S receipt checks; return its stream position."""
        item = RemoteEvent(
            event, state_before, rejected_reason, soft_failed, outlier, out_of_band_membership
        )
        positions = await self.persist_remote_events(event.room_id, [item])
        return positions[event.event_id]

    async def persist_remote_events(
        self, room_id: str, items: Sequence[RemoteEvent], *, backfilled: bool = False
    ) -> dict[str, int]:
        """Persist received events of one room in one transaction, in the order given (auth
        events before the events they authorise). Already stored events are skipped.

        `backfilled` (S2S "Backfilling and retrieving missing events"): older history of a
        room we are in, oldest first. Such events take negative stream positions from their
        own descending sequence, so no /sync token, federation sender or push evaluation ever
        treats them as new; they wake no client, run no `on_persisted` hook and leave the
        current state and forward extremities as they are (they precede them).
        """
        async with self._writers.exclusive(room_id):
            return await self._persist_remote(room_id, items, backfilled)

    async def _persist_remote(
        self, room_id: str, items: Sequence[RemoteEvent], backfilled: bool
    ) -> dict[str, int]:
        result = await self._events.get_stream_orderings(i.event.event_id for i in items)
        items = [i for i in items if i.event.event_id not in result]
        if not items:
            return result
        if any(i.event.room_id != room_id for i in items):
            raise ValueError("persist_remote_events takes events of one room")
        batch = await self._open_remote_batch(
            room_id, items[0].event.room_version, [i.event.event_id for i in items], backfilled
        )
        for item in items:
            await batch.add(item)
        result.update(await batch.commit())
        return result

    @asynccontextmanager
    async def remote_batch(
        self, room_id: str, room_version: RoomVersion, event_ids: Sequence[str]
    ) -> AsyncIterator[RemoteBatch]:
        """Hold the room's write lock with an open batch of received events: the caller adds
        events one at a time (each seeing the room as the ones before left it) and commits
        them in one transaction, or leaves without committing and nothing is written.
        `event_ids`: the events that may be added (none of them stored yet)."""
        async with self._writers.exclusive(room_id):
            yield await self._open_remote_batch(room_id, room_version, event_ids, False)

    async def _open_remote_batch(
        self, room_id: str, room_version: RoomVersion, event_ids: Sequence[str], backfilled: bool
    ) -> RemoteBatch:
        return await open_remote_batch(
            state=self._state,
            events=self._events,
            applier=self._applier,
            committer=self._committer,
            room_id=room_id,
            room_version=room_version,
            event_ids=event_ids,
            backfilled=backfilled,
        )

    async def close(self) -> None:
        """Wait for queued local events to be committed (shutdown)."""
        await self._writers.close()


def _fail(requests: Sequence[_Request], error: BaseException) -> None:
    for request in requests:
        if request.future.done():
            continue
        if isinstance(error, Exception):
            request.future.set_exception(error)
        else:
            request.future.cancel()


def _join_repeated_transactions(requests: list[_Request]) -> list[_Request]:
    """A txnId repeated within one batch is answered with the first request's outcome."""
    first: dict[ClientTransaction, _Request] = {}
    remaining: list[_Request] = []
    for request in requests:
        txn = request.txn
        if txn is not None and txn in first:
            first[txn].future.add_done_callback(_copy_outcome_to(request.future))
            continue
        if txn is not None:
            first[txn] = request
        remaining.append(request)
    return remaining


def _copy_outcome_to(target: asyncio.Future[Event]) -> Callable[[asyncio.Future[Event]], None]:
    def copy(source: asyncio.Future[Event]) -> None:
        if target.done():
            return
        if source.cancelled():
            target.cancel()
        elif (error := source.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(source.result())

    return copy
