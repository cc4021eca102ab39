"""Sending events to a room: message events, state events and redactions (C-S "Sending events
to a room", "Redactions"; room_send.yaml, room_state.yaml, redaction.yaml).

Message events and redactions carry a client transaction ID, remembered durably per device by
the event pipeline: a retry, even after a restart, returns the original event ID.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from federation.ids import is_valid_event_id, is_valid_room_id, server_name_of
from federation.room_state import named_power_level, user_power_level
from homeserver.errors import MatrixError
from homeserver.services.aliases import AliasService
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.state import RoomStateCache
from homeserver.storage.rooms import ClientTransaction, RoomsStore

REDACTION: Final = "m.room.redaction"
CANONICAL_ALIAS: Final = "m.room.canonical_alias"
# S2S "PDUs": `type` and `state_key` are at most 255 bytes.
MAX_TYPE_BYTES: Final = 255


def _check_room_id(room_id: str) -> None:
    if not is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room ID {room_id!r}")


def _check_event_type(event_type: str) -> None:
    if not event_type or len(event_type.encode("utf-8")) > MAX_TYPE_BYTES:
        raise MatrixError(400, "M_INVALID_PARAM", "The event type must be 1 to 255 bytes")


class RoomSendService:
    def __init__(
        self,
        *,
        pipeline: EventPipeline,
        state: RoomStateCache,
        rooms: RoomsStore,
        aliases: AliasService,
        server_name: str,
    ) -> None:
        self._pipeline = pipeline
        self._state = state
        self._rooms = rooms
        self._aliases = aliases
        self._server_name = server_name

    async def send_message_event(
        self,
        sender: str,
        device_key: str,
        is_admin: bool,
        room_id: str,
        event_type: str,
        txn_id: str,
        content: Mapping[str, Any],
    ) -> str:
        """PUT /rooms/{roomId}/send/{eventType}/{txnId}; returns the event ID."""
        _check_room_id(room_id)
        _check_event_type(event_type)
        txn = ClientTransaction(sender, device_key, f"send:{room_id}:{event_type}", txn_id)
        if event_type == REDACTION:
            # v1.18: redactions may be sent here too, with `redacts` in the content.
            redacts = content.get("redacts")
            if not isinstance(redacts, str) or not is_valid_event_id(redacts):
                raise MatrixError(400, "M_BAD_JSON", "m.room.redaction needs 'redacts'")
            return await self._redact(sender, is_admin, room_id, redacts, content, txn)
        event = await self._pipeline.create_local_event(
            room_id, event_type, sender, content, txn=txn
        )
        return str(event.event_id)

    async def send_state_event(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        state_key: str,
        content: Mapping[str, Any],
    ) -> str:
        """PUT /rooms/{roomId}/state/{eventType}/{stateKey}; returns the event ID.

        Setting state to what it already is (same sender, same content) sends nothing and
        returns the current event, so clients that re-send state do not flood the room.
        """
        _check_room_id(room_id)
        _check_event_type(event_type)
        if len(state_key.encode("utf-8")) > MAX_TYPE_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", "The state key exceeds 255 bytes")
        current = (await self._state.get_current_state(room_id, [(event_type, state_key)])).get(
            (event_type, state_key)
        )
        if current is not None and current.sender == sender and current.content == content:
            return str(current.event_id)
        if event_type == CANONICAL_ALIAS:
            await self._aliases.check_canonical_alias(
                room_id, content, None if current is None else current.content
            )
        event = await self._pipeline.create_local_event(
            room_id, event_type, sender, content, state_key
        )
        return str(event.event_id)

    async def redact_event(
        self,
        sender: str,
        device_key: str,
        is_admin: bool,
        room_id: str,
        event_id: str,
        txn_id: str,
        reason: str | None,
    ) -> str:
        """PUT /rooms/{roomId}/redact/{eventId}/{txnId}; returns the redaction's event ID."""
        _check_room_id(room_id)
        if not is_valid_event_id(event_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid event ID {event_id!r}")
        content: dict[str, Any] = {} if reason is None else {"reason": reason}
        txn = ClientTransaction(sender, device_key, f"redact:{room_id}:{event_id}", txn_id)
        return await self._redact(sender, is_admin, room_id, event_id, content, txn)

    async def _redact(
        self,
        sender: str,
        is_admin: bool,
        room_id: str,
        target_id: str,
        content: Mapping[str, Any],
        txn: ClientTransaction,
    ) -> str:
        # A retry answers with the original event even if the power check would now fail.
        stored = await self._rooms.get_client_transaction(txn)
        if stored is None:
            await self._check_may_redact(sender, is_admin, room_id, target_id)
        room_version = await self._state.get_room_version(room_id)
        content = {k: v for k, v in content.items() if k != "redacts"}
        extra: dict[str, Any] | None = None
        if room_version is not None and not room_version.redacts_in_content:
            # Before v11 `redacts` is a top-level key (room_send.yaml: "MUST move" it there).
            extra = {"redacts": target_id}
        else:
            content["redacts"] = target_id
        event = await self._pipeline.create_local_event(
            room_id, REDACTION, sender, content, extra_pdu_fields=extra, txn=txn
        )
        return str(event.event_id)

    async def _check_may_redact(
        self, sender: str, is_admin: bool, room_id: str, target_id: str
    ) -> None:
        """redaction.yaml: anyone allowed to send m.room.redaction may redact their own events;
        other users' events need the `redact` level; server admins may redact events of users
        of their server. (The auth rules check the m.room.redaction level itself.)"""
        target = (await self._state.get_events([target_id])).get(target_id)
        if target is not None and target.room_id != room_id:
            raise MatrixError(404, "M_NOT_FOUND", f"Event {target_id} is not in this room")
        if target is not None and target.sender == sender:
            return
        if is_admin and target is not None and server_name_of(target.sender) == self._server_name:
            return
        state = await self._state.get_current_state(room_id)
        if not state:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        if user_power_level(state, sender) < named_power_level(state, "redact"):
            raise MatrixError(
                403, "M_FORBIDDEN", "You do not have the power to redact other users' events"
            )
