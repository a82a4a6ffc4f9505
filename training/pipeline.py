"""The demo's build pipeline: world -> backbone -> stage 1 -> stage 2 -> store, each cached by its config.

``circhat demo`` calls ``prepare_demo`` and ``demo_store``; the tests call
``ensure_demo_composer``; a rerun with the same configs does no training at all.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrieval.backbone import BackboneSpec, load_backbone
from retrieval.ingest import ingest
from retrieval.store import CatalogStore
from training.features import world_features
from training.pretrain_backbone import BackboneTrainConfig, ensure_backbone
from training.stage1 import Stage1Config, train_stage1
from training.stage2 import Stage2Config, train_stage2
from training.triplets import make_triplets
from training.world import World, WorldConfig, build_world, world_dir


@dataclass(frozen=True)
class ComposerConfig:
    """Both training stages of the shipped demo model."""

    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    triplets: int = 5000
    seed: int = 0

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def composer_dir(world: World, spec: BackboneSpec, config: ComposerConfig) -> Path:
    backbone = Path(spec.model.removeprefix("local-dir:")).name
    return world.root / f"composer-{backbone}-{config.digest()}"


def ensure_demo_composer(world: World, spec: BackboneSpec, config: ComposerConfig = ComposerConfig(),
                         progress: bool = True) -> Path:
    """The folder of a trained two-stage composer for ``world`` (trained now if not cached)."""
    folder = composer_dir(world, spec, config)
    if (folder / "composer.json").exists():
        return folder
    features = world_features(world, load_backbone(spec), progress=progress)
    rows = features.rows("train")
    mapper, stage1 = train_stage1(load_backbone(spec), features, rows, config.stage1, progress)
    triplets = make_triplets(world, config.triplets, seed=config.seed + 1)
    encoder, stage2 = train_stage2(load_backbone(spec), mapper, features, triplets, rows, config.stage2, progress)
    partial = folder.with_name(folder.name + ".partial")
    encoder.save(partial, extra={"stage1": {**asdict(config.stage1), **stage1},
                                 "stage2": {**asdict(config.stage2), **stage2}})
    partial.replace(folder)
    return folder


@dataclass
class DemoBuild:
    """The built demo: its world, backbone (spec and held-out metrics) and, when asked for, the composer folder."""

    world: World
    spec: BackboneSpec
    metrics: dict[str, Any]
    composer: Path | None = None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_demo(data_dir: Path | None, seed: int, n_images: int, pairs: int, composer: bool = False,
                 say: Callable[[str], None] = _stderr) -> DemoBuild:
    """Build (or reuse) the demo world, its backbone and (optionally) the two-stage composer, saying each step."""
    steps = 4 if composer else 2
    config = WorldConfig(seed=seed, n_images=n_images)
    cached = (world_dir(config, data_dir) / "world.json").exists()
    say(f"[1/{steps}] demo world ({n_images} images, seed {seed}): {'cached' if cached else 'rendering'}")
    start = time.perf_counter()
    world = build_world(config, data_dir)
    say(f"      {world.root} ({time.perf_counter() - start:.1f}s)")
    say(f"[2/{steps}] demo backbone ({pairs} pairs)")
    start = time.perf_counter()
    spec, metrics = ensure_backbone(world, BackboneTrainConfig(pairs=pairs, seed=seed))
    say(f"      {spec.describe()} ({time.perf_counter() - start:.1f}s)")
    folder = None
    if composer:
        say(f"[3/{steps}] two-stage composer (stage 1 mapper + stage 2 adapters)")
        start = time.perf_counter()
        folder = ensure_demo_composer(world, spec, ComposerConfig(seed=seed))
        say(f"      {folder} ({time.perf_counter() - start:.1f}s)")
    return DemoBuild(world, spec, metrics, folder)


def demo_store(world: World, spec: BackboneSpec, progress: bool = True) -> Path:
    """The demo world ingested, from its folder and CSV as any catalog is, into its own LanceDB folder (done once;
    later calls only check it)."""
    db = world.root / "stores" / Path(spec.model.removeprefix("local-dir:")).name
    if CatalogStore.exists(db):
        store = CatalogStore.open(db)
        if len(store) == len(world.items) and store.catalog_schema.attributes:
            return db
    ingest(world.root, load_backbone(spec), db, metadata=world.catalog_csv, progress=progress)
    return db
