"""Pagination tokens: positions in a room's history that clients hand back to the server.

C-S "Pagination": tokens are opaque to clients. Two forms name a position in a room:

- stream token `s<stream>` (e.g. `s1234`): the point after every event whose `stream_ordering`
  (the global persist order, homeserver/services/streams.py) is at most `stream`. /sync hands
  these out as `next_batch` and `prev_batch`. A longer /sync token `s<stream>_<more>…` is
  accepted too: only the event stream position matters for a room's history.
- topological token `t<depth>-<stream>` (e.g. `t17-1234`): the point right after the event at
  topological key `(depth, stream_ordering)` in the room DAG, so events with a key ≤ it lie
  before the token and events with a greater key after it. /messages, /context and /relations
  hand these out.

Both stay valid across restarts (they name stored positions, nothing in memory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Positions are PostgreSQL BIGINTs.
_MAX_POSITION: Final = 2**63 - 1
_STREAM: Final = re.compile(r"s(0|[1-9][0-9]{0,18})(?:_[0-9A-Za-z_.~-]*)?", re.ASCII)
# The stream part may be negative (`t17--5`): backfilled events have negative positions
# (schema/0010_backfill.sql).
_TOPOLOGICAL: Final = re.compile(r"t(0|[1-9][0-9]{0,18})-(0|-?[1-9][0-9]{0,18})", re.ASCII)


class InvalidToken(ValueError):
    """The text is not a token this server issued (answer 400 M_INVALID_PARAM)."""


@dataclass(frozen=True, slots=True)
class StreamToken:
    """After every event with `stream_ordering <= position`."""

    position: int

    def __str__(self) -> str:
        return f"s{self.position}"


@dataclass(frozen=True, slots=True)
class TopologicalToken:
    """Right after the event at topological key `(depth, stream)` in one room."""

    depth: int
    stream: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.depth, self.stream)

    def __str__(self) -> str:
        return f"t{self.depth}-{self.stream}"


RoomToken = StreamToken | TopologicalToken


def parse_room_token(text: str) -> RoomToken:
    """A stream or topological token; raise `InvalidToken` for anything else."""
    if match := _TOPOLOGICAL.fullmatch(text):
        depth, stream = int(match[1]), int(match[2])
        if depth <= _MAX_POSITION and -_MAX_POSITION <= stream <= _MAX_POSITION:
            return TopologicalToken(depth, stream)
    elif match := _STREAM.fullmatch(text):
        position = int(match[1])
        if position <= _MAX_POSITION:
            return StreamToken(position)
    raise InvalidToken(f"invalid pagination token {text[:64]!r}")
