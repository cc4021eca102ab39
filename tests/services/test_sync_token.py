"""The /sync token: opaque text that round-trips, refuses forgeries, and survives restarts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.errors import MatrixError
from homeserver.services.sync_token import SyncToken
from homeserver.services.tokens import StreamToken, parse_room_token

positions = st.integers(min_value=0, max_value=2**63 - 1)


@given(st.tuples(positions, positions, positions, positions, positions, positions))
def test_token_round_trips(parts: tuple[int, int, int, int, int, int]) -> None:
    token = SyncToken(*parts)
    assert SyncToken.parse(str(token)) == token


@pytest.mark.parametrize(
    "text",
    [
        "",
        "s",
        "s1",
        "s1_2_3_4_5",
        "s1_2_3_4_5_6_7_8",
        "t1_2_3_4_5_6",
        "s01_0_0_0_0_0",
        "s-1_0_0_0_0_0",
        "s1_2_3_4_5_x",
        f"s{2**63}_0_0_0_0_0",
        "s1_2_3_4_5_6 ",
    ],
)
def test_forged_tokens_are_invalid_param(text: str) -> None:
    with pytest.raises(MatrixError) as caught:
        SyncToken.parse(text)
    assert (caught.value.status, caught.value.errcode) == (400, "M_INVALID_PARAM")


def test_sync_token_is_a_pagination_token_at_its_event_position() -> None:
    assert parse_room_token(str(SyncToken(events=42, typing=3))) == StreamToken(42)


def test_capped_restarts_typing_and_clamps_the_rest() -> None:
    current = SyncToken(10, 2, 5, 5, 5, 5)
    since = SyncToken(12, 9, 4, 7, 5, 0)
    assert since.capped(current) == SyncToken(10, 0, 4, 5, 5, 0)
    assert SyncToken(10, 1, 0, 0, 0, 0).capped(current).typing == 1


def test_is_after_compares_every_stream() -> None:
    base = SyncToken(1, 1, 1, 1, 1, 1)
    assert SyncToken(1, 1, 2, 1, 1, 1).is_after(base)
    assert not base.is_after(base)


def test_presence_position_is_optional_and_capped_like_typing() -> None:
    assert SyncToken.parse("s1_2_3_4_5_6") == SyncToken(1, 2, 3, 4, 5, 6, presence=0)
    assert SyncToken.parse("s1_2_3_4_5_6_7").presence == 7
    current = SyncToken(presence=100)
    assert SyncToken(presence=200).capped(current).presence == 0  # from before a restart
    assert SyncToken(presence=50).capped(current).presence == 50
