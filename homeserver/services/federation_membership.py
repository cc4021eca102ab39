"""The resident server's side of the membership handshakes: make/send join, leave and knock.

S2S "Joining Rooms" (joins-v1.yaml `make_join`, joins-v2.yaml `send_join`), "Restricted rooms",
"Leaving Rooms" (leaving-v1.yaml, leaving-v2.yaml), "Knocking upon a room" (knocks.yaml).
`make_*` answers a template built on the room's current state (and refuses memberships the
auth rules would refuse); `send_*` checks the signed event like any received PDU, adds our
signature, and stores it through the event pipeline only if it is accepted (else 403).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final

from federation.auth_rules import AuthError, check_auth_rules
from federation.hashing import check_content_hash, compute_reference_hash, encode_base64
from federation.ids import is_valid_user_id, server_name_of
from federation.pdu import MAX_DEPTH, Event
from federation.room_state import (
    JOIN_RULES,
    MEMBER,
    StateKey,
    join_rule,
    membership_of,
    named_power_level,
    user_power_level,
)
from federation.room_versions import RoomVersion
from federation.signing import SigningKey, sign_event
from federation.wire import WireFormatError
from federation.wire_membership import (
    build_make_membership_response,
    build_send_join_response,
    build_send_knock_response,
    check_membership_event,
)
from homeserver.errors import MatrixError
from homeserver.services.event_builder import NewEvent, auth_event_ids_for, choose_prev_events
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.federation_access import ensure_acl_allows, forbidden, servers_in_state
from homeserver.services.federation_checks import DroppedPdu, EventKeyring, check_format
from homeserver.services.federation_checks import check_signatures as verify_signatures
from homeserver.services.federation_inbound import EventNotProcessed, PduReceiver
from homeserver.services.federation_reads import federation_pdu
from homeserver.services.state import RoomStateCache
from homeserver.storage.events import EventsStore

JOIN_AUTHORISED_VIA: Final = "join_authorised_via_users_server"
RESTRICTED_RULES: Final = frozenset({"restricted", "knock_restricted"})
# Knock state served back (C-S "Stripped state"): what a client shows of a room.
KNOCK_STATE_TYPES: Final = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)
# Hands an accepted membership event (event, stream position, origin) to the outbound sender.
MembershipRelay = Callable[[Event, int, str], Awaitable[None]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def invalid(reason: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", reason)


class ResidentMembership:
    def __init__(
        self,
        *,
        cache: RoomStateCache,
        events: EventsStore,
        pipeline: EventPipeline,
        receiver: PduReceiver,
        keyring: EventKeyring,
        server_name: str,
        signing_key: SigningKey,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._cache = cache
        self._events = events
        self._pipeline = pipeline
        self._receiver = receiver
        self._keyring = keyring
        self._server_name = server_name
        self._signing_key = signing_key
        self._clock = clock
        self._relay: MembershipRelay | None = None

    def set_relay(self, relay: MembershipRelay) -> None:
        """Where accepted send_join / send_leave / send_knock events go on to the other
        servers in the room (`FederationSender.relay_event`)."""
        self._relay = relay

    # --- make_join / make_leave / make_knock ----------------------------------------------

    async def make_membership(
        self,
        origin: str,
        room_id: str,
        user_id: str,
        membership: str,
        supported_versions: Collection[str] | None,
    ) -> dict[str, Any]:
        """The event template for `user_id` (a user of `origin`) to sign and send back.

        `supported_versions` (`ver`) is checked for joins and knocks; a room of another version
        is 400 M_INCOMPATIBLE_ROOM_VERSION.
        """
        room_version = await self._resident_room(origin, room_id)
        if not (is_valid_user_id(user_id, historical=True) and server_name_of(user_id) == origin):
            raise forbidden(f"{user_id} is not a user of {origin}")
        if supported_versions is not None and room_version.identifier not in supported_versions:
            raise MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                f"Room version {room_version.identifier} is not supported by your server",
                room_version=room_version.identifier,
            )
        state = await self._cache.get_current_state_ids(room_id)
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            authoriser = await self._restricted_join_authoriser(room_version, state, user_id)
            if authoriser is not None:
                content[JOIN_AUTHORISED_VIA] = authoriser
        template = await self._template(room_id, room_version, user_id, content, state)
        await self._check_template_allowed(template, room_version, state)
        return build_make_membership_response(room_version, template)

    async def _resident_room(self, origin: str, room_id: str) -> RoomVersion:
        """The room's version, once the room is known and its ACL lets `origin` in."""
        room_version = await self._cache.get_room_version(room_id)
        if room_version is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
        await ensure_acl_allows(self._cache, room_id, origin)
        state = await self._cache.get_current_state_ids(room_id)
        if self._server_name not in await servers_in_state(self._cache, state):
            raise MatrixError(404, "M_NOT_FOUND", f"This server is not in {room_id}")
        return room_version

    async def _template(
        self,
        room_id: str,
        room_version: RoomVersion,
        user_id: str,
        content: Mapping[str, Any],
        state: Mapping[StateKey, str],
    ) -> dict[str, Any]:
        room = await self._cache.get_room_state(room_id)
        extremities = await self._cache.get_events(room.forward_extremities if room else [])
        prev_events = await self._cache.get_events(choose_prev_events(extremities))
        new = NewEvent(MEMBER, user_id, content, user_id)
        auth_events = await self._cache.get_events(auth_event_ids_for(room_version, new, state))
        depth = min(max((e.depth for e in prev_events.values()), default=0) + 1, MAX_DEPTH)
        return {
            "type": MEMBER,
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": dict(content),
            "origin": server_name_of(user_id),
            "origin_server_ts": self._clock(),
            "depth": depth,
            "prev_events": _references(list(prev_events.values()), room_version),
            "auth_events": _references(list(auth_events.values()), room_version),
        }

    async def _check_template_allowed(
        self, template: Mapping[str, Any], room_version: RoomVersion, state: Mapping[StateKey, str]
    ) -> None:
        """Refuse now what the auth rules would refuse when the event comes back (403)."""
        probe = dict(template)
        if room_version.has_event_id_field:
            probe["event_id"] = f"$probe:{self._server_name}"
        # Signed by us, as the authorising server of a restricted join must sign (rule 5.2).
        probe = sign_event(probe, room_version, self._server_name, self._signing_key)
        event = Event.from_pdu(probe, room_version, event_id=f"$probe:{self._server_name}")
        events = await self._cache.get_events(state.values())
        auth_state = {key: events[i] for key, i in state.items() if i in events}
        try:
            check_auth_rules(event, auth_state)
        except AuthError as exc:
            raise forbidden(exc.reason) from None

    async def _restricted_join_authoriser(
        self, room_version: RoomVersion, state: Mapping[StateKey, str], user_id: str
    ) -> str | None:
        """S2S "Restricted rooms": a local user who may invite, to sign for a user meeting a
        condition of `allow`. None when the join needs no authorisation."""
        events = await self._cache.get_events(state.values())
        auth_state = {key: events[i] for key, i in state.items() if i in events}
        if not room_version.restricted_join_rule or join_rule(auth_state) not in RESTRICTED_RULES:
            return None
        if membership_of(auth_state, user_id) in ("join", "invite"):
            return None
        rules = auth_state[(JOIN_RULES, "")].content.get("allow")
        allowed_rooms = [
            c.get("room_id")
            for c in (rules if isinstance(rules, list) else [])
            if isinstance(c, Mapping) and c.get("type") == "m.room_membership"
        ]
        known = [r for r in allowed_rooms if isinstance(r, str) and await self._is_resident(r)]
        if not known:
            raise MatrixError(
                400, "M_UNABLE_TO_AUTHORISE_JOIN", "No allowed room is known to this server"
            )
        if not any([await self._is_joined(r, user_id) for r in known]):
            raise forbidden(f"{user_id} is in none of the rooms that allow joining")
        invite_level = named_power_level(auth_state, "invite")
        for (event_type, member), event_id in sorted(state.items()):
            event = events.get(event_id)
            if (
                event_type == MEMBER
                and event is not None
                and event.membership == "join"
                and server_name_of(member) == self._server_name
                and user_power_level(auth_state, member) >= invite_level
            ):
                return member
        raise MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No local user here may invite")

    async def _is_resident(self, room_id: str) -> bool:
        state = await self._cache.get_current_state_ids(room_id)
        return self._server_name in await servers_in_state(self._cache, state)

    async def _is_joined(self, room_id: str, user_id: str) -> bool:
        found = await self._cache.get_current_state(room_id, [(MEMBER, user_id)])
        event = found.get((MEMBER, user_id))
        return event is not None and event.membership == "join"

    # --- send_join / send_leave / send_knock ----------------------------------------------

    async def send_join(
        self, origin: str, room_id: str, event_id: str, pdu: Mapping[str, Any], omit_members: bool
    ) -> dict[str, Any]:
        """PUT /v2/send_join: accept the join, answer the state before it and auth chain."""
        event, state_before = await self._accept_membership(origin, room_id, event_id, pdu, "join")
        rows = await self._events.get_event_rows(state_before.values())
        state_rows = [r for r in rows.values() if not (omit_members and r.event.type == MEMBER)]
        chain_of = {r.event.event_id for r in state_rows} | {event.event_id}
        chain = await self._events.get_auth_chain_ids(chain_of)
        if omit_members:  # "may be omitted from auth_chain" when returned in state
            chain -= {r.event.event_id for r in state_rows}
        chain_rows = await self._events.get_event_rows(chain)
        return build_send_join_response(
            [federation_pdu(r) for r in _by_depth(state_rows)],
            [federation_pdu(r) for r in _by_depth(chain_rows.values())],
            origin=self._server_name,
            event=dict(event.pdu),
            members_omitted=omit_members,
            servers_in_room=await servers_in_state(self._cache, state_before),
        )

    async def send_leave(
        self, origin: str, room_id: str, event_id: str, pdu: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT /v2/send_leave: `{}` once the leave is accepted."""
        await self._accept_membership(origin, room_id, event_id, pdu, "leave")
        return {}

    async def send_knock(
        self, origin: str, room_id: str, event_id: str, pdu: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT /v1/send_knock: the room's stripped state for the knocking user's client."""
        await self._accept_membership(origin, room_id, event_id, pdu, "knock")
        keys = [(t, "") for t in KNOCK_STATE_TYPES]
        current = await self._cache.get_current_state(room_id, keys)
        return build_send_knock_response([federation_pdu_of(e) for e in current.values()])

    async def _accept_membership(
        self, origin: str, room_id: str, event_id: str, pdu: Mapping[str, Any], membership: str
    ) -> tuple[Event, Mapping[StateKey, str]]:
        room_version = await self._resident_room(origin, room_id)
        try:
            event = check_format(pdu, room_version)
            check_membership_event(
                event, membership=membership, room_id=room_id, event_id=event_id, origin=origin
            )
        except (DroppedPdu, WireFormatError) as exc:
            raise invalid(str(exc)) from None
        if not check_content_hash(event.pdu):
            raise invalid("The event's content hash does not match")
        # Sign first: a restricted join must carry our signature as the authorising server.
        signed = sign_event(event.pdu, room_version, self._server_name, self._signing_key)
        event = Event.from_pdu(signed, room_version, event_id=event.event_id)
        try:
            await verify_signatures(event, self._keyring)
        except DroppedPdu as exc:
            raise invalid(str(exc)) from None
        async with self._receiver.room_lock(room_id):
            stored = (await self._events.get_event_rows([event.event_id])).get(event.event_id)
            if stored is not None and stored.visible_to_clients:  # a retry: answer again
                before = await self._cache.get_state_before_event(event.event_id)
                return stored.event, before or {}
            try:
                verdict = await self._receiver.decide(origin, event, fetch_missing=False)
            except EventNotProcessed as exc:
                raise invalid(str(exc)) from None
            if not verdict.accepted:
                raise forbidden(verdict.rejected_reason or "Not allowed by the current state")
            position = await self._pipeline.persist_remote_event(event, verdict.state_before)
        # S2S "Joining Rooms" / "Leaving Rooms" / "Knocking upon a room": the resident server
        # sends the accepted event on to the other servers in the room.
        if self._relay is not None:
            await self._relay(event, position, origin)
        return event, verdict.state_before


def federation_pdu_of(event: Event) -> dict[str, Any]:
    pdu = dict(event.pdu)
    pdu.pop("unsigned", None)
    return pdu


def _by_depth(rows: Any) -> list[Any]:
    return sorted(rows, key=lambda r: (r.event.depth, r.stream_ordering))


def _references(events: list[Event], room_version: RoomVersion) -> list[Any]:
    """prev_events / auth_events: IDs, or `[id, {"sha256": hash}]` pairs in v1–v2."""
    if room_version.has_event_id_field:
        return [
            [e.event_id, {"sha256": encode_base64(compute_reference_hash(e.pdu, room_version))}]
            for e in events
        ]
    return [e.event_id for e in events]
