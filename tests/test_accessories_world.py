"""The second catalog: a real-looking Shopify export plus images, deterministic, complete and visibly varied."""

from __future__ import annotations

import csv
import hashlib
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.accessories_world import (
    APPLIES,
    ATTRIBUTES,
    CATEGORIES,
    CSV_NAME,
    IMAGES_DIR,
    METAFIELDS,
    SIZES,
    VALUES,
    AccessoriesConfig,
    csv_header,
    expected_items,
    write_accessories_catalog,
)

SMALL = AccessoriesConfig(seed=5, n_products=12)
PRODUCT_FIELDS_2024 = ("Title", "Description", "Vendor", "Product category", "Type", "Tags",
                       "Published on online store", "Status", "Option1 name", "Option2 name", "Option3 name")
METAFIELD_OF = {key: header for header, key in METAFIELDS}


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _file_name(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[-1]


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _products(rows: list[dict[str, str]], handle: str = "URL handle") -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        grouped[row[handle]].append(row)
    return grouped


def _variants_as_read(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Read the 2024 export as a shop reader would: product fields from a product's first row, skip drafts."""
    items = []
    for group in _products(rows).values():
        first = group[0]
        if first["Status"] != "active":
            continue
        for row in group:
            if not row["SKU"]:
                continue
            items.append({
                "sku": row["SKU"], "handle": row["URL handle"], "title": first["Title"],
                "image": _file_name(row["Variant image URL"]), "status": first["Status"], "price": row["Price"],
                "category": first["Type"], "colour": row["Option1 value"], "size": row["Option2 value"],
                "material": row["Option3 value"], **{k: first[h] for k, h in METAFIELD_OF.items()},
            })
    return items


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("accessories")
    return write_accessories_catalog(folder, AccessoriesConfig(), progress=False)


@pytest.fixture(scope="module")
def rows(catalog) -> list[dict[str, str]]:
    return _read(catalog)


def test_same_config_gives_identical_bytes(tmp_path):
    a = write_accessories_catalog(tmp_path / "a", SMALL, progress=False).parent
    b = write_accessories_catalog(tmp_path / "b", SMALL, progress=False).parent
    assert _digests(a) == _digests(b)
    c = write_accessories_catalog(tmp_path / "c", AccessoriesConfig(seed=6, n_products=12), progress=False).parent
    assert (a / CSV_NAME).read_bytes() != (c / CSV_NAME).read_bytes()


def test_rerun_reuses_complete_output_and_redoes_a_killed_run(tmp_path):
    csv_path = write_accessories_catalog(tmp_path, SMALL, progress=False)
    before = _digests(tmp_path)
    stamp = csv_path.stat().st_mtime_ns
    start = time.perf_counter()
    assert write_accessories_catalog(tmp_path, SMALL, progress=False) == csv_path
    assert time.perf_counter() - start < 0.5 and csv_path.stat().st_mtime_ns == stamp
    # A run killed before the CSV was written leaves images but no CSV: it is redone to the same bytes.
    csv_path.unlink()
    victim = sorted((tmp_path / IMAGES_DIR).iterdir())[3]
    victim.write_bytes(b"half a png")
    write_accessories_catalog(tmp_path, SMALL, progress=False)
    assert _digests(tmp_path) == before
    assert not list(tmp_path.rglob("*.tmp"))


def test_header_is_the_real_shopify_export(rows, catalog):
    with open(catalog, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == csv_header("2024")
    for name in ("Title", "URL handle", "Description", "Vendor", "Type", "Tags", "Status", "SKU",
                 "Option1 name", "Option1 value", "Option2 name", "Option2 value", "Option3 name", "Option3 value",
                 "Price", "Product image URL", "Image position", "Variant image URL",
                 "Heel height (product.metafields.custom.heel_height)"):
        assert name in header
    legacy = csv_header("legacy")
    for name in ("Handle", "Body (HTML)", "Option1 Name", "Variant SKU", "Variant Price", "Image Src",
                 "Image Position", "Variant Image", "Status"):
        assert name in legacy
    assert len(set(header)) == len(header) and len(set(legacy)) == len(legacy)


def test_rows_follow_the_export_layout(rows):
    products = _products(rows)
    assert len(products) == AccessoriesConfig().n_products
    for handle, group in products.items():
        first, rest = group[0], group[1:]
        assert first["Title"] and first["SKU"] and first["Type"] in CATEGORIES
        assert (first["Option1 name"], first["Option2 name"], first["Option3 name"]) == ("Color", "Size", "Material")
        assert first["Description"].startswith("<p>") and first["Description"].endswith("</p>")
        assert [int(r["Image position"]) for r in group] == list(range(1, len(group) + 1))
        for row in rest:
            assert all(row[f] == "" for f in PRODUCT_FIELDS_2024), (handle, row)
            assert all(row[h] == "" for h, _ in METAFIELDS)
            assert row["URL handle"] == handle
        for row in group:
            if row["SKU"]:
                assert row["Option1 value"] and row["Option2 value"] and row["Option3 value"] and row["Price"]
                assert _file_name(row["Variant image URL"]) == _file_name(row["Product image URL"])
                assert re.fullmatch(r"https://cdn\.shopify\.com/s/files/.+/files/[a-z0-9-]+\.png\?v=\d+",
                                    row["Variant image URL"])
            else:  # an image-only row: a material close-up, not a variant
                assert row["Product image URL"] and not row["Variant image URL"] and not row["Option1 value"]
    assert sum(not r["SKU"] for r in rows) >= 5
    statuses = Counter(group[0]["Status"] for group in products.values())
    assert statuses == {"active": AccessoriesConfig().n_products - 2, "draft": 2}
    assert {g[0]["Published on online store"] for g in products.values() if g[0]["Status"] == "draft"} == {"FALSE"}


def test_reading_the_csv_gives_the_ground_truth(rows):
    assert _variants_as_read(rows) == expected_items(AccessoriesConfig())
    every = expected_items(AccessoriesConfig(), include_drafts=True)
    assert len(every) == sum(1 for r in rows if r["SKU"]) > len(expected_items(AccessoriesConfig())) >= 500
    assert len({it["sku"] for it in every}) == len({it["image"] for it in every}) == len(every)


def test_legacy_dialect_has_the_same_content(tmp_path):
    config = AccessoriesConfig(seed=5, n_products=12, dialect="legacy")
    legacy = _read(write_accessories_catalog(tmp_path / "legacy", config, progress=False))
    new = _read(write_accessories_catalog(tmp_path / "new", SMALL, progress=False))
    assert list(legacy[0]) == csv_header("legacy") and len(legacy) == len(new)
    rename = {"URL handle": "Handle", "Description": "Body (HTML)", "SKU": "Variant SKU", "Price": "Variant Price",
              "Option1 name": "Option1 Name", "Option1 value": "Option1 Value", "Option3 value": "Option3 Value",
              "Type": "Type", "Status": "Status", "Product image URL": "Image Src",
              "Variant image URL": "Variant Image", "Image position": "Image Position", **{h: h for h, _ in METAFIELDS}}
    for a, b in zip(new, legacy, strict=True):
        assert {k: a[k] for k in rename} == {k: b[v] for k, v in rename.items()}
    assert _digests(tmp_path / "legacy" / IMAGES_DIR) == _digests(tmp_path / "new" / IMAGES_DIR)


def test_every_referenced_image_exists_and_decodes(rows, catalog):
    names = {_file_name(r[c]) for r in rows for c in ("Product image URL", "Variant image URL") if r[c]}
    on_disk = {p.name for p in (catalog.parent / IMAGES_DIR).iterdir()}
    assert names == on_disk
    for name in names:
        with Image.open(catalog.parent / IMAGES_DIR / name) as image:
            image.load()
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))


def _object_area(path: Path) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    return int((np.abs(pixels - background).max(axis=2) > 60).sum())


def test_sizes_are_visibly_different_scales(catalog):
    groups: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
    for it in expected_items(AccessoriesConfig()):
        if it["colour"] != "Cream":  # cream on a pale backdrop has no clean threshold; every other colour does
            groups[(it["handle"], it["colour"], it["material"])][it["size"]] = it["image"]
    assert len(groups) > 100
    ratios = []
    for sizes in groups.values():
        small, medium, large = (_object_area(catalog.parent / IMAGES_DIR / sizes[z]) for z in SIZES)
        assert small < medium < large, sizes
        ratios += [small / medium, medium / large]
    assert max(ratios) < 0.9 and np.mean(ratios) < 0.8


def test_every_value_appears_where_it_applies_and_nowhere_else():
    items = expected_items(AccessoriesConfig())
    for category in CATEGORIES:
        mine = [it for it in items if it["category"] == category]
        for attribute in ATTRIBUTES:
            seen = {it[attribute] for it in mine}
            if category in APPLIES[attribute]:
                wanted = {category} if attribute == "category" else set(VALUES[attribute])
                assert seen == wanted, (category, attribute, seen)
            else:
                assert seen == {""}, (category, attribute, seen)


def test_csv_metafields_are_empty_where_they_do_not_apply(rows):
    for group in _products(rows).values():
        first = group[0]
        for key, header in METAFIELD_OF.items():
            applies = first["Type"] in APPLIES[key]
            assert bool(first[header]) == applies, (first["URL handle"], header)
            if applies:
                assert first[header] in VALUES[key]


def test_no_grey_or_green_anywhere(catalog):
    text = catalog.read_text(encoding="utf-8").lower()
    for word in ("grey", "gray", "green"):
        assert word not in text
        assert not any(word in name for name in VALUES["colour"])
    assert len(VALUES["colour"]) == 8 and {"Olive", "Burgundy", "Cream", "Tan"} <= set(VALUES["colour"])


def test_many_images_share_each_attribute_combination():
    items = expected_items(AccessoriesConfig())
    counts = Counter(tuple(it[a] for a in ATTRIBUTES) for it in items)
    shared = sum(n for n in counts.values() if n >= 2)
    assert shared / len(items) > 0.9 and len(counts) > 150


def test_unknown_dialect_is_refused(tmp_path):
    with pytest.raises(ValueError, match="dialect"):
        write_accessories_catalog(tmp_path, AccessoriesConfig(dialect="2019"), progress=False)
