"""Frozen backbone features of a whole world, computed once per backbone and cached.

Both training stages and the benchmark keep the backbone frozen, so the
catalog's pooled embeddings, patch tokens and caption embeddings are computed
once and reused; a stage-2 step then only runs the text tower.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from retrieval.backbone import Backbone
from training.pretrain_backbone import load_pixels
from training.world import World


@dataclass
class FrozenFeatures:
    """Row i belongs to ``world.items[i]``."""

    pooled: torch.Tensor
    patches: torch.Tensor
    captions: torch.Tensor
    combo_keys: np.ndarray
    splits: np.ndarray

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)


def features_path(world: World, backbone: Backbone) -> Path:
    tag = hashlib.sha256(backbone.identity.encode()).hexdigest()[:12]
    return world.root / f"features-{tag}.pt"


@torch.no_grad()
def world_features(world: World, backbone: Backbone, batch_size: int = 512, progress: bool = True) -> FrozenFeatures:
    """Pooled embeddings, patch tokens and caption embeddings for every catalog item (cached)."""
    path = features_path(world, backbone)
    if path.exists():
        saved = torch.load(path, weights_only=True)
    else:
        pixels = load_pixels([str(world.image_path(it)) for it in world.items], backbone.preprocess, progress)
        pooled, patches = [], []
        for i in tqdm(range(0, len(pixels), batch_size), desc="encoding catalog", disable=not progress, leave=False):
            p, t = backbone.encode_images_with_patches(pixels[i:i + batch_size])
            pooled.append(p.cpu())
            patches.append(t.cpu())
        saved = {
            "pooled": torch.cat(pooled),
            "patches": torch.cat(patches),
            "captions": backbone.encode_text([it.caption for it in world.items]).cpu(),
        }
        partial = path.with_suffix(".partial")
        torch.save(saved, partial)
        partial.replace(path)
    return FrozenFeatures(
        pooled=saved["pooled"], patches=saved["patches"], captions=saved["captions"],
        combo_keys=np.array([it.combo.key for it in world.items]),
        splits=np.array([it.split for it in world.items]),
    )
