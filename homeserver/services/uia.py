"""User-Interactive Authentication (C-S "User-Interactive Authentication API").

An endpoint protected by UIA calls `UserInteractiveAuth.authenticate(body, ...)` with the
request body and the flows it offers. Until some flow's stages are all completed it raises
`AuthRequired`, which the error middleware answers with 401 and the spec's body:
`{"flows": [{"stages": [...]}], "params": {}, "session": "...", "completed": [...]}` plus
`errcode`/`error` when the last attempt failed. Once a flow is complete it returns the user the
session authenticated and the endpoint performs its operation.

Sessions are stored in PostgreSQL (they survive a restart) and bound to one operation and one
user: a session begun to change a password cannot authorise deleting devices. A completed
session stays usable until it expires, so a client that retries after a lost response gets the
result rather than a new challenge (as the spec asks: completed stages cannot be retried).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from homeserver.errors import MatrixError
from homeserver.services.auth import now_ms
from homeserver.services.credentials import PasswordChecker
from homeserver.storage import auth_sessions, users
from homeserver.storage.auth_sessions import UiaSession

DUMMY: Final = "m.login.dummy"  # C-S "Dummy Auth": always succeeds
PASSWORD: Final = "m.login.password"  # C-S "Password-based"

SESSION_LIFETIME_MS: Final = 30 * 60_000


@dataclass(frozen=True, slots=True)
class Flow:
    stages: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"stages": list(self.stages)}


DUMMY_FLOWS: Final = (Flow((DUMMY,)),)
PASSWORD_FLOWS: Final = (Flow((PASSWORD,)),)


class AuthRequired(MatrixError):
    """401: more authentication is needed; the body lists the flows (C-S UIA "REST API")."""

    def __init__(
        self,
        flows: Sequence[Flow],
        session_id: str,
        completed: Sequence[str],
        *,
        failure: MatrixError | None = None,
    ) -> None:
        errcode = failure.errcode if failure else "M_UNAUTHORIZED"
        message = failure.error if failure else "Additional authentication required"
        super().__init__(401, errcode, message)
        self.body: dict[str, Any] = {
            "flows": [flow.to_json() for flow in flows],
            "params": {},
            "session": session_id,
        }
        if completed:
            self.body["completed"] = list(completed)
        self.failure = failure

    def to_json(self) -> dict[str, Any]:
        if self.failure is None:
            return dict(self.body)
        return {"errcode": self.failure.errcode, "error": self.failure.error, **self.body}


def _next_stages(flows: Sequence[Flow], completed: Sequence[str]) -> set[str]:
    """Stages the client may attempt now: flows are completed in order."""
    done = len(completed)
    return {
        flow.stages[done]
        for flow in flows
        if len(flow.stages) > done and flow.stages[:done] == tuple(completed)
    }


def _is_complete(flows: Sequence[Flow], completed: Sequence[str]) -> bool:
    return any(tuple(completed[: len(flow.stages)]) == flow.stages for flow in flows)


class UserInteractiveAuth:
    def __init__(
        self,
        pool: asyncpg.Pool,
        passwords: PasswordChecker,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._pool = pool
        self._passwords = passwords
        self._clock = clock

    async def flows_for_user(self, user_id: str) -> tuple[Flow, ...]:
        """Flows that prove `user_id` is present: their password, if the account has one.

        An account without a password (registered without one) has no secret to ask for, so
        its access token alone has to do (`m.login.dummy`).
        """
        account = await users.get_user(self._pool, user_id)
        if account is not None and account.password_hash is None:
            return DUMMY_FLOWS
        return PASSWORD_FLOWS

    async def authenticate(
        self,
        body: dict[str, Any],
        *,
        operation: str,
        flows: Sequence[Flow],
        user_id: str | None,
    ) -> str | None:
        """Return once `body["auth"]` completes one of `flows`; raise `AuthRequired` until then.

        `user_id`: the requester, when the request carries an access token; a password stage
        must then authenticate that same user. Returns `user_id`, or, when that is None, the
        user the password stage identified (None for flows that never identify anyone).
        """
        auth = body.get("auth")
        if auth is None:
            session = await self._new_session(operation, user_id)
            raise AuthRequired(flows, session.session_id, ())
        if not isinstance(auth, dict):
            raise MatrixError(400, "M_BAD_JSON", "'auth' must be an object")
        session = await self._session(auth.get("session"), operation, user_id)
        completed, session_user = session.completed, session.user_id
        stage = auth.get("type")
        if stage is not None and stage not in completed:
            if not isinstance(stage, str):
                raise MatrixError(400, "M_BAD_JSON", "'auth.type' must be a string")
            if stage not in _next_stages(flows, completed):
                failure = MatrixError(400, "M_UNRECOGNIZED", f"Unexpected auth type {stage!r}")
                raise AuthRequired(flows, session.session_id, completed, failure=failure)
            try:
                stage_user = await self._perform_stage(stage, auth, user_id or session_user)
            except MatrixError as exc:
                if exc.status != 403:
                    raise  # a malformed auth dict: not an authentication failure
                raise AuthRequired(flows, session.session_id, completed, failure=exc) from None
            completed, session_user = await auth_sessions.add_completed_stage(
                self._pool, session.session_id, stage, stage_user
            )
        if _is_complete(flows, completed):
            return user_id or session_user
        raise AuthRequired(flows, session.session_id, completed)

    async def _new_session(self, operation: str, user_id: str | None) -> UiaSession:
        now = self._clock()
        session_id = secrets.token_urlsafe(24)
        await auth_sessions.create_uia_session(
            self._pool,
            session_id,
            operation,
            user_id,
            now_ms=now,
            expired_before_ms=now - SESSION_LIFETIME_MS,
        )
        return UiaSession(session_id, operation, user_id, (), now)

    async def _session(self, session_id: object, operation: str, user_id: str | None) -> UiaSession:
        """The session the auth dict names, or a new one when it names none."""
        if session_id is None:
            return await self._new_session(operation, user_id)
        if not isinstance(session_id, str):
            raise MatrixError(400, "M_BAD_JSON", "'auth.session' must be a string")
        session = await auth_sessions.get_uia_session(
            self._pool, session_id, expired_before_ms=self._clock() - SESSION_LIFETIME_MS
        )
        if session is None:
            raise MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session")
        if session.operation != operation or (
            user_id is not None and session.user_id is not None and session.user_id != user_id
        ):
            raise MatrixError(
                403,
                "M_FORBIDDEN",
                "Requested operation has changed during the UI authentication session",
            )
        return session

    async def _perform_stage(
        self, stage: str, auth: dict[str, Any], expected_user: str | None
    ) -> str | None:
        """Run one stage; the user it proved, if any. 403 `MatrixError` when it fails."""
        if stage == DUMMY:
            return None
        if stage == PASSWORD:
            user_id = await self._passwords.check(auth)
            if expected_user is not None and user_id != expected_user:
                raise MatrixError(403, "M_FORBIDDEN", "Credentials are for a different user")
            return user_id
        raise MatrixError(403, "M_UNRECOGNIZED", f"Unsupported auth type {stage!r}")
