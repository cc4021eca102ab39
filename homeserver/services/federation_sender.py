"""Outbound federation: every local event and EDU reaches the servers that should have it.

S2S "Transactions" and "PDUs": events created here are pushed to the other servers in their
room with `PUT /send/{txnId}`; EDUs (S2S "EDUs") ride in the same transactions.

How an event travels (GUIDE.md "Outbound federation"):
1. The pipeline commits it and runs our hook, which only wakes the stream reader.
2. The stream reader (also woken whenever the stream position advances) reads local
   events after its persisted position (never past
   `StreamTracker.current_position`, so none is skipped), works out each event's destinations
   (servers with joined members now, plus the target's server of a kick or ban; never us, never
   a server our config or the room's ACL excludes; homeserver/services/federation_routing.py)
   and queues them in `federation_outbox`,
   moving its position in the same database transaction: a crash loses nothing. Events that
   go nowhere (rooms of our users alone, by the joined members in memory) need no write: the
   position is then saved at most once a second and on close, so a crash only makes the next
   start read (and route) that last second again.
3. Each destination's queue (homeserver/services/federation_queue.py) sends its rows oldest
   first and deletes them once acknowledged, so a destination that was down gets every event
   it missed when it is back (catch-up).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from federation.pdu import Event
from homeserver.remote.policy import ServerPolicy
from homeserver.services.federation_queue import (
    Backoff,
    DestinationQueue,
    QueueLimits,
    TransactionClient,
    now_ms,
)
from homeserver.services.federation_routing import MEMBER, PduRouter
from homeserver.storage.federation_outbound import (
    FederationOutboundStore,
    RetryState,
    StreamEvent,
)

logger = logging.getLogger(__name__)

# EDUs worth nothing once stale: kept in memory only, never queued for a dead server.
EPHEMERAL_EDU_TYPES: Final = frozenset({"m.typing", "m.presence"})
# Local events read from the stream per database round trip.
STREAM_BATCH: Final = 200
# Room EDUs (typing, receipts) handed over by client requests and not yet routed; beyond
# this the oldest are dropped (they are stale by then).
MAX_UNROUTED_ROOM_EDUS: Final = 10_000
# With nothing to queue, the reader's position is saved at most this often: after a crash it
# reads (and queues nothing for) at most this much of the stream again.
POSITION_SAVE_INTERVAL_MS: Final = 1_000


class StreamPosition(Protocol):
    """`homeserver.services.streams.StreamTracker`: every event at or below
    `current_position` is committed; listeners hear each time it advances."""

    @property
    def current_position(self) -> int: ...

    def add_listener(self, listener: Callable[[int], None]) -> None: ...


class FederationSender:
    def __init__(
        self,
        *,
        store: FederationOutboundStore,
        client: TransactionClient,
        stream: StreamPosition,
        server_name: str,
        server_policy: ServerPolicy,
        enabled: bool = True,
        backoff: Backoff | None = None,
        limits: QueueLimits | None = None,
        clock_ms: Callable[[], int] = now_ms,
        rand: Callable[[], float] = random.random,
        joined_members: Callable[[str], Awaitable[Mapping[str, str]]] | None = None,
    ) -> None:
        """`joined_members(room_id)`: the room's joined users from memory
        (`RoomStateCache.get_joined_members`); without it they are read from the database."""
        self._store = store
        self._client = client
        self._stream = stream
        self._server_name = server_name
        self._policy = server_policy
        # federation.enabled: false — nothing is queued and nothing is sent.
        self._enabled = enabled
        self._backoff = backoff or Backoff()
        self._limits = limits or QueueLimits()
        self._clock_ms = clock_ms
        self._rand = rand
        self._queues: dict[str, DestinationQueue] = {}
        # txnIds only need to be unique per destination: start-up time and a counter.
        self._txn_counter = itertools.count(1)
        self._txn_prefix = str(int(time.time() * 1000))
        self._router = PduRouter(
            store=store,
            server_name=server_name,
            may_send_to=self._may_send_to,
            joined_members=joined_members,
        )
        self._position = 0
        self._saved_position = 0
        self._saved_at_ms = 0
        self._events_ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        # Room EDUs waiting to be routed to the room's servers, off the client's request.
        self._room_edus: collections.deque[tuple[str, str, Mapping[str, Any]]] = collections.deque(
            maxlen=MAX_UNROUTED_ROOM_EDUS
        )
        self._room_edus_ready = asyncio.Event()
        self._room_edu_router: asyncio.Task[None] | None = None
        self._closed = False

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Resume where the last run stopped: unread events, transactions in flight (retried
        as they were), queued work, backoffs."""
        if not self._enabled:
            return
        self._position = self._saved_position = await self._store.get_stream_position()
        for destination, retry in (await self._store.get_backoff_states()).items():
            self._queue(destination, retry)
        for destination, transaction in (await self._store.get_inflight_transactions()).items():
            self._queue(destination).resume(transaction)
        for destination in await self._store.get_destinations_with_work():
            self._queue(destination).wake()
        self._reader = asyncio.create_task(self._read_stream(), name="federation-stream-reader")
        self._room_edu_router = asyncio.create_task(
            self._route_room_edus(), name="federation-room-edu-router"
        )
        # A local event committed while a lower position was still in flight lies beyond
        # `current_position` when its hook runs; it becomes readable when the position
        # advances past it, which may happen on another room's (remote) commit.
        self._stream.add_listener(self._on_stream_advanced)
        self._events_ready.set()  # events committed while we were down

    async def close(self) -> None:
        self._closed = True
        for task in (self._reader, self._room_edu_router):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.gather(*(queue.close() for queue in self._queues.values()))
        if self._enabled and self._position > self._saved_position:
            with contextlib.suppress(Exception):  # only costs a re-read at the next start
                await self._store.queue_pdus([], self._position)

    # --- entry points ---------------------------------------------------------------------

    async def on_events_persisted(self, events: Sequence[Event]) -> None:
        """The pipeline's `add_persisted_hook`: cheap, it only wakes the stream reader.

        Events from other servers are theirs to send; only ours are forwarded.
        """
        if self._enabled and any(event.sender_domain == self._server_name for event in events):
            self._events_ready.set()

    async def relay_event(self, event: Event, stream_ordering: int, origin: str) -> None:
        """Send on a remote event we accepted as the resident server of its room.

        S2S "Joining Rooms" / "Leaving Rooms" / "Knocking upon a room": the resident server
        that accepts a `send_join`, `send_leave` or `send_knock` must send the event to the
        other servers in the room. The stream reader forwards only our users' events, so such
        an event is queued here (durably, in `federation_outbox`) for the servers joined to
        the room — never us, `origin`, or the event sender's own server, which already have
        it — without moving the reader's position.
        """
        if not self._enabled or self._closed:
            return
        stream_event = StreamEvent(
            stream_ordering=stream_ordering,
            event_id=event.event_id,
            room_id=event.room_id,
            type=event.type,
            state_key=event.state_key,
            membership=event.membership if event.type == MEMBER else None,
        )
        already_have = {origin, event.sender_domain}
        rows = [
            (destination, routed)
            for destination, routed in await self._router.route([stream_event])
            if destination not in already_have
        ]
        if not rows:
            return
        await self._store.queue_relayed_pdus(rows)
        for destination in dict.fromkeys(destination for destination, _ in rows):
            self._queue(destination).wake()

    def _on_stream_advanced(self, position: int) -> None:
        if not self._closed and position > self._position:
            self._events_ready.set()

    def on_inbound_request(self, origin: str) -> None:
        """A request from `origin` passed X-Matrix authentication: it is alive, so stop
        backing off and send it what it missed now (for `FederationAuth`'s origin hook)."""
        queue = self._queues.get(origin)
        if queue is not None and queue.backing_off:
            queue.reset_backoff()

    async def send_edu(
        self,
        destinations: str | Iterable[str],
        edu_type: str,
        content: Mapping[str, Any],
        *,
        durable: bool | None = None,
    ) -> None:
        """Send an EDU (S2S "EDUs") to each destination in its next transaction.

        `durable` defaults by type: typing and presence live in memory only and are not
        queued for a destination that is backing off; every other EDU (to-device messages,
        device list updates, receipts …) is persisted and delivered after an outage.
        """
        if isinstance(destinations, str):
            destinations = [destinations]
        targets = [d for d in dict.fromkeys(destinations) if self._may_send_to(d)]
        if not targets:
            return
        if durable is None:
            durable = edu_type not in EPHEMERAL_EDU_TYPES
        if durable:
            await self._store.queue_edus(targets, edu_type, content, self._clock_ms())
            for destination in targets:
                self._queue(destination).wake()
        else:
            for destination in targets:
                self._queue(destination).add_ephemeral_edu(edu_type, content)

    async def servers_in_room(self, room_id: str) -> set[str]:
        """The other servers with joined members in the room (where its EDUs go)."""
        joined = await self._store.get_joined_servers([room_id])
        return {server for server in joined[room_id] if server != self._server_name}

    async def send_edu_to_room(
        self,
        room_id: str,
        edu_type: str,
        content: Mapping[str, Any],
        *,
        durable: bool | None = None,
    ) -> None:
        """`send_edu` to every other server in the room (typing, receipts)."""
        await self.send_edu(await self.servers_in_room(room_id), edu_type, content, durable=durable)

    def queue_edu_to_room(self, room_id: str, edu_type: str, content: Mapping[str, Any]) -> None:
        """`send_edu_to_room` without waiting: for EDUs a client request causes (typing,
        receipts), which must not wait for the database lookups and writes of routing. The
        EDUs are routed in order by a background task; the oldest are dropped beyond
        `MAX_UNROUTED_ROOM_EDUS`."""
        if not self._enabled or self._closed:
            return
        self._room_edus.append((room_id, edu_type, content))
        self._room_edus_ready.set()

    async def _route_room_edus(self) -> None:
        while not self._closed:
            await self._room_edus_ready.wait()
            self._room_edus_ready.clear()
            while self._room_edus:
                room_id, edu_type, content = self._room_edus.popleft()
                try:
                    await self.send_edu_to_room(room_id, edu_type, content)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("could not send %s to the servers of %s", edu_type, room_id)

    def is_backing_off(self, destination: str) -> bool:
        queue = self._queues.get(destination)
        return queue is not None and queue.backing_off

    # --- the stream reader ----------------------------------------------------------------

    async def _read_stream(self) -> None:
        while not self._closed:
            await self._events_ready.wait()
            self._events_ready.clear()
            try:
                await self._queue_new_events()
            except Exception:
                logger.exception("federation sender could not read the event stream; retrying")
                await asyncio.sleep(1.0)
                self._events_ready.set()

    async def _queue_new_events(self) -> None:
        up_to = self._stream.current_position
        while self._position < up_to:
            events = await self._store.get_local_events(
                self._position, up_to, self._server_name, STREAM_BATCH
            )
            new_position = events[-1].stream_ordering if len(events) == STREAM_BATCH else up_to
            rows = await self._router.route(events)
            now = self._clock_ms()
            if rows or now - self._saved_at_ms >= POSITION_SAVE_INTERVAL_MS:
                await self._store.queue_pdus(rows, new_position)
                self._saved_position, self._saved_at_ms = new_position, now
            self._position = new_position
            for destination in dict.fromkeys(destination for destination, _ in rows):
                self._queue(destination).wake()

    # --- queues ---------------------------------------------------------------------------

    def _may_send_to(self, destination: str) -> bool:
        """Never ourselves; never a server `federation.allowed_servers` / `denied_servers`
        exclude; nothing at all when federation is disabled."""
        return (
            self._enabled
            and not self._closed
            and destination != self._server_name
            and self._policy.allows(destination)
        )

    def _queue(self, destination: str, retry: RetryState | None = None) -> DestinationQueue:
        queue = self._queues.get(destination)
        if queue is None:
            queue = DestinationQueue(
                destination,
                store=self._store,
                client=self._client,
                server_name=self._server_name,
                next_txn_id=self._new_txn_id,
                retry=retry,
                backoff=self._backoff,
                limits=self._limits,
                clock_ms=self._clock_ms,
                rand=self._rand,
            )
            self._queues[destination] = queue
        return queue

    def _new_txn_id(self) -> str:
        return f"{self._txn_prefix}.{next(self._txn_counter)}"
