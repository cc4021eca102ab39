"""Other servers' users' keys, cached while a room is shared (S2S "Device Management",
"End-to-End Encryption"): alice@A asks for bob@B's keys once; later changes reach A as EDUs
(`m.device_list_update`, `m.signing_key_update`); with B stopped, alice still gets bob's
current keys from A's cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.cluster import cluster
from tests.integration.rooms import create_public_room, join_via, wait_for_same_state
from tests.integration.test_two_servers import User, eventually

KEYS = "/_matrix/client/v3/keys"


async def device_id_of(user: User) -> str:
    status, whoami = await user.call("GET", "/_matrix/client/v3/account/whoami")
    assert status == 200, whoami
    device_id: str = whoami["device_id"]
    return device_id


def device_keys(user_id: str, device_id: str, curve: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": curve, f"ed25519:{device_id}": "ed-" + curve},
        "signatures": {user_id: {f"ed25519:{device_id}": "sig"}},
    }


def master_key(user_id: str, public: str) -> dict[str, Any]:
    return {"user_id": user_id, "usage": ["master"], "keys": {f"ed25519:{public}": public}}


async def query(user: User, target: str) -> dict[str, Any]:
    status, answer = await user.call("POST", KEYS + "/query", {"device_keys": {target: []}})
    assert status == 200, answer
    return dict(answer)


async def test_a_remote_users_keys_are_served_from_the_cache_and_kept_current_by_edus(
    tmp_path: Path, pg_admin_dsn: str, _migrated_template: str
) -> None:
    async with cluster(tmp_path, pg_admin_dsn, _migrated_template, 2) as running:
        a, b = running.servers
        alice, bob = await a.register("alice"), await b.register("bob")
        room_id = await create_public_room(alice, name="Keys")
        await join_via(bob, room_id, a.name)
        await wait_for_same_state(room_id, alice, bob)
        bob_device = await device_id_of(bob)
        first = device_keys(bob.user_id, bob_device, "curve-1")
        status, _ = await bob.call("POST", KEYS + "/upload", {"device_keys": first})
        assert status == 200

        async def alice_sees_bobs_device() -> bool:
            answer = await query(alice, bob.user_id)
            return bob_device in answer["device_keys"].get(bob.user_id, {})

        await eventually(alice_sees_bobs_device)  # asked B, and cached the whole list

        # New keys for bob's device, and a master key: both reach A as EDUs.
        second = device_keys(bob.user_id, bob_device, "curve-2")
        status, _ = await bob.call("POST", KEYS + "/upload", {"device_keys": second})
        assert status == 200
        master = master_key(bob.user_id, "bobmaster")
        signing = {"master_key": master}
        status, reply = await bob.call("POST", KEYS + "/device_signing/upload", signing)
        assert status == 200, reply

        async def a_has_both_updates() -> bool:
            rows = await a.deps.pool.fetch(
                "SELECT keys FROM remote_device_keys WHERE user_id = $1", bob.user_id
            )
            master_rows = await a.deps.pool.fetch(
                "SELECT key_type FROM remote_cross_signing_keys WHERE user_id = $1", bob.user_id
            )
            return any("curve-2" in (r["keys"] or "") for r in rows) and len(master_rows) == 1

        await eventually(a_has_both_updates)
        await running.stop(b)

        answer = await query(alice, bob.user_id)
        assert answer["failures"] == {}  # not asked: B is down
        assert answer["device_keys"][bob.user_id][bob_device] == second
        assert answer["master_keys"][bob.user_id] == master
