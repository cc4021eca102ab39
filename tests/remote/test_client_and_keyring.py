"""The signed federation client and the keyring against real servers on loopback: a "remote
homeserver" (TLS, key endpoint built with federation.keys, an endpoint that checks our X-Matrix
signature), a notary, a DNS server for SRV records, and the key cache in real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web

from federation.keys import build_server_keys
from federation.signing import SignatureError, SigningKey, generate_signing_key, sign_json
from federation.xmatrix import (
    XMatrixError,
    build_authorization_header,
)
from homeserver.config import parse_config
from homeserver.remote.client import ClientLimits, format_path
from homeserver.remote.discovery import DnsSrvLookup
from homeserver.remote.errors import (
    AddressBlocked,
    DestinationNotAllowed,
    RemoteError,
    RemoteUnreachable,
)
from homeserver.remote.factory import create_remote_services
from homeserver.remote.keyring import Keyring, KeyUnavailableError, Notary, OwnKeys
from homeserver.remote.policy import ServerPolicy
from homeserver.storage import server_keys
from tests.remote.fakes import (
    DAY_MS,
    LOOPBACK,
    OUR_KEY,
    OUR_NAME,
    FakeHomeserver,
    World,
    now_ms,
)
from tests.remote.support import StaticResolver

# The client.


async def test_signed_get_with_query_is_verified_by_the_remote(world: World) -> None:
    client = world.client()
    path = format_path("/_matrix/federation/v1/echo/{}/{}", "!room:remote.test", "$event/1")
    answer = await client.get_json(
        world.remote.server_name, path, {"limit": 10, "v": ["1", "2"], "q": "a b&c"}
    )
    assert answer["uri"] == (
        "/_matrix/federation/v1/echo/%21room%3Aremote.test/%24event%2F1?limit=10&v=1&v=2&q=a%20b%26c"
    )
    # Step 2 of discovery: Host is the server name with its port.
    assert answer["host"] == world.remote.server_name


async def test_put_and_post_bodies_are_signed(world: World) -> None:
    client = world.client()
    content = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"ü": 1}}]}
    answer = await client.put_json(
        world.remote.server_name, "/_matrix/federation/v1/echo/send/1", content
    )
    assert answer["content"] == content
    answer = await client.post_json(world.remote.server_name, "/_matrix/federation/v1/echo/x", {})
    assert answer["content"] == {}


async def test_loopback_is_refused_without_the_allowlist(world: World) -> None:
    client = world.client(allowlist=[])
    with pytest.raises(AddressBlocked):
        await client.get_json(world.remote.server_name, "/_matrix/federation/v1/echo/a")
    # An IP-literal server name is refused as well.
    with pytest.raises(AddressBlocked):
        await client.get_json(f"127.0.0.1:{world.remote.port}", "/_matrix/federation/v1/echo/a")
    assert world.remote.requests["echo"] == 0


async def test_ip_literal_server_name_is_reached_with_the_allowlist(world: World) -> None:
    client = world.client()
    server_name = f"127.0.0.1:{world.remote.port}"
    # The remote checks the destination in the signature: it thinks it is remote.test, so the
    # request is refused — after a real TLS connection to the IP address.
    with pytest.raises(RemoteError) as caught:
        await client.get_json(server_name, "/_matrix/federation/v1/echo/a")
    assert caught.value.status == 401
    assert world.remote.requests["echo"] == 1


async def test_denied_and_unlisted_servers_are_refused_before_any_lookup(world: World) -> None:
    denied = world.client(server_policy=ServerPolicy(denied_servers=["srv.test"]))
    closed = world.client(server_policy=ServerPolicy(allowed_servers=["friend.test"]))
    for client in (denied, closed):
        with pytest.raises(DestinationNotAllowed):
            await client.get_json("srv.test", "/_matrix/federation/v1/echo/a")
    with pytest.raises(DestinationNotAllowed, match="denied_servers"):
        await denied.get_json("srv.test", "/_matrix/key/v2/server")
    assert world.dns.queries == []  # not even discovery ran


async def test_srv_target_is_reached_with_the_certificate_and_host_of_the_server_name(
    world: World,
) -> None:
    # target.test is not in the certificate; srv.test is, and that is the name checked.
    world.dns.srv_records["_matrix-fed._tcp.srv.test"] = [(10, 0, world.remote.port, "target.test")]
    world.remote.aliases.add("srv.test")
    answer = await world.client().get_json("srv.test", "/_matrix/federation/v1/echo/a")
    assert answer["host"] == "srv.test"


async def test_certificate_must_be_valid_for_the_server_name(world: World) -> None:
    world.dns.srv_records["_matrix-fed._tcp.wrongcert.test"] = [
        (10, 0, world.remote.port, "target.test")
    ]
    world.remote.aliases.add("wrongcert.test")
    with pytest.raises(RemoteUnreachable, match="certificate"):
        await world.client().get_json("wrongcert.test", "/_matrix/federation/v1/echo/a")
    assert world.remote.requests["echo"] == 0
    # federation.verify_tls: false accepts it.
    answer = await world.client(tls=False).get_json(
        "wrongcert.test", "/_matrix/federation/v1/echo/a"
    )
    assert answer["host"] == "wrongcert.test"


async def test_error_responses_become_remote_errors(world: World) -> None:
    client = world.client()
    with pytest.raises(RemoteError) as caught:
        await client.get_json(world.remote.server_name, "/_matrix/federation/v1/forbidden")
    assert (caught.value.status, caught.value.errcode, caught.value.message) == (
        403,
        "M_FORBIDDEN",
        "go away",
    )
    with pytest.raises(RemoteError) as caught:
        await client.get_json(world.remote.server_name, "/_matrix/federation/v1/html")
    assert caught.value.status == 502 and caught.value.errcode is None
    assert "bad gateway" in caught.value.message


async def test_responses_larger_than_the_limit_are_refused(world: World) -> None:
    client = world.client(limits=ClientLimits(max_response_bytes=10_000))
    with pytest.raises(RemoteError, match="larger than 10000 bytes"):
        await client.get_json(world.remote.server_name, "/_matrix/federation/v1/huge")
    roomy = world.client(limits=ClientLimits(max_response_bytes=1_000_000))
    assert len(await roomy.get_json(world.remote.server_name, "/_matrix/federation/v1/huge")) > 0


async def test_slow_servers_time_out(world: World) -> None:
    client = world.client(limits=ClientLimits(timeout_s=0.3))
    with pytest.raises(RemoteUnreachable, match="timed out"):
        await client.get_json(world.remote.server_name, "/_matrix/federation/v1/slow")


async def test_closed_port_is_unreachable(world: World) -> None:
    client = world.client()
    with pytest.raises(RemoteUnreachable) as caught:
        await client.get_json(f"remote.test:{world.closed_port}", "/_matrix/key/v2/server")
    assert not isinstance(caught.value, AddressBlocked)


# The keyring.

REMOTE_KEY_ID = "ed25519:remote1"


async def test_keys_are_fetched_directly_and_cached_in_postgres(
    world: World, pool: asyncpg.Pool
) -> None:
    name = world.remote.server_name
    key = await world.keyring(pool).get_verify_key(name, REMOTE_KEY_ID, now_ms())
    assert key == world.remote.key.public_key
    stored = await server_keys.get_server_key(pool, name, REMOTE_KEY_ID)
    assert stored is not None
    assert (stored.verify_key, stored.fetched_from, stored.expired_ts) == (key, name, None)
    assert stored.valid_until_ts > now_ms() + DAY_MS - 60_000
    # After a restart, with a client that may contact no one, the cache still answers.
    isolated = world.client(server_policy=ServerPolicy(allowed_servers=[]))
    assert await world.keyring(pool, isolated).get_verify_key(name, REMOTE_KEY_ID, now_ms()) == key
    assert world.remote.requests["keys"] == 1
    assert world.notary.requests.total() == 0  # no trusted key servers by default


def _replace_key(remote: FakeHomeserver) -> dict[str, Any]:
    body = remote.signed_keys()
    body["verify_keys"][REMOTE_KEY_ID]["key"] = generate_signing_key("x").public_key_base64
    return body


def _extend_validity(remote: FakeHomeserver) -> dict[str, Any]:
    return {**remote.signed_keys(), "valid_until_ts": now_ms() + 5 * DAY_MS}


def _unsigned(remote: FakeHomeserver) -> dict[str, Any]:
    return {**remote.signed_keys(), "signatures": {}}


def _other_server(remote: FakeHomeserver) -> dict[str, Any]:
    return build_server_keys("other.test", remote.key, now_ms() + DAY_MS)


@pytest.mark.parametrize("tamper", [_replace_key, _extend_validity, _unsigned, _other_server])
async def test_tampered_key_responses_are_refused(
    world: World, pool: asyncpg.Pool, tamper: Callable[[FakeHomeserver], dict[str, Any]]
) -> None:
    world.remote.key_response = lambda remote: web.json_response(tamper(remote))
    with pytest.raises(KeyUnavailableError):
        await world.keyring(pool).get_verify_key(world.remote.server_name, REMOTE_KEY_ID, 0)
    assert world.remote.requests["keys"] == 1
    assert await server_keys.get_server_key(pool, world.remote.server_name, REMOTE_KEY_ID) is None


async def test_validity_is_checked_and_capped_at_seven_days(
    world: World, pool: asyncpg.Pool
) -> None:
    name = world.remote.server_name
    world.remote.key_response = lambda remote: web.json_response(remote.signed_keys(30 * DAY_MS))
    keyring = world.keyring(pool)
    await keyring.get_verify_key(name, REMOTE_KEY_ID, now_ms())
    stored = await server_keys.get_server_key(pool, name, REMOTE_KEY_ID)
    assert stored is not None and stored.valid_until_ts <= now_ms() + 7 * DAY_MS
    # Validity beyond the cap cannot be had; the server is not asked again within the
    # refetch interval…
    for _ in range(2):
        with pytest.raises(KeyUnavailableError):
            await keyring.get_verify_key(name, REMOTE_KEY_ID, now_ms() + 8 * DAY_MS)
    assert world.remote.requests["keys"] == 1
    # …and is asked once per attempt after it.
    eager = world.keyring(pool, refetch_interval_ms=0)
    for _ in range(2):
        with pytest.raises(KeyUnavailableError):
            await eager.get_verify_key(name, REMOTE_KEY_ID, now_ms() + 8 * DAY_MS)
    assert world.remote.requests["keys"] == 3


async def test_concurrent_requests_for_one_key_share_one_fetch(
    world: World, pool: asyncpg.Pool
) -> None:
    keyring = world.keyring(pool)
    keys = await asyncio.gather(
        *(keyring.get_verify_key(world.remote.server_name, REMOTE_KEY_ID, 0) for _ in range(10))
    )
    assert set(keys) == {world.remote.key.public_key}
    assert world.remote.requests["keys"] == 1


async def test_our_own_keys_are_answered_locally(world: World, pool: asyncpg.Pool) -> None:
    old_key = generate_signing_key("old")
    keyring = Keyring(
        own=OwnKeys(OUR_NAME, OUR_KEY, {old_key.key_id: (old_key.public_key, 1_000)}),
        db=pool,
        requester=world.client(server_policy=ServerPolicy(allowed_servers=[])),
    )
    assert await keyring.get_verify_key(OUR_NAME, OUR_KEY.key_id, now_ms()) == OUR_KEY.public_key
    assert await keyring.get_verify_key(OUR_NAME, old_key.key_id, 500) == old_key.public_key
    with pytest.raises(KeyUnavailableError):
        await keyring.get_verify_key(OUR_NAME, old_key.key_id, 500, for_requests=True)
    with pytest.raises(KeyUnavailableError):
        await keyring.get_verify_key(OUR_NAME, "ed25519:unknown", 0)


def notary_answers(
    world: World, signing_key: SigningKey | None = None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A notary that vouches for the remote's real keys, signed with `signing_key`."""

    def answer(query: dict[str, Any]) -> dict[str, Any]:
        world.notary.requests[f"asked:{orjson.dumps(query).decode()}"] += 1
        entries = [
            sign_json(world.remote.signed_keys(), world.notary.server_name, key)
            for server in query["server_keys"]
            if server == world.remote.server_name
            for key in [signing_key or world.notary.key]
        ]
        return {"server_keys": entries}

    return answer


def remote_down(remote: FakeHomeserver) -> web.Response:
    return web.json_response({"errcode": "M_UNKNOWN", "error": "down"}, status=503)


async def test_notary_is_asked_when_the_server_cannot_answer(
    world: World, pool: asyncpg.Pool
) -> None:
    world.remote.key_response = remote_down
    world.notary.notary = notary_answers(world)
    notary = Notary(
        world.notary.server_name, {world.notary.key.key_id: world.notary.key.public_key}
    )
    keyring = world.keyring(pool, notaries=[notary])
    minimum = now_ms()
    key = await keyring.get_verify_key(world.remote.server_name, REMOTE_KEY_ID, minimum)
    assert key == world.remote.key.public_key
    query = {
        "server_keys": {
            world.remote.server_name: {REMOTE_KEY_ID: {"minimum_valid_until_ts": minimum}}
        }
    }
    assert world.notary.requests[f"asked:{orjson.dumps(query).decode()}"] == 1
    stored = await server_keys.get_server_key(pool, world.remote.server_name, REMOTE_KEY_ID)
    assert stored is not None and stored.fetched_from == world.notary.server_name


async def test_notary_signature_must_match_the_configured_key(
    world: World, pool: asyncpg.Pool
) -> None:
    world.remote.key_response = remote_down
    impostor = generate_signing_key(world.notary.key.version)  # same key ID, other key
    world.notary.notary = notary_answers(world, impostor)
    notary = Notary(
        world.notary.server_name, {world.notary.key.key_id: world.notary.key.public_key}
    )
    with pytest.raises(KeyUnavailableError):
        await world.keyring(pool, notaries=[notary]).get_verify_key(
            world.remote.server_name, REMOTE_KEY_ID, 0
        )
    assert world.notary.requests["query"] == 1
    assert await server_keys.get_server_key(pool, world.remote.server_name, REMOTE_KEY_ID) is None


async def test_notary_without_configured_keys_has_its_keys_fetched_directly(
    world: World, pool: asyncpg.Pool
) -> None:
    world.remote.key_response = remote_down
    world.notary.notary = notary_answers(world)
    keyring = world.keyring(pool, notaries=[Notary(world.notary.server_name)])
    key = await keyring.get_verify_key(world.remote.server_name, REMOTE_KEY_ID, 0)
    assert key == world.remote.key.public_key
    assert world.notary.requests["keys"] == 1


async def test_verify_request_checks_the_x_matrix_signature(
    world: World, pool: asyncpg.Pool
) -> None:
    keyring = world.keyring(pool)
    remote = world.remote
    uri, content = "/_matrix/federation/v1/send/txn1", {"pdus": [], "edus": []}

    def header(destination: str = OUR_NAME, key: SigningKey = remote.key) -> str:
        return build_authorization_header("PUT", uri, remote.server_name, destination, content, key)

    assert await keyring.verify_request(header(), "PUT", uri, content) == remote.server_name
    with pytest.raises(SignatureError):
        await keyring.verify_request(header(), "PUT", uri + "x", content)
    with pytest.raises(SignatureError):
        await keyring.verify_request(header(), "PUT", uri, {"pdus": [1], "edus": []})
    with pytest.raises(XMatrixError, match=r"other\.test"):
        await keyring.verify_request(header("other.test"), "PUT", uri, content)
    with pytest.raises(XMatrixError, match="missing"):
        await keyring.verify_request(None, "PUT", uri, content)
    with pytest.raises(KeyUnavailableError):
        await keyring.verify_request(header(key=generate_signing_key("nope")), "PUT", uri, content)


async def test_old_keys_verify_events_but_not_requests(world: World, pool: asyncpg.Pool) -> None:
    old = generate_signing_key("old1")
    expired_ts = now_ms() + 3600_000

    def with_old_key(remote: FakeHomeserver) -> web.Response:
        body = build_server_keys(
            remote.server_name,
            remote.key,
            now_ms() + DAY_MS,
            {old.key_id: (old.public_key_base64, expired_ts)},
        )
        return web.json_response(body)

    world.remote.key_response = with_old_key
    keyring = world.keyring(pool)
    name = world.remote.server_name
    event = sign_json({"type": "m.room.message", "content": {}}, name, old)
    await keyring.verify_json_for_server(event, name, now_ms())
    with pytest.raises(SignatureError):
        await keyring.verify_json_for_server({**event, "content": {"x": 1}}, name, now_ms())
    with pytest.raises(KeyUnavailableError):
        header = build_authorization_header("GET", "/_matrix/x", name, OUR_NAME, None, old)
        await keyring.verify_request(header, "GET", "/_matrix/x", None)
    with pytest.raises(SignatureError, match="not signed"):
        await keyring.verify_json_for_server({"type": "x"}, name, now_ms())


# Wiring from the config.


def _config(tmp_path: Path, federation: dict[str, Any]) -> Any:
    return parse_config(
        {
            "server_name": OUR_NAME,
            "data_dir": str(tmp_path),
            "signing_key_path": str(tmp_path / "signing.key"),
            "database": {"dsn": "postgresql://unused/unused"},
            "listeners": [{"type": "client", "port": 0}],
            "federation": federation,
        },
        base_dir=tmp_path,
    )


async def test_remote_services_follow_the_config(
    world: World, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async def fetch_with(federation: dict[str, Any]) -> bytes:
        services = create_remote_services(
            _config(tmp_path, federation),
            pool,
            OUR_KEY,
            tls=world.cert.client_context(),
            dns_resolver=StaticResolver({"remote.test": ["127.0.0.1"]}),
            srv_lookup=DnsSrvLookup(world.dns.resolver()),
            well_known_port=world.closed_port,
        )
        try:
            return await services.keyring.get_verify_key(world.remote.server_name, REMOTE_KEY_ID, 0)
        finally:
            await services.close()

    with pytest.raises(KeyUnavailableError):
        await fetch_with({})  # loopback is refused by default
    assert world.remote.requests["keys"] == 0
    with pytest.raises(KeyUnavailableError):
        await fetch_with(
            {"ip_range_allowlist": LOOPBACK, "denied_servers": [world.remote.server_name]}
        )
    assert world.remote.requests["keys"] == 0
    key = await fetch_with({"ip_range_allowlist": LOOPBACK})
    assert key == world.remote.key.public_key
