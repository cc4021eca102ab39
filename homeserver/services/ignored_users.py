"""Ignoring users (C-S "Ignoring Users"): the `m.ignored_user_list` account data.

Server behaviour:
- events sent by an ignored user do not reach the client (/sync timelines, /messages,
  /context), "with the exception of state events", which are still sent so that the room
  looks the same;
- "Servers must not send room invites from ignored users to clients";
- "Following an update of the `m.ignored_user_list`, the sync API for all clients should
  immediately start ignoring (or un-ignoring) the user": the next /sync of every device
  filters with the new list. Events missed while a user was ignored are not sent afterwards
  (incremental syncs only look forward; a fresh sync shows them again).

Each user's list is cached in memory and reread only after the account data stream announced
a change of that user's account data (an in-memory check, no query per request).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

from federation.pdu import Event
from homeserver.errors import MatrixError
from homeserver.services.account_data import AccountDataService
from homeserver.storage.sync_data import GLOBAL

IGNORED_USER_LIST: Final = "m.ignored_user_list"
# Users whose lists are kept in memory at once; the least recently used go first.
MAX_CACHED_USERS: Final = 10_000
NOBODY: Final[frozenset[str]] = frozenset()


def parse_ignored_users(content: Mapping[str, Any]) -> frozenset[str]:
    """`content.ignored_users`: a map whose keys are the ignored user IDs (values are empty
    objects, reserved); anything malformed ignores nobody."""
    ignored = content.get("ignored_users")
    if not isinstance(ignored, Mapping):
        return NOBODY
    return frozenset(user_id for user_id in ignored if isinstance(user_id, str))


def hidden_from(event: Event, ignored: frozenset[str]) -> bool:
    """Whether `event` is withheld from a user ignoring `ignored` (state events never are)."""
    return event.state_key is None and event.sender in ignored


def invite_hidden(invite: Event, ignored: frozenset[str]) -> bool:
    """An invite (its m.room.member event) sent by an ignored user is not shown."""
    return invite.sender in ignored


class IgnoredUsers:
    """Who each local user ignores, cached per user."""

    def __init__(self, account_data: AccountDataService) -> None:
        self._account_data = account_data
        # user_id → (account data position when read, ignored users)
        self._cache: OrderedDict[str, tuple[int, frozenset[str]]] = OrderedDict()
        # Reads under way: the rooms of one /sync ask at once, and share one query (None:
        # that read failed).
        self._loading: dict[str, asyncio.Future[frozenset[str] | None]] = {}

    async def ignored_by(self, user_id: str) -> frozenset[str]:
        """The users `user_id` ignores (their current `m.ignored_user_list`)."""
        stream = self._account_data.stream
        cached = self._cache.get(user_id)
        if cached is not None and not stream.notifier.has_new_events(user_id, (), cached[0]):
            self._cache.move_to_end(user_id)
            return cached[1]
        loading = self._loading.get(user_id)
        if loading is not None:
            shared = await asyncio.shield(loading)
            if shared is not None:
                return shared
            # That read failed; this caller tries for itself.
        future: asyncio.Future[frozenset[str] | None] = asyncio.get_running_loop().create_future()
        self._loading[user_id] = future
        ignored: frozenset[str] | None = None
        try:
            ignored = await self._load(user_id)
            return ignored
        finally:
            future.set_result(ignored)
            if self._loading.get(user_id) is future:
                del self._loading[user_id]

    async def _load(self, user_id: str) -> frozenset[str]:
        # The position first: a change announced after it makes the next call reread.
        position = self._account_data.stream.current_position
        try:
            content = await self._account_data.get(user_id, GLOBAL, IGNORED_USER_LIST)
        except MatrixError:
            ignored = NOBODY  # never set
        else:
            ignored = parse_ignored_users(content)
        self._cache[user_id] = (position, ignored)
        self._cache.move_to_end(user_id)
        while len(self._cache) > MAX_CACHED_USERS:
            self._cache.popitem(last=False)
        return ignored
