"""The offline demo world: a procedural garment catalog, deterministic from a seed.

Everything the demo and the tests need is generated here, so nothing is fetched
from a model hub or a dataset server. ``build_world`` writes real PNG files and a
metadata CSV into a directory keyed by the world's config; rebuilding with the
same config gives byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from retrieval.catalog_schema import SCHEMA_FILE, CatalogSchema, NumericColumn, save_schema
from retrieval.data_home import default_data_dir
from training.render import render_garment

WORLD_VERSION = 1

CATEGORIES = ("t-shirt", "dress", "skirt", "trousers")
COLOURS = (
    "red", "maroon", "orange", "yellow", "green", "teal",
    "blue", "navy", "purple", "pink", "beige", "black",
)
PATTERNS = ("solid", "striped", "dotted", "checked")
SLEEVES = ("sleeveless", "short-sleeve", "long-sleeve")
LENGTHS = ("short", "knee-length", "long")
NECKLINES = ("crew-neck", "v-neck")
NONE = "none"

ATTRIBUTES = ("category", "colour", "pattern", "sleeve", "length", "neckline")
VALUES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES,
    "colour": COLOURS,
    "pattern": PATTERNS,
    "sleeve": SLEEVES,
    "length": LENGTHS,
    "neckline": NECKLINES,
}
APPLIES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES,
    "colour": CATEGORIES,
    "pattern": CATEGORIES,
    "sleeve": ("t-shirt", "dress"),
    "length": ("dress", "skirt", "trousers"),
    "neckline": ("t-shirt", "dress"),
}
BASE_PRICE = {"t-shirt": 19.0, "dress": 59.0, "skirt": 39.0, "trousers": 49.0}

CSV_COLUMNS = (
    "id", "file", "name", "category", "colour", "pattern", "sleeve", "length",
    "neckline", "price", "caption", "combo", "split",
)
SCHEMA_EDITS = CatalogSchema(numeric=[NumericColumn(name="price", unit="USD")], ignored={
    "combo": "the demo's attribute key, for training and benchmarks",
    "split": "the demo's train/held-out split, for training and benchmarks",
})
"""What the demo's ``schema.json`` says before ingest completes it: the edits a shop would make by hand."""


@dataclass(frozen=True)
class Combo:
    """One attribute combination; many catalog images share one."""

    category: str
    colour: str
    pattern: str
    sleeve: str = NONE
    length: str = NONE
    neckline: str = NONE

    @property
    def key(self) -> str:
        return "|".join(getattr(self, a) for a in ATTRIBUTES)

    @classmethod
    def from_key(cls, key: str) -> Combo:
        return cls(*key.split("|"))

    def get(self, attribute: str) -> str:
        return getattr(self, attribute)

    def replace(self, **changes: str) -> Combo:
        values = {a: self.get(a) for a in ATTRIBUTES} | changes
        return Combo(**values)

    def applicable(self) -> tuple[str, ...]:
        return tuple(a for a in ATTRIBUTES if self.category in APPLIES[a])


def all_combos() -> list[Combo]:
    """Every valid attribute combination, in a fixed order."""
    combos = []
    for category in CATEGORIES:
        axes = [VALUES[a] if category in APPLIES[a] else (NONE,) for a in ATTRIBUTES[1:]]
        for values in itertools.product(*axes):
            combos.append(Combo(category, *values))
    return combos


def caption(combo: Combo) -> str:
    """The canonical product caption, the words the backbone learns to read."""
    words = [combo.colour]
    if combo.pattern != "solid":
        words.append(combo.pattern)
    if combo.length != NONE:
        words.append(combo.length)
    if combo.sleeve != NONE:
        words.append(combo.sleeve)
    if combo.neckline != NONE:
        words.append(combo.neckline)
    words.append(combo.category)
    article = "an" if words[0][0] in "aeiou" else "a"
    return f"a photo of {article} " + " ".join(words)


def product_name(combo: Combo, item_id: int) -> str:
    pattern = "" if combo.pattern == "solid" else combo.pattern.capitalize() + " "
    return f"{combo.colour.capitalize()} {pattern}{combo.category.capitalize()} #{item_id:05d}"


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines the world's bytes."""

    seed: int = 0
    n_images: int = 10_000
    image_size: int = 64
    render_scale: int = 3
    heldout_pairs_per_category: int = 6
    version: int = WORLD_VERSION

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def heldout_triples(config: WorldConfig) -> set[tuple[str, str, str]]:
    """(category, colour, pattern) triples never used for training, only for evaluation."""
    rng = np.random.default_rng([config.seed, 7])
    held = set()
    pairs = list(itertools.product(COLOURS, PATTERNS))
    for category in CATEGORIES:
        for i in rng.choice(len(pairs), size=config.heldout_pairs_per_category, replace=False):
            held.add((category, *pairs[int(i)]))
    return held


def is_heldout(combo: Combo, held: set[tuple[str, str, str]]) -> bool:
    return (combo.category, combo.colour, combo.pattern) in held


@dataclass
class Item:
    """One row of the catalog's metadata CSV."""

    id: int
    file: str
    name: str
    combo: Combo
    price: float
    caption: str
    split: str

    def row(self) -> dict[str, str]:
        c = self.combo
        return {
            "id": str(self.id), "file": self.file, "name": self.name,
            "category": c.category, "colour": c.colour, "pattern": c.pattern,
            "sleeve": c.sleeve, "length": c.length, "neckline": c.neckline,
            "price": f"{self.price:.2f}", "caption": self.caption,
            "combo": c.key, "split": self.split,
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Item:
        return cls(
            id=int(row["id"]), file=row["file"], name=row["name"],
            combo=Combo.from_key(row["combo"]), price=float(row["price"]),
            caption=row["caption"], split=row["split"],
        )


@dataclass
class World:
    """A built world on disk: its directory, config and catalog items."""

    root: Path
    config: WorldConfig
    items: list[Item] = field(default_factory=list)

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def catalog_csv(self) -> Path:
        return self.root / "catalog.csv"

    def image_path(self, item: Item) -> Path:
        return self.root / item.file

    def split(self, name: str) -> list[Item]:
        return [it for it in self.items if it.split == name]


def plan_items(config: WorldConfig) -> list[Item]:
    """Assign every image an attribute combination, price and split, before any drawing."""
    combos = all_combos()
    held = heldout_triples(config)
    rng = np.random.default_rng([config.seed, 1])
    order = rng.permutation(len(combos))
    items = []
    for i in range(config.n_images):
        combo = combos[int(order[i % len(combos)])]
        price = BASE_PRICE[combo.category] * float(rng.uniform(0.6, 1.8))
        items.append(Item(
            id=i, file=f"images/{i:06d}.png", name=product_name(combo, i), combo=combo,
            price=float(np.floor(price)) + 0.99,
            caption=caption(combo), split="heldout" if is_heldout(combo, held) else "train",
        ))
    return items


def render_item_png(args: tuple[int, int, int, int, str]) -> bytes:
    """Render one catalog image to PNG bytes (a worker function for the pool)."""
    seed, item_id, size, scale, combo_key = args
    rng = np.random.default_rng([seed, 2, item_id])
    image = render_garment(Combo.from_key(combo_key), rng, size=size, scale=scale)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def world_dir(config: WorldConfig, data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / "worlds" / f"world-{config.digest()}"


def _render_jobs(config: WorldConfig, items: list[Item]) -> Iterator[tuple[int, int, int, int, str]]:
    for it in items:
        yield (config.seed, it.id, config.image_size, config.render_scale, it.combo.key)


def build_world(
    config: WorldConfig = WorldConfig(),
    data_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> World:
    """Build (or reuse) the demo catalog: PNG images, catalog.csv and world.json.

    >>> world = build_world(WorldConfig(n_images=200))  # doctest: +SKIP
    >>> len(world.items)                                # doctest: +SKIP
    200
    """
    root = world_dir(config, data_dir)
    manifest = root / "world.json"
    if manifest.exists():
        if not (root / SCHEMA_FILE).exists():
            save_schema(SCHEMA_EDITS, root / SCHEMA_FILE)
        return load_world(root)
    tmp = root.with_name(root.name + ".partial")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    items = plan_items(config)
    todo = [it for it in items if not (tmp / it.file).exists()]
    workers = workers or min(os.cpu_count() or 1, 4)
    jobs = _render_jobs(config, todo)
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="rendering catalog",
               unit="img", disable=not progress)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for item, png in zip(todo, pool.imap(render_item_png, jobs, chunksize=64), strict=False):
            path = tmp / item.file
            part = path.with_suffix(".tmp")
            part.write_bytes(png)
            part.replace(path)
            bar.update()
    bar.close()
    with open(tmp / "catalog.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for it in items:
            writer.writerow(it.row())
    held = sorted("|".join(t) for t in heldout_triples(config))
    summary = {
        "config": asdict(config),
        "n_items": len(items),
        "n_combos": len({it.combo.key for it in items}),
        "n_heldout_items": sum(it.split == "heldout" for it in items),
        "heldout_triples": held,
        "values": {a: list(v) for a, v in VALUES.items()},
    }
    (tmp / "world.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    save_schema(SCHEMA_EDITS, tmp / SCHEMA_FILE)
    if root.exists():
        raise FileExistsError(f"{root} exists without world.json; remove it and rebuild")
    tmp.replace(root)
    return load_world(root)


def load_world(root: Path) -> World:
    """Open a built world from its directory."""
    root = Path(root)
    manifest = root / "world.json"
    if not manifest.exists():
        raise FileNotFoundError(f"no demo world at {root} (run `circhat world build`)")
    config = WorldConfig(**json.loads(manifest.read_text())["config"])
    with open(root / "catalog.csv", newline="", encoding="utf-8") as f:
        items = [Item.from_row(row) for row in csv.DictReader(f)]
    return World(root=root, config=config, items=items)
