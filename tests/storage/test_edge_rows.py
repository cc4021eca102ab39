"""The DAG's edges go to PostgreSQL as column arrays in the persist statement; repeated edges
are stored once."""

from __future__ import annotations

import asyncpg

from federation.pdu import Event
from federation.room_versions import room_version
from homeserver.storage.edge_rows import edge_arrays
from homeserver.storage.event_rows import EventToPersist, PersistBatch
from homeserver.storage.persist_rows import execute_persist_core
from tests.federation.builders import DEFAULT_ROOM_ID, make_pdu

V10 = room_version("10")


def _event(name: str, prev: list[str], auth: list[str], position: int) -> EventToPersist:
    pdu = make_pdu(
        V10, f"${name}:test", "m.room.message", "@a:test", prev_events=prev, auth_events=auth
    )
    return EventToPersist(Event.from_pdu(pdu, V10, event_id=f"${name}:test"), position)


async def _rows(pool: asyncpg.Pool, table: str, column: str) -> set[tuple[str, str]]:
    rows = await pool.fetch(f"SELECT event_id, {column} FROM {table}")
    return {(r["event_id"], r[column]) for r in rows}


def test_edge_arrays_pair_each_event_with_each_of_its_edges() -> None:
    arrays = edge_arrays(
        [_event("b", ["$a:test"], ["$x:test", "$y:test"], 1), _event("d", [], [], 2)]
    )
    assert list(zip(arrays.prev_from, arrays.prev_to, strict=True)) == [("$b:test", "$a:test")]
    assert list(zip(arrays.auth_from, arrays.auth_to, strict=True)) == [
        ("$b:test", "$x:test"),
        ("$b:test", "$y:test"),
    ]


async def test_prev_and_auth_edges_of_a_batch_are_stored_once_each(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO rooms (room_id, room_version, created_ts, is_public)"
        " VALUES ($1, '10', 0, false)",
        DEFAULT_ROOM_ID,
    )
    events = [
        _event("b", ["$a:test"], ["$c1:test", "$c2:test"], 1),
        _event("c", ["$a:test", "$b:test"], ["$c1:test", "$c1:test"], 2),
        _event("d", [], [], 3),
    ]
    await execute_persist_core(pool, PersistBatch(DEFAULT_ROOM_ID, events, now_ms=0))

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
