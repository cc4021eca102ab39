"""Wiring of the room-reading endpoints' services (called from homeserver/app.py)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from homeserver.services.client_events import ClientEventFormatter
from homeserver.services.pagination import RoomPaginator
from homeserver.services.relations import Relations
from homeserver.services.room_reads import RoomReader
from homeserver.services.state import RoomStateCache
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage.room_reads import RoomReadsStore
from homeserver.storage.user_directory import UserDirectoryStore


@dataclass(frozen=True, slots=True)
class RoomReadServices:
    store: RoomReadsStore
    visibility: HistoryVisibility
    formatter: ClientEventFormatter
    reader: RoomReader
    paginator: RoomPaginator
    relations: Relations
    user_directory: UserDirectoryStore

    @classmethod
    def build(cls, pool: asyncpg.Pool, state: RoomStateCache) -> RoomReadServices:
        store = RoomReadsStore(pool)
        visibility = HistoryVisibility(state, store)
        formatter = ClientEventFormatter(state, store, visibility)
        reader = RoomReader(state, store, visibility, formatter)
        paginator = RoomPaginator(reader)
        return cls(
            store=store,
            visibility=visibility,
            formatter=formatter,
            reader=reader,
            paginator=paginator,
            relations=Relations(reader, paginator),
            user_directory=UserDirectoryStore(pool),
        )
