"""Synthetic triplets: targets match their edits, phrasings split cleanly, noise is where it is said to be."""

from __future__ import annotations

import numpy as np
import pytest

from tests.demo_schema import demo_schema
from training.catalog_labels import HELDOUT, TRAIN, LabelledCatalog
from training.schema_triplets import make_catalog_text_triplets, make_catalog_triplets
from training.stage2 import mine_hard_negatives
from training.triplets import TEMPLATES, make_triplets
from training.world import ATTRIBUTES, CSV_COLUMNS, Combo, WorldConfig, caption, plan_items


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


def test_text_only_triplets_describe_their_reference_instead_of_showing_it(small_world):
    held = {it.combo.key for it in small_world.items if it.split == "heldout"}
    triplets = make_triplets(small_world, 400, seed=9, text_references=True)
    for t in triplets:
        ref, target = Combo.from_key(t.reference_combo), Combo.from_key(t.target_combo)
        assert t.text_only and t.reference_caption == caption(ref)
        assert {a for a in ATTRIBUTES if ref.get(a) != target.get(a)} == {a for a, _ in t.edits}
        assert t.reference_combo not in held and small_world.items[t.target_id].split == "train"
    assert not any(t.text_only for t in make_triplets(small_world, 50, seed=9))


def shop_catalog(n_items: int) -> LabelledCatalog:
    """The demo world's first ``n_items`` planned rows as a labelled catalog (no images needed)."""
    items = plan_items(WorldConfig(n_images=3000))[:n_items]
    rows = [{k: v for k, v in it.row().items() if k in CSV_COLUMNS} for it in items]
    return LabelledCatalog.build(demo_schema(), [str(it.id) for it in items], [f"{it.id}.png" for it in items], rows)


def test_schema_text_triplets_reach_labels_the_catalog_does_not_have():
    """A 300-item shop: every text-only triplet changes exactly its stated attributes, never describes a
    held-out label, targets a training item, and many of its references are labels no item has."""
    catalog = shop_catalog(300)
    space = catalog.space
    held = set(catalog.keys[catalog.rows(HELDOUT)].tolist())
    triplets = make_catalog_text_triplets(catalog, 500, seed=1)
    for t in triplets:
        reference, target = space.parts(t.reference_combo), catalog.values[t.target_id]
        assert t.text_only and t.reference_caption == space.caption(reference)
        assert {a for a in space.attributes if reference.get(a) != target.get(a)} == {a for a, _ in t.edits}
        assert 1 <= len(t.edits) <= 3 and t.reference_combo not in held
        assert catalog.splits[t.target_id] == TRAIN and t.target_combo == catalog.keys[t.target_id]
    unseen = {t.reference_combo for t in triplets} - set(catalog.keys.tolist())
    assert len(unseen) > len(set(catalog.keys.tolist())) / 2
    assert [t.reference_caption for t in make_catalog_text_triplets(catalog, 50, seed=1)] == \
        [t.reference_caption for t in triplets[:50]]


def test_a_catalog_without_pairs_still_has_text_only_triplets():
    """One item per category: no two items make a pair, yet the schema gives text-only triplets."""
    items = plan_items(WorldConfig(n_images=3000))
    one_each = list({it.combo.category: it for it in items}.values())
    rows = [{k: v for k, v in it.row().items() if k in CSV_COLUMNS} for it in one_each]
    catalog = LabelledCatalog.build(demo_schema(), [str(it.id) for it in one_each], ["x.png"] * len(one_each),
                                    rows, heldout_share=0)
    with pytest.raises(ValueError, match="too few combinations"):
        make_catalog_triplets(catalog, 10, seed=0)
    assert len(make_catalog_text_triplets(catalog, 10, seed=0)) == 10
