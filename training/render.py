"""Draws one garment image from its attributes, with random jitter.

Shapes are written in a unit square and mapped to pixels after a random shift
and scale; the image is drawn at ``scale`` times its size and downsampled, which
keeps thin stripes and dots legible at 64 px.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from training.world import Combo

RGB = {
    "red": (205, 30, 35), "maroon": (120, 20, 40), "orange": (240, 130, 20),
    "yellow": (240, 210, 40), "green": (40, 150, 60), "teal": (20, 140, 140),
    "blue": (40, 90, 220), "navy": (20, 30, 95), "purple": (120, 50, 160),
    "pink": (240, 130, 180), "beige": (215, 190, 150), "black": (25, 25, 25),
}
BACKGROUNDS = ((236, 236, 232), (225, 228, 235), (240, 234, 225), (215, 215, 215), (232, 240, 232))

Polygon = list[tuple[float, float]]
ToPixels = Callable[[Polygon], list[tuple[float, float]]]
Decorate = Callable[[Image.Image, Image.Image, ToPixels, np.ndarray], None]
"""Draws extra parts on a garment before downsampling: (image, garment mask, unit -> pixel mapping, base colour)."""


def _mirror(poly: Polygon) -> Polygon:
    return [(1.0 - x, y) for x, y in poly]


def _sleeves(kind: str, sx: float, sy: float) -> list[Polygon]:
    """Left and right sleeves hanging from the shoulder point (sx, sy)."""
    if kind == "short-sleeve":
        left = [(sx, sy), (sx - 0.15, sy + 0.17), (sx - 0.07, sy + 0.24), (sx + 0.02, sy + 0.14)]
    elif kind == "long-sleeve":
        left = [(sx, sy), (sx - 0.19, sy + 0.55), (sx - 0.10, sy + 0.58), (sx + 0.03, sy + 0.16)]
    else:
        return []
    return [left, _mirror(left)]


def _neck_cut(kind: str, top: float) -> tuple[str, Polygon]:
    if kind == "v-neck":
        return "polygon", [(0.42, top - 0.01), (0.58, top - 0.01), (0.5, top + 0.17)]
    return "ellipse", [(0.43, top - 0.06), (0.57, top + 0.07)]


def garment_shapes(combo: Combo) -> tuple[list[Polygon], list[tuple[str, Polygon]]]:
    """The filled polygons and the cut-outs (necklines) of a garment, in unit coordinates."""
    hem = {"short": 0.0, "knee-length": 1.0, "long": 2.0}.get(combo.length, 1.0)
    if combo.category == "t-shirt":
        torso = [(0.30, 0.20), (0.70, 0.20), (0.68, 0.86), (0.32, 0.86)]
        if combo.sleeve == "sleeveless":
            torso = [(0.35, 0.18), (0.65, 0.18), (0.69, 0.34), (0.68, 0.86), (0.32, 0.86), (0.31, 0.34)]
        polys = [torso, *_sleeves(combo.sleeve, 0.31, 0.20)]
        return polys, [_neck_cut(combo.neckline, 0.20)]
    if combo.category == "dress":
        y = 0.62 + 0.15 * hem
        half = 0.22 + 0.04 * hem
        body = [(0.37, 0.12), (0.63, 0.12), (0.61, 0.42), (0.5 + half, y), (0.5 - half, y), (0.39, 0.42)]
        polys = [body, *_sleeves(combo.sleeve, 0.38, 0.12)]
        return polys, [_neck_cut(combo.neckline, 0.12)]
    if combo.category == "skirt":
        y = 0.50 + 0.20 * hem
        half = 0.24 + 0.04 * hem
        return [[(0.36, 0.18), (0.64, 0.18), (0.5 + half, y), (0.5 - half, y)]], []
    y = 0.42 + 0.25 * hem
    left = [(0.33, 0.10), (0.5, 0.10), (0.5, 0.34), (0.485, y), (0.31 - 0.02 * hem, y)]
    return [left, _mirror(left)], []


def _mix(colour: np.ndarray, other: float, amount: float) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(colour * (1 - amount) + other * amount, 0, 255))


def _pattern_fill(pattern: str, base: np.ndarray, side: int, rng: np.random.Generator) -> Image.Image:
    """A square of fabric: the base colour with the pattern drawn over it."""
    fill = Image.new("RGB", (side, side), tuple(int(v) for v in base))
    if pattern == "solid":
        return fill
    light = base.mean() < 110
    ink = _mix(base, 255.0, 0.65) if light else _mix(base, 0.0, 0.55)
    draw = ImageDraw.Draw(fill)
    step = side // 11
    phase = int(rng.integers(0, step))
    if pattern == "striped":
        for y in range(-step + phase, side, step):
            draw.rectangle([0, y, side, y + step // 2 - 1], fill=ink)
    elif pattern == "dotted":
        r = step // 4
        for row, y in enumerate(range(phase, side + step, step)):
            shift = (step // 2) * (row % 2)
            for x in range(phase + shift - step, side + step, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    elif pattern == "checked":
        w = max(2, step // 3)
        for v in range(phase - step, side + step, step):
            draw.rectangle([v, 0, v + w, side], fill=ink)
            draw.rectangle([0, v, side, v + w], fill=ink)
    return fill


def _background(side: int, rng: np.random.Generator) -> Image.Image:
    base = np.array(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], dtype=np.float32)
    base = base + rng.normal(0, 6, size=3)
    kind = int(rng.integers(3))
    if kind == 0:
        ys = np.linspace(-1, 1, side, dtype=np.float32)[:, None, None]
        pixels = base + ys * rng.uniform(6, 16)
        pixels = np.broadcast_to(pixels, (side, side, 3))
    elif kind == 1:
        pixels = base + rng.normal(0, 7, size=(side, side, 1)).astype(np.float32)
    else:
        xs = np.arange(side)[None, :] + np.arange(side)[:, None]
        period = int(rng.integers(6, 14))
        pixels = base + ((xs // period) % 2)[..., None] * rng.uniform(-10, -4)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def render_garment(combo: Combo, rng: np.random.Generator, size: int = 64, scale: int = 3,
                   decorate: Decorate | None = None) -> Image.Image:
    """Draw one product photo of ``combo``; ``rng`` decides the jitter; ``decorate`` adds details (none in the demo)."""
    side = size * scale
    zoom = rng.uniform(0.82, 1.02)
    dx, dy = rng.uniform(-0.07, 0.07, size=2)

    def to_px(poly: Polygon) -> list[tuple[float, float]]:
        return [(((x - 0.5) * zoom + 0.5 + dx) * side, ((y - 0.5) * zoom + 0.5 + dy) * side) for x, y in poly]

    polys, cuts = garment_shapes(combo)
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    for poly in polys:
        draw.polygon(to_px(poly), fill=255)
    for kind, poly in cuts:
        if kind == "ellipse":
            draw.ellipse(to_px(poly), fill=0)
        else:
            draw.polygon(to_px(poly), fill=0)

    base = np.array(RGB[combo.colour], dtype=np.float64) * rng.uniform(0.9, 1.1) + rng.normal(0, 6, size=3)
    base = np.clip(base, 0, 255)
    image = _background(side, rng)
    image.paste(_pattern_fill(combo.pattern, base, side, rng), (0, 0), mask)
    outline = ImageDraw.Draw(image)
    edge = _mix(base, 0.0, 0.5)
    for poly in polys:
        px = to_px(poly)
        outline.line([*px, px[0]], fill=edge, width=scale)
    if decorate is not None:
        decorate(image, mask, to_px, base)
    return image.resize((size, size), Image.Resampling.BOX)
