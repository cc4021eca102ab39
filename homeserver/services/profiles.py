"""User profiles: display name, avatar and the other profile fields (C-S "Profiles").

A local user who never changed their profile has the default one: their localpart as display
name, no avatar. Changing `displayname` or `avatar_url` sends a new `join` member event into
every room the user is joined to (C-S "Events on Change of Profile Information"); the request is
answered once those events are committed (a room that refuses the event is logged and skipped).
Remote users' profiles need federation: `RemoteProfileQuery`, None until the federation layer
provides one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, Final

import asyncpg
import orjson

from federation.ids import is_valid_user_id, localpart_of, server_name_of
from homeserver.errors import MatrixError
from homeserver.services.event_pipeline import EventPipeline
from homeserver.services.state import RoomStateCache
from homeserver.storage import users
from homeserver.storage.profiles import AVATAR_URL, DISPLAYNAME, ProfilesStore, StoredProfile
from homeserver.storage.rooms import RoomsStore

logger = logging.getLogger(__name__)

MEMBER: Final = "m.room.member"
# C-S "Profiles": the whole profile MUST be under 64 KiB; keys at most 255 bytes.
MAX_PROFILE_BYTES: Final = 64 * 1024
MAX_KEY_BYTES: Final = 255
# profile.yaml `keyName`: the two classic fields, m.tz, or a namespaced custom key.
_KEY_NAME: Final = re.compile(r"(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)")

_DELETED: Final = object()

# `(user_id) → profile JSON`, or None if the remote server knows no such user.
RemoteProfileQuery = Callable[[str], Awaitable[dict[str, Any] | None]]


def profile_not_found() -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "Profile not found")


def check_key_name(key: str) -> None:
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise MatrixError(400, "M_KEY_TOO_LARGE", "Profile key exceeds 255 bytes")
    if not _KEY_NAME.fullmatch(key):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid profile key {key!r}")


class ProfileService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        profiles: ProfilesStore,
        rooms: RoomsStore,
        state: RoomStateCache,
        pipeline: EventPipeline,
        server_name: str,
        remote_profiles: RemoteProfileQuery | None = None,
    ) -> None:
        self._pool = pool
        self._profiles = profiles
        self._rooms = rooms
        self._state = state
        self._pipeline = pipeline
        self._server_name = server_name
        self._remote_profiles = remote_profiles

    def _is_local(self, user_id: str) -> bool:
        return server_name_of(user_id) == self._server_name

    async def _local_profile(self, user_id: str) -> StoredProfile | None:
        """The profile of an existing, active local user; None if there is no such user."""
        user = await users.get_user(self._pool, user_id)
        if user is None or user.deactivated:
            return None
        stored = await self._profiles.get_profile(user_id)
        return stored if stored is not None else StoredProfile(localpart_of(user_id), None)

    # --- reads ----------------------------------------------------------------------------

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        """GET /profile/{userId}: every field that is set; 404 for an unknown user."""
        if not is_valid_user_id(user_id, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
        if not self._is_local(user_id):
            if self._remote_profiles is None:
                raise profile_not_found()
            remote = await self._remote_profiles(user_id)
            if remote is None:
                raise profile_not_found()
            return remote
        profile = await self._local_profile(user_id)
        if profile is None:
            raise profile_not_found()
        return profile.to_json()

    async def get_profile_field(self, user_id: str, key: str) -> dict[str, Any]:
        """GET /profile/{userId}/{keyName}: `{key: value}`; 404 if the field is not set."""
        check_key_name(key)
        profile = await self.get_profile(user_id)
        if key not in profile:
            raise MatrixError(404, "M_NOT_FOUND", f"Profile field {key} not set")
        return {key: profile[key]}

    async def member_profile(self, user_id: str) -> dict[str, str]:
        """`displayname` / `avatar_url` to copy into a member event of a local user (C-S
        "Profiles": servers include them in the membership events of their own users)."""
        if not self._is_local(user_id):
            return {}
        profile = await self._local_profile(user_id)
        if profile is None:
            return {}
        result: dict[str, str] = {}
        if profile.displayname is not None:
            result[DISPLAYNAME] = profile.displayname
        if profile.avatar_url is not None:
            result[AVATAR_URL] = profile.avatar_url
        return result

    # --- writes ---------------------------------------------------------------------------

    async def set_profile_field(
        self, requester: str, is_admin: bool, user_id: str, key: str, body: Mapping[str, Any]
    ) -> None:
        """PUT /profile/{userId}/{keyName} with body `{keyName: value}`."""
        check_key_name(key)
        if key not in body:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing key {key!r} in the body")
        value = _checked_value(key, body[key])
        profile = await self._own_profile(requester, is_admin, user_id)
        await self._save(user_id, profile, _with_field(profile, key, value))

    async def delete_profile_field(
        self, requester: str, is_admin: bool, user_id: str, key: str
    ) -> None:
        """DELETE /profile/{userId}/{keyName}: remove the field (200 even if it was unset)."""
        check_key_name(key)
        profile = await self._own_profile(requester, is_admin, user_id)
        await self._save(user_id, profile, _with_field(profile, key, _DELETED))

    async def _own_profile(self, requester: str, is_admin: bool, user_id: str) -> StoredProfile:
        if not is_valid_user_id(user_id, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
        if user_id != requester and not (is_admin and self._is_local(user_id)):
            raise MatrixError(403, "M_FORBIDDEN", "You cannot change another user's profile")
        profile = await self._local_profile(user_id)
        if profile is None:
            raise profile_not_found()
        return profile

    async def _save(self, user_id: str, old: StoredProfile, new: StoredProfile) -> None:
        if len(orjson.dumps(new.to_json())) >= MAX_PROFILE_BYTES:
            raise MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB")
        await self._profiles.save_profile(user_id, new)
        if (old.displayname, old.avatar_url) != (new.displayname, new.avatar_url):
            await self._propagate(user_id, new)

    async def _propagate(self, user_id: str, profile: StoredProfile) -> None:
        """A new join member event with the new name and avatar in every joined room."""
        room_ids = await self._rooms.get_rooms_for_user(user_id, ("join",))
        await asyncio.gather(*(self._update_member_event(r, user_id, profile) for r in room_ids))

    async def _update_member_event(
        self, room_id: str, user_id: str, profile: StoredProfile
    ) -> None:
        current = await self._state.get_current_state(room_id, [(MEMBER, user_id)])
        member = current.get((MEMBER, user_id))
        if member is None or member.membership != "join":
            return
        content = dict(member.content)
        for key, value in ((DISPLAYNAME, profile.displayname), (AVATAR_URL, profile.avatar_url)):
            if value is None:
                content.pop(key, None)
            else:
                content[key] = value
        # The reason and the restricted-join authorisation were for the original join only.
        content.pop("reason", None)
        content.pop("join_authorised_via_users_server", None)
        if content == dict(member.content):
            return
        try:
            await self._pipeline.create_local_event(room_id, MEMBER, user_id, content, user_id)
        except MatrixError as e:
            logger.warning("profile update of %s not sent to %s: %s", user_id, room_id, e)


def _checked_value(key: str, value: Any) -> Any:
    """Per-field value rules (profile.yaml): strings for the classic fields, mxc:// avatars."""
    if key in (DISPLAYNAME, AVATAR_URL, "m.tz"):
        if not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", f"{key} must be a string")
        if key == AVATAR_URL and value and not value.startswith("mxc://"):
            raise MatrixError(400, "M_INVALID_PARAM", "avatar_url must be an mxc:// URI")
        # An empty display name or avatar means "none" (clients clear them this way).
        return value or None
    return value


def _with_field(profile: StoredProfile, key: str, value: Any) -> StoredProfile:
    """`profile` with `key` set to `value`, or removed for `_DELETED`. A custom field set to
    null keeps its null (profile.yaml: servers accepting null SHOULD store it)."""
    if key == DISPLAYNAME:
        return replace(profile, displayname=None if value is _DELETED else value)
    if key == AVATAR_URL:
        return replace(profile, avatar_url=None if value is _DELETED else value)
    others = dict(profile.other_fields)
    if value is _DELETED:
        others.pop(key, None)
    else:
        others[key] = value
    return replace(profile, other_fields=others)
