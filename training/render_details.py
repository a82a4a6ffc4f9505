"""Draws one garment of the fine-detail catalog: the demo's garment plus small details.

The garment (shape, colour, jitter, background) is the demo world's
(``training.render.render_garment``); the details are drawn on it before the
downsampling, in the garment's own unit coordinates, so they move and scale with
it: a small chest logo, a placket of buttons, a chest pocket, thin pinstripes and
contrast stitching along the hem and the cuffs. Each covers a few pixels of the
photo: legible to a careful eye, easy for a pooled embedding to blur.

>>> import numpy as np
>>> look = DetailLook("t-shirt", "navy", logo=True, buttons=True, pocket=True, pinstripes=True, contrast_stitching=True)
>>> render_detail_garment(look, np.random.default_rng(0), size=96).size
(96, 96)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from training.render import Polygon, ToPixels, garment_shapes, render_garment
from training.world import NONE, Combo

LIGHT_THREAD = (242, 238, 222)
DARK_THREAD = (38, 34, 30)
LUMINANCE = np.array([0.299, 0.587, 0.114])
DARK_BASE = 140.0


@dataclass(frozen=True)
class DetailLook:
    """What one photo shows: the coarse attributes and which details the garment has."""

    category: str
    colour: str
    logo: bool = False
    buttons: bool = False
    pocket: bool = False
    pinstripes: bool = False
    contrast_stitching: bool = False


@dataclass(frozen=True)
class Anchors:
    """Where a category's details sit, in the garment's unit square (x right, y down)."""

    logo: tuple[float, float]
    placket: tuple[float, float, float]
    pocket: tuple[float, float, float, float]
    hem: tuple[float, float, float]
    cuff: tuple[tuple[float, float], tuple[float, float]]


ANCHORS = {
    "t-shirt": Anchors(logo=(0.415, 0.345), placket=(0.5, 0.275, 0.5), pocket=(0.555, 0.305, 0.645, 0.405),
                       hem=(0.335, 0.665, 0.83), cuff=((0.172, 0.348), (0.252, 0.418))),
    "dress": Anchors(logo=(0.448, 0.245), placket=(0.5, 0.195, 0.37), pocket=(0.523, 0.215, 0.593, 0.295),
                     hem=(0.28, 0.72, 0.74), cuff=((0.242, 0.268), (0.322, 0.338))),
}
LOGO_HALF = 0.03
BUTTON_RADIUS = 0.012
BUTTONS = 4
PINSTRIPE_PERIOD = 0.045
DASH, GAP = 0.02, 0.012


def garment_of(look: DetailLook) -> Combo:
    """The demo garment the details are drawn on: short sleeves and a crew neck; dresses knee-length."""
    length = "knee-length" if look.category == "dress" else NONE
    return Combo(look.category, look.colour, "solid", "short-sleeve", length, "crew-neck")


def _shade(base: np.ndarray, towards: float, amount: float) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(base * (1 - amount) + towards * amount, 0, 255))


def _thread(base: np.ndarray) -> tuple[int, int, int]:
    """A colour that stands out on ``base``: light on dark garments, dark on light ones."""
    return LIGHT_THREAD if float(base @ LUMINANCE) < DARK_BASE else DARK_THREAD


def _dashes(start: tuple[float, float], end: tuple[float, float]) -> list[Polygon]:
    """Dash segments (unit coordinates) along the line from ``start`` to ``end``."""
    (x0, y0), (x1, y1) = start, end
    length = float(np.hypot(x1 - x0, y1 - y0))
    out, at = [], GAP / 2
    while at < length:
        stop = min(at + DASH, length)
        out.append([(x0 + (x1 - x0) * at / length, y0 + (y1 - y0) * at / length),
                    (x0 + (x1 - x0) * stop / length, y0 + (y1 - y0) * stop / length)])
        at = stop + GAP
    return out


def _pinstripes(image: Image.Image, mask: Image.Image, to_px: ToPixels, base: np.ndarray, scale: int) -> None:
    side = image.size[0]
    (x0, _), (x1, _) = to_px([(0.5, 0.5), (0.5 + PINSTRIPE_PERIOD, 0.5)])
    period = x1 - x0
    light = float(base @ LUMINANCE) < DARK_BASE
    ink = _shade(base, 255.0, 0.35) if light else _shade(base, 0.0, 0.3)
    layer = image.copy()
    draw = ImageDraw.Draw(layer)
    width = max(1, 2 * scale // 3)
    first = x0 - period * np.ceil(x0 / period)
    for x in np.arange(first, side, period):
        draw.rectangle([round(x), 0, round(x) + width - 1, side], fill=ink)
    image.paste(layer, (0, 0), mask)


Box = tuple[float, float, float, float]


def detail_boxes(category: str, detail: str) -> list[Box]:
    """Unit-square boxes (x0, y0, x1, y1) that one detail (a ``DetailLook`` field) is drawn within, before jitter."""
    a = ANCHORS[category]
    if detail == "logo":
        x, y = a.logo
        return [(x - LOGO_HALF, y - LOGO_HALF, x + LOGO_HALF, y + LOGO_HALF)]
    if detail == "buttons":
        x, top, bottom = a.placket
        return [(x - BUTTON_RADIUS, top, x + BUTTON_RADIUS, bottom)]
    if detail == "pocket":
        return [a.pocket]
    if detail == "contrast_stitching":
        left, right, y = a.hem
        (ax, ay), (bx, by) = a.cuff
        return [(left, y, right, y), (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)),
                (1 - max(ax, bx), min(ay, by), 1 - min(ax, bx), max(ay, by))]
    if detail == "pinstripes":
        points = [p for poly in garment_shapes(garment_of(DetailLook(category, "red")))[0] for p in poly]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return [(min(xs), min(ys), max(xs), max(ys))]
    raise ValueError(f"unknown detail {detail!r}")


def details_painter(look: DetailLook, scale: int):
    """The ``decorate`` step of ``render_garment`` that draws ``look``'s details."""
    anchors = ANCHORS[look.category]

    def paint(image: Image.Image, mask: Image.Image, to_px: ToPixels, base: np.ndarray) -> None:
        if look.pinstripes:
            _pinstripes(image, mask, to_px, base, scale)
        draw = ImageDraw.Draw(image)
        thread = _thread(base)
        line = max(1, 2 * scale // 3)
        if look.pocket:
            x0, y0, x1, y1 = anchors.pocket
            corners = to_px([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
            dark = float(base @ LUMINANCE) < DARK_BASE
            draw.polygon(corners, fill=_shade(base, 255.0 if dark else 0.0, 0.1))
            draw.line([*corners, corners[0]], fill=_shade(base, 255.0, 0.4) if dark else _shade(base, 0.0, 0.5),
                      width=line)
        if look.buttons:
            x, top, bottom = anchors.placket
            draw.line(to_px([(x, top), (x, bottom)]), fill=_shade(base, 0.0, 0.45), width=line)
            for y in np.linspace(top + 0.03, bottom - 0.02, BUTTONS):
                (cx, cy), (ex, _) = to_px([(x, float(y)), (x + BUTTON_RADIUS, float(y))])
                r = ex - cx
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=thread)
        if look.logo:
            x, y = anchors.logo
            draw.polygon(to_px([(x, y - LOGO_HALF), (x + LOGO_HALF, y), (x, y + LOGO_HALF), (x - LOGO_HALF, y)]),
                         fill=thread)
        if look.contrast_stitching:
            left, right, y = anchors.hem
            (ax, ay), (bx, by) = anchors.cuff
            seams = [((left, y), (right, y)), ((ax, ay), (bx, by)), ((1 - ax, ay), (1 - bx, by))]
            for start, end in seams:
                for dash in _dashes(start, end):
                    draw.line(to_px(dash), fill=thread, width=line)

    return paint


def render_detail_garment(look: DetailLook, rng: np.random.Generator, size: int = 96,
                          scale: int = 3) -> Image.Image:
    """Draw one product photo of ``look``; ``rng`` decides the jitter, exactly as for the demo's garments."""
    return render_garment(garment_of(look), rng, size, scale, decorate=details_painter(look, scale))
