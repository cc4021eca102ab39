"""Thumbnails (C-S "Thumbnails"): the Pillow rules on their own, then through the endpoint."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from PIL import Image

from homeserver.services.media_names import content_disposition, filename_of_disposition
from homeserver.services.media_thumbnails import (
    MAX_SOURCE_PIXELS,
    CannotThumbnail,
    SourceTooLarge,
    choose_size,
    make_thumbnail,
)
from tests.http.account_helpers import Client, running_server
from tests.http.room_helpers import User, register_users
from tests.http.test_media import raw_call, upload

THUMBNAIL = "/_matrix/client/v1/media/thumbnail"


def image_bytes(width: int, height: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), "red" if mode != "P" else 1).save(out, fmt)
    return out.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# --- the rules ------------------------------------------------------------------------------


def test_requests_round_up_to_the_recommended_sizes() -> None:
    assert choose_size("crop", 10, 10) == (32, 32)
    assert choose_size("crop", 33, 20) == (96, 96)
    assert choose_size("scale", 100, 100) == (320, 240)
    assert choose_size("scale", 321, 100) == (640, 480)
    assert choose_size("scale", 800, 600) == (800, 600)
    # Larger than every recommended size: the original is served.
    assert choose_size("crop", 97, 97) is None
    assert choose_size("scale", 1000, 10) is None


def test_scale_keeps_the_aspect_ratio_inside_the_box() -> None:
    made = make_thumbnail(image_bytes(1000, 500), (320, 240), "scale")
    assert made is not None and made.content_type == "image/png"
    assert size_of(made.data) == (320, 160)


def test_crop_fills_the_box_exactly() -> None:
    made = make_thumbnail(image_bytes(1000, 500, "JPEG"), (96, 96), "crop")
    assert made is not None and made.content_type == "image/jpeg"
    assert size_of(made.data) == (96, 96)


def test_crop_never_upscales_a_narrow_side() -> None:
    made = make_thumbnail(image_bytes(200, 20), (96, 96), "crop")
    assert made is not None
    assert size_of(made.data) == (96, 20)


def test_an_image_already_inside_the_box_is_not_thumbnailed() -> None:
    assert make_thumbnail(image_bytes(300, 200), (320, 240), "scale") is None
    assert make_thumbnail(image_bytes(30, 30), (32, 32), "crop") is None


def test_palette_and_transparent_images_become_png() -> None:
    made = make_thumbnail(image_bytes(400, 400, "GIF", "P"), (96, 96), "crop")
    assert made is not None and made.content_type == "image/png"
    made = make_thumbnail(image_bytes(400, 400, "PNG", "RGBA"), (96, 96), "crop")
    assert made is not None and Image.open(io.BytesIO(made.data)).mode == "RGBA"


def test_garbage_and_huge_images_are_refused() -> None:
    with pytest.raises(CannotThumbnail):
        make_thumbnail(b"not an image at all", (32, 32), "crop")
    side = int(MAX_SOURCE_PIXELS**0.5) + 10
    # A PNG of one colour compresses to a few KB however many pixels it claims.
    huge = image_bytes(side, side, "PNG", "1")
    with pytest.raises(SourceTooLarge):
        make_thumbnail(huge, (32, 32), "crop")


def test_content_disposition_quotes_safe_names_and_encodes_others() -> None:
    assert content_disposition("image/png", "a b.png") == 'inline; filename="a b.png"'
    assert content_disposition("image/svg+xml", None) == "attachment"
    assert content_disposition("text/plain", 'q"uote') == "inline; filename*=utf-8''q%22uote"
    assert filename_of_disposition('inline; filename="x y.png"') == "x y.png"
    assert filename_of_disposition("attachment; filename*=utf-8''%C3%A9t%C3%A9.txt") == "été.txt"
    assert filename_of_disposition("inline") is None


# --- through the endpoint -------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path: Path, migrated_db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    async with running_server(tmp_path, migrated_db_dsn, pool) as client:
        yield client


@pytest.fixture
async def alice(client: Client) -> User:
    return (await register_users(client, "alice"))[0]


def thumbnail_path(uri: str) -> str:
    return f"{THUMBNAIL}/{uri.removeprefix('mxc://')}"


async def test_thumbnail_endpoint_crops_and_scales(client: Client, alice: User) -> None:
    uri = await upload(client, alice, image_bytes(1200, 900), "image/png", "big.png")
    crop = await raw_call(
        client,
        "GET",
        thumbnail_path(uri),
        token=alice.token,
        query={"width": "30", "height": "30", "method": "crop"},
    )
    assert crop.status == 200, crop.body
    assert crop.headers["Content-Type"] == "image/png"
    assert crop.headers["Content-Disposition"] == 'inline; filename="thumbnail.png"'
    assert size_of(crop.body) == (32, 32)
    scale = await raw_call(
        client, "GET", thumbnail_path(uri), token=alice.token, query={"width": "500", "height": "1"}
    )
    assert scale.status == 200 and size_of(scale.body) == (640, 480)
    # The same size again comes from the store and is identical.
    again = await raw_call(
        client, "GET", thumbnail_path(uri), token=alice.token, query={"width": "500", "height": "1"}
    )
    assert again.body == scale.body


async def test_small_images_and_oversized_requests_get_the_original(
    client: Client, alice: User
) -> None:
    small = image_bytes(20, 20)
    uri = await upload(client, alice, small, "image/png")
    reply = await raw_call(
        client, "GET", thumbnail_path(uri), token=alice.token, query={"width": "96", "height": "96"}
    )
    assert reply.status == 200 and reply.body == small
    big = image_bytes(900, 900, "JPEG")
    uri = await upload(client, alice, big, "image/jpeg")
    reply = await raw_call(
        client,
        "GET",
        thumbnail_path(uri),
        token=alice.token,
        query={"width": "2000", "height": "2000"},
    )
    assert reply.status == 200 and reply.body == big
    assert reply.headers["Content-Type"] == "image/jpeg"


async def test_thumbnails_of_non_images_and_bad_parameters_are_refused(
    client: Client, alice: User
) -> None:
    text = await upload(client, alice, b"just words", "text/plain")
    reply = await raw_call(
        client,
        "GET",
        thumbnail_path(text),
        token=alice.token,
        query={"width": "32", "height": "32"},
    )
    assert reply.status == 400 and reply.json()["errcode"] == "M_UNKNOWN"
    fake = await upload(client, alice, b"not really a png", "image/png")
    reply = await raw_call(
        client,
        "GET",
        thumbnail_path(fake),
        token=alice.token,
        query={"width": "32", "height": "32"},
    )
    assert reply.status == 400
    image = await upload(client, alice, image_bytes(100, 100), "image/png")
    for query in (
        {"width": "32"},
        {"width": "-1", "height": "32"},
        {"width": "x", "height": "32"},
        {"width": "32", "height": "32", "method": "stretch"},
    ):
        reply = await raw_call(client, "GET", thumbnail_path(image), token=alice.token, query=query)
        assert reply.status == 400, query
        assert reply.json()["errcode"] in ("M_MISSING_PARAM", "M_INVALID_PARAM")
