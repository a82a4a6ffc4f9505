"""Stage 1: teach the mapper to turn an image into a word the frozen text tower reads.

Two losses, both through the frozen text tower:

* contrastive: "a photo of *" with * = mapper(image) must find its own image
  among the batch (images of the same attribute combination also count);
* soft text alignment: the pseudo-sentence's similarity distribution over the
  batch's captions must match the image's own (KL), which pulls the token
  toward where real words live. Skipped when a catalog has no captions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from retrieval.backbone import Backbone
from retrieval.mapper import Mapper, MapperConfig
from retrieval.pseudo_token import encode_text_with_pseudo_tokens, placeholder_token_id
from training.features import FrozenFeatures
from training.loop import TrainingRun, bf16_autocast, train_steps
from training.losses import multi_positive_infonce, soft_alignment_loss

STAGE1_TEMPLATE = "a photo of *"
STAGE1_WARMUP = 30


@dataclass(frozen=True)
class Stage1Config:
    """Stage-1 training; ``use_patches`` and ``soft_alignment`` are the two ablation switches."""

    steps: int = 400
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    temperature: float = 0.05
    soft_temperature: float = 0.05
    soft_weight: float = 1.0
    use_patches: bool = True
    soft_alignment: bool = True
    hidden: int = 384
    seed: int = 0
    bf16: bool = True


def same_combo(keys: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(keys[:, None] == keys[None, :])


def train_stage1(backbone: Backbone, features: FrozenFeatures, rows: np.ndarray,
                 config: Stage1Config = Stage1Config(), progress: bool = True) -> tuple[Mapper, TrainingRun]:
    """Train a mapper on the catalog rows ``rows`` (images, and captions where present)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = backbone.device
    mapper = Mapper(MapperConfig(
        embed_dim=backbone.embed_dim, patch_dim=features.patches.shape[-1], token_dim=backbone.token_dim,
        hidden=config.hidden, use_patches=config.use_patches,
    )).to(device)
    optimizer = torch.optim.AdamW(mapper.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    placeholder = placeholder_token_id(backbone.tokenizer)
    template = backbone.tokenize([STAGE1_TEMPLATE] * config.batch_size)
    has_captions = features.captions is not None and config.soft_alignment
    autocast = bf16_autocast(device, config.bf16)

    def step_loss() -> torch.Tensor:
        idx = rng.choice(rows, size=min(config.batch_size, len(rows)), replace=False)
        pooled = features.pooled[idx].to(device)
        patches = features.patches[idx].to(device)
        with autocast:
            token = mapper(pooled, patches)
            sentence = encode_text_with_pseudo_tokens(backbone.model, template[:len(idx)], token, placeholder)
        sentence = F.normalize(sentence.float(), dim=-1)
        positives = same_combo(features.combo_keys[idx]).to(device)
        loss = multi_positive_infonce(sentence @ pooled.T / config.temperature, positives)
        if has_captions:
            captions = features.captions[idx].to(device)
            loss = loss + config.soft_weight * soft_alignment_loss(sentence, pooled, captions, config.soft_temperature)
        return loss

    mapper.train()
    run = train_steps(optimizer, config.steps, STAGE1_WARMUP, step_loss, "stage 1 (mapper)", progress)
    mapper.eval()
    return mapper, run
