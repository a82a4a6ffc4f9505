"""The demo's build pipeline: world -> backbone -> stage 1 -> stage 2, each cached by its config.

``circhat demo`` and the tests call ``ensure_demo_composer``; a rerun with the
same configs does no training at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from retrieval.backbone import BackboneSpec, load_backbone
from training.features import world_features
from training.stage1 import Stage1Config, train_stage1
from training.stage2 import Stage2Config, train_stage2
from training.triplets import make_triplets
from training.world import World


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
