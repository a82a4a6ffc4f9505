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
