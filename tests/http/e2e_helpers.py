"""Helpers for the end-to-end encryption tests: users with their device ID, key uploads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.http.room_helpers import Client, Reply, User


@dataclass
class DeviceUser(User):
    device_id: str = ""


async def register_device_users(client: Client, *names: str) -> list[DeviceUser]:
    users = []
    for name in names:
        body = await client.register(name)
        users.append(DeviceUser(client, body["user_id"], body["access_token"], body["device_id"]))
    return users


def device_keys(user: DeviceUser, curve: str = "curve-key") -> dict[str, Any]:
    """A DeviceKeys object (the server stores and serves it; clients check signatures)."""
    return {
        "user_id": user.user_id,
        "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            f"curve25519:{user.device_id}": curve,
            f"ed25519:{user.device_id}": "ed-key",
        },
        "signatures": {user.user_id: {f"ed25519:{user.device_id}": "sig"}},
    }


def signed_key(key: str) -> dict[str, Any]:
    return {"key": key, "signatures": {"@x:y": {"ed25519:D": "sig"}}}


async def upload(user: DeviceUser, **body: Any) -> Reply:
    return await user.call("POST", "/keys/upload", body)
