"""Stage 2: LoRA adapters on the text tower learn to compose the pseudo-word with edits.

The mapper and the backbone are frozen; each step encodes "a photo of * , <edits>"
for a batch of triplets and asks it to find its target among the batch's other
targets and, per triplet, a few mined hard negatives: catalog images that differ
from the target in exactly one attribute (first the edit left undone).

The loop reads its catalog through ``Stage2Features`` (row-indexed pooled
embeddings, patch tokens and target labels), so the demo world's cached
features and a LanceDB catalog's stored rows (``training.finetune``) train the
same way; ``continue_stage2`` resumes from a checkpoint's adapters instead of
adding fresh ones.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from retrieval.adapters import AdapterConfig, add_text_adapters
from retrieval.backbone import Backbone
from retrieval.mapper import Mapper
from retrieval.pseudo_token import text_tower
from retrieval.query_encoder import QueryEncoder
from training.triplets import Triplet


class Stage2Features(Protocol):
    """What stage 2 reads of a catalog; row i of each belongs to the same item (``FrozenFeatures`` is one).

    ``patches`` needs only ``patches[rows]`` for an array of rows; ``combo_keys`` labels each row's
    target: rows with the same key are all correct answers, so they are never used as each other's negatives.
    """

    pooled: torch.Tensor
    patches: Any
    combo_keys: np.ndarray


@dataclass(frozen=True)
class Stage2Config:
    """Stage-2 training; ``hard_negatives=0`` is the ablation without mined negatives."""

    steps: int = 500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    temperature: float = 0.05
    hard_negatives: int = 3
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    seed: int = 0
    bf16: bool = True


class KeyNeighbours:
    """Labels one part away from a target label (same first part, the category), among the labels of a pool.

    Labels are ``|``-joined parts (``training.catalog_labels``); the demo world's combination keys are too.
    """

    def __init__(self, keys: list[str]):
        self.keys = keys
        split = [k.split("|") for k in keys]
        width = max((len(p) for p in split), default=0)
        self._codes: list[dict[str, int]] = [{} for _ in range(width)]
        self.parts = np.array([[self._code(i, p[i] if i < len(p) else "") for i in range(width)] for p in split],
                              dtype=np.int64).reshape(len(keys), width)

    def _code(self, position: int, part: str) -> int:
        return self._codes[position].setdefault(part, len(self._codes[position]))

    def one_away(self, target: str, reference: str) -> tuple[list[str], list[str]]:
        """Pool labels differing from ``target`` in one part: (those that undo an edit, taking the reference's
        part back; the others)."""
        t = np.array([self._codes[i].get(p, -1) for i, p in enumerate(target.split("|"))])
        r = np.array([self._codes[i].get(p, -1) for i, p in enumerate(reference.split("|"))])
        if len(t) != self.parts.shape[1] or len(self.keys) == 0:
            return [], []
        if len(r) != len(t):
            r = np.full_like(t, -1)
        differ = self.parts != t[None, :]
        one = np.flatnonzero((differ.sum(1) == 1) & ~differ[:, 0])
        undo = ((self.parts[one] == r[None, :]) & differ[one]).any(1)
        return [self.keys[i] for i in one[undo]], [self.keys[i] for i in one[~undo]]


def mine_hard_negatives(triplets: list[Triplet], features: Stage2Features, rows: np.ndarray, k: int,
                        seed: int) -> np.ndarray:
    """(len(triplets), k) catalog rows, each differing from its triplet's target in one attribute."""
    rng = np.random.default_rng(seed)
    by_combo: dict[str, list[int]] = defaultdict(list)
    for r in rows.tolist():
        by_combo[str(features.combo_keys[r])].append(r)
    neighbours = KeyNeighbours(sorted(by_combo))
    out = np.zeros((len(triplets), k), dtype=np.int64)
    for i, t in enumerate(triplets):
        undone, others = neighbours.one_away(t.target_combo, str(features.combo_keys[t.reference_id]))
        keys = undone + others
        rest = [keys[j] for j in rng.permutation(len(keys))]
        chosen = (undone + [key for key in rest if key not in undone])[:k] or [str(features.combo_keys[t.reference_id])]
        for j in range(k):
            pool = by_combo.get(chosen[j % len(chosen)], [t.reference_id])
            out[i, j] = pool[int(rng.integers(len(pool)))]
    return out


def train_stage2(backbone: Backbone, mapper: Mapper, features: Stage2Features, triplets: list[Triplet],
                 rows: np.ndarray, config: Stage2Config = Stage2Config(),
                 progress: bool = True) -> tuple[QueryEncoder, dict]:
    """Add adapters to ``backbone.model`` and train them on ``triplets``; negatives come from ``rows``."""
    torch.manual_seed(config.seed)
    encoder = QueryEncoder(backbone, mapper, config.adapter, meta={"stage2": {"triplets": len(triplets)}})
    params = add_text_adapters(backbone.model, config.adapter)
    negatives = mine_hard_negatives(triplets, features, rows, config.hard_negatives, config.seed) \
        if config.hard_negatives else np.zeros((len(triplets), 0), dtype=np.int64)
    stats = fit_adapters(encoder, params, features, triplets, negatives, config, progress)
    encoder.meta["stage2"] |= {"seconds": stats["seconds"], "steps": config.steps}
    return encoder, stats


def adapter_parameters(encoder: QueryEncoder) -> list[torch.nn.Parameter]:
    """The LoRA weights already in the encoder's text tower (loaded from a checkpoint or trained here)."""
    params = [p for name, p in text_tower(encoder.backbone.model).transformer.named_parameters() if "lora_" in name]
    if encoder.adapter is None or not params:
        raise ValueError("this encoder has no stage-2 adapters to continue from")
    return params


def continue_stage2(encoder: QueryEncoder, features: Stage2Features, triplets: list[Triplet],
                    negatives: np.ndarray, config: Stage2Config = Stage2Config(),
                    progress: bool = True) -> dict:
    """Keep training the encoder's own adapters (mapper frozen) on ``triplets``; ``negatives`` are catalog rows."""
    torch.manual_seed(config.seed)
    return fit_adapters(encoder, adapter_parameters(encoder), features, triplets, negatives, config, progress)


def fit_adapters(encoder: QueryEncoder, params: list[torch.nn.Parameter], features: Stage2Features,
                 triplets: list[Triplet], negatives: np.ndarray, config: Stage2Config,
                 progress: bool = True) -> dict:
    """The stage-2 loop: each query must find its target among the batch's targets and its own negatives."""
    if not triplets:
        raise ValueError("stage 2 needs at least one triplet")
    rng = np.random.default_rng(config.seed)
    backbone = encoder.backbone
    device = backbone.device
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / config.steps)))

    ref_rows = np.array([t.reference_id for t in triplets])
    target_rows = np.array([t.target_id for t in triplets])
    target_keys = features.combo_keys[target_rows]
    with torch.no_grad():
        tokens = encoder.reference_tokens(features.pooled[ref_rows], features.patches[ref_rows])
    negatives = np.asarray(negatives, dtype=np.int64).reshape(len(triplets), -1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)

    backbone.model.train()
    start = time.perf_counter()
    bar = tqdm(range(config.steps), desc="stage 2 (adapters)", unit="step", disable=not progress)
    for _ in bar:
        idx = rng.choice(len(triplets), size=min(config.batch_size, len(triplets)), replace=False)
        candidate_rows = np.concatenate([target_rows[idx], negatives[idx].reshape(-1)])
        with autocast:
            queries = encoder.encode_tokens(tokens[idx], [triplets[i].instructions for i in idx])
        candidates = features.pooled[candidate_rows].to(device)
        logits = queries @ candidates.T / config.temperature
        same = torch.from_numpy(features.combo_keys[candidate_rows][None, :] == target_keys[idx][:, None]).to(device)
        same[torch.arange(len(idx)), torch.arange(len(idx))] = False
        loss = F.cross_entropy(logits.masked_fill(same, float("-inf")), torch.arange(len(idx), device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    backbone.model.eval()
    for p in params:
        p.requires_grad_(False)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1), "steps": config.steps, "triplets": len(triplets)}
