"""The PDUs of one room in one transaction: checked one by one, committed together.

S2S "Checks performed on receipt of a PDU" apply to each PDU as if it were received alone, in
order of depth: steps 1–3 (homeserver/services/federation_checks.py), then steps 4–6 against
the room as the PDUs before it left it. Here those PDUs are not yet written: they wait in a
`RemoteBatch` (homeserver/services/remote_batch.py), which answers the checks' reads (their
events, the state after them, the current state), and all of them are written in one database
transaction before the transaction is answered.

A PDU that the batch cannot decide alone — an auth event or prev event that is neither in the
batch nor stored (it must be fetched from the origin), or prev events whose states must be
resolved with an event of the batch among them — ends the batch: what it holds is committed
and the PDU takes the path of a PDU received alone (`PduReceiver.receive_checked`). If taking a
PDU into the batch or committing it fails unexpectedly, nothing of the batch is kept and each
of its PDUs is processed alone, so every PDU still gets its own result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from federation.pdu import Event
from federation.room_state import CREATE
from federation.room_versions import RoomVersion
from homeserver.remote.keyring import KeyUnavailableError
from homeserver.services.federation_access import server_acl_allows
from homeserver.services.federation_checks import DroppedPdu, EventKeyring, check_pdu
from homeserver.services.federation_inbound import PduReceiver
from homeserver.services.federation_verdicts import (
    EventNotProcessed,
    PduResult,
    StateIds,
    Verdict,
    auth_against_listed,
    create_event_id,
    event_id_or_none,
)
from homeserver.services.remote_batch import RemoteBatch, RemoteEvent

logger = logging.getLogger(__name__)

# Auth event IDs per PDU looked up ahead, at most: a valid event lists a handful (S2S "Auth
# events selection": create, power levels, memberships, join rules, a third-party invite).
MAX_AUTH_EVENTS: Final = 20


class TransactionKeyring:
    """The keyring for the PDUs of one transaction: a key found valid until some time is
    valid for every PDU of the transaction sent before then (S2S "Validating hashes and
    signatures on received events"; v5 "signing key validity"), so it is looked up once."""

    def __init__(self, keyring: EventKeyring) -> None:
        self._keyring = keyring
        # (server, key ID) → (key, the latest `minimum_valid_until_ts` it was found valid for)
        self._valid: dict[tuple[str, str], tuple[bytes, int]] = {}

    async def get_verify_key(
        self, server_name: str, key_id: str, minimum_valid_until_ts: int
    ) -> bytes:
        known = self._valid.get((server_name, key_id))
        if known is not None and minimum_valid_until_ts <= known[1]:
            return known[0]
        key = await self._keyring.get_verify_key(server_name, key_id, minimum_valid_until_ts)
        if known is None or minimum_valid_until_ts > known[1]:
            self._valid[(server_name, key_id)] = (key, minimum_valid_until_ts)
        return key

    async def prefetch(self, pdus: Sequence[Mapping[str, Any]], room_version: RoomVersion) -> None:
        """Look up each sender server's keys once, valid until the latest PDU's timestamp;
        a key that is not is left to the per-PDU checks."""
        latest: dict[tuple[str, str], int] = {}
        for pdu in pdus:
            server = _sender_server(pdu)
            signatures = pdu.get("signatures")
            by_server = signatures.get(server) if isinstance(signatures, Mapping) else None
            ts = pdu.get("origin_server_ts")
            if server is None or not isinstance(by_server, Mapping) or not isinstance(ts, int):
                continue
            minimum = ts if room_version.enforce_key_validity else 0
            for key_id in by_server:
                if isinstance(key_id, str):
                    latest[(server, key_id)] = max(latest.get((server, key_id), 0), minimum)
        for (server, key_id), minimum in latest.items():
            try:
                await self.get_verify_key(server, key_id, minimum)
            except KeyUnavailableError:
                continue


@dataclass(slots=True)
class _Pdu:
    index: int
    pdu: Mapping[str, Any]
    event_id: str
    event: Event | None = None
    verdict: Verdict | None = None


@dataclass(slots=True)
class _Segment:
    """The PDUs taken into one batch, and the one (if any) that ended it."""

    taken: list[_Pdu] = field(default_factory=list)
    alone: _Pdu | None = None
    next_index: int = 0


async def receive_room_pdus(
    receiver: PduReceiver,
    origin: str,
    room_id: str,
    pdus: Sequence[Mapping[str, Any]],
) -> list[PduResult]:
    """Results for PDUs of `room_id` from one transaction of `origin`, in the order given
    (which should be by depth)."""
    results: list[PduResult | None] = [None] * len(pdus)
    cache = receiver.cache
    room_version = await cache.get_room_version(room_id)
    if room_version is None:
        return [PduResult(None, f"unknown room {room_id}") for _ in pdus]
    todo: list[_Pdu] = []
    for index, pdu in enumerate(pdus):
        event_id = event_id_or_none(pdu, room_version)
        if event_id is None:
            results[index] = PduResult(None, "cannot compute the event ID")
        else:
            todo.append(_Pdu(index, pdu, event_id))
    # S2S "Server ACLs": a PDU of a denied server is ignored, with an error for it.
    if todo and not await server_acl_allows(cache, room_id, origin):
        for item in todo:
            results[item.index] = PduResult(item.event_id, "server is denied by the room's ACL")
        todo = []
    keyring = TransactionKeyring(receiver.keyring)
    await keyring.prefetch([item.pdu for item in todo], room_version)
    await receiver.learn_rejections(_auth_ids_of(item.pdu for item in todo))
    async with receiver.room_lock(room_id):
        position = 0
        while position < len(todo):
            segment = await _run_segment(
                receiver, keyring, origin, room_id, room_version, todo, position, results
            )
            position = segment.next_index
            if segment.alone is not None:
                results[segment.alone.index] = await _receive_alone(
                    receiver, origin, room_version, segment.alone
                )
    return [r if r is not None else PduResult(None, "not processed") for r in results]


async def _run_segment(
    receiver: PduReceiver,
    keyring: TransactionKeyring,
    origin: str,
    room_id: str,
    room_version: RoomVersion,
    todo: Sequence[_Pdu],
    start: int,
    results: list[PduResult | None],
) -> _Segment:
    """Take PDUs from `todo[start:]` into one batch until one needs the path of its own;
    commit the batch. Results are set for every PDU handled here."""
    segment = _Segment(next_index=start)
    rest = todo[start:]
    stored = await receiver.events.have_events(item.event_id for item in rest)
    # Outliers received again take the path of their own (they may join the timeline).
    outliers = await receiver.held_as_outliers(stored) if stored else set()
    fresh = [item.event_id for item in rest if item.event_id not in stored]
    current: _Pdu | None = None
    try:
        async with receiver.pipeline.remote_batch(room_id, room_version, fresh) as batch:
            for item in rest:
                current = item
                if item.event_id in outliers:
                    segment.alone = item
                    segment.next_index += 1
                    break
                if item.event_id in stored or item.event_id in batch:
                    results[item.index] = PduResult(item.event_id)  # seen before
                elif event := await _check(keyring, room_version, item, results):
                    verdict = await decide_in_batch(receiver, event, batch)
                    if verdict is None:
                        segment.alone = item
                        segment.next_index += 1
                        break
                    item.verdict = verdict
                    await batch.add(_remote_event(item))
                    segment.taken.append(item)
                segment.next_index += 1
            current = None
            await batch.commit()
    except Exception:
        # Nothing of the batch is written: each of its PDUs is processed on its own, and so
        # is the one being handled when it failed.
        logger.exception("a batch of PDUs from %s failed; processing them one by one", origin)
        redo = list(segment.taken)
        if current is None and segment.next_index == start:
            current = rest[0]  # the batch could not even be opened: on with the first PDU
        if current is not None:  # it failed on this PDU (`next_index` is still its position)
            if results[current.index] is None:
                redo.append(current)
            segment.next_index += 1
        for item in redo:
            results[item.index] = await _receive_alone(receiver, origin, room_version, item)
        return segment
    receiver.remember_stored(
        {i.event_id: i.verdict.rejected_reason is not None for i in segment.taken if i.verdict}
    )
    for item in segment.taken:
        assert item.verdict is not None
        reason = item.verdict.rejected_reason
        results[item.index] = PduResult(
            item.event_id, None if reason is None else f"rejected: {reason}"
        )
    return segment


async def _check(
    keyring: TransactionKeyring,
    room_version: RoomVersion,
    item: _Pdu,
    results: list[PduResult | None],
) -> Event | None:
    """Steps 1–3; on failure the PDU's result is set and None returned."""
    try:
        event = await check_pdu(item.pdu, room_version, keyring, event_id=item.event_id)
        if event.type == CREATE:
            raise DroppedPdu("a room's m.room.create event cannot be sent into it")
    except DroppedPdu as exc:
        logger.info("PDU %s not accepted: %s", item.event_id, exc)
        results[item.index] = PduResult(item.event_id, str(exc))
        return None
    item.event = event
    return event


async def _receive_alone(
    receiver: PduReceiver, origin: str, room_version: RoomVersion, item: _Pdu
) -> PduResult:
    """The path of a PDU received on its own (missing events fetched from the origin)."""
    try:
        event = item.event
        if event is None:
            event = await check_pdu(
                item.pdu, room_version, receiver.keyring, event_id=item.event_id
            )
            if event.type == CREATE:
                raise DroppedPdu("a room's m.room.create event cannot be sent into it")
        return await receiver.receive_checked(origin, event, fetch_missing=True)
    except (DroppedPdu, EventNotProcessed) as exc:
        logger.info("PDU %s from %s not accepted: %s", item.event_id, origin, exc)
        return PduResult(item.event_id, str(exc))
    except Exception:
        logger.exception("processing a PDU from %s failed", origin)
        return PduResult(item.event_id, "internal error processing this event", retryable=True)


async def decide_in_batch(
    receiver: PduReceiver, event: Event, batch: RemoteBatch
) -> Verdict | None:
    """Steps 4–6 for an event that passed steps 1–3, against the room as the batch leaves it;
    None if the event needs something the batch cannot give (see the module docstring)."""
    # Step 4: the listed auth events must allow it.
    wanted: list[str] = [*event.auth_event_ids]
    if event.room_version.room_id_from_create_event:
        wanted.append(create_event_id(event))
    known = await receiver.known_events(wanted, batch)
    if any(i not in known for i in event.auth_event_ids):
        return None
    rejected = auth_against_listed(event, known)
    # Step 5: the state before it, from the states after its prev events.
    states: list[StateIds] = []
    for prev_id in event.prev_event_ids:
        state = await batch.state_after(prev_id)
        if state is None:
            return None
        if all(state is not seen for seen in states):
            states.append(state)
    if len(states) == 1:
        state_before = states[0]
    elif any(prev_id in batch for prev_id in event.prev_event_ids):
        return None  # resolution reads the database: the batch must be stored first
    else:
        state_before = await receiver.resolve_states(event.room_version, states)
    if rejected is None:
        rejected = await receiver.auth_against_state(event, state_before, batch)
    # Step 6: the current state must allow it, else it is soft failed.
    soft_failed = rejected is None and (
        await receiver.auth_against_state(event, batch.current_state, batch) is not None
    )
    return Verdict(state_before, rejected, soft_failed)


def _remote_event(item: _Pdu) -> RemoteEvent:
    assert item.event is not None and item.verdict is not None
    return RemoteEvent(
        item.event,
        item.verdict.state_before,
        rejected_reason=item.verdict.rejected_reason,
        soft_failed=item.verdict.soft_failed,
    )


def _auth_ids_of(pdus: Iterable[Mapping[str, Any]]) -> set[str]:
    """The auth event IDs the PDUs list (v3+ form: plain IDs; others are skipped)."""
    ids: set[str] = set()
    for pdu in pdus:
        listed = pdu.get("auth_events")
        if isinstance(listed, list):
            ids.update(i for i in listed[:MAX_AUTH_EVENTS] if isinstance(i, str))
    return ids


def _sender_server(pdu: Mapping[str, Any]) -> str | None:
    sender = pdu.get("sender")
    if not isinstance(sender, str) or ":" not in sender:
        return None
    return sender.partition(":")[2]
