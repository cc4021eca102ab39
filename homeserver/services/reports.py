"""Reporting content to the server's administrators (C-S "Reporting Content",
`report_content.yaml`).

- An event: "servers MUST verify that the reporting user is currently joined to the room the
  event is in" (v1.8); an unknown event, or one the user may not see, is 404 `M_NOT_FOUND`.
- A room (v1.13): the reporter need not be in it ("MUST NOT restrict room reports based on
  whether or not the reporting user is joined"); 404 for a room this server does not know.
- A user (v1.14): nor need they share a room; 404 for an unknown user of this server (users
  of other servers cannot be checked, and are accepted).

Reports are stored (homeserver/storage/reports.py); administrators read them in the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from federation.ids import is_valid_user_id, server_name_of
from homeserver.errors import MatrixError
from homeserver.services.room_reads import RoomReader
from homeserver.storage import users
from homeserver.storage.reports import ContentReport, ReportKind, insert_report


def now_ms() -> int:
    return int(time.time() * 1000)


def not_found(what: str) -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", what)


class ReportService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        reader: RoomReader,
        server_name: str,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._pool = pool
        self._reader = reader
        self._server_name = server_name
        self._clock = clock

    async def report_event(
        self, reporter: str, room_id: str, event_id: str, reason: str | None
    ) -> None:
        """POST /rooms/{roomId}/report/{eventId}."""
        # "The event was not found or you are not joined to the room": one answer for both.
        unknown = not_found("The event was not found or you are not joined to the room")
        if await self._reader.cache.get_room_state(room_id) is None:
            raise unknown
        current = await self._reader.store.get_current_membership(room_id, reporter)
        if current is None or current[0] != "join":
            raise unknown
        access = await self._reader.check_access(room_id, reporter)
        try:
            await self._reader.get_visible_event(access, event_id, reporter)
        except MatrixError:
            raise unknown from None
        await self._store("event", reporter, reason, room_id=room_id, event_id=event_id)

    async def report_room(self, reporter: str, room_id: str, reason: str) -> None:
        """POST /rooms/{roomId}/report."""
        if await self._reader.cache.get_room_state(room_id) is None:
            raise not_found("The room was not found")
        await self._store("room", reporter, reason, room_id=room_id)

    async def report_user(self, reporter: str, user_id: str, reason: str) -> None:
        """POST /users/{userId}/report."""
        if not is_valid_user_id(user_id, historical=True):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user ID {user_id[:300]!r}")
        local = server_name_of(user_id) == self._server_name
        if local and await users.get_user(self._pool, user_id) is None:
            raise not_found("The user was not found")
        await self._store("user", reporter, reason, reported_user=user_id)

    async def _store(
        self,
        kind: ReportKind,
        reporter: str,
        reason: str | None,
        *,
        room_id: str | None = None,
        event_id: str | None = None,
        reported_user: str | None = None,
    ) -> None:
        report = ContentReport(
            reporter=reporter,
            kind=kind,
            room_id=room_id,
            event_id=event_id,
            reported_user=reported_user,
            reason=reason,
            received_ts=self._clock(),
        )
        await insert_report(self._pool, report)
