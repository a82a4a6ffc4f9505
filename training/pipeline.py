"""The demo's build: the demo world written out as a folder of photos and ``catalog.csv``, then built by
``training.build.CatalogBuild`` exactly as a shop's catalog is.

``circhat demo``, ``circhat world build``, the model commands without ``--db`` and the learning benchmark all
come here; a rerun with the same seed and sizes renders and trains nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from retrieval.store import DEFAULT_TABLE
from training.build import BuildConfig, BuildReport, CatalogBuild
from training.registry import Registry
from training.simulated_customers import ShopAssistantFactory
from training.world import World, WorldConfig, build_world, world_dir

DEMO_TRIPLETS = 5000
DEMO_PAIRS = 50_000
DEMO_DB = "catalog.lancedb"
DEMO_WORK = "build"


def demo_config(seed: int = 0, pairs: int = DEMO_PAIRS) -> BuildConfig:
    """The demo's recipe: the build defaults with its backbone budget, 5000 triplets and no text-only ones.

    50k backbone pairs (not the composed-retrieval benchmark's 100k) so that a first ``circhat demo`` has its page
    up within five minutes on two cores. The demo world has image triplets enough: at 5000 of them, text-only ones
    move 2-attribute held-out R@1 by less than two points (``Stage2Config``), so it trains on its images alone.
    ``python -m benchmarks.build``'s demo row adds 20,000 text-only triplets, so it is close to what the demo
    serves, not the same."""
    return BuildConfig(backbone=replace(BuildConfig().backbone, pairs=pairs, seed=seed), triplets=DEMO_TRIPLETS,
                       text_triplets=0, seed=seed)


@dataclass
class DemoBuild:
    """The demo world and its catalog build (prepared: backbone trained, store ingested)."""

    world: World
    build: CatalogBuild

    @property
    def db(self) -> Path:
        return self.build.db


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def demo_registry(data_dir: Path | None) -> Registry:
    """The registry the demo registers its version in: ``<data dir>/models``."""
    return Registry(Path(data_dir) / "models" if data_dir else None)


def prepare_demo(data_dir: Path | None, seed: int, n_images: int, pairs: int | None = None,
                 say: Callable[[str], None] = _stderr, progress: bool = True,
                 registry: Registry | None = None, config: BuildConfig | None = None,
                 shop_assistant: ShopAssistantFactory | None = None) -> DemoBuild:
    """Render (or reuse) the demo world and prepare its build: backbone and ingested store, saying each step.

    ``config`` replaces the demo's recipe (``demo_config``; then ``pairs`` is unused), for smaller test budgets;
    ``shop_assistant`` lets the build's simulated shoppers run (``training.build.build_catalog``)."""
    world_config = WorldConfig(seed=seed, n_images=n_images)
    cached = (world_dir(world_config, data_dir) / "world.json").exists()
    say(f"[world] demo world ({n_images} images, seed {seed}): {'cached' if cached else 'rendering'}")
    start = time.perf_counter()
    world = build_world(world_config, data_dir, progress=progress)
    say(f"      {world.root} ({time.perf_counter() - start:.1f}s)")
    build = CatalogBuild(world.root, world.catalog_csv, world.root / DEMO_DB, DEFAULT_TABLE,
                         config=config or demo_config(seed, pairs or DEMO_PAIRS), work=world.root / DEMO_WORK,
                         registry=registry or demo_registry(data_dir), shop_assistant=shop_assistant, say=say,
                         progress=progress)
    build.prepare()
    return DemoBuild(world, build)


def build_demo(data_dir: Path | None, seed: int, n_images: int, pairs: int | None = None,
               say: Callable[[str], None] = _stderr, progress: bool = True,
               registry: Registry | None = None, config: BuildConfig | None = None,
               shop_assistant: ShopAssistantFactory | None = None) -> tuple[DemoBuild, BuildReport, Path]:
    """The whole demo build (cached): (the build, its report, the folder of its registered composer)."""
    registry = registry or demo_registry(data_dir)
    built = prepare_demo(data_dir, seed, n_images, pairs, say, progress, registry, config, shop_assistant)
    report = built.build.finish()
    return built, report, registry.composer_dir(report.version)
