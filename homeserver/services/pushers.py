"""Pushers: `GET /pushers` and `POST /pushers/set` (C-S "Push Notifications", pusher.yaml).

A pusher is `(app_id, pushkey, user_id)` plus what the client gave. `kind: null` deletes it;
without `append` a pushkey belongs to one user only. An `http` pusher needs `data.url`, the
gateway's `/_matrix/push/v1/notify` URL. The pusher belongs to the device that set it and goes
when that device is deleted (logout; homeserver/storage/pushers.py). Sending to gateways is
homeserver/services/pushers_http.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from homeserver.errors import MatrixError
from homeserver.storage.pushers import Pusher, PushersStore

HTTP: Final = "http"
EMAIL: Final = "email"
KINDS: Final = frozenset({HTTP, EMAIL})
NOTIFY_PATH: Final = "/_matrix/push/v1/notify"
MAX_APP_ID_CHARS: Final = 64  # pusher.yaml: "Max length, 64 chars."
MAX_PUSHKEY_BYTES: Final = 512  # pusher.yaml: "Max length, 512 bytes."
MAX_FIELD_CHARS: Final = 1024  # display names, lang, profile_tag: bounded like any input
# Required when `kind` is not null (pusher.yaml).
_REQUIRED_FOR_KIND: Final = ("app_display_name", "device_display_name", "lang", "data")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _string(body: Mapping[str, Any], key: str, max_chars: int = MAX_FIELD_CHARS) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MatrixError(400, "M_BAD_JSON", f"'{key}' must be a string")
    if len(value) > max_chars:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' is longer than {max_chars} characters")
    return value


def check_gateway_url(url: Any, *, allow_http: bool) -> str:
    """pusher.yaml `data.url`: "MUST be an HTTPS URL with a path of /_matrix/push/v1/notify"
    (http too when the operator allows it)."""
    if not isinstance(url, str) or not url:
        raise MatrixError(400, "M_INVALID_PARAM", "'data.url' is required for http pushers")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname or not port_ok:
        wanted = " or ".join(s + "://" for s in schemes)
        raise MatrixError(400, "M_INVALID_PARAM", f"'data.url' must be a {wanted} URL")
    if parts.path != NOTIFY_PATH:
        raise MatrixError(400, "M_INVALID_PARAM", f"'data.url' must have the path {NOTIFY_PATH}")
    return url


def pusher_json(pusher: Pusher) -> dict[str, Any]:
    """A pusher as GET /pushers lists it."""
    body: dict[str, Any] = {
        "pushkey": pusher.pushkey,
        "kind": pusher.kind,
        "app_id": pusher.app_id,
        "app_display_name": pusher.app_display_name,
        "device_display_name": pusher.device_display_name,
        "lang": pusher.lang,
        "data": dict(pusher.data),
    }
    if pusher.profile_tag is not None:
        body["profile_tag"] = pusher.profile_tag
    return body


class PusherService:
    def __init__(
        self,
        store: PushersStore,
        *,
        allow_http_gateways: bool = False,
        on_pusher_set: Callable[[str], None] | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._store = store
        self._allow_http = allow_http_gateways
        self._on_pusher_set = on_pusher_set
        self._clock = clock

    async def get_pushers(self, user_id: str) -> list[dict[str, Any]]:
        return [pusher_json(p) for p in await self._store.get_pushers(user_id)]

    async def set_pusher(
        self, user_id: str, device_id: str | None, body: Mapping[str, Any]
    ) -> None:
        """POST /pushers/set with a JSON object body."""
        if "kind" not in body:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing 'kind'")
        app_id = _string(body, "app_id", MAX_APP_ID_CHARS)
        pushkey = _string(body, "pushkey", MAX_PUSHKEY_BYTES)
        if app_id is None or pushkey is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing 'app_id' or 'pushkey'")
        if len(pushkey.encode("utf-8")) > MAX_PUSHKEY_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", "'pushkey' is longer than 512 bytes")
        kind = body["kind"]
        if kind is None:
            await self._store.delete_pusher(user_id, app_id, pushkey)
            return
        await self._store.set_pusher(
            self._parse_pusher(user_id, device_id, app_id, pushkey, kind, body),
            append=self._append(body),
        )
        if self._on_pusher_set is not None:
            self._on_pusher_set(user_id)  # the HTTP pushers start looking for this user

    def _parse_pusher(
        self,
        user_id: str,
        device_id: str | None,
        app_id: str,
        pushkey: str,
        kind: Any,
        body: Mapping[str, Any],
    ) -> Pusher:
        if not isinstance(kind, str) or kind not in KINDS:
            raise MatrixError(400, "M_INVALID_PARAM", "'kind' must be http, email or null")
        missing = [key for key in _REQUIRED_FOR_KIND if body.get(key) is None]
        if missing:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing parameters: {', '.join(missing)}")
        data = body["data"]
        if not isinstance(data, Mapping):
            raise MatrixError(400, "M_BAD_JSON", "'data' must be an object")
        if kind == HTTP:
            check_gateway_url(data.get("url"), allow_http=self._allow_http)
        if "format" in data and not isinstance(data["format"], str):
            raise MatrixError(400, "M_BAD_JSON", "'data.format' must be a string")
        app_display_name = _string(body, "app_display_name")
        device_display_name = _string(body, "device_display_name")
        lang = _string(body, "lang")
        assert app_display_name is not None and device_display_name is not None
        assert lang is not None
        return Pusher(
            user_id=user_id,
            app_id=app_id,
            pushkey=pushkey,
            kind=kind,
            pushkey_ts=self._clock(),
            app_display_name=app_display_name,
            device_display_name=device_display_name,
            profile_tag=_string(body, "profile_tag"),
            lang=lang,
            data=dict(data),
            device_id=device_id,
        )

    @staticmethod
    def _append(body: Mapping[str, Any]) -> bool:
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise MatrixError(400, "M_BAD_JSON", "'append' must be a boolean")
        return append
