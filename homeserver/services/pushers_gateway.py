"""The push gateway client: `POST /_matrix/push/v1/notify` (push-gateway-api.md).

One aiohttp session for every gateway, with a total timeout per request, and a connector that
refuses private and loopback addresses unless the operator allows their range
(homeserver/remote/ipfilter.py, as outbound federation does): a user chooses the URL, so it
must not reach into the server's own network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import orjson

from homeserver.remote.ipfilter import IpRangePolicy, filtered_connector

# A gateway's answer is a short JSON object; more is refused.
MAX_RESPONSE_BYTES = 64 * 1024


class GatewayError(Exception):
    """A notification the gateway did not accept. `retry`: worth sending again later
    (unreachable, timeout, 5xx, 429); otherwise the request itself is refused (other 4xx)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class GatewayClient:
    def __init__(self, *, allowlist: Iterable[str] = (), timeout_s: float = 10.0) -> None:
        self._policy = IpRangePolicy(allowlist)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use, inside the running loop
            self._session = aiohttp.ClientSession(
                connector=filtered_connector(self._policy), timeout=self._timeout
            )
        return self._session

    async def notify(self, url: str, body: Mapping[str, Any]) -> list[str]:
        """POST the notification; the pushkeys the gateway `rejected`."""
        try:
            async with self._client().post(
                url,
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise GatewayError(f"{url}: {type(exc).__name__}: {exc}", retry=True) from exc
        if status != 200:
            retry = status >= 500 or status == 429
            raise GatewayError(f"{url}: HTTP {status}", retry=retry)
        return _rejected(raw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _rejected(raw: bytes) -> list[str]:
    """push-gateway-api `rejected`; a 200 with a body we cannot read counts as none."""
    if len(raw) > MAX_RESPONSE_BYTES:
        return []
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    rejected = body.get("rejected") if isinstance(body, dict) else None
    if not isinstance(rejected, list):
        return []
    return [key for key in rejected if isinstance(key, str)]
