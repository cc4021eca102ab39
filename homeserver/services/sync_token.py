"""The /sync token (`next_batch`, `since`): one position per stream /sync reads.

    s<events>_<typing>_<receipts>_<account_data>_<to_device>_<device_lists>[_<presence>]

Opaque to clients (C-S "Syncing"). Every position but typing lives in the database, so a token
stays valid across restarts; typing is in memory, and a typing position from before a restart
reads as "send the current typing state". Presence is in memory too (its positions start at the
process's start time, homeserver/services/presence.py); a token without it reads as presence 0.
Its first part is the event stream position, so the token is also a pagination token
(homeserver/services/tokens.py accepts `s<N>_…`), as clients use it for `/messages?from=<since>`
to fill a gap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Final

from homeserver.errors import MatrixError

_NUMBER: Final = r"(?:0|[1-9][0-9]{0,18})"
_TOKEN: Final = re.compile(rf"s{_NUMBER}(?:_{_NUMBER}){{5,6}}", re.ASCII)
_MAX_POSITION: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class SyncToken:
    events: int = 0
    typing: int = 0
    receipts: int = 0
    account_data: int = 0
    to_device: int = 0
    device_lists: int = 0
    presence: int = 0

    def __str__(self) -> str:
        return "s" + "_".join(str(getattr(self, f.name)) for f in fields(self))

    @staticmethod
    def parse(text: str) -> SyncToken:
        """A `since` token; anything this server did not issue is 400 M_INVALID_PARAM."""
        if _TOKEN.fullmatch(text) is None:
            shown = text if len(text) <= 64 else text[:64] + "…"
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid since token: {shown!r}")
        positions = [int(part) for part in text[1:].split("_")]
        if any(position > _MAX_POSITION for position in positions):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid since token: out of range")
        return SyncToken(*positions)

    def is_after(self, other: SyncToken) -> bool:
        """Whether any stream of this token is past `other`'s."""
        return any(getattr(self, f.name) > getattr(other, f.name) for f in fields(self))

    def capped(self, current: SyncToken) -> SyncToken:
        """This token with no position beyond `current`'s. A typing position ahead of the
        current one comes from before a restart (typing is in memory): it restarts at 0."""
        return SyncToken(
            events=min(self.events, current.events),
            typing=0 if self.typing > current.typing else self.typing,
            receipts=min(self.receipts, current.receipts),
            account_data=min(self.account_data, current.account_data),
            to_device=min(self.to_device, current.to_device),
            device_lists=min(self.device_lists, current.device_lists),
            presence=0 if self.presence > current.presence else self.presence,
        )
