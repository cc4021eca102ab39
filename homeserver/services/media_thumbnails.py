"""Thumbnails with Pillow (C-S "Thumbnails").

Rules from the spec: `scale` keeps the aspect ratio and fits the image in the box; `crop` fills
the box exactly and cuts what overflows; never upscale; never return a thumbnail smaller than
asked unless the original is smaller, and then return the original instead.

Requests are rounded up to the recommended sizes (32x32 and 96x96 crop; 320x240, 640x480 and
800x600 scale), so each piece of media has at most five thumbnails and a client cannot make the
server store one per pixel size. A request larger than every recommended size gets the original.

Animated thumbnails are not produced: `animated=true` behaves as `false`, which the spec allows
("if possible and supported"). These functions are CPU-bound; callers run them in a thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:  # Pillow (~2 MB) is imported at the first thumbnail (docs/memory.md)
    from PIL import Image

Method = Literal["crop", "scale"]

RECOMMENDED_SIZES: Final[dict[str, tuple[tuple[int, int], ...]]] = {
    "crop": ((32, 32), (96, 96)),
    "scale": ((320, 240), (640, 480), (800, 600)),
}

# Types Pillow decodes that are worth thumbnailing; anything else is 400 (spec: "cannot
# thumbnail the content").
THUMBNAILABLE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# C-S "Security considerations": do not thumbnail very large images (decompression bombs).
MAX_SOURCE_PIXELS: Final = 40_000_000
JPEG_QUALITY: Final = 80


class CannotThumbnail(Exception):
    """The content is not an image Pillow can read."""


class SourceTooLarge(Exception):
    """The image has too many pixels to thumbnail safely."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    data: bytes
    content_type: str  # image/jpeg or image/png


def choose_size(method: Method, width: int, height: int) -> tuple[int, int] | None:
    """The smallest recommended box of `method` at least `width` x `height`; None when the
    request is larger than all of them (the original is then served)."""
    for box in RECOMMENDED_SIZES[method]:
        if box[0] >= width and box[1] >= height:
            return box
    return None


def make_thumbnail(data: bytes, box: tuple[int, int], method: Method) -> Thumbnail | None:
    """A thumbnail of the image in `data` for `box`; None when the image already fits in the
    box (so the original is what the client should get: no upscaling)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        source_format = image.format
        if image.width * image.height > MAX_SOURCE_PIXELS:
            raise SourceTooLarge(f"{image.width}x{image.height}")
        if image.width <= box[0] and image.height <= box[1]:
            return None
        image.seek(0)  # the first frame of an animation
        image = ImageOps.exif_transpose(image)  # phones store rotation in EXIF
        if source_format == "JPEG":
            image = image.convert("RGB")
        elif image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")  # palettes and the like resize badly
        resized = _crop(image, box) if method == "crop" else _scale(image, box)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CannotThumbnail(str(exc)) from None
    return _encode(resized, as_jpeg=source_format == "JPEG")


def _scale(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """Fit inside the box, keeping the aspect ratio (never larger than the original)."""
    from PIL import Image

    factor = min(box[0] / image.width, box[1] / image.height, 1.0)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """Cover the box, keeping the aspect ratio, then cut the centre to the box's size; an
    image smaller than the box in one direction keeps that size there (no upscaling)."""
    from PIL import Image

    factor = min(max(box[0] / image.width, box[1] / image.height), 1.0)
    scaled_w = max(1, round(image.width * factor))
    scaled_h = max(1, round(image.height * factor))
    scaled = image.resize((scaled_w, scaled_h), Image.Resampling.LANCZOS)
    crop_w, crop_h = min(box[0], scaled_w), min(box[1], scaled_h)
    left, top = (scaled_w - crop_w) // 2, (scaled_h - crop_h) // 2
    return scaled.crop((left, top, left + crop_w, top + crop_h))


def _encode(image: Image.Image, *, as_jpeg: bool) -> Thumbnail:
    out = io.BytesIO()
    if as_jpeg:
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        return Thumbnail(out.getvalue(), "image/jpeg")
    image.save(out, "PNG", optimize=False)
    return Thumbnail(out.getvalue(), "image/png")
