"""Synthetic triplets: targets match their edits, phrasings split cleanly, noise is where it is said to be."""

from __future__ import annotations

import numpy as np

from training.stage2 import mine_hard_negatives
from training.triplets import TEMPLATES, make_triplets
from training.world import ATTRIBUTES, Combo


def test_clean_triplets_change_exactly_the_stated_attributes(small_world):
    items = small_world.items
    for t in make_triplets(small_world, 300, seed=4):
        ref, target = items[t.reference_id].combo, Combo.from_key(t.target_combo)
        changed = {a for a in ATTRIBUTES if ref.get(a) != target.get(a)}
        assert changed == {a for a, _ in t.edits}
        assert all(target.get(a) == v for a, v in t.edits)
        assert items[t.target_id].combo.key == t.target_combo
        assert items[t.target_id].split == "train" and items[t.reference_id].split == "train"
        assert 1 <= len(t.instructions) <= len(t.edits) <= 3 and not t.noisy


def test_heldout_targets_and_phrasings_stay_out_of_training(small_world):
    held = make_triplets(small_world, 200, seed=5, target_split="heldout", reference_splits=("train", "heldout"),
                         held_out_phrasing=True)
    assert all(small_world.items[t.target_id].split == "heldout" for t in held)
    train_text = " | ".join(" ".join(t.instructions) for t in make_triplets(small_world, 500, seed=6))
    held_only = {tpl.split("{")[0].strip() for ts in TEMPLATES.values() for tpl, h in ts if h}
    held_only -= {tpl.split("{")[0].strip() for ts in TEMPLATES.values() for tpl, h in ts if not h}
    held_only.discard("")
    assert held_only and not any(prefix in train_text for prefix in held_only)


def test_noisy_triplets_point_at_a_wrong_target(small_world):
    triplets = make_triplets(small_world, 400, seed=7, noise=0.3)
    noisy = [t for t in triplets if t.noisy]
    assert 0.2 < len(noisy) / len(triplets) < 0.4
    for t in noisy:
        target = Combo.from_key(t.target_combo)
        assert any(target.get(a) != v for a, v in t.edits)


def test_hard_negatives_differ_from_the_target_in_one_attribute(small_world, small_features):
    triplets = make_triplets(small_world, 100, seed=8)
    negatives = mine_hard_negatives(triplets, small_features, small_features.rows("train"), 3, seed=0)
    keys = small_features.combo_keys
    differing = np.array([[sum(a != b for a, b in zip(keys[n].split("|"), t.target_combo.split("|"), strict=True))
                           for n in row] for t, row in zip(triplets, negatives, strict=True)])
    assert (differing == 1).mean() > 0.9
