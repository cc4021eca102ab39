"""The end-to-end encryption parts of a /sync response (C-S "Extensions to /sync" of
"End-to-End Encryption"): `device_lists`, `device_one_time_keys_count` and
`device_unused_fallback_key_types`. `to_device` is homeserver/services/sync_to_device.py."""

from __future__ import annotations

from typing import Any

from homeserver.services.e2e_keys import E2eKeysService
from homeserver.services.sync_token import SyncToken


def empty_section() -> dict[str, Any]:
    """What a server without E2EE wiring answers."""
    return {"device_lists": {"changed": [], "left": []}, "device_one_time_keys_count": {}}


def has_device_list_changes(section: dict[str, Any]) -> bool:
    """Whether the section alone is worth answering a long-poll for."""
    lists = section["device_lists"]
    return bool(lists["changed"] or lists["left"])


class E2eeSyncSection:
    def __init__(self, keys: E2eKeysService) -> None:
        self._keys = keys

    async def section(
        self,
        user_id: str,
        device_id: str | None,
        since: SyncToken | None,
        now: SyncToken,
        *,
        memberships_changed: bool = True,
    ) -> dict[str, Any]:
        """`memberships_changed` False: no membership event in the user's rooms (nor of the
        user) in `(since, now]`, so only device-list changes can make the delta non-empty."""
        changed: set[str] = set()
        left: set[str] = set()
        # Device lists are deltas: an initial sync has none (the client queries every
        # member's keys instead).
        # Neither device lists nor memberships moved: the delta is empty, no need to read it.
        if since is not None and (
            since.device_lists < now.device_lists
            or (since.events < now.events and memberships_changed)
        ):
            changed, left = await self._keys.device_list_delta(user_id, since, now)
        section: dict[str, Any] = {
            "device_lists": {"changed": sorted(changed), "left": sorted(left)},
            "device_one_time_keys_count": {},
        }
        if device_id is not None:
            counts, fallback_types = await self._keys.key_counts(user_id, device_id)
            section["device_one_time_keys_count"] = counts
            section["device_unused_fallback_key_types"] = fallback_types
        return section
