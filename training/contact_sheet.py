"""A grid of sample catalog images with their attributes, for people to look at."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.world import World, WorldConfig, build_world


def contact_sheet(world: World, rows: int = 6, cols: int = 10, cell: int = 128, seed: int = 0) -> Image.Image:
    """Sample ``rows * cols`` items (fixed seed) and lay them out with their captions."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(world.items), size=min(rows * cols, len(world.items)), replace=False)
    caption_h = 44
    sheet = Image.new("RGB", (cols * cell, rows * (cell + caption_h)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    for n, index in enumerate(sorted(picks.tolist())):
        item = world.items[index]
        x, y = (n % cols) * cell, (n // cols) * (cell + caption_h)
        image = Image.open(world.image_path(item)).convert("RGB").resize((cell - 8, cell - 8), Image.NEAREST)
        sheet.paste(image, (x + 4, y + 4))
        text = item.caption.removeprefix("a photo of ").removeprefix("a ").removeprefix("an ")
        tag = " (held out)" if item.split == "heldout" else ""
        draw.multiline_text((x + 4, y + cell - 2), "\n".join(textwrap.wrap(text + tag, 22)[:3]),
                            fill="black", font=font, spacing=1)
    return sheet


def write_contact_sheet(out: Path, data_dir: Path | None = None, seed: int = 0, n_images: int = 10_000,
                        rows: int = 6, cols: int = 10) -> Path:
    """Build (or reuse) the demo world and save its contact sheet as a PNG at ``out``."""
    world = build_world(WorldConfig(seed=seed, n_images=n_images), data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(world, rows=rows, cols=cols).save(out)
    return out
