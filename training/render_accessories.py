"""Draws one bag, shoe or hat photo of the second catalog from its attributes, with random jitter.

Shapes are polygons and polylines in a unit square, scaled by the variant's size
(S < M < L), then jittered (shift, a few degrees of rotation, a few percent of
zoom) and mapped to pixels. The material is a texture inside the object
(leather: pebbled grain and a sheen; canvas: a woven grid; suede: fuzzy noise;
straw: diagonal hatching). The image is drawn at ``scale`` times its size and
box-downsampled, which keeps textures and buckles legible at 64 px.

>>> import numpy as np
>>> look = Look("Bag", "Tan", "M", "Suede", strap="Long", buckle="Yes")
>>> render_accessory(look, np.random.default_rng(0)).size
(64, 64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = {
    "Black": (32, 31, 33), "Brown": (104, 62, 34), "Tan": (198, 152, 98), "Olive": (104, 112, 44),
    "Burgundy": (112, 22, 48), "Cream": (238, 225, 188), "Navy": (24, 36, 94), "Red": (202, 32, 36),
}
METAL = (206, 172, 72)
BACKGROUNDS = ((226, 232, 240), (238, 232, 226), (232, 228, 238), (222, 230, 234), (242, 240, 236))
SIZE_SCALE = {"S": 0.66, "M": 0.83, "L": 1.0}
PIVOT = (0.5, 0.55)

Points = list[tuple[float, float]]


@dataclass(frozen=True)
class Look:
    """What a photo shows: the attribute values of one variant, as the shop's CSV writes them."""

    category: str
    colour: str
    size: str
    material: str
    strap: str = ""
    heel_height: str = ""
    toe_shape: str = ""
    buckle: str = ""
    brim: str = ""


@dataclass(frozen=True)
class Part:
    """One drawn piece: ``role`` picks its fill, ``width`` > 0 makes it a stroked polyline."""

    role: str
    points: Points
    width: float = 0.0


def _ellipse(cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 2 * math.pi,
             n: int = 28) -> Points:
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in np.linspace(a0, a1, n)]


def _rect_loop(cx: float, cy: float, w: float, h: float) -> Points:
    x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def _bag_parts(look: Look) -> list[Part]:
    parts = []
    if look.strap == "Long":
        parts.append(Part("strap", _ellipse(0.5, 0.44, 0.245, 0.36, math.pi, 2 * math.pi, 30), 0.024))
    elif look.strap == "Short":
        parts.append(Part("strap", _ellipse(0.5, 0.44, 0.14, 0.15, math.pi, 2 * math.pi, 20), 0.04))
    parts.append(Part("body", [(0.25, 0.42), (0.75, 0.42), (0.80, 0.80), (0.77, 0.84), (0.23, 0.84), (0.20, 0.80)]))
    parts.append(Part("shade", [(0.25, 0.42), (0.75, 0.42), (0.71, 0.53), (0.5, 0.61), (0.29, 0.53)]))
    if look.buckle == "Yes":
        parts.append(Part("metal", _rect_loop(0.5, 0.60, 0.13, 0.09), 0.024))
    return parts


def _shoe_parts(look: Look) -> list[Part]:
    g = 0.74
    h = {"Flat": 0.0, "Low": 0.08, "High": 0.2}[look.heel_height]
    xb = 0.16
    if look.toe_shape == "Pointed":
        toe = [(0.78, g - 0.03), (0.91, g - 0.045), (0.76, g - 0.13)]
    elif look.toe_shape == "Square":
        toe = [(0.85, g - 0.03), (0.85, g - 0.155), (0.77, g - 0.16)]
    else:
        toe = _ellipse(0.76, g - 0.09, 0.10, 0.07, math.pi / 2, -math.pi / 2, 14)
    sole_top = g - h - 0.03
    top = sole_top - 0.15
    heel_front = xb + (0.07 if look.heel_height == "High" else 0.10)
    arch = (0.32, sole_top + 0.5 * h)
    throat = (0.52, g - 0.13 - 0.5 * h)
    upper = [(xb + 0.01, top), (xb, sole_top), arch, (0.58, g - 0.03), *toe, throat]
    collar = [throat, (xb + 0.01, top), (xb + 0.04, top + 0.05), (throat[0] - 0.06, throat[1] + 0.035)]
    if look.heel_height == "High":
        heel = [(xb, sole_top), (heel_front, sole_top), (xb + 0.035, g), (xb + 0.015, g)]
    elif look.heel_height == "Low":
        heel = [(xb, sole_top), (heel_front, sole_top), (xb + 0.09, g), (xb + 0.01, g)]
    else:
        heel = [(xb - 0.005, g - 0.035), (0.30, g - 0.035), (0.30, g), (xb + 0.005, g)]
    lift = 0.012
    sole = [(heel_front, sole_top + lift), (arch[0], arch[1] + lift), (0.58, g - 0.03 + lift),
            (toe[0][0], toe[0][1] + lift)]
    parts = [Part("body", upper), Part("dark", collar), Part("shade", heel), Part("dark", sole, 0.026)]
    if look.buckle == "Yes":
        y = top + 0.07
        parts.append(Part("shade", [(0.32, y), (0.50, g - 0.12 - 0.5 * h)], 0.03))
        parts.append(Part("metal", _rect_loop(0.32, y, 0.07, 0.065), 0.02))
    return parts


def _hat_parts(look: Look) -> list[Part]:
    rx, ry = (0.43, 0.10) if look.brim == "Wide" else (0.27, 0.055)
    crown = [(0.33, 0.62), (0.35, 0.37), (0.42, 0.30), (0.5, 0.33), (0.58, 0.30), (0.65, 0.37), (0.67, 0.62)]
    band = [(0.335, 0.53), (0.665, 0.53), (0.667, 0.60), (0.333, 0.60)]
    return [Part("body", _ellipse(0.5, 0.62, rx, ry)), Part("body", crown), Part("band", band)]


def accessory_parts(look: Look) -> list[Part]:
    """The pieces of one object, back to front, in unit coordinates before size and jitter."""
    return {"Bag": _bag_parts, "Shoe": _shoe_parts, "Hat": _hat_parts}[look.category](look)


def _bottom(look: Look) -> float:
    if look.category == "Hat":
        return 0.62 + (0.10 if look.brim == "Wide" else 0.055)
    return 0.84 if look.category == "Bag" else 0.74


OFFSETS = 30


@lru_cache(maxsize=16)
def _pattern(material: str, side: int, scale: int) -> Image.Image:
    """How far each pixel of a texture moves from the base colour (0..255), with room to crop a random offset."""
    n = side + OFFSETS
    yy, xx = (a.astype(np.float32) for a in np.mgrid[0:n, 0:n])
    if material == "Leather":
        p = 5.0 * scale
        row = np.floor(yy / p)
        dx = (xx + (row % 2) * p / 2) % p - p / 2
        dy = yy % p - p / 2
        amount = (dx * dx + dy * dy < (0.28 * p) ** 2) * 0.16
    elif material == "Canvas":
        p, w = 3 * scale, scale
        amount = ((xx % p < w) | (yy % p < w)) * 0.22
    else:
        p = 4 * scale
        amount = ((xx + yy) % p < 1.5 * scale) * 0.30 + ((xx - yy + 3 * n) % (2 * p) < scale) * 0.12
    return Image.fromarray(np.round(amount * 255).astype(np.uint8), "L")


@lru_cache(maxsize=8)
def _sheen(side: int) -> Image.Image:
    yy, xx = np.mgrid[0:side, 0:side]
    return Image.fromarray(np.round(np.clip(1.0 - (xx + yy) / side, 0, 1) * 0.16 * 255).astype(np.uint8), "L")


def material_fill(material: str, base: np.ndarray, side: int, scale: int, rng: np.random.Generator) -> Image.Image:
    """A square of the material in colour ``base``, ``side`` pixels a side: dark colours get lighter marks."""
    ox, oy = (int(v) for v in rng.integers(0, OFFSETS, size=2))
    if material == "Suede":
        base = base * 0.96
        cells = -(-side // scale)
        fuzz = np.clip(0.10 + 0.09 * rng.normal(0.0, 1.0, size=(cells, cells)), 0, 0.4)
        amount = Image.fromarray(np.round(fuzz * 255).astype(np.uint8), "L")
        amount = amount.resize((cells * scale, cells * scale), Image.Resampling.NEAREST).crop((0, 0, side, side))
    else:
        amount = _pattern(material, side, scale).crop((ox, oy, ox + side, oy + side))
    mark = (255, 255, 255) if base.mean() < 100 else (0, 0, 0)
    fill = Image.composite(Image.new("RGB", (side, side), mark), _solid(base, side), amount)
    if material == "Leather":
        fill = Image.composite(Image.new("RGB", (side, side), (255, 255, 255)), fill, _sheen(side))
    return fill


def _background(side: int, rng: np.random.Generator) -> Image.Image:
    base = np.array(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], dtype=np.float32) + rng.normal(0, 4, size=3)
    kind = int(rng.integers(3))
    ys = np.arange(side, dtype=np.float32)[:, None, None]
    if kind == 0:
        pixels = base + (ys / side - 0.5) * rng.uniform(-14, -4)
    elif kind == 1:
        pixels = base - (ys > side * rng.uniform(0.7, 0.85)) * rng.uniform(8, 16)
    else:
        pixels = base + rng.normal(0, 4, size=(side, side, 1)).astype(np.float32)
    column = np.clip(pixels, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(column, (side, side, 3))), "RGB")


def _solid(colour: np.ndarray | tuple[int, ...], side: int) -> Image.Image:
    return Image.new("RGB", (side, side), tuple(int(v) for v in np.clip(colour, 0, 255)))


def render_accessory(look: Look, rng: np.random.Generator, size: int = 64, scale: int = 3) -> Image.Image:
    """Draw one product photo of ``look``; ``rng`` decides the jitter (position, angle, shade, background)."""
    side = size * scale
    s = SIZE_SCALE[look.size] * rng.uniform(0.965, 1.035)
    angle = math.radians(rng.uniform(-4.0, 4.0))
    dx, dy = rng.uniform(-0.04, 0.04, size=2)
    cos, sin = math.cos(angle), math.sin(angle)
    px0, py0 = PIVOT

    def to_px(points: Points) -> list[tuple[float, float]]:
        out = []
        for x, y in points:
            u, v = (x - px0) * s, (y - py0) * s
            out.append(((px0 + dx + u * cos - v * sin) * side, (py0 + dy + u * sin + v * cos) * side))
        return out

    base = np.array(RGB[look.colour], dtype=np.float32) * rng.uniform(0.93, 1.07) + rng.normal(0, 5, size=3)
    base = np.clip(base, 0, 255).astype(np.float32)
    texture = material_fill(look.material, base, side, scale, rng)
    dark = base.mean() < 100
    shade = 0.82 if not dark else 0.85
    fills = {
        "body": lambda: texture,
        "strap": lambda: texture.point(lambda v: round(v * 0.9)),
        "shade": lambda: texture.point(lambda v: min(255, round(v * shade + (20 if dark else 0)))),
        "dark": lambda: _solid(base * 0.35 if not dark else base * 0.5 + 40, side),
        "band": lambda: _solid(base * 0.45 if not dark else base * 0.55, side),
        "metal": lambda: _solid(np.array(METAL) * metal, side),
    }
    metal = rng.uniform(0.92, 1.05)
    made: dict[str, Image.Image] = {}
    edge = tuple(int(v) for v in (base * 0.5 if not dark else base * 0.6 + 10))

    image = _background(side, rng)
    shadow = Image.new("L", (side, side), 0)
    (sx, sy), = to_px([(0.5, _bottom(look) + 0.01)])
    rx, ry = 0.34 * s * side, 0.035 * s * side
    ImageDraw.Draw(shadow).ellipse([sx - rx, sy - ry, sx + rx, sy + ry], fill=70)
    shadow = shadow.filter(ImageFilter.BoxBlur(scale * 2))
    image.paste(_solid((0, 0, 0), side), (0, 0), shadow)

    outline = ImageDraw.Draw(image)
    for part in accessory_parts(look):
        points = to_px(part.points)
        mask = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(mask)
        if part.width:
            draw.line(points, fill=255, width=max(1, round(part.width * s * side)), joint="curve")
        else:
            draw.polygon(points, fill=255)
        if part.role not in made:
            made[part.role] = fills[part.role]()
        image.paste(made[part.role], (0, 0), mask)
        if not part.width and part.role != "dark":
            outline.line([*points, points[0]], fill=edge, width=scale)
    return image.resize((size, size), Image.Resampling.BOX)


def render_swatch(colour: str, material: str, rng: np.random.Generator, size: int = 64, scale: int = 3) -> Image.Image:
    """A close-up of the material, the extra product image some listings carry beside their variants."""
    side = size * scale
    base = np.array(RGB[colour], dtype=np.float32) * rng.uniform(0.95, 1.05)
    image = material_fill(material, base, side, scale, rng)
    seam = side * rng.uniform(0.25, 0.75)
    ImageDraw.Draw(image).line([(0, seam), (side, seam)], fill=tuple(int(v) for v in base * 0.6), width=scale)
    return image.resize((size, size), Image.Resampling.BOX)
