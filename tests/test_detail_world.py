"""The fine-detail catalog: deterministic, its details visible only where they are drawn, its schema read from its
files, and the demo world's images unchanged by it."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from retrieval.ingest import read_catalog
from training.catalog_labels import LabelledCatalog
from training.detail_world import (
    DETAIL_ATTRIBUTES,
    DETAILS,
    DetailWorldConfig,
    plan_detail_items,
    render_detail_png,
    write_detail_catalog,
)
from training.render_details import DetailLook, detail_boxes, render_detail_garment
from training.schema_triplets import make_catalog_triplets
from training.world import WorldConfig, plan_items, render_item_png

SIZE = 96
DEMO_DIGEST = "bd534a1d93b0"
DEMO_FIRST_12_SHA256 = "6abad0dddee8605c394aff93f634c5be6c64eb2919f8ccffc8349f5be4a43026"
CHANGED = 24
LOOKS = [DetailLook("t-shirt", "navy"), DetailLook("t-shirt", "beige"), DetailLook("dress", "red"),
         DetailLook("dress", "black")]


def _pixels(look: DetailLook, seed: int) -> np.ndarray:
    return np.asarray(render_detail_garment(look, np.random.default_rng(seed), SIZE), dtype=float)


def _allowed(look: DetailLook, detail: str, seed: int, margin: float = 1.5) -> np.ndarray:
    """Pixels inside the detail's boxes after this render's jitter (the renderer's first three draws)."""
    rng = np.random.default_rng(seed)
    zoom = rng.uniform(0.82, 1.02)
    dx, dy = rng.uniform(-0.07, 0.07, size=2)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    for x0, y0, x1, y1 in detail_boxes(look.category, detail):
        px0, px1 = (((x - 0.5) * zoom + 0.5 + dx) * SIZE for x in (x0, x1))
        py0, py1 = (((y - 0.5) * zoom + 0.5 + dy) * SIZE for y in (y0, y1))
        inside |= (xx >= px0 - margin) & (xx <= px1 + margin) & (yy >= py0 - margin) & (yy <= py1 + margin)
    return inside


def test_renderer_and_catalog_are_deterministic(tmp_path):
    config = DetailWorldConfig(n_images=16)
    items = plan_detail_items(config)
    assert [render_detail_png(config, it) for it in items[:4]] == [render_detail_png(config, it) for it in items[:4]]
    first = write_detail_catalog(tmp_path / "a", config, progress=False)
    second = write_detail_catalog(tmp_path / "b", config, progress=False)
    assert first.read_bytes() == second.read_bytes()
    assert all((tmp_path / "a" / it.file).read_bytes() == (tmp_path / "b" / it.file).read_bytes() for it in items)
    assert len({it.look for it in plan_detail_items(DetailWorldConfig(n_images=384))}) == 384


@pytest.mark.parametrize("detail", [field for _, _, field in DETAILS.values()])
def test_each_detail_changes_a_few_pixels_and_only_where_it_is_drawn(detail):
    for n, look in enumerate(LOOKS):
        seed = 100 + n
        plain, with_detail = _pixels(look, seed), _pixels(replace(look, **{detail: True}), seed)
        changed = np.abs(plain - with_detail).max(-1) > CHANGED
        assert changed.sum() >= 8, (detail, look)
        if detail != "pinstripes":
            assert changed.sum() <= 0.015 * SIZE * SIZE, (detail, look, changed.sum())
        stray = changed & ~_allowed(look, detail, seed)
        assert not stray.any(), (detail, look, np.argwhere(stray)[:5])


def test_schema_inference_reads_the_detail_attributes(tmp_path):
    csv_path = write_detail_catalog(tmp_path, DetailWorldConfig(n_images=48), progress=False)
    catalog = read_catalog(tmp_path, csv_path)
    schema = catalog.schema
    assert schema.category == "category"
    assert set(DETAIL_ATTRIBUTES) | {"category", "colour"} <= set(schema.attribute_names)
    for attribute in DETAIL_ATTRIBUTES:
        found = schema.attribute(attribute)
        plain, detailed, _ = DETAILS[attribute]
        assert found.concept == attribute, attribute
        assert sorted(found.value_names) == sorted([plain, detailed])
        assert found.edit_phrase(detailed) != f"make it {detailed}", attribute
    assert schema.attribute("logo").edit_phrase("logo") == "with a small logo"
    assert schema.attribute("pocket").absent == "no pocket"
    assert schema.attribute("pattern").edit_phrase("pinstriped") == "with pinstripes"
    labels = LabelledCatalog.build(schema, [it.id for it in catalog.items], [it.path for it in catalog.items],
                                   [it.metadata for it in catalog.items])
    assert labels.space.attributes == ("category", "colour", *DETAIL_ATTRIBUTES)
    triplets = make_catalog_triplets(labels, 40, 0, (1, 2), reference_splits=("train", "heldout"),
                                     attributes=DETAIL_ATTRIBUTES)
    assert {a for t in triplets for a, _ in t.edits} <= set(DETAIL_ATTRIBUTES)


def test_demo_world_renders_unchanged():
    config = WorldConfig()
    assert config.digest() == DEMO_DIGEST
    digest = hashlib.sha256()
    for item in plan_items(config)[:12]:
        digest.update(render_item_png((config.seed, item.id, config.image_size, config.render_scale, item.combo.key)))
    assert digest.hexdigest() == DEMO_FIRST_12_SHA256
