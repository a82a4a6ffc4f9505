"""A generated corpus of bad and unusual image files, each with what circhat must do with it.

Shared by the decode, ingest and upload tests so all three paths meet the same
files. ``accept`` cases carry a check of the decoded RGB image; ``reject`` cases
carry a phrase the user-facing reason must contain.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, PngImagePlugin

from retrieval.image_io import MAX_BYTES

RED, GREEN, BLUE, WHITE = (220, 20, 20), (20, 200, 40), (20, 40, 220), (255, 255, 255)
PAYLOAD = b"<script>alert('polyglot')</script>"


@dataclass(frozen=True)
class Case:
    """One corpus file: its name on disk, its bytes, and the expected outcome."""

    kind: str
    filename: str
    data: bytes
    reject: str | None = None
    check: Callable[[Image.Image], bool] | None = None

    @property
    def accepted(self) -> bool:
        return self.reject is None


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header that claims ``width`` x ``height`` but carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _chunk(b"IEND", b"")


def _near(pixel, colour, tolerance: int = 40) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, colour, strict=True))


def _centre(image: Image.Image):
    return image.getpixel((image.width // 2, image.height // 2))


def _two_tone(size=(24, 16)) -> Image.Image:
    """Left half red, right half blue: lets a test see orientation and mirroring."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return image


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}
    return _save(_two_tone(), "JPEG", quality=95, exif=exif)


def _palette_transparent() -> bytes:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([*RED, *GREEN] + [0] * (256 * 3 - 6))
    image.paste(1, (8, 0, 16, 16))
    return _save(image, "PNG", transparency=0)


def _rgba_half_transparent() -> bytes:
    image = Image.new("RGBA", (16, 16), (*BLUE, 0))
    image.paste((*GREEN, 255), (8, 0, 16, 16))
    return _save(image, "PNG")


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (GREEN, RED, BLUE)]
    params = {"lossless": True} if fmt == "WEBP" else {}
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)


def _sixteen_bit() -> bytes:
    import numpy as np

    return _save(Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)), "PNG")


def _metadata_heavy_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * 200_000)
    info.add_text("GPS", "51.5N 0.1W")
    return _save(Image.new("RGB", (10, 10), GREEN), "PNG", pnginfo=info)


def _multipage_tiff() -> bytes:
    pages = [Image.new("RGB", (12, 12), GREEN), Image.new("RGB", (12, 12), RED)]
    return _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def corpus() -> list[Case]:
    """Every case, generated deterministically in memory (a few MB; one file is just over the byte limit)."""
    good_png = _save(Image.new("RGB", (32, 32), GREEN), "PNG")
    good_jpeg = _save(Image.new("RGB", (32, 32), GREEN), "JPEG", quality=95)
    return [
        Case("truncated PNG", "truncated.png", good_png[: len(good_png) // 2], reject="cannot decode"),
        Case("truncated JPEG", "truncated.jpg", good_jpeg[: len(good_jpeg) // 2], reject="cannot decode"),
        Case("zero-byte file", "empty.png", b"", reject="empty"),
        Case("PNG with a .jpg name", "really-png.jpg", good_png, check=lambda im: _near(_centre(im), GREEN, 2)),
        Case("text with an image name", "notes.png", b"just some text, not pixels\n", reject="not a supported"),
        Case("decompression bomb (100 Mpx header)", "bomb.png", png_claiming(10_000, 10_000),
             reject="decompression bomb"),
        Case("huge dimensions (30000 x 4)", "wide.png", png_claiming(30_000, 4), reject="over the 20000-pixel"),
        Case("over the byte limit", "huge-file.png", good_png + b"\0" * (MAX_BYTES + 1 - len(good_png)),
             reject="byte limit"),
        Case("CMYK JPEG", "cmyk.jpg", _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95),
             check=lambda im: _near(_centre(im), (255, 0, 0), 40)),
        Case("16-bit grayscale PNG", "gray16.png", _sixteen_bit(), check=lambda im: _centre(im) == (128, 128, 128)),
        Case("grayscale JPEG", "gray.jpg", _save(Image.new("L", (16, 16), 90), "JPEG", quality=95),
             check=lambda im: _near(_centre(im), (90, 90, 90), 3)),
        Case("palette PNG with transparency", "palette.png", _palette_transparent(),
             check=lambda im: im.getpixel((2, 8)) == WHITE and _near(im.getpixel((12, 8)), GREEN, 2)),
        Case("RGBA PNG, half transparent", "alpha.png", _rgba_half_transparent(),
             check=lambda im: im.getpixel((2, 8)) == WHITE and _near(im.getpixel((12, 8)), GREEN, 2)),
        Case("animated GIF", "animated.gif", _animated("GIF"), check=lambda im: _near(_centre(im), GREEN, 10)),
        Case("animated WebP", "animated.webp", _animated("WEBP"), check=lambda im: _near(_centre(im), GREEN, 10)),
        Case("multi-page TIFF", "pages.tiff", _multipage_tiff(), check=lambda im: _near(_centre(im), GREEN, 2)),
        Case("EXIF-rotated JPEG with GPS", "rotated.jpg", _exif_rotated(),
             check=lambda im: im.size == (16, 24) and _near(im.getpixel((8, 2)), RED, 40)
             and _near(im.getpixel((8, 21)), BLUE, 40)),
        Case("PNG with large text chunks", "chatty.png", _metadata_heavy_png(),
             check=lambda im: _near(_centre(im), GREEN, 2)),
        Case("SVG", "vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
             b'<script>alert(1)</script></svg>', reject="not a supported"),
        Case("PDF", "doc.png", _save(Image.new("RGB", (10, 10), GREEN), "PDF"), reject="not a supported"),
        Case("EPS", "drawing.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
             reject="not a supported"),
        Case("ICO (a format off the allowlist)", "favicon.png", _save(Image.new("RGB", (16, 16), GREEN), "ICO"),
             reject="not a supported"),
        Case("polyglot: PNG + appended HTML/JS", "polyglot.png", good_png + PAYLOAD,
             check=lambda im: _near(_centre(im), GREEN, 2)),
        Case("polyglot: HTML with a PNG inside", "page.png", b"<html>" + PAYLOAD + good_png,
             reject="not a supported"),
    ]
