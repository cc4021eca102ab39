"""Stored filters (C-S "Filtering", filter.yaml) and the `filter` parameter of /sync: a filter
ID, or a filter's JSON inline (told apart by a leading "{")."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from homeserver.errors import MatrixError
from homeserver.services.filters import Filter, FilterError, parse_filter, parse_inline_filter
from homeserver.storage.sync_data import SyncDataStore

_CACHE_SIZE: Final = 10_000
_INLINE_CACHE_SIZE: Final = 1_000
_MAX_FILTER_ID: Final = 2**63 - 1


def _filter_error(error: FilterError) -> MatrixError:
    return MatrixError(400, error.errcode, error.message)


class SyncFilters:
    def __init__(self, store: SyncDataStore) -> None:
        self._store = store
        # Filters never change once stored, so parsed ones can be kept.
        self._cache: OrderedDict[tuple[str, int], Filter] = OrderedDict()
        # Inline filters by their text: clients repeat the same one on every /sync.
        self._inline: OrderedDict[str, Filter] = OrderedDict()

    async def create(self, user_id: str, body: Any) -> str:
        """`POST /user/{userId}/filter`: validate and store; the new filter ID."""
        try:
            parsed = parse_filter(body)
        except FilterError as e:
            raise _filter_error(e) from None
        filter_id = await self._store.add_filter(user_id, parsed.to_json())
        return str(filter_id)

    async def get(self, user_id: str, filter_id: str) -> Filter:
        """A stored filter of this user, or 404 M_NOT_FOUND."""
        number = _parse_id(filter_id)
        key = (user_id, number) if number is not None else None
        if key is not None and (cached := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return cached
        stored = await self._store.get_filter(user_id, number) if number is not None else None
        if key is None or stored is None:
            raise MatrixError(404, "M_NOT_FOUND", "No such filter")
        parsed = parse_filter(stored)
        self._cache[key] = parsed
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return parsed

    async def resolve(self, user_id: str, param: str | None) -> Filter:
        """The /sync `filter` parameter: inline JSON or a filter ID (400 if unusable)."""
        if param is None or param == "":
            return Filter()
        if param.lstrip().startswith("{"):
            if (known := self._inline.get(param)) is not None:
                self._inline.move_to_end(param)
                return known
            try:
                parsed = parse_inline_filter(param)
            except FilterError as e:
                raise _filter_error(e) from None
            self._inline[param] = parsed
            while len(self._inline) > _INLINE_CACHE_SIZE:
                self._inline.popitem(last=False)
            return parsed
        try:
            return await self.get(user_id, param)
        except MatrixError:
            raise MatrixError(400, "M_INVALID_PARAM", f"Unknown filter ID {param[:64]!r}") from None


def _parse_id(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if number <= _MAX_FILTER_ID else None
