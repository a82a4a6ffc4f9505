"""Shared fixtures: one small demo world and backbone per test session, built for real."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMALL_WORLD = {"seed": 3, "n_images": 2400}
SMALL_BACKBONE_PAIRS = 40_000


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("circhat-data")


@pytest.fixture(scope="session")
def small_world(data_dir):
    from training.world import WorldConfig, build_world

    return build_world(WorldConfig(**SMALL_WORLD), data_dir, progress=False)


@pytest.fixture(scope="session")
def small_backbone(small_world):
    """(spec, metrics) of a demo backbone trained on the small world."""
    from training.pretrain_backbone import BackboneTrainConfig, ensure_backbone

    return ensure_backbone(small_world, BackboneTrainConfig(pairs=SMALL_BACKBONE_PAIRS, seed=3), progress=False)


@pytest.fixture(scope="session")
def small_features(small_world, small_backbone):
    from retrieval.backbone import load_backbone
    from training.features import world_features

    return world_features(small_world, load_backbone(small_backbone[0], "cpu"), progress=False)


@pytest.fixture(scope="session")
def trained_composer(small_world, small_backbone, small_features):
    """A two-stage QueryEncoder trained briefly on the small world, plus its stage-1-only twin."""
    from retrieval.backbone import load_backbone
    from retrieval.query_encoder import QueryEncoder
    from training.stage1 import Stage1Config, train_stage1
    from training.stage2 import Stage2Config, train_stage2
    from training.triplets import make_triplets

    rows = small_features.rows("train")
    backbone = load_backbone(small_backbone[0], "cpu")
    mapper, _ = train_stage1(backbone, small_features, rows, Stage1Config(steps=250), progress=False)
    triplets = make_triplets(small_world, 3000, seed=1, target_split="train", reference_splits=("train",))
    tuned, _ = train_stage2(load_backbone(small_backbone[0], "cpu"), mapper, small_features, triplets, rows,
                            Stage2Config(steps=200), progress=False)
    return tuned, QueryEncoder(backbone, mapper)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A 200-image world for the store tests, which need real files but no trained model."""
    from training.world import WorldConfig, build_world

    return build_world(WorldConfig(seed=11, n_images=200), tmp_path_factory.getbasetemp() / "store-data",
                       workers=1, progress=False)


@pytest.fixture(scope="session")
def backbone(tmp_path_factory):
    """The tiny demo model with fixed random weights saved to disk, so every process loads the same ones."""
    import torch

    from retrieval.backbone import DEMO_MODEL, BackboneSpec, load_backbone, save_backbone

    folder = tmp_path_factory.getbasetemp() / "store-backbone"
    if not (folder / "open_clip_config.json").exists():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            save_backbone(load_backbone(BackboneSpec(DEMO_MODEL), "cpu").model, DEMO_MODEL, folder)
    return load_backbone(BackboneSpec.local_dir(folder), "cpu")
