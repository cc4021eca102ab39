"""Fetching older history from other servers (S2S "Backfilling"): what is asked, and which
fetched PDUs pass the receipt checks."""

from __future__ import annotations

import copy
from typing import Any

from homeserver.services.federation_backfill import RemoteBackfiller
from homeserver.storage.outliers import OutlierStore
from tests.federation_api.conftest import JoinedRoom
from tests.federation_api.support import World
from tests.federation_api.test_transactions import message


class RecordingRequester:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    async def get_json(self, destination: str, path: str, query: Any = None) -> Any:
        self.calls.append((destination, path, query))
        return self.answers[destination]

    async def post_json(self, destination: str, path: str, content: Any) -> Any:
        raise AssertionError("backfill only GETs")


def backfiller(world: World, requester: RecordingRequester) -> RemoteBackfiller:
    inbound, remote = world.deps.federation_inbound, world.deps.remote
    assert inbound is not None and remote is not None
    return RemoteBackfiller(
        requester=requester,
        receiver=inbound.receiver,
        keyring=remote.keyring,
        cache=world.deps.engine.state,
        events=world.deps.engine.events,
        pipeline=world.deps.engine.pipeline,
        server_name=world.deps.config.server_name,
        outliers=OutlierStore(world.deps.pool),
    )


async def test_backfill_asks_a_server_in_the_room_and_keeps_checked_events(
    world: World, joined_room: JoinedRoom
) -> None:
    older_id, older = await message(world, joined_room, "older")
    newer_id, newer = await message(world, joined_room, "newer")
    newer = {**newer, "prev_events": [older_id], "depth": older["depth"] + 1}
    newer_id, newer = world.remote.sign_event({k: v for k, v in newer.items() if k != "signatures"})
    forged = copy.deepcopy(older)
    forged["content"] = {"msgtype": "m.text", "body": "x"}
    forged["signatures"] = {world.remote.server_name: {"ed25519:remote1": "AAAA"}}
    requester = RecordingRequester({world.remote.server_name: {"pdus": [newer, older, forged]}})

    fetched = await backfiller(world, requester).fetch(joined_room.room_id, [newer_id], 10)

    assert [e.event_id for e in fetched] == [older_id, newer_id]  # oldest first
    destination, path, query = requester.calls[0]
    assert destination == world.remote.server_name
    assert path.endswith("/backfill/" + joined_room.room_id.replace("!", "%21").replace(":", "%3A"))
    assert query == {"v": [newer_id], "limit": 10}


async def test_backfill_of_events_we_hold_returns_nothing(
    world: World, joined_room: JoinedRoom
) -> None:
    rows = await world.deps.engine.events.get_event_rows([joined_room.join_event_id])
    join_pdu = dict(rows[joined_room.join_event_id].event.pdu)
    requester = RecordingRequester({world.remote.server_name: {"pdus": [join_pdu]}})
    filler = backfiller(world, requester)
    assert await filler.fetch(joined_room.room_id, [joined_room.join_event_id], 5) == []
    assert await filler.fetch(joined_room.room_id, [], 5) == []


async def test_a_server_with_a_useless_answer_yields_nothing(
    world: World, joined_room: JoinedRoom
) -> None:
    requester = RecordingRequester({world.remote.server_name: {"not_pdus": 1}})
    assert await backfiller(world, requester).fetch(joined_room.room_id, ["$x"], 5) == []
