"""The fine-detail catalog: the demo's garments told apart by small details, written out as a shop's files.

The demo world's items differ in things a pooled embedding keeps (colour,
pattern, sleeve length); shops say theirs differ in small details. Here two
coarse attributes (category: t-shirt or dress; six colours) meet five details
(``training.render_details``): a small chest logo, a placket of buttons, a chest
pocket, thin pinstripes instead of a plain fabric, and contrast stitching along
the hem and cuffs. Every combination (384) is drawn several times with the demo's
jitter and backgrounds. The output is a folder of photos, ``catalog.csv`` and a
``schema.json`` holding only the edits a shop would make (price is in USD);
schema inference reads the rest, words included, from the CSV and the shipped
lexicon, exactly as for a shop's catalog. Deterministic from the config; the demo
world's files are untouched (its config and digest are separate).

>>> write_detail_catalog(Path("/tmp/details"), DetailWorldConfig(n_images=400), progress=False)  # doctest: +SKIP
PosixPath('/tmp/details/catalog.csv')
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from retrieval.catalog_schema import SCHEMA_FILE, CatalogSchema, NumericColumn, save_schema
from retrieval.data_home import default_data_dir
from training.generated_files import config_marker, replace_file
from training.render_details import DetailLook, render_detail_garment

DETAIL_WORLD_VERSION = 1
CSV_NAME = "catalog.csv"
MARKER_NAME = ".detail-catalog.json"

CATEGORIES = ("t-shirt", "dress")
COLOURS = ("red", "navy", "green", "black", "beige", "blue")
DETAILS: dict[str, tuple[str, str, str]] = {
    "pattern": ("solid", "pinstriped", "pinstripes"),
    "logo": ("no logo", "logo", "logo"),
    "buttons": ("no buttons", "buttons", "buttons"),
    "pocket": ("no pocket", "chest pocket", "pocket"),
    "stitching": ("tonal", "contrast", "contrast_stitching"),
}
"""Each detail attribute (a CSV column): (the value without the detail, the value with it, ``DetailLook``'s field).
The values name themselves, so that an instruction built from a value's name ("make it no pocket") still says
which detail it is about; yes/no columns would all read "make it no"."""
DETAIL_ATTRIBUTES = tuple(DETAILS)
COLUMNS = ("id", "file", "name", "category", "colour", *DETAIL_ATTRIBUTES, "price")
BASE_PRICE = {"t-shirt": 24.0, "dress": 64.0}
NAME_WORDS = {"logo": "Logo", "buttons": "Henley", "pocket": "Pocket", "pattern": "Pinstripe",
              "stitching": "Contrast-Stitch"}
SCHEMA_EDITS = CatalogSchema(numeric=[NumericColumn(name="price", unit="USD")])
"""What the catalog's ``schema.json`` says before inference completes it: the edits a shop would make by hand."""


@dataclass(frozen=True)
class DetailWorldConfig:
    """Everything that determines the catalog's bytes."""

    seed: int = 0
    n_images: int = 3000
    image_size: int = 96
    render_scale: int = 3
    version: int = DETAIL_WORLD_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DetailItem:
    """One row of ``catalog.csv``: an image of one look."""

    id: int
    file: str
    look: DetailLook
    price: float

    @property
    def name(self) -> str:
        words = [NAME_WORDS[a] for a in DETAIL_ATTRIBUTES if has(self.look, a)]
        return " ".join([self.look.colour.capitalize(), *words, self.look.category.capitalize(), f"#{self.id:05d}"])

    def row(self) -> dict[str, str]:
        look = self.look
        return {"id": str(self.id), "file": self.file, "name": self.name, "category": look.category,
                "colour": look.colour, **{a: detail_value(look, a) for a in DETAIL_ATTRIBUTES},
                "price": f"{self.price:.2f}"}


def has(look: DetailLook, attribute: str) -> bool:
    return bool(getattr(look, DETAILS[attribute][2]))


def detail_value(look: DetailLook, attribute: str) -> str:
    """The CSV value of one detail attribute of ``look``."""
    return DETAILS[attribute][1] if has(look, attribute) else DETAILS[attribute][0]


def all_looks() -> list[DetailLook]:
    """Every combination of category, colour and the five details, in a fixed order."""
    fields = [field for _, _, field in DETAILS.values()]
    return [DetailLook(category, colour, **dict(zip(fields, flags, strict=True)))
            for category, colour, *flags in itertools.product(CATEGORIES, COLOURS, *[(False, True)] * len(fields))]


def plan_detail_items(config: DetailWorldConfig) -> list[DetailItem]:
    """Every image's look and price before any drawing: each combination in turn, in a seeded order."""
    looks = all_looks()
    rng = np.random.default_rng([config.seed, 1])
    order = rng.permutation(len(looks))
    items = []
    for i in range(config.n_images):
        look = looks[int(order[i % len(looks)])]
        price = BASE_PRICE[look.category] * float(rng.uniform(0.7, 1.6))
        items.append(DetailItem(i, f"images/{i:06d}.png", look, float(np.floor(price)) + 0.99))
    return items


def render_detail_png(config: DetailWorldConfig, item: DetailItem) -> bytes:
    """One catalog image as PNG bytes; the same config and item always give the same bytes."""
    rng = np.random.default_rng([config.seed, 2, item.id])
    image = render_detail_garment(item.look, rng, config.image_size, config.render_scale)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def catalog_csv_text(items: list[DetailItem]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerow(item.row())
    return buffer.getvalue()


def detail_catalog_dir(config: DetailWorldConfig, data_dir: Path | None = None) -> Path:
    """Where the catalog of ``config`` is cached: ``<data dir>/worlds/details-<config digest>``."""
    return (data_dir or default_data_dir()) / "worlds" / f"details-{config.digest()}"


def write_detail_catalog(folder: Path, config: DetailWorldConfig = DetailWorldConfig(),
                         progress: bool = True) -> Path:
    """Write images/, catalog.csv and schema.json into ``folder``; returns the CSV's path.

    Images are written atomically and the CSV last, so a killed run is simply redone; a rerun with the same
    config over complete output draws nothing. A ``schema.json`` already there (a shop's edits) is kept.
    """
    folder = Path(folder)
    csv_path, marker = folder / CSV_NAME, folder / MARKER_NAME
    items = plan_detail_items(config)
    text = catalog_csv_text(items)
    if (marker.exists() and marker.read_text() == config_marker(config) and csv_path.exists()
            and csv_path.read_text(encoding="utf-8") == text and all((folder / it.file).exists() for it in items)):
        return csv_path
    (folder / "images").mkdir(parents=True, exist_ok=True)
    csv_path.unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    for item in tqdm(items, desc="rendering fine-detail catalog", unit="img", disable=not progress):
        replace_file(folder / item.file, render_detail_png(config, item))
    if not (folder / SCHEMA_FILE).exists():
        save_schema(SCHEMA_EDITS, folder / SCHEMA_FILE)
    replace_file(marker, config_marker(config).encode())
    replace_file(csv_path, text.encode("utf-8"))
    return csv_path
