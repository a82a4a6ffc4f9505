"""Stage 2: LoRA adapters on the text tower learn to compose the pseudo-word with edits.

The mapper and the backbone are frozen; each step encodes "a photo of * , <edits>"
for a batch of triplets and asks it to find its target among the batch's other
targets and, per triplet, a few mined hard negatives: catalog images that differ
from the target in exactly one attribute (first the edit left undone).

Text-only triplets (``Triplet.text_only``) need no reference image: their
reference is a caption, embedded by the frozen text tower, moved across the
image-text gap (the mean image embedding minus the mean caption embedding) and
blurred by Gaussian noise of a random per-sample scale before the mapper turns
it into the pseudo-word, so that the adapters learn to compose from tokens that
scatter the way image tokens do (LinCIR's text-only training). A caption has no
patch tokens; those of the training image nearest to it (the frozen backbone's
text-to-image search) stand in for them. With the catalog's mean patch tokens
instead, text-only triplets alone reached 36 R@10 on the demo world's
2-attribute held-out edits; with the nearest image's, 98. They are made from
the schema alone, so there are as many as wanted; they weigh as ``text_weight``
image triplets when a batch is drawn, so they carry the batch when image
triplets are few and step aside when there are thousands.

The loop reads its catalog through ``Stage2Features`` (row-indexed pooled
embeddings, patch tokens and target labels), so the demo world's cached
features and a LanceDB catalog's stored rows (``training.finetune``) train the
same way; ``continue_stage2`` resumes from a checkpoint's adapters instead of
adding fresh ones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from retrieval.adapters import AdapterConfig, adapters_disabled, add_text_adapters
from retrieval.backbone import Backbone
from retrieval.mapper import Mapper
from retrieval.pseudo_token import text_tower
from retrieval.query_encoder import QueryEncoder
from training.loop import TrainingRun, bf16_autocast, train_steps
from training.losses import masked_infonce
from training.triplets import Triplet

STAGE2_WARMUP = 20


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
    """Stage-2 training; ``hard_negatives=0`` is the ablation without mined negatives.

    ``text_weight``: text-only triplets weigh as many image triplets, so a batch's text-only share is
    ``text_weight / (text_weight + image triplets)``: most of it with a hundred image triplets, a tenth with 5000.
    Half of every batch at 5000 (``text_weight=5000``) measured +1.6 / -0.2 two-attribute held-out R@1 / R@10
    against 500 in ``./run.sh bench`` (2026-12, 61 s of training), so it left the benchmark as noise.
    ``curriculum``: the share of the steps over which the most edits a drawn triplet may have rises from one to all.
    ``bf16``: autocast on a CUDA device (``bf16_autocast``); a CPU runs stage 2 in fp32.
    """

    steps: int = 500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    temperature: float = 0.05
    hard_negatives: int = 3
    text_weight: float = 500.0
    text_noise: float = 0.5
    curriculum: float = 0.0
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    seed: int = 0
    bf16: bool = True


@dataclass(frozen=True)
class Stage2Run(TrainingRun):
    """A stage-2 loop's run, with how many triplets it drew from and how many of them were text-only."""

    triplets: int = 0
    text_only: int = 0


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
        reference = t.reference_combo or str(features.combo_keys[t.reference_id])
        undone, others = neighbours.one_away(t.target_combo, reference)
        keys = undone + others
        rest = [keys[j] for j in rng.permutation(len(keys))]
        chosen = (undone + [key for key in rest if key not in undone])[:k] or [reference]
        fallback = [t.target_id] if t.text_only else [t.reference_id]
        for j in range(k):
            pool = by_combo.get(chosen[j % len(chosen)], fallback)
            out[i, j] = pool[int(rng.integers(len(pool)))]
    return out


def train_stage2(backbone: Backbone, mapper: Mapper, features: Stage2Features, triplets: list[Triplet],
                 rows: np.ndarray, config: Stage2Config = Stage2Config(),
                 progress: bool = True) -> tuple[QueryEncoder, Stage2Run]:
    """Add adapters to ``backbone.model`` and train them on ``triplets``; negatives come from ``rows``."""
    torch.manual_seed(config.seed)
    encoder = QueryEncoder(backbone, mapper, config.adapter, meta={"stage2": {"triplets": len(triplets)}})
    params = add_text_adapters(backbone.model, config.adapter)
    negatives = mine_hard_negatives(triplets, features, rows, config.hard_negatives, config.seed) \
        if config.hard_negatives else np.zeros((len(triplets), 0), dtype=np.int64)
    run = fit_adapters(encoder, params, features, triplets, negatives, rows, config, progress)
    encoder.meta["stage2"] |= {"seconds": run.seconds, "steps": config.steps, "text_only": run.text_only}
    return encoder, run


def adapter_parameters(encoder: QueryEncoder) -> list[torch.nn.Parameter]:
    """The LoRA weights already in the encoder's text tower (loaded from a checkpoint or trained here)."""
    params = [p for name, p in text_tower(encoder.backbone.model).transformer.named_parameters() if "lora_" in name]
    if encoder.adapter is None or not params:
        raise ValueError("this encoder has no stage-2 adapters to continue from")
    return params


def continue_stage2(encoder: QueryEncoder, features: Stage2Features, triplets: list[Triplet],
                    negatives: np.ndarray, rows: np.ndarray, config: Stage2Config = Stage2Config(),
                    progress: bool = True) -> Stage2Run:
    """Keep training the encoder's own adapters (mapper frozen) on ``triplets``; ``negatives`` and ``rows`` (where
    captions find stand-in patches) are catalog rows."""
    torch.manual_seed(config.seed)
    return fit_adapters(encoder, adapter_parameters(encoder), features, triplets, negatives, rows, config, progress)


NEIGHBOUR_CHUNK = 1024


def nearest_rows(queries: torch.Tensor, pooled: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    """For each query embedding, the row among ``rows`` whose pooled image embedding is most similar."""
    gallery = pooled[rows].float()
    best = [(queries[i:i + NEIGHBOUR_CHUNK] @ gallery.T).argmax(1) for i in range(0, len(queries), NEIGHBOUR_CHUNK)]
    return rows[torch.cat(best).numpy()]


class ReferenceTokens:
    """The pseudo-word of every triplet's reference: fixed for reference images, drawn anew per step for captions.

    A caption has no patch tokens; those of the catalog image among ``rows`` nearest to it (the frozen backbone's
    text-to-image search) stand in for them.
    """

    def __init__(self, encoder: QueryEncoder, features: Stage2Features, triplets: list[Triplet], rows: np.ndarray,
                 noise: float, seed: int):
        self.encoder = encoder
        self.features = features
        self.noise = noise
        self.generator = torch.Generator().manual_seed(seed)
        self.text = np.array([t.text_only for t in triplets], dtype=bool)
        image_rows = np.array([t.reference_id for t in triplets])[~self.text]
        device = encoder.backbone.device
        self.tokens = torch.zeros(len(triplets), encoder.mapper.config.token_dim, device=device)
        self.captions: torch.Tensor | None = None
        self.patch_rows: np.ndarray | None = None
        with torch.no_grad():
            if len(image_rows):
                self.tokens[torch.from_numpy(~self.text).to(device)] = encoder.reference_tokens(
                    features.pooled[image_rows], features.patches[image_rows])
            if self.text.any():
                self._embed_captions([t for t in triplets if t.text_only], np.asarray(rows, dtype=np.int64))
        self.caption_of = np.cumsum(self.text) - 1

    def _embed_captions(self, text_triplets: list[Triplet], rows: np.ndarray) -> None:
        distinct = list(dict.fromkeys(t.reference_caption for t in text_triplets))
        with adapters_disabled(self.encoder.backbone.model):
            embedded = self.encoder.backbone.encode_text(distinct).cpu().float()
        index = {caption: n for n, caption in enumerate(distinct)}
        of_triplet = np.array([index[t.reference_caption] for t in text_triplets])
        targets = np.array([t.target_id for t in text_triplets])
        gap = self.features.pooled[targets].float().mean(0) - embedded[of_triplet].mean(0)
        moved = F.normalize(embedded + gap, dim=-1)
        self.captions = moved[of_triplet]
        if self.encoder.mapper.config.use_patches:
            self.patch_rows = nearest_rows(moved, self.features.pooled, rows)[of_triplet]

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        text = self.text[idx]
        if not text.any():
            return self.tokens[idx]
        caption = self.caption_of[idx[text]]
        embedding = self.captions[caption]
        scale = torch.rand(len(embedding), 1, generator=self.generator) * self.noise
        direction = F.normalize(torch.randn(embedding.shape, generator=self.generator), dim=-1)
        noisy = F.normalize(embedding + scale * direction, dim=-1)
        patches = None if self.patch_rows is None else self.features.patches[self.patch_rows[caption]]
        out = self.tokens[idx].clone()
        with torch.no_grad():
            out[torch.from_numpy(text).to(out.device)] = self.encoder.reference_tokens(noisy, patches)
        return out


def text_share(text: np.ndarray, text_weight: float) -> float:
    """The share of a batch drawn from the text-only triplets, given how many image triplets there are."""
    images = int((~text).sum())
    return 1.0 if not images else 0.0 if not text.any() else text_weight / (text_weight + images)


def curriculum_mask(edits: np.ndarray, step: int, steps: int, curriculum: float) -> np.ndarray:
    """Which triplets a batch may draw at ``step``: one edit at first, then up to all over ``curriculum`` of the run."""
    if curriculum <= 0:
        return np.ones(len(edits), dtype=bool)
    most = int(edits.max())
    allowed = 1 + int((most - 1) * min(1.0, step / max(1.0, curriculum * steps)) + 1e-9)
    mask = edits <= allowed
    return mask if mask.any() else np.ones(len(edits), dtype=bool)


def batch_rows(text: np.ndarray, batch_size: int, share: float, rng: np.random.Generator,
               allowed: np.ndarray | None = None) -> np.ndarray:
    """One batch of triplet indices, ``share`` of it text-only where there are both kinds, among ``allowed``."""
    allowed = np.ones(len(text), dtype=bool) if allowed is None else allowed
    image_idx, text_idx = np.flatnonzero(~text & allowed), np.flatnonzero(text & allowed)
    n_text = len(text_idx) and (batch_size if not len(image_idx) else round(batch_size * share))
    picked = [rng.choice(pool, size=min(n, len(pool)), replace=False)
              for pool, n in ((image_idx, batch_size - n_text), (text_idx, n_text)) if n and len(pool)]
    return np.concatenate(picked)


def fit_adapters(encoder: QueryEncoder, params: list[torch.nn.Parameter], features: Stage2Features,
                 triplets: list[Triplet], negatives: np.ndarray, rows: np.ndarray, config: Stage2Config,
                 progress: bool = True) -> Stage2Run:
    """The stage-2 loop: each query must find its target among the batch's targets and its own negatives."""
    if not triplets:
        raise ValueError("stage 2 needs at least one triplet")
    rng = np.random.default_rng(config.seed)
    backbone = encoder.backbone
    device = backbone.device
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    target_rows = np.array([t.target_id for t in triplets])
    target_keys = features.combo_keys[target_rows]
    references = ReferenceTokens(encoder, features, triplets, rows, config.text_noise, config.seed)
    negatives = np.asarray(negatives, dtype=np.int64).reshape(len(triplets), -1)
    ids = encoder.tokenize([t.instructions for t in triplets], with_reference=True)
    autocast = bf16_autocast(device, config.bf16)
    share = text_share(references.text, config.text_weight)
    edits = np.array([len(t.edits) or len(t.instructions) for t in triplets])
    taken = [0]

    def step_loss() -> torch.Tensor:
        allowed = curriculum_mask(edits, taken[0], config.steps, config.curriculum)
        taken[0] += 1
        idx = batch_rows(references.text, config.batch_size, share, rng, allowed)
        candidate_rows = np.concatenate([target_rows[idx], negatives[idx].reshape(-1)])
        tokens = references(idx)
        with autocast:
            queries = encoder.encode_ids(tokens, ids[torch.from_numpy(idx)])
        candidates = features.pooled[candidate_rows].to(device)
        same = torch.from_numpy(features.combo_keys[candidate_rows][None, :] == target_keys[idx][:, None]).to(device)
        same[torch.arange(len(idx)), torch.arange(len(idx))] = False
        return masked_infonce(queries @ candidates.T / config.temperature, same)

    backbone.model.train()
    run = train_steps(optimizer, config.steps, STAGE2_WARMUP, step_loss, "stage 2 (adapters)", progress)
    backbone.model.eval()
    for p in params:
        p.requires_grad_(False)
    return Stage2Run(**asdict(run), triplets=len(triplets), text_only=int(references.text.sum()))
