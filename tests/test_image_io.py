"""The sanitising decode path: every mode to RGB, orientation, first frame, and every rejection."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from retrieval.image_io import ImageRejected, load_image


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A valid-looking PNG that claims a huge size but carries a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_format_is_judged_by_content_and_metadata_is_stripped(tmp_path):
    image = Image.new("RGB", (12, 8), (10, 200, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(_save(image, "PNG", exif=exif, pnginfo=None))
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (12, 8)
    assert out.getpixel((3, 3)) == (10, 200, 30)
    assert not out.info and len(out.getexif()) == 0


def test_cmyk_jpeg_becomes_rgb():
    out = load_image(_save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    r, g, b = out.getpixel((8, 8))
    assert out.mode == "RGB" and r > 230 and g < 30 and b < 30


def test_16bit_grayscale_is_scaled_not_clipped():
    values = np.full((8, 8), 32896, dtype=np.uint16)
    values[:, 4:] = 65535
    data = _save(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = load_image(data)
    assert out.getpixel((1, 1)) == (128, 128, 128)
    assert out.getpixel((6, 1)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_composited_on_white(fmt):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))
    out = load_image(_save(image, fmt, transparency=0))
    assert out.getpixel((1, 1)) == (255, 0, 0)
    assert out.getpixel((6, 1)) == (255, 255, 255)


def test_la_and_rgba_alpha_composited_on_white():
    la = Image.new("LA", (4, 4), (0, 0))
    la.putpixel((0, 0), (0, 255))
    la.putpixel((1, 0), (0, 128))
    out = load_image(_save(la, "PNG"))
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((2, 2)) == (255, 255, 255)
    assert 120 <= out.getpixel((1, 0))[0] <= 135
    rgba = load_image(_save(Image.new("RGBA", (2, 2), (0, 0, 255, 0)), "WEBP", lossless=True))
    assert rgba.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(_save(image, "JPEG", exif=exif, quality=95))
    assert out.size == (20, 40)
    top, bottom = out.getpixel((10, 8)), out.getpixel((10, 32))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    assert len(out.getexif()) == 0


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert load_image(data).getpixel((4, 4)) == (255, 0, 0)


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (9_000, 9_000)])
def test_decompression_bomb_is_rejected(width, height):
    with pytest.raises(ImageRejected, match="decompression bomb"):
        load_image(_png_header_only(width, height))


@pytest.mark.parametrize("name,data", [
    ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'),
    ("svg-named.png", b'<svg xmlns="http://www.w3.org/2000/svg"/>'),
    ("notes.png", b"just some text, not an image\n" * 10),
    ("icon.png", _save(Image.new("RGB", (16, 16)), "ICO")),
])
def test_unsupported_content_is_rejected(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageRejected, match="not a supported image format") as err:
        load_image(path)
    assert err.value.source == str(path)


def test_truncated_file_is_rejected():
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _save(Image.fromarray(noise), "PNG")
    with pytest.raises(ImageRejected, match="cannot decode"):
        load_image(data[: len(data) // 2])


def test_size_limits_are_enforced(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_save(Image.new("RGB", (64, 64)), "PNG"))
    with pytest.raises(ImageRejected, match="over the 10-byte limit"):
        load_image(path, max_bytes=10)
    with pytest.raises(ImageRejected, match="pixel limit"):
        load_image(path, max_pixels=1000)
    with pytest.raises(ImageRejected, match="empty"):
        load_image(b"")
    with pytest.raises(ImageRejected, match="cannot read"):
        load_image(tmp_path / "missing.png")
