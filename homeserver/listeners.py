"""The HTTP listeners of `homeserver run`: binding every listener, then at shutdown stopping
them all at once, giving in-flight requests SHUTDOWN_GRACE_S and cancelling the rest
(CONTRACT "Durability and faults").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from homeserver.app import ListenerSpec
from homeserver.config import Config
from homeserver.startup_errors import StartupError

logger = logging.getLogger(__name__)

# SIGTERM → exit within 10 s (CONTRACT): in-flight requests get SHUTDOWN_GRACE_S and are then
# cancelled; closing the services, the pool and the embedded PostgreSQL's fast shutdown share
# what is left (homeserver/server.py).
SHUTDOWN_GRACE_S: Final = 6.0
# aiohttp's own wait after our grace: it cancels the request, waits this long, then the handler.
_RUNNER_SHUTDOWN_S: Final = 0.25
# After answering 413 without reading a body, discard at most this long before closing.
_LINGERING_S: Final = 2.0


class BindError(StartupError):
    def __init__(self, address: str, reason: OSError) -> None:
        super().__init__(f"cannot listen on {address}: {reason.strerror or reason}")
        self.address = address


async def start_listeners(
    apps: list[tuple[ListenerSpec, web.Application]], config: Config
) -> list[web.AppRunner]:
    """Bind every listener; on any failure, close those already bound and raise `BindError`."""
    runners: list[web.AppRunner] = []
    try:
        for spec, app in apps:
            if _IN_FLIGHT not in app:
                app.middlewares.append(_count_in_flight)
                app[_IN_FLIGHT] = InFlight()
            runner = web.AppRunner(
                app,
                access_log=None,  # our own access log middleware writes one line per request
                keepalive_timeout=config.limits.keepalive_timeout,
                lingering_time=_LINGERING_S,
                shutdown_timeout=_RUNNER_SHUTDOWN_S,
            )
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(runner, spec.bind, spec.port, ssl_context=spec.ssl_context())
            try:
                await site.start()
            except OSError as exc:
                raise BindError(spec.address, exc) from None
            for address in runner.addresses:
                logger.info(
                    "listening on %s (%s)%s",
                    _format_address(address),
                    ", ".join(sorted(spec.types)),
                    " with TLS" if spec.tls_certificate else "",
                )
    except BaseException:
        await stop_listeners(runners)
        raise
    return runners


def _format_address(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class InFlight:
    """The requests a listener is handling, to wait for them at shutdown."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def started(self) -> None:
        self.count += 1
        self.idle.clear()

    def finished(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


_IN_FLIGHT: Final = web.AppKey("in_flight", InFlight)


@web.middleware
async def _count_in_flight(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    in_flight = request.app[_IN_FLIGHT]
    in_flight.started()
    try:
        return await handler(request)
    finally:
        in_flight.finished()


async def stop_listeners(runners: list[web.AppRunner], grace_s: float = SHUTDOWN_GRACE_S) -> None:
    """Stop accepting on every socket at once, give in-flight requests up to `grace_s` to
    finish, then cancel those still running and close every connection."""
    for runner in runners:
        for site in list(runner.sites):
            with contextlib.suppress(Exception):
                await site.stop()
        if runner.server is not None:
            runner.server.pre_shutdown()  # idle keep-alive connections close, busy ones after
    waits = [runner.app[_IN_FLIGHT].idle.wait() for runner in runners if _IN_FLIGHT in runner.app]
    if waits:
        try:
            await asyncio.wait_for(asyncio.gather(*waits), grace_s)
        except TimeoutError:
            left = sum(runner.app[_IN_FLIGHT].count for runner in runners)
            logger.warning("cancelling %d request(s) still running after %.1f s", left, grace_s)
    await asyncio.gather(*(runner.cleanup() for runner in runners), return_exceptions=True)
