"""The evaluation harness: every method answers the same triplets against the same catalog.

A method is a function from (reference rows, instruction lists) to query
embeddings. Recall@K counts a query as correct when any catalog image with the
target's attribute combination is in its top K (and, separately, when the one
designated target image is); the reference image itself is never ranked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from retrieval.query_encoder import QueryEncoder
from training.features import FrozenFeatures
from training.triplets import EDITABLE, Triplet, phrase
from training.world import VALUES, World

Encode = Callable[[np.ndarray, list[list[str]]], torch.Tensor]
KS = (1, 5, 10, 50)


def image_only(features: FrozenFeatures) -> Encode:
    return lambda refs, _instructions: features.pooled[refs]


def text_only(encoder: QueryEncoder) -> Encode:
    return lambda _refs, instructions: encoder.encode(None, None, instructions)


def image_plus_text(features: FrozenFeatures, encoder: QueryEncoder) -> Encode:
    """The sum of the normalised image and text embeddings, renormalised."""
    return lambda refs, instructions: F.normalize(
        features.pooled[refs] + encoder.encode(None, None, instructions), dim=-1)


def composed(features: FrozenFeatures, encoder: QueryEncoder) -> Encode:
    """Pseudo-token composition (Pic2Word-style or two-stage, whichever ``encoder`` holds)."""
    return lambda refs, instructions: encoder.encode(features.pooled[refs], features.patches[refs], instructions)


def rank(queries: torch.Tensor, gallery: torch.Tensor, exclude: np.ndarray, k: int = 50) -> np.ndarray:
    """Top-``k`` catalog rows per query, the excluded row (the reference) removed."""
    scores = queries.float() @ gallery.float().T
    scores[torch.arange(len(exclude)), torch.from_numpy(exclude)] = float("-inf")
    return scores.topk(k, dim=1).indices.numpy()


def evaluate(encode: Encode, triplets: list[Triplet], features: FrozenFeatures,
             ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@K in percent, by attribute combination and by the designated target image."""
    refs = np.array([t.reference_id for t in triplets])
    top = rank(encode(refs, [t.instructions for t in triplets]), features.pooled, refs, max(ks))
    combo_hit = features.combo_keys[top] == np.array([t.target_combo for t in triplets])[:, None]
    image_hit = top == np.array([t.target_id for t in triplets])[:, None]
    out = {f"R@{k}": float(combo_hit[:, :k].any(1).mean() * 100) for k in ks}
    out |= {f"R@{k} (image)": float(image_hit[:, :k].any(1).mean() * 100) for k in ks}
    return out | {"queries": len(triplets)}


@dataclass
class Session:
    """A simulated shopper: a hidden target, a start image, and what they say each turn."""

    target_row: int
    start_row: int
    order: list[str]


def make_sessions(world: World, features: FrozenFeatures, n: int, seed: int, differing: int = 3) -> list[Session]:
    """Sessions whose start differs from the hidden target in ``differing`` attributes (same category)."""
    rng = np.random.default_rng(seed)
    rows_by_combo: dict[str, list[int]] = {}
    for r, key in enumerate(features.combo_keys.tolist()):
        rows_by_combo.setdefault(key, []).append(r)
    sessions: list[Session] = []
    while len(sessions) < n:
        target = world.items[int(rng.integers(len(world.items)))]
        editable = [a for a in EDITABLE if a in target.combo.applicable()]
        order = [str(a) for a in rng.choice(editable, size=min(differing, len(editable)), replace=False)]
        start = target.combo
        for a in order:
            values = [v for v in VALUES[a] if v != target.combo.get(a)]
            start = start.replace(**{a: values[int(rng.integers(len(values)))]})
        rows = rows_by_combo[start.key]
        sessions.append(Session(target.id, rows[int(rng.integers(len(rows)))], order))
    return sessions


def simulate(encode: Encode, sessions: list[Session], features: FrozenFeatures, world: World, mode: str,
             turns: int = 4, shown: int = 10, seed: int = 0) -> dict[str, list[float]]:
    """success@1 / @10 after each turn; ``mode`` "first" composes the start image with every instruction,
    "latest" composes the user's latest pick with the newest instruction only."""
    rng = np.random.default_rng(seed)
    combos = [it.combo for it in world.items]
    refs = np.array([s.start_row for s in sessions])
    said: list[list[str]] = [[] for _ in sessions]
    success = {"success@1": [], "success@10": []}
    for turn in range(turns):
        instructions = []
        for i, s in enumerate(sessions):
            target, current = combos[s.target_row], combos[refs[i]]
            if mode == "first":
                if turn < len(s.order):
                    a = s.order[turn]
                    said[i].append(phrase(a, combos[s.start_row].get(a), target.get(a), rng, held_out=False))
                instructions.append(list(said[i]))
            else:
                left = [a for a in EDITABLE if a in target.applicable() and a in current.applicable()
                        and current.get(a) != target.get(a)]
                if left:
                    a = left[int(rng.integers(len(left)))]
                    said[i] = [phrase(a, current.get(a), target.get(a), rng, held_out=False)]
                instructions.append(list(said[i]) or ["the same"])
        top = rank(encode(refs, instructions), features.pooled, refs, shown)
        hit = features.combo_keys[top] == np.array([combos[s.target_row].key for s in sessions])[:, None]
        success["success@1"].append(float(hit[:, 0].mean() * 100))
        success["success@10"].append(float(hit.any(1).mean() * 100))
        if mode == "latest":
            for i, s in enumerate(sessions):
                target = combos[s.target_row]
                agreement = [sum(combos[r].get(a) == target.get(a) for a in EDITABLE) for r in top[i]]
                refs[i] = top[i][int(np.argmax(agreement))]
    return success
