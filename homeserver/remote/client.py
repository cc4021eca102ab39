"""Signed JSON requests to other homeservers.

S2S "Request Authentication": every request carries an `Authorization: X-Matrix …` header
signing the method, the request target (path and query), origin, destination and JSON body;
the names signed are the server names before any delegation. S2S "TLS": HTTPS only, SNI for
the expected certificate name, verification per `federation.verify_tls`. Before any connection,
`federation.allowed_servers` / `denied_servers` are applied; every address connected to passes
the IP range policy (homeserver/remote/ipfilter.py) through the session's connector.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias, TypeVar, cast
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from yarl import URL

from federation.signing import SigningKey
from federation.xmatrix import build_authorization_header
from homeserver.remote.discovery import DiscoveryError, ServerAddress
from homeserver.remote.errors import (
    AddressBlocked,
    DestinationNotAllowed,
    RemoteError,
    RemoteUnreachable,
)
from homeserver.remote.ipfilter import BlockedAddressError, IpRangePolicy, parse_ip
from homeserver.remote.policy import ServerPolicy

DEFAULT_MAX_RESPONSE_BYTES: Final = 10 * 1024 * 1024
_READ_CHUNK: Final = 64 * 1024

QueryValue: TypeAlias = str | int | bool | Sequence[str]
Query: TypeAlias = Mapping[str, QueryValue]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ClientLimits:
    timeout_s: float = 60.0  # a whole request, from connecting to the last byte of the body
    connect_timeout_s: float = 10.0  # one connection attempt, TLS handshake included
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


class Resolver(Protocol):
    async def resolve(self, server_name: str) -> ServerAddress: ...


def format_path(template: str, *segments: str) -> str:
    """`template` with each `{}` replaced by a percent-encoded path segment, e.g.
    `format_path("/_matrix/federation/v1/state/{}", room_id)`."""
    return template.format(*(quote(segment, safe="") for segment in segments))


def request_target(path: str, query: Query | None = None) -> str:
    """The request target as sent and as signed: the encoded path, `?` and the query string."""
    if not path.startswith("/"):
        raise ValueError(f"request path must start with '/': {path!r}")
    if not query:
        return path
    pairs: list[tuple[str, str]] = []
    for name, value in query.items():
        values = [value] if isinstance(value, str | int) else list(value)
        pairs += [(name, _query_text(item)) for item in values]
    return f"{path}?{urlencode(pairs, quote_via=quote)}"


def _query_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class FederationClient:
    """Makes signed requests as `server_name`; one instance per process, sharing `session`.

    `session` should use `ipfilter.filtered_connector`; `tls` is an `ssl.SSLContext`, True for
    the system's verification, or False when `federation.verify_tls` is off.
    """

    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        session: aiohttp.ClientSession,
        resolver: Resolver,
        server_policy: ServerPolicy,
        ip_policy: IpRangePolicy,
        tls: ssl.SSLContext | bool = True,
        limits: ClientLimits | None = None,
    ) -> None:
        self.server_name = server_name
        self._signing_key = signing_key
        self._session = session
        self._resolver = resolver
        self._server_policy = server_policy
        self._ip_policy = ip_policy
        self._tls = tls
        self._limits = limits or ClientLimits()

    async def get_json(
        self,
        destination: str,
        path: str,
        query: Query | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        return await self.request_json("GET", destination, path, query=query, timeout_s=timeout_s)

    async def put_json(
        self,
        destination: str,
        path: str,
        content: Any,
        query: Query | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        return await self.request_json(
            "PUT", destination, path, content=content, query=query, timeout_s=timeout_s
        )

    async def post_json(
        self,
        destination: str,
        path: str,
        content: Any,
        query: Query | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        return await self.request_json(
            "POST", destination, path, content=content, query=query, timeout_s=timeout_s
        )

    async def request_json(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        content: Any | None = None,
        query: Query | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Send one signed request; return the parsed JSON of a 2xx response.

        Raises `DestinationNotAllowed` (no connection made), `RemoteUnreachable` (discovery,
        connection, TLS, timeout; `AddressBlocked` for denied IP ranges) or `RemoteError` (an
        error status, or a body that is too large or not JSON).
        """
        return await self._request(
            method, destination, path, content, query, timeout_s, self._read_response
        )

    async def get_streamed(
        self,
        destination: str,
        path: str,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        query: Query | None = None,
        *,
        timeout_s: float | None = None,
    ) -> T:
        """A signed GET whose 2xx response `consume` reads itself (media: a multipart body too
        large to hold as JSON); error statuses raise `RemoteError` as for `request_json`."""

        async def read(destination: str, response: aiohttp.ClientResponse) -> T:
            if 200 <= response.status < 300:
                return await consume(response)
            return cast(T, await self._read_response(destination, response))

        return await self._request("GET", destination, path, None, query, timeout_s, read)

    async def get_url_streamed(
        self,
        url: str,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        timeout_s: float | None = None,
    ) -> T:
        """An unsigned GET of an https URL another server pointed us to (S2S "Content
        Repository": a media part may carry a `Location` instead of the bytes). The address
        connected to passes the same IP range policy; error statuses raise `RemoteError`."""
        try:
            target = URL(url)
        except ValueError:
            raise RemoteError("", 0, None, f"not a URL: {url[:200]}") from None
        host = target.host or ""
        if target.scheme != "https" or not host:
            raise RemoteError(host, 0, None, f"not an https URL: {url[:200]}")
        if parse_ip(host) is not None and not self._ip_policy.is_allowed(host):
            raise AddressBlocked(host, f"{host} is in a denied IP range")
        timeout = aiohttp.ClientTimeout(
            total=timeout_s or self._limits.timeout_s,
            sock_connect=self._limits.connect_timeout_s,
        )
        try:
            async with self._session.get(
                target, ssl=self._tls, allow_redirects=False, timeout=timeout
            ) as response:
                if 200 <= response.status < 300:
                    return await consume(response)
                return cast(T, await self._read_response(host, response))
        except (aiohttp.ClientError, TimeoutError) as exc:
            if _is_blocked(exc):
                raise AddressBlocked(host, _describe(exc)) from exc
            raise RemoteUnreachable(host, _describe(exc)) from exc

    async def _request(
        self,
        method: str,
        destination: str,
        path: str,
        content: Any | None,
        query: Query | None,
        timeout_s: float | None,
        read: Callable[[str, aiohttp.ClientResponse], Awaitable[T]],
    ) -> T:
        if not self._server_policy.allows(destination):
            raise DestinationNotAllowed(
                destination, self._server_policy.refusal_reason(destination)
            )
        uri = request_target(path, query)
        try:
            address = await self._resolver.resolve(destination)
        except DiscoveryError as exc:
            raise RemoteUnreachable(destination, f"server discovery failed: {exc}") from None
        # S2S "API standards": POST and PUT carry a (possibly empty) JSON object.
        if content is None and method in ("PUT", "POST"):
            content = {}
        headers = {
            "Host": address.host_header,
            "Authorization": build_authorization_header(
                method, uri, self.server_name, destination, content, self._signing_key
            ),
        }
        body = None
        if content is not None:
            body = orjson.dumps(content)
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(
            total=timeout_s or self._limits.timeout_s,
            sock_connect=self._limits.connect_timeout_s,
        )
        failures: list[BaseException] = []
        for host, port in address.targets:
            if parse_ip(host) is not None and not self._ip_policy.is_allowed(host):
                failures.append(BlockedAddressError(host))
                continue
            url = URL(f"https://{_netloc(host, port)}{uri}", encoded=True)
            try:
                async with self._session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    ssl=self._tls,
                    server_hostname=address.sni,
                    allow_redirects=False,
                    timeout=timeout,
                ) as response:
                    return await read(destination, response)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Could not connect to this target (refused, DNS, blocked, TLS, connect timeout):
                # nothing was sent, so the next target may be tried.
                failures.append(exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise RemoteUnreachable(destination, _describe(exc)) from exc
        raise _unreachable(destination, address, failures)

    async def _read_response(self, destination: str, response: aiohttp.ClientResponse) -> Any:
        limit = self._limits.max_response_bytes
        raw = await _read_limited(response, limit)
        if raw is None:
            raise RemoteError(
                destination, response.status, None, f"response larger than {limit} bytes"
            )
        if 200 <= response.status < 300:
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise RemoteError(
                    destination, response.status, None, "response is not JSON"
                ) from None
        errcode, message = _matrix_error(raw)
        raise RemoteError(destination, response.status, errcode, message)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds `limit` bytes."""
    if response.content_length is not None and response.content_length > limit:
        return None
    body = bytearray()
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _matrix_error(raw: bytes) -> tuple[str | None, str]:
    """`(errcode, error)` of a standard error body; `(None, a snippet)` for anything else."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, raw[:200].decode("utf-8", "replace")
    if isinstance(value, dict) and isinstance(value.get("errcode"), str):
        error = value.get("error")
        return value["errcode"], error if isinstance(error, str) else ""
    return None, orjson.dumps(value)[:200].decode("utf-8", "replace")


def _unreachable(
    destination: str, address: ServerAddress, failures: list[BaseException]
) -> RemoteUnreachable:
    reasons = "; ".join(_describe(failure) for failure in failures) or "no address to try"
    targets = ", ".join(_netloc(host, port) for host, port in address.targets)
    message = f"could not connect to {targets}: {reasons}"
    if failures and all(_is_blocked(failure) for failure in failures):
        return AddressBlocked(destination, message)
    return RemoteUnreachable(destination, message)


def _is_blocked(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BlockedAddressError):
            return True
        os_error = getattr(exc, "os_error", None)
        if isinstance(os_error, BlockedAddressError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not valid: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return str(exc.os_error) or type(exc.os_error).__name__
    return str(exc) or type(exc).__name__
