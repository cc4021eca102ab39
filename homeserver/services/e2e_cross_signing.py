"""Cross-signing (C-S "Cross-signing", cross_signing.yaml): POST /keys/device_signing/upload
and POST /keys/signatures/upload. User-interactive auth is the HTTP layer's; `needs_uia`
says when the spec requires it.

New master or self-signing keys go to every server sharing a room with the user as an
`m.signing_key_update` EDU (S2S "End-to-End Encryption"); the user-signing key never leaves
this server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from federation.ids import server_name_of
from federation.signing import SignatureError, decode_verify_key, verify_json
from homeserver.services.device_lists import DeviceLists, EduSender
from homeserver.services.e2e_keys import bad_json, public_key_of, user_map
from homeserver.storage.e2e_keys import E2eKeysStore, SignatureRow

# Request body field → key type (cross_signing.yaml).
KEY_FIELDS: Final = {
    "master_key": "master",
    "self_signing_key": "self_signing",
    "user_signing_key": "user_signing",
}
SIGNING_KEY_UPDATE: Final = "m.signing_key_update"
# Key type → field of m.signing_key_update (the keys other servers may see).
SHARED_KEY_FIELDS: Final = {"master": "master_key", "self_signing": "self_signing_key"}


def _unsigned(key: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in key.items() if k not in ("signatures", "unsigned")}


class CrossSigning:
    def __init__(
        self, store: E2eKeysStore, device_lists: DeviceLists, sender: EduSender | None = None
    ) -> None:
        self._store = store
        self._device_lists = device_lists
        # Sends m.signing_key_update to other servers; None without federation.
        self._sender = sender

    def _parse_keys(self, user_id: str, body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        keys: dict[str, dict[str, Any]] = {}
        for field, key_type in KEY_FIELDS.items():
            key = body.get(field)
            if key is None:
                continue
            if not isinstance(key, dict):
                raise bad_json(f"{field} must be an object")
            usage = key.get("usage")
            if key.get("user_id") != user_id:
                raise bad_json(f"{field}.user_id must be the requester")
            if not isinstance(usage, list) or key_type not in usage:
                raise bad_json(f"{field}.usage must include {key_type!r}")
            if public_key_of(key) is None:
                raise bad_json(f"{field}.keys must hold exactly one key")
            keys[key_type] = key
        return keys

    async def needs_uia(self, user_id: str, body: Mapping[str, Any]) -> bool:
        """cross_signing.yaml: UIA unless no master key exists yet, or the request holds no
        new keys (a retried upload)."""
        stored = (await self._store.get_cross_signing_keys([user_id])).get(user_id, {})
        if "master" not in stored:
            return False
        keys = self._parse_keys(user_id, body)
        return any(
            _unsigned(key) != _unsigned(stored.get(key_type, {})) for key_type, key in keys.items()
        )

    async def upload_signing_keys(self, user_id: str, body: Mapping[str, Any]) -> None:
        keys = self._parse_keys(user_id, body)
        stored = (await self._store.get_cross_signing_keys([user_id])).get(user_id, {})
        if "master" not in keys and "master" not in stored and keys:
            raise bad_json("master_key is required before the other keys")
        if not keys:
            return
        position = self._device_lists.current_position
        for key_type, key in keys.items():
            await self._store.set_cross_signing_key(user_id, key_type, key, position)
        await self._device_lists.mark_changed(user_id)
        await self._send_signing_key_update(user_id, keys)

    async def _send_signing_key_update(
        self, user_id: str, keys: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """S2S "End-to-End Encryption": `m.signing_key_update` with the new master and/or
        self-signing key, to every server sharing a room with the user."""
        content: dict[str, Any] = {"user_id": user_id}
        for key_type, field in SHARED_KEY_FIELDS.items():
            if key_type in keys:
                content[field] = dict(keys[key_type])
        if self._sender is None or len(content) == 1:
            return
        sharing = await self._store.get_users_sharing_rooms(user_id)
        servers = {server_name_of(other) for other in sharing} - {server_name_of(user_id)}
        if servers:
            await self._sender.send_edu(sorted(servers), SIGNING_KEY_UPDATE, content)

    async def upload_signatures(self, user_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Keep every valid signature by the requester; report the others under `failures`
        (M_INVALID_SIGNATURE for a bad signature)."""
        targets = user_map({"signatures": body}, "signatures")
        signer_keys = await self._verify_keys_of(user_id)
        rows: list[SignatureRow] = []
        failures: dict[str, dict[str, Any]] = {}
        for target_user, objects in targets.items():
            if not isinstance(objects, dict):
                raise bad_json("signatures/upload values must map key IDs to signed objects")
            for key_id, signed in objects.items():
                try:
                    rows += await self._check(user_id, target_user, key_id, signed, signer_keys)
                except SignatureError as exc:
                    failures.setdefault(target_user, {})[key_id] = {
                        "errcode": "M_INVALID_SIGNATURE",
                        "error": str(exc),
                    }
        await self._store.add_signatures(rows)
        for target_user in {row.target_user_id for row in rows}:
            await self._device_lists.mark_changed(target_user)
        return {"failures": failures}

    async def _verify_keys_of(self, user_id: str) -> dict[str, str]:
        """key ID → public key of the requester's devices and cross-signing keys."""
        found: dict[str, str] = {}
        for keys in (await self._store.get_device_keys([user_id])).get(user_id, {}).values():
            found.update({k: v for k, v in keys.get("keys", {}).items() if isinstance(v, str)})
        for key in (await self._store.get_cross_signing_keys([user_id])).get(user_id, {}).values():
            found.update({k: v for k, v in key.get("keys", {}).items() if isinstance(v, str)})
        return found

    async def _check(
        self,
        signer: str,
        target_user: str,
        key_id: str,
        signed: Any,
        signer_keys: Mapping[str, str],
    ) -> list[SignatureRow]:
        """The signer's signatures on one object, each verified against the signer's key, on
        an object that matches the stored key it claims to sign."""
        if not isinstance(signed, dict):
            raise SignatureError("the signed object must be an object")
        stored = await self._stored_key(target_user, key_id)
        if stored is None or _unsigned(stored) != _unsigned(signed):
            raise SignatureError("the signed object does not match the stored key")
        signatures = (signed.get("signatures") or {}).get(signer)
        if not isinstance(signatures, dict) or not signatures:
            raise SignatureError("no signature by the requester")
        rows = []
        for signer_key_id in signatures:
            public = signer_keys.get(signer_key_id)
            if public is None:
                raise SignatureError(f"unknown signing key {signer_key_id}")
            try:
                verify_json(signed, signer, signer_key_id, decode_verify_key(public))
            except ValueError as exc:
                raise SignatureError(str(exc)) from None
            rows.append(
                SignatureRow(signer, signer_key_id, target_user, key_id, signatures[signer_key_id])
            )
        return rows

    async def _stored_key(self, user_id: str, key_id: str) -> dict[str, Any] | None:
        """A device's keys (key ID = device ID) or a cross-signing key (key ID = its public
        key)."""
        devices = (await self._store.get_device_keys([user_id])).get(user_id, {})
        if key_id in devices:
            return devices[key_id]
        for key in (await self._store.get_cross_signing_keys([user_id])).get(user_id, {}).values():
            if public_key_of(key) == key_id:
                return key
        return None
