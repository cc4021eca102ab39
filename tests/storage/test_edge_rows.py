"""The DAG's edges are written one statement per table; repeats and rewrites are ignored."""

from __future__ import annotations

import asyncpg

from federation.pdu import Event
from federation.room_versions import room_version
from homeserver.storage.edge_rows import insert_edges
from homeserver.storage.event_rows import EventToPersist
from tests.federation.builders import make_pdu

V10 = room_version("10")


def _event(name: str, prev: list[str], auth: list[str]) -> EventToPersist:
    pdu = make_pdu(
        V10, f"${name}:test", "m.room.message", "@a:test", prev_events=prev, auth_events=auth
    )
    return EventToPersist(Event.from_pdu(pdu, V10, event_id=f"${name}:test"), 0)


async def _rows(pool: asyncpg.Pool, table: str, column: str) -> set[tuple[str, str]]:
    rows = await pool.fetch(f"SELECT event_id, {column} FROM {table}")
    return {(r["event_id"], r[column]) for r in rows}


async def test_prev_and_auth_edges_of_a_batch_are_stored_once_each(pool: asyncpg.Pool) -> None:
    events = [
        _event("b", ["$a:test"], ["$c1:test", "$c2:test"]),
        _event("c", ["$a:test", "$b:test"], ["$c1:test", "$c1:test"]),
        _event("d", [], []),
    ]
    async with pool.acquire() as conn:
        await insert_edges(conn, events)
        await insert_edges(conn, events[:1])  # written again: nothing changes

    assert await _rows(pool, "event_edges", "prev_event_id") == {
        ("$b:test", "$a:test"),
        ("$c:test", "$a:test"),
        ("$c:test", "$b:test"),
    }
    assert await _rows(pool, "event_auth_edges", "auth_event_id") == {
        ("$b:test", "$c1:test"),
        ("$b:test", "$c2:test"),
        ("$c:test", "$c1:test"),
    }
