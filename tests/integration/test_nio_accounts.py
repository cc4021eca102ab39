"""A real Matrix client (matrix-nio) registers, logs in, manages devices and logs out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from nio import (
    AsyncClient,
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    DevicesResponse,
    LoginInfoResponse,
    LoginResponse,
    LogoutResponse,
    RegisterResponse,
    UpdateDeviceResponse,
    WhoamiError,
    WhoamiResponse,
)

from tests.http.account_helpers import SERVER_NAME, Client, running_server

ALICE = f"@alice:{SERVER_NAME}"
PASSWORD = "nio's password"


@pytest.fixture
async def server(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as server:
        yield server


@pytest.fixture
async def nio(server: Client) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(server.base_url, ALICE)
    try:
        yield client
    finally:
        await client.close()


async def test_nio_registers_and_whoami_knows_it(nio: AsyncClient) -> None:
    registered = await nio.register("alice", PASSWORD, device_name="nio test")
    assert isinstance(registered, RegisterResponse), registered
    assert registered.user_id == ALICE
    assert nio.access_token == registered.access_token
    me = await nio.whoami()
    assert isinstance(me, WhoamiResponse), me
    assert (me.user_id, me.device_id, me.is_guest) == (ALICE, registered.device_id, False)


async def test_nio_logs_in_lists_and_renames_devices_then_logs_out(
    server: Client, nio: AsyncClient
) -> None:
    assert isinstance(await nio.register("alice", PASSWORD), RegisterResponse)
    first_device = nio.device_id
    login_info = await nio.login_info()
    assert isinstance(login_info, LoginInfoResponse)
    assert "m.login.password" in login_info.flows

    second = AsyncClient(server.base_url, ALICE)
    try:
        logged_in = await second.login(PASSWORD, device_name="second nio")
        assert isinstance(logged_in, LoginResponse), logged_in
        assert logged_in.device_id != first_device

        devices = await second.devices()
        assert isinstance(devices, DevicesResponse), devices
        by_id = {device.id: device for device in devices.devices}
        assert set(by_id) == {first_device, logged_in.device_id}
        assert by_id[logged_in.device_id].display_name == "second nio"

        renamed = await second.update_device(logged_in.device_id, {"display_name": "renamed"})
        assert isinstance(renamed, UpdateDeviceResponse), renamed

        assert isinstance(await second.logout(), LogoutResponse)
    finally:
        await second.close()

    gone = await server.whoami(logged_in.access_token)
    assert gone.status == 401
    remaining = await nio.devices()
    assert isinstance(remaining, DevicesResponse)
    assert [device.id for device in remaining.devices] == [first_device]


async def test_nio_deletes_a_device_through_user_interactive_auth(
    server: Client, nio: AsyncClient
) -> None:
    assert isinstance(await nio.register("alice", PASSWORD), RegisterResponse)
    other = (await server.login("alice", PASSWORD)).body

    challenge = await nio.delete_devices([other["device_id"]])
    assert isinstance(challenge, DeleteDevicesAuthResponse), challenge
    auth = {
        "type": "m.login.password",
        "user": "alice",
        "password": PASSWORD,
        "session": challenge.session,
    }
    deleted = await nio.delete_devices([other["device_id"]], auth)
    assert isinstance(deleted, DeleteDevicesResponse), deleted
    assert (await server.whoami(other["access_token"])).status == 401


async def test_nio_logout_all_ends_every_session(server: Client, nio: AsyncClient) -> None:
    assert isinstance(await nio.register("alice", PASSWORD), RegisterResponse)
    other = (await server.login("alice", PASSWORD)).body
    token = nio.access_token
    assert isinstance(await nio.logout(all_devices=True), LogoutResponse)
    assert (await server.whoami(other["access_token"])).status == 401
    stale = AsyncClient(server.base_url, ALICE)
    try:
        stale.access_token, stale.user_id = token, ALICE
        assert isinstance(await stale.whoami(), WhoamiError)
    finally:
        await stale.close()
