"""Other servers' signing keys: cached in PostgreSQL, fetched directly or through notaries.

S2S "Retrieving server keys": a server's keys come from its own `/_matrix/key/v2/server`
(self-signed), or from a notary's `/_matrix/key/v2/query` (self-signed by the server and
signed by the notary). We only ask the notaries the operator configured
(`federation.trusted_key_servers`, none by default: CONTRACT "Config file").

Keys read from the table stay in memory (homeserver/remote/key_cache.py), so checking a
request or a PDU with a known key costs no database round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import asyncpg

from federation.canonical_json import encode_canonical_json
from federation.keys import (
    KeyResponseError,
    ServerKeys,
    parse_and_verify_server_keys,
    parse_key_query_response,
)
from federation.signing import ED25519, SignatureError, SigningKey, verify_json
from federation.xmatrix import XMatrixError, parse_authorization_header
from federation.xmatrix import verify_request as verify_xmatrix_request
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.remote.key_cache import DEFAULT_MAX_KEYS, HeldKey, VerifyKeyCache
from homeserver.storage import server_keys

logger = logging.getLogger(__name__)

SERVER_KEYS_PATH: Final = "/_matrix/key/v2/server"
KEY_QUERY_PATH: Final = "/_matrix/key/v2/query"
# "Requesting servers should limit how frequently they query": after a fetch that did not give
# the key asked for, the same key is not fetched again for this long.
DEFAULT_REFETCH_INTERVAL_MS: Final = 60 * 1000
_MAX_REMEMBERED_FETCHES: Final = 10_000


class KeyUnavailableError(Exception):
    """The key could not be found, or is not valid for the time asked."""


class KeyRequester(Protocol):
    """What the keyring needs of the federation client."""

    async def get_json(self, destination: str, path: str) -> Any: ...

    async def post_json(self, destination: str, path: str, content: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Notary:
    """A trusted key server. With no `verify_keys`, its own keys are fetched directly."""

    server_name: str
    verify_keys: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OwnKeys:
    """Our keys, answered locally: the signing key and retired keys `(key, expired_ts)`."""

    server_name: str
    signing_key: SigningKey
    old_verify_keys: Mapping[str, tuple[bytes, int]] = field(default_factory=dict)


class Keyring:
    def __init__(
        self,
        *,
        own: OwnKeys,
        db: asyncpg.Pool,
        requester: KeyRequester,
        notaries: Sequence[Notary] = (),
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        refetch_interval_ms: int = DEFAULT_REFETCH_INTERVAL_MS,
        max_cached_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self._own = own
        self._db = db
        self._requester = requester
        self._notaries = tuple(notaries)
        self._clock_ms = clock_ms
        self._refetch_interval_ms = refetch_interval_ms
        self._in_flight: dict[tuple[str, str, bool], asyncio.Task[None]] = {}
        self._last_fetch_ms: dict[tuple[str, str], int] = {}
        self._held = VerifyKeyCache(max_cached_keys)

    async def get_verify_key(
        self,
        server_name: str,
        key_id: str,
        minimum_valid_until_ts: int,
        *,
        for_requests: bool = False,
    ) -> bytes:
        """The raw public key `key_id` of `server_name`, valid until at least
        `minimum_valid_until_ts` (0: any validity, as room versions 1–4 allow). With
        `for_requests`, keys from `old_verify_keys` do not count (S2S "Publishing Keys")."""
        return await self._get_key(
            server_name, key_id, minimum_valid_until_ts, for_requests, use_notaries=True
        )

    async def verify_json_for_server(
        self, obj: Mapping[str, Any], server_name: str, minimum_valid_until_ts: int
    ) -> None:
        """Raise `SignatureError` unless `obj` has a valid ed25519 signature of `server_name`
        by a key valid until `minimum_valid_until_ts`; a signature by a key we can find that
        does not verify is an error even if another one does."""
        signatures = obj.get("signatures")
        by_server = signatures.get(server_name) if isinstance(signatures, Mapping) else None
        key_ids = [
            key_id
            for key_id in (by_server if isinstance(by_server, Mapping) else {})
            if key_id.partition(":")[0] == ED25519
        ]
        if not key_ids:
            raise SignatureError(f"not signed by {server_name}")
        verified = False
        for key_id in key_ids:
            try:
                key = await self.get_verify_key(server_name, key_id, minimum_valid_until_ts)
            except KeyUnavailableError:
                continue
            verify_json(obj, server_name, key_id, key)
            verified = True
        if not verified:
            raise SignatureError(f"no key of {server_name} to check its signature with")

    async def verify_request(
        self, authorization: str | None, method: str, uri: str, content: Any | None
    ) -> str:
        """Check an inbound request's X-Matrix header (S2S "Request Authentication"); return
        the origin. Raises `XMatrixError`, `SignatureError` or `KeyUnavailableError` — all
        401 M_UNAUTHORIZED for the handler."""
        if not authorization:
            raise XMatrixError("missing Authorization header")
        auth = parse_authorization_header(authorization)
        key = await self.get_verify_key(
            auth.origin, auth.key_id, self._clock_ms(), for_requests=True
        )
        verify_xmatrix_request(auth, method, uri, self._own.server_name, content, key)
        return auth.origin

    async def refresh_direct(self, server_name: str) -> None:
        """Fetch `server_name`'s keys from itself now (for the notary endpoint); failures are
        logged, and ignored within the refetch interval."""
        await self._fetch_once(server_name, "", 0, use_notaries=False)

    async def _get_key(
        self,
        server_name: str,
        key_id: str,
        minimum_valid_until_ts: int,
        for_requests: bool,
        *,
        use_notaries: bool,
    ) -> bytes:
        if server_name == self._own.server_name:
            return self._own_key(key_id, minimum_valid_until_ts, for_requests)
        key = await self._cached_key(server_name, key_id, minimum_valid_until_ts, for_requests)
        if key is None:
            await self._fetch_once(
                server_name, key_id, minimum_valid_until_ts, use_notaries=use_notaries
            )
            key = await self._cached_key(server_name, key_id, minimum_valid_until_ts, for_requests)
        if key is None:
            raise KeyUnavailableError(
                f"no key {key_id} of {server_name} valid until {minimum_valid_until_ts}"
            )
        return key

    def _own_key(self, key_id: str, minimum_valid_until_ts: int, for_requests: bool) -> bytes:
        if key_id == self._own.signing_key.key_id:
            return self._own.signing_key.public_key
        old = self._own.old_verify_keys.get(key_id)
        if old is not None and not for_requests and old[1] >= minimum_valid_until_ts:
            return old[0]
        raise KeyUnavailableError(f"we have no key {key_id} valid until {minimum_valid_until_ts}")

    async def _cached_key(
        self, server_name: str, key_id: str, minimum_valid_until_ts: int, for_requests: bool
    ) -> bytes | None:
        """The key from memory, else from the table. A key held in memory that does not answer
        is not read again: only a fetch can improve it, and storing the fetched response
        drops it from memory."""
        held = self._held.get(server_name, key_id)
        if held is None:
            read_at = self._held.generation
            stored = await server_keys.get_server_key(self._db, server_name, key_id)
            if stored is None:
                return None
            held = HeldKey(stored.verify_key, stored.valid_until_ts, stored.expired_ts is not None)
            self._held.put(server_name, key_id, held, read_at=read_at)
        return held.verify_key if held.answers(minimum_valid_until_ts, for_requests) else None

    async def _fetch_once(
        self, server_name: str, key_id: str, minimum_valid_until_ts: int, *, use_notaries: bool
    ) -> None:
        """Fetch unless done recently; concurrent callers for the same key share one fetch
        (and it finishes even if the first caller is cancelled)."""
        now = self._clock_ms()
        last = self._last_fetch_ms.get((server_name, key_id))
        if last is not None and now - last < self._refetch_interval_ms:
            return
        flight = (server_name, key_id, use_notaries)
        task = self._in_flight.get(flight)
        if task is None:
            task = asyncio.ensure_future(
                self._fetch(server_name, key_id, minimum_valid_until_ts, use_notaries)
            )
            self._in_flight[flight] = task

            def finished(_: asyncio.Task[None]) -> None:
                self._in_flight.pop(flight, None)
                self._remember_fetch((server_name, key_id))

            task.add_done_callback(finished)
        await asyncio.shield(task)

    def _remember_fetch(self, key: tuple[str, str]) -> None:
        now = self._clock_ms()
        if len(self._last_fetch_ms) >= _MAX_REMEMBERED_FETCHES:
            cutoff = now - self._refetch_interval_ms
            self._last_fetch_ms = {k: t for k, t in self._last_fetch_ms.items() if t >= cutoff}
        self._last_fetch_ms[key] = now

    async def _fetch(
        self, server_name: str, key_id: str, minimum_valid_until_ts: int, use_notaries: bool
    ) -> None:
        if await self._fetch_direct(server_name, key_id, minimum_valid_until_ts):
            return
        if not use_notaries:
            return
        for notary in self._notaries:
            if await self._fetch_from_notary(notary, server_name, key_id, minimum_valid_until_ts):
                return

    async def _fetch_direct(self, server_name: str, key_id: str, minimum: int) -> bool:
        """GET /_matrix/key/v2/server from the server itself; True if it gave what we need."""
        try:
            body = await self._requester.get_json(server_name, SERVER_KEYS_PATH)
            keys = parse_and_verify_server_keys(body, expected_server_name=server_name)
        except (RemoteError, RemoteUnreachable, KeyResponseError) as exc:
            logger.info("fetching the keys of %s from itself failed: %s", server_name, exc)
            return False
        await self._store(keys, body, fetched_from=server_name)
        return _satisfies(keys, key_id, minimum)

    async def _fetch_from_notary(
        self, notary: Notary, server_name: str, key_id: str, minimum: int
    ) -> bool:
        """POST /_matrix/key/v2/query to a notary; True if it gave what we need."""
        criteria = {key_id: {"minimum_valid_until_ts": minimum}} if key_id else {}
        try:
            body = await self._requester.post_json(
                notary.server_name, KEY_QUERY_PATH, {"server_keys": {server_name: criteria}}
            )
            entries = parse_key_query_response(body)
        except (RemoteError, RemoteUnreachable, KeyResponseError) as exc:
            logger.info(
                "asking %s for the keys of %s failed: %s", notary.server_name, server_name, exc
            )
            return False
        satisfied = False
        for entry in entries:
            if entry.get("server_name") != server_name:
                continue  # the notary may add other servers' keys; we did not ask for them
            try:
                keys = parse_and_verify_server_keys(entry, expected_server_name=server_name)
                await self._check_notary_signature(notary, entry)
            except (KeyResponseError, SignatureError, KeyUnavailableError) as exc:
                logger.warning("%s gave bad keys for %s: %s", notary.server_name, server_name, exc)
                continue
            await self._store(keys, entry, fetched_from=notary.server_name)
            satisfied = satisfied or _satisfies(keys, key_id, minimum)
        return satisfied

    async def _check_notary_signature(self, notary: Notary, entry: Mapping[str, Any]) -> None:
        """The notary must have signed the entry with a key we trust it to hold: one from the
        config, or (none configured) one fetched from the notary itself."""
        signatures = entry.get("signatures")
        by_notary = signatures.get(notary.server_name) if isinstance(signatures, Mapping) else None
        if not isinstance(by_notary, Mapping) or not by_notary:
            raise SignatureError(f"not signed by the notary {notary.server_name}")
        for key_id in by_notary:
            if notary.verify_keys:
                key = notary.verify_keys.get(key_id)
                if key is None:
                    continue
            elif key_id.partition(":")[0] == ED25519:
                key = await self._get_key(
                    notary.server_name, key_id, self._clock_ms(), False, use_notaries=False
                )
            else:
                continue
            verify_json(entry, notary.server_name, key_id, key)
            return
        raise SignatureError(f"not signed by a known key of the notary {notary.server_name}")

    async def _store(self, keys: ServerKeys, response: Any, *, fetched_from: str) -> None:
        await server_keys.store_server_keys(
            self._db,
            keys,
            encode_canonical_json(response),
            fetched_ts=self._clock_ms(),
            fetched_from=fetched_from,
        )
        self._held.forget(keys.server_name)


def _satisfies(keys: ServerKeys, key_id: str, minimum: int) -> bool:
    """Whether a response holds `key_id` valid until `minimum` ("" asks for any key)."""
    if not key_id:
        return True
    if key_id in keys.verify_keys:
        return keys.valid_until_ts >= minimum
    old = keys.old_verify_keys.get(key_id)
    return old is not None and old[1] >= minimum
