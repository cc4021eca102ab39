"""Accounts and sessions: registration, login sessions, refresh, logout, devices, password
changes and deactivation (C-S "Client Authentication", "Account registration and management",
"Device Management").

Credentials are checked before these are called (homeserver/services/credentials.py for
`/login`, homeserver/services/uia.py for the UIA-protected operations); this module performs
the changes, each in one transaction, and tells the `Authenticator` whenever tokens die.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from federation.ids import MAX_IDENTIFIER_BYTES, is_valid_localpart
from homeserver.errors import MatrixError
from homeserver.services.auth import (
    ACCESS_TOKEN_PREFIX,
    REFRESH_TOKEN_PREFIX,
    Authenticator,
    Requester,
    new_token,
    now_ms,
    token_hash,
)
from homeserver.services.passwords import PasswordHashing
from homeserver.storage import accounts, guest_accounts, users
from homeserver.storage.accounts import Device

# Lifetime of access tokens issued with a refresh token (clients that sent
# `refresh_token: true`); other access tokens never expire. Synapse's default is the same.
DEFAULT_REFRESHABLE_TOKEN_LIFETIME_MS: Final = 5 * 60_000

MAX_PASSWORD_LENGTH: Final = 512  # characters; argon2 would hash more, nobody needs it
MAX_DISPLAY_NAME_LENGTH: Final = 256
_DEVICE_ID_ALPHABET: Final = string.ascii_uppercase
_DEVICE_ID_LENGTH: Final = 10
_GENERATED_LOCALPART_ALPHABET: Final = string.ascii_lowercase + string.digits

DeactivatedHook = Callable[[str], Awaitable[None]]
DevicesDeletedHook = Callable[[str, Sequence[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Session:
    """A new login: what /login, /register and /refresh hand to the client."""

    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None
    expires_in_ms: int | None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "access_token": self.access_token,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.expires_in_ms is not None:
            body["expires_in_ms"] = self.expires_in_ms
        return body


def check_password_length(password: str) -> None:
    if len(password) > MAX_PASSWORD_LENGTH:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Password longer than {MAX_PASSWORD_LENGTH} characters"
        )


def check_device_id(device_id: str) -> None:
    if not device_id or len(device_id.encode("utf-8", "surrogatepass")) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "device_id must be 1 to 255 bytes")


def check_display_name(display_name: str) -> None:
    if len(display_name) > MAX_DISPLAY_NAME_LENGTH:
        raise MatrixError(
            400,
            "M_INVALID_PARAM",
            f"Device display name longer than {MAX_DISPLAY_NAME_LENGTH} characters",
        )


def generate_device_id() -> str:
    return "".join(secrets.choice(_DEVICE_ID_ALPHABET) for _ in range(_DEVICE_ID_LENGTH))


class AccountService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        server_name: str,
        authenticator: Authenticator,
        hashing: PasswordHashing,
        *,
        refreshable_token_lifetime_ms: int = DEFAULT_REFRESHABLE_TOKEN_LIFETIME_MS,
        clock: Callable[[], int] = now_ms,
        on_deactivated: DeactivatedHook | None = None,
        on_devices_deleted: DevicesDeletedHook | None = None,
    ) -> None:
        self._pool = pool
        self.server_name = server_name
        self._authenticator = authenticator
        self._hashing = hashing
        self._token_lifetime_ms = refreshable_token_lifetime_ms
        self._clock = clock
        self._on_deactivated = on_deactivated
        self._on_devices_deleted = on_devices_deleted

    # ---- registration ------------------------------------------------------------------------

    def user_id_for(self, username: str) -> str:
        """The user ID a requested `username` maps to, or 400 `M_INVALID_USERNAME`.

        C-S `/register`: the server maps the username "in a logical manner" or rejects it;
        upper case is folded to lower case, anything else outside the localpart grammar
        (appendices "User Identifiers") is refused, as is a user ID over 255 bytes.
        """
        localpart = username.lower()
        if not localpart or not is_valid_localpart(localpart):
            raise MatrixError(
                400,
                "M_INVALID_USERNAME",
                "User ID localparts may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'",
            )
        user_id = f"@{localpart}:{self.server_name}"
        if len(user_id.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is longer than 255 bytes")
        return user_id

    async def check_available(self, username: str) -> str:
        """The user ID for `username` if it is valid and free; else 400 (invalid, in use)."""
        user_id = self.user_id_for(username)
        if await users.get_user(self._pool, user_id) is not None:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        return user_id

    async def register(
        self,
        user_id: str | None,
        password: str | None,
        *,
        admin: bool = False,
        login: bool = True,
        device_id: str | None = None,
        device_display_name: str | None = None,
        refresh: bool = False,
        guest: bool = False,
    ) -> tuple[str, Session | None]:
        """Create the account (a generated user ID when `user_id` is None; a guest account
        with `guest`) and, unless `login` is False (`inhibit_login`), its first device and
        tokens."""
        if password is not None:
            check_password_length(password)
        password_hash = None if password is None else await self._hashing.hash_async(password)
        for _attempt in range(10):
            candidate = user_id or self._generated_user_id()
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await users.create_user(
                        conn,
                        candidate,
                        password_hash,
                        created_ts=self._clock(),
                        admin=admin,
                        is_guest=guest,
                    )
                    if not login:
                        return candidate, None
                    session = await self._new_session(
                        conn, candidate, device_id, device_display_name, refresh
                    )
                    return candidate, session
            except users.UserExistsError:
                if user_id is not None:
                    raise MatrixError(400, "M_USER_IN_USE", "User ID already taken") from None
        raise MatrixError(500, "M_UNKNOWN", "Could not generate a free user ID")

    async def check_guest_upgrade(self, guest_access_token: str, username: str | None) -> str:
        """The user ID of the guest account a `guest_access_token` upgrade would keep.

        C-S "Guest Access": a guest upgrades through the ordinary `/register` flow with
        `guest_access_token`, and must give its own localpart as `username`. The token must be
        a live guest's: 403 `M_FORBIDDEN` otherwise, and for a `username` that is not theirs.
        """
        if username is None:
            raise MatrixError(
                400, "M_MISSING_PARAM", "'username' is required to upgrade a guest account"
            )
        try:
            requester = await self._authenticator.authenticate(guest_access_token)
        except MatrixError:
            requester = None
        if requester is None or not requester.is_guest:
            raise MatrixError(403, "M_FORBIDDEN", "Invalid guest access token")
        if self.user_id_for(username) != requester.user_id:
            raise MatrixError(
                403, "M_FORBIDDEN", "'username' must be the localpart of the guest account"
            )
        return requester.user_id

    async def upgrade_guest(
        self,
        user_id: str,
        password: str | None,
        *,
        login: bool = True,
        device_id: str | None = None,
        device_display_name: str | None = None,
        refresh: bool = False,
    ) -> Session | None:
        """Make the guest account `user_id` a full account, keeping its ID, devices and
        tokens; log in a new session unless `login` is False. 400 `M_USER_IN_USE` if the
        account is no longer a guest (upgraded meanwhile)."""
        if password is not None:
            check_password_length(password)
        password_hash = None if password is None else await self._hashing.hash_async(password)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await guest_accounts.upgrade_guest(conn, user_id, password_hash):
                raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
            session = None
            if login:
                session = await self._new_session(
                    conn, user_id, device_id, device_display_name, refresh
                )
        # Cached tokens still say "guest"; they must now act as the full account.
        self._authenticator.forget_user(user_id)
        return session

    def _generated_user_id(self) -> str:
        # C-S /register: "If omitted, the homeserver MUST generate a Matrix ID local part."
        random_part = "".join(secrets.choice(_GENERATED_LOCALPART_ALPHABET) for _ in range(12))
        return f"@u{random_part}:{self.server_name}"

    # ---- sessions ----------------------------------------------------------------------------

    async def login(
        self,
        user_id: str,
        *,
        device_id: str | None,
        device_display_name: str | None,
        refresh: bool,
    ) -> Session:
        """A new session for an authenticated user (C-S `POST /login`)."""
        async with self._pool.acquire() as conn, conn.transaction():
            session = await self._new_session(
                conn, user_id, device_id, device_display_name, refresh
            )
        self._authenticator.forget_user(user_id)
        return session

    async def _new_session(
        self,
        conn: asyncpg.Connection,
        user_id: str,
        device_id: str | None,
        display_name: str | None,
        refresh: bool,
    ) -> Session:
        """Create or reuse the device, then issue its tokens.

        C-S "Relationship between access tokens and devices": a client that names an existing
        device takes it over; the tokens previously assigned to it are revoked.
        """
        now = self._clock()
        if device_id is None:
            device_id = generate_device_id()
            while not await accounts.create_device(conn, user_id, device_id, display_name, now):
                device_id = generate_device_id()
        elif not await accounts.create_device(conn, user_id, device_id, display_name, now):
            await accounts.delete_device_tokens(conn, user_id, device_id)
        session, _ = await self._issue_tokens(conn, user_id, device_id, refresh)
        return session

    async def _issue_tokens(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, refresh: bool
    ) -> tuple[Session, int | None]:
        """A new access token, and a refresh token (returned with its id) when `refresh`."""
        now = self._clock()
        refresh_token: str | None = None
        refresh_token_id: int | None = None
        expires_in_ms: int | None = None
        if refresh:
            refresh_token = new_token(REFRESH_TOKEN_PREFIX)
            refresh_token_id = await accounts.insert_refresh_token(
                conn, token_hash(refresh_token), user_id, device_id, now
            )
            expires_in_ms = self._token_lifetime_ms
        access_token = new_token(ACCESS_TOKEN_PREFIX)
        await accounts.insert_access_token(
            conn,
            token_hash(access_token),
            user_id,
            device_id,
            now_ms=now,
            expires_ts=None if expires_in_ms is None else now + expires_in_ms,
            refresh_token_id=refresh_token_id,
        )
        session = Session(user_id, device_id, access_token, refresh_token, expires_in_ms)
        return session, refresh_token_id

    async def refresh(self, refresh_token: str) -> Session:
        """C-S `POST /refresh`: a new access token and a new (rotated) refresh token."""
        async with self._pool.acquire() as conn, conn.transaction():
            old = await accounts.get_refresh_token_for_update(conn, token_hash(refresh_token))
            if old is None:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown refresh token")
            session, new_id = await self._issue_tokens(
                conn, old.user_id, old.device_id, refresh=True
            )
            assert new_id is not None
            await accounts.replace_refresh_token(conn, old, new_id)
        self._authenticator.forget_user(old.user_id)
        return session

    async def logout(self, requester: Requester) -> None:
        """C-S `POST /logout`: the token dies, and its device with it."""
        if requester.device_id is None:
            await accounts.delete_access_token(self._pool, requester.access_token_id)
            self._authenticator.forget_user(requester.user_id)
            return
        await self.delete_devices(requester.user_id, [requester.device_id])

    async def logout_all(self, user_id: str) -> None:
        """C-S `POST /logout/all`: every token and device of the user."""
        await self.delete_devices(user_id, None)

    # ---- devices -----------------------------------------------------------------------------

    async def devices(self, user_id: str) -> list[Device]:
        return await accounts.list_devices(self._pool, user_id)

    async def device(self, user_id: str, device_id: str) -> Device:
        device = await accounts.get_device(self._pool, user_id, device_id)
        if device is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown device")
        return device

    async def rename_device(self, user_id: str, device_id: str, display_name: str) -> None:
        check_display_name(display_name)
        if not await accounts.set_device_display_name(self._pool, user_id, device_id, display_name):
            raise MatrixError(404, "M_NOT_FOUND", "Unknown device")

    async def delete_devices(
        self, user_id: str, device_ids: Sequence[str] | None, *, keep: str | None = None
    ) -> list[str]:
        """Delete devices (None: all) but `keep`, revoking their tokens; the deleted IDs."""
        deleted = await accounts.delete_devices(self._pool, user_id, device_ids, keep=keep)
        self._authenticator.forget_user(user_id)
        if deleted and self._on_devices_deleted is not None:
            await self._on_devices_deleted(user_id, deleted)
        return deleted

    # ---- account management ------------------------------------------------------------------

    async def change_password(
        self, user_id: str, new_password: str, *, logout_devices: bool, keep_device: str | None
    ) -> None:
        """C-S `POST /account/password`; with `logout_devices`, every other device goes."""
        check_password_length(new_password)
        password_hash = await self._hashing.hash_async(new_password)
        await accounts.set_password_hash(self._pool, user_id, password_hash)
        if logout_devices:
            await self.delete_devices(user_id, None, keep=keep_device)

    async def deactivate(self, user_id: str) -> None:
        """C-S `POST /account/deactivate`: login refused from now on, every session ended."""
        async with self._pool.acquire() as conn, conn.transaction():
            await accounts.mark_deactivated(conn, user_id, self._clock())
            deleted = await accounts.delete_devices(conn, user_id, None)
        self._authenticator.forget_user(user_id)
        if deleted and self._on_devices_deleted is not None:
            await self._on_devices_deleted(user_id, deleted)
        if self._on_deactivated is not None:
            await self._on_deactivated(user_id)
