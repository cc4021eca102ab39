"""Receiving an invite for a local user: `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`.

S2S "Inviting to a room" (invites-v2.yaml): the inviting server sends the signed invite event
and some stripped state of the room. We check the event (format, that it invites a user of ours
from a user of the origin, the origin's signature, the content hash), co-sign it and answer it.
If no local user is in the room, the invite is stored as an outlier that sets the invitee's
membership (`out_of_band_membership`), with the room state it came with in
`unsigned.invite_room_state`, which /sync shows (homeserver/services/sync_rooms.py). If we are
in the room, the invite reaches us again as a PDU of the room and goes through the usual path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from federation.hashing import check_content_hash
from federation.pdu import Event
from federation.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from federation.signing import SigningKey, sign_event
from federation.wire import WireFormatError
from federation.wire_membership import (
    build_invite_response,
    check_invite_event,
    check_invite_room_state,
    parse_invite_v2_request,
)
from homeserver.errors import MatrixError
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.federation_access import ensure_acl_allows, forbidden, servers_in_state
from homeserver.services.federation_checks import DroppedPdu, EventKeyring, check_format
from homeserver.services.federation_checks import check_signatures as verify_signatures
from homeserver.services.state import RoomStateCache

logger = logging.getLogger(__name__)

# Whether a local user exists and may receive invites (not deactivated).
UserExists = Callable[[str], Awaitable[bool]]


class InviteReceiver:
    def __init__(
        self,
        *,
        cache: RoomStateCache,
        pipeline: EventPipeline,
        keyring: EventKeyring,
        server_name: str,
        signing_key: SigningKey,
        user_exists: UserExists,
    ) -> None:
        self._cache = cache
        self._pipeline = pipeline
        self._keyring = keyring
        self._server_name = server_name
        self._signing_key = signing_key
        self._user_exists = user_exists

    async def on_invite(
        self, origin: str, room_id: str, event_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            request = parse_invite_v2_request(body)
        except WireFormatError as exc:
            raise MatrixError(400, "M_BAD_JSON", str(exc)) from None
        room_version = KNOWN_ROOM_VERSIONS.get(request.room_version)
        if room_version is None:
            raise MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                f"Room version {request.room_version} is not supported",
                room_version=request.room_version,
            )
        known_version = await self._cache.get_room_version(room_id)
        if known_version is not None:
            await ensure_acl_allows(self._cache, room_id, origin)
            if known_version != room_version:
                raise MatrixError(400, "M_INVALID_PARAM", "Wrong room version for this room")
        event = await self._checked_invite(origin, room_id, event_id, request.event, room_version)
        invite_state = self._invite_room_state(request.invite_room_state, room_version, room_id)
        signed = sign_event(event.pdu, room_version, self._server_name, self._signing_key)
        if not await self._we_are_in_room(room_id):
            await self._store_invite(signed, room_version, event.event_id, invite_state)
        return build_invite_response(signed)

    async def room_version_of(self, room_id: str) -> str | None:
        """The version of a room we know (for v1 invites, whose body does not name it)."""
        version = await self._cache.get_room_version(room_id)
        return None if version is None else version.identifier

    async def _checked_invite(
        self,
        origin: str,
        room_id: str,
        event_id: str,
        pdu: Mapping[str, Any],
        room_version: RoomVersion,
    ) -> Event:
        try:
            event = check_format(pdu, room_version)
            check_invite_event(
                event,
                room_id=room_id,
                event_id=event_id,
                origin=origin,
                our_server_name=self._server_name,
            )
        except (DroppedPdu, WireFormatError) as exc:
            raise MatrixError(400, "M_INVALID_PARAM", str(exc)) from None
        if not check_content_hash(event.pdu):
            raise MatrixError(400, "M_INVALID_PARAM", "The event's content hash does not match")
        try:
            await verify_signatures(event, self._keyring)
        except DroppedPdu as exc:
            raise forbidden(str(exc)) from None
        assert event.state_key is not None  # checked by check_invite_event
        if not await self._user_exists(event.state_key):
            raise forbidden(f"No such user {event.state_key}")
        return event

    def _invite_room_state(
        self, entries: tuple[Mapping[str, Any], ...], room_version: RoomVersion, room_id: str
    ) -> list[dict[str, Any]]:
        """Stripped state for the invitee's client. Since v1.16 entries are full PDUs of the
        room version with the create event among them: required in v12, and only warned about
        before, while servers migrate (S2S "Inviting to a room")."""
        try:
            check_invite_room_state(entries, room_version, room_id)
        except WireFormatError as exc:
            if room_version.room_id_from_create_event:
                raise MatrixError(400, "M_MISSING_PARAM", f"invite_room_state: {exc}") from None
            logger.warning("invite to %s has old-style invite_room_state: %s", room_id, exc)
        return [
            {k: entry[k] for k in ("type", "state_key", "sender", "content") if k in entry}
            for entry in entries
        ]

    async def _we_are_in_room(self, room_id: str) -> bool:
        state = await self._cache.get_current_state_ids(room_id)
        return self._server_name in await servers_in_state(self._cache, state)

    async def _store_invite(
        self,
        signed: Mapping[str, Any],
        room_version: RoomVersion,
        event_id: str,
        invite_state: list[dict[str, Any]],
    ) -> None:
        unsigned = dict(signed.get("unsigned") or {})
        unsigned["invite_room_state"] = invite_state
        stored = Event.from_pdu({**signed, "unsigned": unsigned}, room_version, event_id=event_id)
        await self._pipeline.persist_remote_event(
            stored, None, outlier=True, out_of_band_membership=True
        )
