"""Membership changes that need another server: the client side of the S2S handshakes.

The `RemoteMembership` seam of homeserver/services/membership.py:
- `join`: S2S "Joining Rooms" — `GET /v1/make_join` (offering every room version we support),
  fill in and sign the template, `PUT /v2/send_join`, check the returned state and auth chain
  (format, signatures, content hashes, auth rules — the receipt checks, for the whole answer
  at once: homeserver/services/send_join_state.py) and store them as outliers together with
  the join, whose state before it is the returned state. Each candidate server is tried in
  turn.
- `invite`: S2S "Inviting to a room" — build and sign the invite here, `PUT /v2/invite` to the
  invitee's server, check its co-signature, and persist the co-signed event.
- `leave`: S2S "Leaving Rooms (Rejecting Invites)" — `make_leave`/`send_leave` through the
  server that invited us, for rooms where we hold only an invite.
- `knock`: S2S "Knocking upon a room" — `make_knock`/`send_knock`; the knock is kept like an
  invite of a room we are not in, with the room's stripped state for /sync.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from federation.ids import server_name_of
from federation.pdu import Event, InvalidPdu
from federation.room_state import CREATE, StateKey
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from federation.signing import (
    SignatureError,
    SigningKey,
    add_hashes_and_signatures,
    verify_event_signature,
)
from federation.wire import WireFormatError
from federation.wire_membership import (
    build_invite_v2_request,
    parse_invite_response,
    parse_make_join_response,
    parse_make_knock_response,
    parse_make_leave_response,
    parse_send_join_response,
    parse_send_knock_response,
)
from homeserver.errors import MatrixError
from homeserver.remote.client import FederationClient, format_path
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.remote.keyring import KeyUnavailableError
from homeserver.services.event_builder import (
    NewEvent,
    auth_event_ids_for,
    build_pdu,
    check_local_event,
    choose_prev_events,
    parse_built_pdu,
    random_string,
)
from homeserver.services.event_pipeline import EventPipeline, RemoteEvent
from homeserver.services.federation_checks import DroppedPdu, EventKeyring, check_pdu
from homeserver.services.federation_inbound import PduReceiver
from homeserver.services.federation_membership import federation_pdu_of
from homeserver.services.send_join_state import InvalidJoinState, SendJoinStateChecker
from homeserver.services.state import RoomStateCache
from homeserver.storage.events import EventsStore
from homeserver.storage.room_directory import RoomDirectoryStore

logger = logging.getLogger(__name__)

MEMBER: Final = "m.room.member"
# S2S "Inviting to a room": state the invitee's client may show before joining.
INVITE_ROOM_STATE_TYPES: Final = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.topic",
)


class HandshakeFailed(Exception):
    """One candidate server could not complete the handshake; the next may."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _relay(exc: RemoteError | RemoteUnreachable) -> MatrixError:
    """A remote failure as the answer to our client."""
    if isinstance(exc, RemoteError) and 400 <= exc.status < 500 and exc.errcode:
        return MatrixError(exc.status, exc.errcode, f"{exc.destination}: {exc.message}")
    return MatrixError(502, "M_UNKNOWN", f"Could not reach {exc.destination}: {exc}")


class RemoteMembershipClient:
    """Implements `RemoteMembership` (homeserver/services/membership.py) over federation."""

    def __init__(
        self,
        *,
        client: FederationClient,
        keyring: EventKeyring,
        receiver: PduReceiver,
        pipeline: EventPipeline,
        state: RoomStateCache,
        events: EventsStore,
        directory: RoomDirectoryStore,
        server_name: str,
        signing_key: SigningKey,
    ) -> None:
        self._client = client
        self._keyring = keyring
        self._receiver = receiver
        self._pipeline = pipeline
        self._state = state
        self._events = events
        self._directory = directory
        self._server_name = server_name
        self._signing_key = signing_key
        self._join_state = SendJoinStateChecker(events=events, keyring=keyring)

    # --- join -----------------------------------------------------------------------------

    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        """S2S "Joining Rooms" through the first of `servers` that lets us in; accepting an
        invite also tries the inviter's server (v12 room IDs name no server)."""
        invited_by = await self._inviting_servers(user_id, room_id)
        candidates = [s for s in dict.fromkeys([*servers, *invited_by]) if s != self._server_name]
        return await _first_server_that_accepts(
            candidates, room_id, "Joining", lambda s: self._join_via(s, user_id, room_id, content)
        )

    async def _join_via(
        self, server: str, user_id: str, room_id: str, content: Mapping[str, Any]
    ) -> str:
        made = await self._client.get_json(
            server,
            format_path("/_matrix/federation/v1/make_join/{}/{}", room_id, user_id),
            {"ver": list(KNOWN_ROOM_VERSIONS)},
        )
        version_id, template = parse_make_join_response(made, room_id=room_id, user_id=user_id)
        room_version = KNOWN_ROOM_VERSIONS.get(version_id)
        if room_version is None:
            raise HandshakeFailed(f"room version {version_id} is not supported")
        pdu = self._fill_template(template, room_version, content)
        event = Event.from_pdu(pdu, room_version)
        sent = await self._client.put_json(
            server,
            format_path("/_matrix/federation/v2/send_join/{}/{}", room_id, event.event_id),
            pdu,
        )
        response = parse_send_join_response(sent)
        if response.event is not None:
            # Restricted joins: the resident's co-signed copy of our event (joins-v2.yaml).
            event = await self._checked_returned_event(response.event, event)
        try:
            joined = await self._join_state.check(
                room_id, room_version, response.state, response.auth_chain
            )
        except InvalidJoinState as exc:
            raise HandshakeFailed(str(exc)) from None
        async with self._receiver.room_lock(room_id):
            reason = joined.check_join(event)
            if reason is not None:
                raise HandshakeFailed(f"our join fails the room's auth rules: {reason}")
            # One transaction: the state and auth chain as outliers, then our join.
            await self._pipeline.persist_remote_events(room_id, joined.to_persist(event))
        return event.event_id

    def _fill_template(
        self, template: Mapping[str, Any], room_version: RoomVersion, content: Mapping[str, Any]
    ) -> dict[str, Any]:
        """S2S "Joining Rooms": the template gets our content (profile, reason; the resident's
        `join_authorised_via_users_server` is kept), a timestamp, hashes and our signature."""
        pdu = {k: v for k, v in template.items() if k not in ("signatures", "hashes", "unsigned")}
        pdu["content"] = {**template["content"], **content}
        pdu["origin_server_ts"] = _now_ms()
        pdu["origin"] = self._server_name
        if room_version.has_event_id_field:
            pdu["event_id"] = f"${random_string(24)}:{self._server_name}"
        return add_hashes_and_signatures(pdu, room_version, self._server_name, self._signing_key)

    async def _checked_returned_event(self, returned: Mapping[str, Any], ours: Event) -> Event:
        """The resident's copy must be our event (same ID) with valid signatures."""
        try:
            event = await check_pdu(returned, ours.room_version, self._keyring)
        except DroppedPdu as exc:
            raise HandshakeFailed(f"returned join event: {exc}") from None
        if event.event_id != ours.event_id:
            raise HandshakeFailed("the returned join event is not the one we sent")
        return event

    # --- invite ---------------------------------------------------------------------------

    async def invite(
        self, sender: str, room_id: str, target: str, content: Mapping[str, Any]
    ) -> str:
        """S2S "Inviting to a room": build + sign, `PUT /v2/invite`, persist the co-signed event."""
        room = await self._state.get_room_state(room_id)
        if room is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        room_version, state_before = room.room_version, room.state
        new = NewEvent(MEMBER, sender, dict(content), target)
        extremities = await self._state.get_events(room.forward_extremities)
        prev_ids = choose_prev_events(extremities)
        auth_ids = auth_event_ids_for(room_version, new, state_before)
        create_id = state_before.get((CREATE, ""))
        auth_events = await self._state.get_events(auth_ids + ([create_id] if create_id else []))
        pdu = build_pdu(
            room_version=room_version,
            room_id=room_id,
            new=new,
            prev_events=[extremities[i] for i in prev_ids],
            auth_events=[auth_events[i] for i in auth_ids if i in auth_events],
            origin_server_ts=_now_ms(),
            server_name=self._server_name,
            signing_key=self._signing_key,
        )
        event = parse_built_pdu(pdu, room_version)
        check_local_event(event, {e.state_tuple: e for e in auth_events.values() if e.is_state})
        body = build_invite_v2_request(
            pdu, room_version, await self._invite_room_state(state_before, sender)
        )
        destination = server_name_of(target)
        try:
            answer = await self._client.put_json(
                destination,
                format_path("/_matrix/federation/v2/invite/{}/{}", room_id, event.event_id),
                body,
            )
            signed = Event.from_pdu(parse_invite_response(answer), room_version)
        except (RemoteError, RemoteUnreachable) as exc:
            raise _relay(exc) from None
        except (WireFormatError, InvalidPdu) as exc:
            raise MatrixError(502, "M_UNKNOWN", f"{destination} answered badly: {exc}") from None
        if signed.event_id != event.event_id:
            raise MatrixError(502, "M_UNKNOWN", f"{destination} changed the invite event")
        await self._check_signed_by(signed, destination)
        await self._pipeline.persist_remote_events(room_id, [RemoteEvent(signed, state_before)])
        return signed.event_id

    async def _invite_room_state(
        self, state: Mapping[StateKey, str], sender: str
    ) -> list[dict[str, Any]]:
        """Full PDUs of the room's summary state and the inviter's membership (v1.16+)."""
        keys = [(t, "") for t in INVITE_ROOM_STATE_TYPES] + [(MEMBER, sender)]
        found = await self._state.get_events(state[k] for k in keys if k in state)
        return [federation_pdu_of(e) for e in found.values()]

    async def _check_signed_by(self, event: Event, server: str) -> None:
        """The invitee's server must have co-signed (S2S "Inviting to a room")."""
        signatures = event.pdu.get("signatures")
        by_server = signatures.get(server) if isinstance(signatures, Mapping) else None
        for key_id in by_server or {}:
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            try:
                key = await self._keyring.get_verify_key(server, key_id, 0)
                verify_event_signature(event.pdu, event.room_version, server, key_id, key)
            except (SignatureError, KeyUnavailableError) as exc:
                logger.info("invite signature of %s by %s: %s", server, key_id, exc)
                continue
            return
        raise MatrixError(502, "M_UNKNOWN", f"{server} did not sign the invite")

    # --- leave (reject an invite), knock ---------------------------------------------------

    async def leave(self, user_id: str, room_id: str, content: Mapping[str, Any]) -> str:
        """S2S "Leaving Rooms (Rejecting Invites)" via the server of whoever invited us."""
        servers = await self._inviting_servers(user_id, room_id)
        return await _first_server_that_accepts(
            servers, room_id, "Leaving", lambda s: self._leave_via(s, user_id, room_id, content)
        )

    async def _inviting_servers(self, user_id: str, room_id: str) -> list[str]:
        current = await self._directory.get_local_membership_event(user_id, room_id)
        if current is None:
            return []
        found = await self._state.get_events([current[1]])
        event = found.get(current[1])
        servers = [event.sender_domain] if event is not None else []
        if ":" in room_id:
            servers.append(server_name_of(room_id))
        return [s for s in dict.fromkeys(servers) if s != self._server_name]

    async def _leave_via(
        self, server: str, user_id: str, room_id: str, content: Mapping[str, Any]
    ) -> str:
        made = await self._client.get_json(
            server, format_path("/_matrix/federation/v1/make_leave/{}/{}", room_id, user_id)
        )
        version_id, template = parse_make_leave_response(made, room_id=room_id, user_id=user_id)
        room_version = KNOWN_ROOM_VERSIONS.get(version_id)
        if room_version is None:
            raise HandshakeFailed(f"room version {version_id} is not supported")
        pdu = self._fill_template(template, room_version, content)
        event = Event.from_pdu(pdu, room_version)
        await self._client.put_json(
            server,
            format_path("/_matrix/federation/v2/send_leave/{}/{}", room_id, event.event_id),
            pdu,
        )
        # We are not in the room: the leave only ends the local user's invite (an outlier).
        await self._pipeline.persist_remote_event(
            event, None, outlier=True, out_of_band_membership=True
        )
        return event.event_id

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        """S2S "Knocking upon a room" through the first of `servers` that accepts the knock."""
        candidates = [s for s in dict.fromkeys(servers) if s != self._server_name]
        return await _first_server_that_accepts(
            candidates, room_id, "Knocking", lambda s: self._knock_via(s, user_id, room_id, content)
        )

    async def _knock_via(
        self, server: str, user_id: str, room_id: str, content: Mapping[str, Any]
    ) -> str:
        made = await self._client.get_json(
            server,
            format_path("/_matrix/federation/v1/make_knock/{}/{}", room_id, user_id),
            {"ver": [v for v, rv in KNOWN_ROOM_VERSIONS.items() if rv.knock_join_rule]},
        )
        version_id, template = parse_make_knock_response(made, room_id=room_id, user_id=user_id)
        room_version = KNOWN_ROOM_VERSIONS.get(version_id)
        if room_version is None or not room_version.knock_join_rule:
            raise HandshakeFailed(f"room version {version_id} does not support knocking")
        pdu = self._fill_template(template, room_version, content)
        event = Event.from_pdu(pdu, room_version)
        sent = await self._client.put_json(
            server,
            format_path("/_matrix/federation/v1/send_knock/{}/{}", room_id, event.event_id),
            pdu,
        )
        # Like an invite of a room we are not in: an outlier setting the knocker's membership,
        # with the stripped state /sync shows under rooms.knock (knock_state).
        knock_state = [
            {k: entry[k] for k in ("type", "state_key", "sender", "content") if k in entry}
            for entry in parse_send_knock_response(sent)
        ]
        unsigned = {**dict(pdu.get("unsigned") or {}), "knock_room_state": knock_state}
        stored = Event.from_pdu({**pdu, "unsigned": unsigned}, room_version)
        await self._pipeline.persist_remote_event(
            stored, None, outlier=True, out_of_band_membership=True
        )
        return event.event_id


async def _first_server_that_accepts(
    servers: Sequence[str],
    room_id: str,
    action: str,
    attempt: Callable[[str], Awaitable[str]],
) -> str:
    """Try `attempt(server)` on each server in turn; the first success wins, else the last
    failure is what the client sees (a remote Matrix error relayed, anything else a 502)."""
    if not servers:
        raise MatrixError(404, "M_NOT_FOUND", f"No known servers for {room_id}")
    last: MatrixError | None = None
    for server in servers:
        try:
            return await attempt(server)
        except (RemoteError, RemoteUnreachable) as exc:
            logger.info("%s %s via %s failed: %s", action, room_id, server, exc)
            last = _relay(exc)
        except (HandshakeFailed, WireFormatError, InvalidPdu) as exc:
            logger.info("%s %s via %s failed: %s", action, room_id, server, exc)
            last = MatrixError(502, "M_UNKNOWN", f"{action} via {server} failed: {exc}")
    assert last is not None
    raise last
