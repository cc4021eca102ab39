"""Password credentials, shared by `/login` and the `m.login.password` UIA stage.

C-S "Identifier types": `m.id.user` names the user by full user ID or localpart; the legacy
`user` key of `/login` does the same. Third-party identifiers are not bound to accounts here,
so they never match (403, as the spec requires for an unknown 3PID).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from federation.ids import localpart_of, server_name_of
from homeserver.errors import MatrixError
from homeserver.services.passwords import PasswordHashing
from homeserver.storage import accounts, users


def forbidden() -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", "Invalid username or password")


def identifier_user(body: dict[str, Any]) -> str:
    """The user named by `identifier` (or the deprecated `user`) of a login or auth dict."""
    identifier = body.get("identifier")
    if identifier is None:
        if "medium" in body or "address" in body:
            raise MatrixError(403, "M_FORBIDDEN", "Unknown third-party identifier")
        user = body.get("user")
        if user is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing 'identifier'")
        if not isinstance(user, str):
            raise MatrixError(400, "M_BAD_JSON", "'user' must be a string")
        return user
    if not isinstance(identifier, dict):
        raise MatrixError(400, "M_BAD_JSON", "'identifier' must be an object")
    kind = identifier.get("type")
    if kind == "m.id.user":
        user = identifier.get("user")
        if not isinstance(user, str):
            raise MatrixError(400, "M_BAD_JSON", "'identifier.user' must be a string")
        return user
    if kind in ("m.id.thirdparty", "m.id.phone"):
        raise MatrixError(403, "M_FORBIDDEN", "Unknown third-party identifier")
    raise MatrixError(400, "M_UNKNOWN", "Unknown login identifier type")


def password_of(body: dict[str, Any]) -> str:
    password = body.get("password")
    if password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'password'")
    if not isinstance(password, str):
        raise MatrixError(400, "M_BAD_JSON", "'password' must be a string")
    return password


class PasswordChecker:
    def __init__(self, pool: asyncpg.Pool, server_name: str, hashing: PasswordHashing) -> None:
        self._pool = pool
        self._server_name = server_name
        self._hashing = hashing
        self._dummy_hash: str | None = None

    async def _hash_for_unknown_user(self) -> str:
        """Verified when the user does not exist, so that a wrong user name costs as much time
        as a wrong password and the timing does not reveal which accounts exist."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hashing.hash_async("veche: no such user")
        return self._dummy_hash

    async def resolve_user_id(self, user: str) -> str | None:
        """The local account `user` (user ID or localpart) names, matching case-insensitively."""
        if user.startswith("@"):
            try:
                if server_name_of(user) != self._server_name:
                    return None
                localpart = localpart_of(user)
            except ValueError:
                return None
        else:
            localpart = user
        user_id = f"@{localpart}:{self._server_name}"
        if await users.get_user(self._pool, user_id) is not None:
            return user_id
        return await accounts.find_user_id_ignoring_case(self._pool, user_id)

    async def check(self, body: dict[str, Any]) -> str:
        """Verify `identifier`/`user` and `password` of `body`; the user ID, or 403.

        403 `M_USER_DEACTIVATED` for a deactivated account (it has no password any more).
        """
        user = identifier_user(body)
        password = password_of(body)
        user_id = await self.resolve_user_id(user)
        account = None if user_id is None else await users.get_user(self._pool, user_id)
        if account is not None and account.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        stored = account.password_hash if account is not None else None
        if stored is None:
            stored_or_dummy = await self._hash_for_unknown_user()
        else:
            stored_or_dummy = stored
        matches = await self._hashing.verify_async(stored_or_dummy, password)
        if account is None or stored is None or not matches:
            raise forbidden()
        return account.user_id
