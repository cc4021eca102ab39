"""Resolving another server's room alias over GET /v1/query/directory
(homeserver/services/remote_directory.py), against a stand-in federation client."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.remote.errors import RemoteError, RemoteUnreachable
from homeserver.services.remote_directory import RemoteDirectoryClient, parse_directory_response


class FakeFederationClient:
    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.answer, self.error = answer, error
        self.calls: list[tuple[str, str, Any]] = []

    async def get_json(self, destination: str, path: str, query: Any = None) -> Any:
        self.calls.append((destination, path, query))
        if self.error is not None:
            raise self.error
        return self.answer


def directory(fake: FakeFederationClient) -> RemoteDirectoryClient:
    return RemoteDirectoryClient(fake)  # type: ignore[arg-type]


async def test_the_alias_server_is_asked_and_its_answer_returned() -> None:
    fake = FakeFederationClient({"room_id": "!r:other.example", "servers": ["a.example"]})
    resolved = await directory(fake)("#room:other.example")
    path = "/_matrix/federation/v1/query/directory"
    assert fake.calls == [("other.example", path, {"room_alias": "#room:other.example"})]
    assert resolved is not None
    assert resolved.room_id == "!r:other.example"
    # The alias's own server stays a join candidate when it does not list itself.
    assert resolved.servers == ["a.example", "other.example"]


async def test_a_remote_404_means_no_such_alias() -> None:
    fake = FakeFederationClient(error=RemoteError("other.example", 404, "M_NOT_FOUND", "no"))
    assert await directory(fake)("#room:other.example") is None


@pytest.mark.parametrize(
    "error",
    [
        RemoteError("other.example", 500, None, "boom"),
        RemoteUnreachable("other.example", "connection refused"),
    ],
)
async def test_failures_are_a_502(error: Exception) -> None:
    with pytest.raises(MatrixError) as caught:
        await directory(FakeFederationClient(error=error))("#room:other.example")
    assert caught.value.status == 502


async def test_a_malformed_answer_is_a_502() -> None:
    with pytest.raises(MatrixError) as caught:
        await directory(FakeFederationClient({"servers": []}))("#room:other.example")
    assert caught.value.status == 502


def test_parse_keeps_only_string_servers() -> None:
    resolved = parse_directory_response({"room_id": "!r:x.example", "servers": ["a", 5, None]})
    assert resolved is not None and resolved.servers == ["a"]
    assert parse_directory_response({"room_id": "!r:x.example"}) is not None
    assert parse_directory_response({"room_id": 5}) is None
    assert parse_directory_response([]) is None
