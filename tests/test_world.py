"""The demo world: deterministic, complete, decodable, with a real held-out split."""

from __future__ import annotations

import hashlib

from PIL import Image

from training.world import (
    APPLIES,
    ATTRIBUTES,
    CATEGORIES,
    COLOURS,
    NONE,
    PATTERNS,
    VALUES,
    WorldConfig,
    all_combos,
    build_world,
    heldout_triples,
    load_world,
    plan_items,
)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rebuild_with_same_seed_is_byte_identical(tmp_path):
    config = WorldConfig(seed=11, n_images=120)
    a = build_world(config, tmp_path / "a", progress=False)
    b = build_world(config, tmp_path / "b", progress=False, workers=1)
    assert a.catalog_csv.read_bytes() == b.catalog_csv.read_bytes()
    assert [_digest(a.image_path(it)) for it in a.items] == [_digest(b.image_path(it)) for it in b.items]


def test_other_seed_gives_other_images(tmp_path):
    a = build_world(WorldConfig(seed=1, n_images=40), tmp_path, progress=False)
    b = build_world(WorldConfig(seed=2, n_images=40), tmp_path, progress=False)
    assert a.root != b.root
    assert _digest(a.image_path(a.items[0])) != _digest(b.image_path(b.items[0]))


def test_every_image_decodes_at_the_configured_size(small_world):
    for item in small_world.items:
        with Image.open(small_world.image_path(item)) as image:
            image.load()
            assert image.format == "PNG"
            assert image.size == (small_world.config.image_size,) * 2
            assert image.mode == "RGB"


def test_catalog_covers_every_attribute_value(small_world):
    seen = {a: {it.combo.get(a) for it in small_world.items} for a in ATTRIBUTES}
    assert seen["category"] == set(CATEGORIES)
    assert len(CATEGORIES) >= 4 and len(COLOURS) >= 10 and len(PATTERNS) >= 4
    for attribute in ATTRIBUTES:
        assert set(VALUES[attribute]) <= seen[attribute]


def test_attributes_apply_only_where_they_make_sense(small_world):
    for item in small_world.items:
        for attribute in ATTRIBUTES:
            applies = item.combo.category in APPLIES[attribute]
            assert (item.combo.get(attribute) != NONE) == applies, (item.id, attribute)


def test_default_catalog_has_every_combination_many_times():
    items = plan_items(WorldConfig())
    counts = {}
    for it in items:
        counts[it.combo.key] = counts.get(it.combo.key, 0) + 1
    assert len(counts) == len(all_combos()) == 1440
    assert min(counts.values()) >= 6


def test_heldout_split_is_exactly_the_heldout_triples(small_world):
    held = heldout_triples(small_world.config)
    assert len(held) == 4 * small_world.config.heldout_pairs_per_category
    heldout = small_world.split("heldout")
    assert heldout and len(heldout) < len(small_world.items) / 4
    for item in small_world.items:
        triple = (item.combo.category, item.combo.colour, item.combo.pattern)
        assert (item.split == "heldout") == (triple in held)


def test_metadata_round_trips_through_the_csv(small_world):
    again = load_world(small_world.root)
    assert [it.row() for it in again.items] == [it.row() for it in small_world.items]
    first = again.items[0]
    assert first.caption.startswith("a photo of")
    assert first.combo.colour in first.caption and first.combo.category in first.caption
    assert first.price > 0
