"""Other servers' verify keys held in memory, in front of the `server_signing_keys` table.

Every inbound request (X-Matrix) and every received PDU needs a key; reading it from
PostgreSQL each time costs a round trip. The keyring keeps the rows it has read here, bounded
(least recently used goes first), and forgets a server's rows whenever it stores a new
response for them, so what is held never claims more than the table does.

Whether a held key answers a lookup follows S2S "Retrieving server keys" / "Publishing Keys":
it must be valid until the time asked (`valid_until_ts`, already capped at 7 days ahead when
stored), and a key from `old_verify_keys` (whose `valid_until_ts` is its `expired_ts`) checks
events only, never requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_KEYS: Final = 4096


@dataclass(frozen=True, slots=True)
class HeldKey:
    verify_key: bytes
    valid_until_ts: int
    old: bool  # from `old_verify_keys`: for events only

    def answers(self, minimum_valid_until_ts: int, for_requests: bool) -> bool:
        """Whether this key may check a signature needing `minimum_valid_until_ts`."""
        if for_requests and self.old:
            return False
        return self.valid_until_ts >= minimum_valid_until_ts


class VerifyKeyCache:
    """`(server name, key ID)` → `HeldKey`, at most `max_keys` of them."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        # A dict keeps insertion order: the first entry is the least recently used.
        self._keys: dict[tuple[str, str], HeldKey] = {}
        # Moves on at every `forget`: a row read from the table before then may be outdated.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, server_name: str, key_id: str) -> HeldKey | None:
        held = self._keys.pop((server_name, key_id), None)
        if held is not None:
            self._keys[(server_name, key_id)] = held  # now the most recently used
        return held

    def put(self, server_name: str, key_id: str, held: HeldKey, *, read_at: int) -> None:
        """Hold a key read from the table when `generation` was `read_at`; if a response was
        stored since, the read may predate it and is not kept."""
        if read_at != self.generation:
            return
        self._keys.pop((server_name, key_id), None)
        while len(self._keys) >= self._max_keys:
            del self._keys[next(iter(self._keys))]
        self._keys[(server_name, key_id)] = held

    def forget(self, server_name: str) -> None:
        """Drop every key of `server_name` (a new response for it was stored)."""
        self.generation += 1
        for held in [k for k in self._keys if k[0] == server_name]:
            del self._keys[held]
