"""The one sanitising decode path for every image circhat reads: catalog ingest and user uploads.

Untrusted bytes go in; a fresh RGB image with no metadata comes out, or
``ImageRejected`` says why not. The format is recognised from the content (the
file name is never trusted); size limits on bytes, pixels and sides are checked
from the header before any pixel is decoded (so decompression bombs never
allocate), a per-image time limit bounds the wait, EXIF orientation is applied,
animated images give their first frame, and every colour mode ends as 8-bit RGB
with transparency composited on white.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MAX_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 20_000
DECODE_SECONDS = 10.0
BACKGROUND = (255, 255, 255)
_WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageRejected(ValueError):
    """An input that is not a safe, supported image; ``reason`` says why in plain words."""

    def __init__(self, reason: str, source: str | None = None):
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


def read_limited(path: Path, max_bytes: int = MAX_BYTES) -> bytes:
    """A file's bytes, refusing before reading anything larger than ``max_bytes``."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageRejected(f"cannot read file ({err.strerror or err})", str(path)) from None
    if size > max_bytes:
        raise ImageRejected(f"file is {size} bytes, over the {max_bytes}-byte limit", str(path))
    try:
        return path.read_bytes()
    except OSError as err:
        raise ImageRejected(f"cannot read file ({err.strerror or err})", str(path)) from None


_decoders = ThreadPoolExecutor(max_workers=4, thread_name_prefix="circhat-decode")


def load_image(source: str | Path | bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
               timeout: float | None = DECODE_SECONDS) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) into a clean RGB image, or raise ``ImageRejected``.

    ``timeout`` bounds how long the caller waits for one image; a decode still running then is abandoned
    (it finishes in the background, bounded by ``max_pixels``) and the image is rejected.
    """
    name = None if isinstance(source, bytes | bytearray) else str(source)
    data = bytes(source) if name is None else read_limited(Path(source), max_bytes)
    if len(data) > max_bytes:
        raise ImageRejected(f"file is {len(data)} bytes, over the {max_bytes}-byte limit", name)
    if not data:
        raise ImageRejected("file is empty", name)
    if timeout is None:
        return _checked_decode(data, max_pixels, name)
    future = _decoders.submit(_checked_decode, data, max_pixels, name)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise ImageRejected(f"decoding took longer than the {timeout:g} s limit", name) from None


def _checked_decode(data: bytes, max_pixels: int, name: str | None) -> Image.Image:
    try:
        return _decode(data, max_pixels)
    except ImageRejected as err:
        raise ImageRejected(err.reason, name) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected(f"decompression bomb refused ({err})", name) from None
    except MemoryError:
        raise ImageRejected("image too large to decode in memory", name) from None
    except Exception as err:
        raise ImageRejected(f"cannot decode image ({type(err).__name__}: {err})", name) from None


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected(f"not a supported image format (allowed: {', '.join(ALLOWED_FORMATS)})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected(f"image has no pixels ({width}x{height})")
    if max(width, height) > MAX_SIDE:
        raise ImageRejected(f"image is {width}x{height}: a side is over the {MAX_SIDE}-pixel limit")
    if width * height > max_pixels:
        raise ImageRejected(f"decompression bomb refused: {width}x{height} pixels is over the "
                            f"{max_pixels}-pixel limit")
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image.load()
    image = ImageOps.exif_transpose(image)
    rgb = _to_rgb(image)
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode, transparency composited on white."""
    mode = image.mode
    if mode in _WIDE_INTEGER_MODES:
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if mode != "I" or values.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(values / scale, 0, 255).round().astype(np.uint8), "L")
    elif mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(values * scale, 0, 255).round().astype(np.uint8), "L")
    if image.mode in ("P", "L", "1", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
