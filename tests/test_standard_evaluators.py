"""Checks the FashionIQ, CIRR and CIRCO evaluators by hand-computed values on tiny official-format files."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from training.standard_evaluators import (
    CIRCOQuery,
    CIRRQuery,
    FashionIQQuery,
    average_precision_at_k,
    evaluate_circo,
    evaluate_cirr,
    evaluate_fashioniq,
    load_circo_gallery,
    load_circo_queries,
    load_cirr_gallery,
    load_cirr_queries,
    load_fashioniq_gallery,
    load_fashioniq_queries,
    rankings_from_scores,
    recall_at_k,
    subset_ranking,
    without_reference,
)


def _write(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")


def _placed(gallery: Sequence[str], ranks: dict[str, int]) -> list[str]:
    """Full ranking of ``gallery`` with each image of ``ranks`` at its 1-based rank."""
    by_rank = {rank: image for image, rank in ranks.items()}
    rest = iter(image for image in gallery if image not in ranks)
    return [by_rank[r] if r in by_rank else next(rest) for r in range(1, len(gallery) + 1)]


FIQ_RANKS = {
    "dress": [
        ("dress00", "dress01", {"dress01": 1}),
        ("dress02", "dress03", {"dress02": 1, "dress03": 11}),
        ("dress04", "dress05", {"dress05": 56}),
    ],
    "shirt": [
        ("shirt00", "shirt01", {"shirt01": 10}),
        ("shirt02", "shirt03", {"shirt03": 50}),
    ],
    "toptee": [
        ("toptee00", "toptee01", {"toptee01": 51}),
    ],
}


@pytest.fixture
def fiq_root(tmp_path: Path) -> Path:
    captions = ["is darker", "has long sleeves"]
    for category, rows in FIQ_RANKS.items():
        _write(
            tmp_path / "captions" / f"cap.{category}.val.json",
            [{"target": t, "candidate": c, "captions": captions} for c, t, _ in rows],
        )
        gallery = [f"{category}{i:02d}" for i in range(60)]
        _write(tmp_path / "image_splits" / f"split.{category}.val.json", gallery)
    return tmp_path


def _fiq_rank(root: Path) -> Callable[[list[FashionIQQuery]], list[list[str]]]:
    def rank(queries: list[FashionIQQuery]) -> list[list[str]]:
        gallery = load_fashioniq_gallery(root, queries[0].category, "val")
        placements = {(c, t): ranks for c, t, ranks in FIQ_RANKS[queries[0].category]}
        return [_placed(gallery, placements[(q.reference, q.target)]) for q in queries]

    return rank


def test_fashioniq_per_category_and_average(fiq_root: Path) -> None:
    m = evaluate_fashioniq(fiq_root, "val", _fiq_rank(fiq_root))

    assert m["dress_R@10"] == pytest.approx(100 * 1 / 3)
    assert m["dress_R@50"] == pytest.approx(100 * 2 / 3)
    assert m["shirt_R@10"] == pytest.approx(100 * 1 / 2)
    assert m["shirt_R@50"] == pytest.approx(100 * 2 / 2)
    assert m["toptee_R@10"] == pytest.approx(0.0)
    assert m["toptee_R@50"] == pytest.approx(0.0)
    assert m["avg_R@10"] == pytest.approx((100 / 3 + 50 + 0) / 3)
    assert m["avg_R@50"] == pytest.approx((200 / 3 + 100 + 0) / 3)
    assert m["avg"] == pytest.approx(((100 / 3 + 50 + 0) / 3 + (200 / 3 + 100 + 0) / 3) / 2)


def test_fashioniq_keeps_reference_in_ranking(fiq_root: Path) -> None:
    def rank_without_reference(queries: list[FashionIQQuery]) -> list[list[str]]:
        rankings = _fiq_rank(fiq_root)(queries)
        return [[i for i in r if i != q.reference] for q, r in zip(queries, rankings, strict=True)]

    as_given = evaluate_fashioniq(fiq_root, "val", _fiq_rank(fiq_root), categories=["dress"])
    dropped = evaluate_fashioniq(fiq_root, "val", rank_without_reference, categories=["dress"])

    assert as_given["dress_R@10"] == pytest.approx(100 * 1 / 3)
    assert dropped["dress_R@10"] == pytest.approx(100 * 2 / 3)
    assert set(as_given) == {"dress_R@10", "dress_R@50", "avg_R@10", "avg_R@50", "avg"}


def test_fashioniq_loaders_parse_official_fields(fiq_root: Path) -> None:
    queries = load_fashioniq_queries(fiq_root, "dress", "val")

    assert queries[1] == FashionIQQuery("dress", "dress02", ("is darker", "has long sleeves"), "dress03")
    assert len(load_fashioniq_gallery(fiq_root, "dress", "val")) == 60


CIRR_GALLERY = [f"dev-{i}-img0" for i in range(60)]
CIRR_ROWS = [
    (1, 0, 1, {0: 1, 1: 2}),
    (2, 10, 11, {12: 1, 11: 6}),
    (3, 20, 21, {20: 1, 22: 2, 23: 3, 24: 4, 21: 51}),
]


def _cirr_entry(pair_id: int, reference: int, target: int) -> dict:
    members = [f"dev-{reference + i}-img0" for i in range(6)]
    return {
        "pairid": pair_id,
        "reference": f"dev-{reference}-img0",
        "target_hard": f"dev-{target}-img0",
        "target_soft": {f"dev-{target}-img0": 1.0},
        "caption": "show three bottles of soft drink",
        "img_set": {"id": pair_id, "members": members, "reference_rank": 0, "target_rank": 1},
    }


@pytest.fixture
def cirr_root(tmp_path: Path) -> Path:
    _write(tmp_path / "captions" / "cap.rc2.val.json", [_cirr_entry(p, r, t) for p, r, t, _ in CIRR_ROWS])
    _write(tmp_path / "image_splits" / "split.rc2.val.json", {n: f"./dev/{n}.png" for n in CIRR_GALLERY})
    return tmp_path


def _cirr_rank(queries: list[CIRRQuery]) -> list[list[str]]:
    ranks = {p: {f"dev-{i}-img0": r for i, r in placed.items()} for p, _, _, placed in CIRR_ROWS}
    return [_placed(CIRR_GALLERY, ranks[q.pair_id]) for q in queries]


def test_cirr_recall_removes_reference(cirr_root: Path) -> None:
    m = evaluate_cirr(cirr_root, "val", _cirr_rank)

    assert m["R@1"] == pytest.approx(100 * 1 / 3)
    assert m["R@5"] == pytest.approx(100 * 1 / 3)
    assert m["R@10"] == pytest.approx(100 * 2 / 3)
    assert m["R@50"] == pytest.approx(100 * 3 / 3)


def test_cirr_subset_recall_ranks_members_without_reference(cirr_root: Path) -> None:
    m = evaluate_cirr(cirr_root, "val", _cirr_rank)

    assert m["R_subset@1"] == pytest.approx(100 * 1 / 3)
    assert m["R_subset@2"] == pytest.approx(100 * 2 / 3)
    assert m["R_subset@3"] == pytest.approx(100 * 2 / 3)
    assert m["R_avg"] == pytest.approx((100 * 1 / 3 + 100 * 1 / 3) / 2)


def test_cirr_same_metrics_whether_or_not_rank_drops_reference(cirr_root: Path) -> None:
    def rank_without_reference(queries: list[CIRRQuery]) -> list[list[str]]:
        return [[i for i in r if i != q.reference] for q, r in zip(queries, _cirr_rank(queries), strict=True)]

    dropped = evaluate_cirr(cirr_root, "val", rank_without_reference)

    assert dropped == evaluate_cirr(cirr_root, "val", _cirr_rank)


def test_reference_removal_helpers() -> None:
    ranking = ["ref", "a", "x", "b", "ref2"]

    assert without_reference(ranking, "ref") == ["a", "x", "b", "ref2"]
    assert subset_ranking(ranking, ["b", "ref", "a"], "ref") == ["a", "b"]


def test_cirr_loaders_parse_official_fields(cirr_root: Path) -> None:
    query = load_cirr_queries(cirr_root, "val")[0]

    assert (query.pair_id, query.reference, query.target) == (1, "dev-0-img0", "dev-1-img0")
    assert query.subset_members == tuple(f"dev-{i}-img0" for i in range(6))
    assert query.target_soft == {"dev-1-img0": 1.0}
    assert load_cirr_gallery(cirr_root, "val") == CIRR_GALLERY


def test_cirr_test_split_loads_but_cannot_be_scored(tmp_path: Path) -> None:
    entry = _cirr_entry(1, 0, 1)
    del entry["target_hard"], entry["target_soft"]
    _write(tmp_path / "captions" / "cap.rc2.test1.json", [entry])
    _write(tmp_path / "image_splits" / "split.rc2.test1.json", {n: f"./test1/{n}.png" for n in CIRR_GALLERY})

    assert load_cirr_queries(tmp_path, "test1")[0].target is None
    with pytest.raises(ValueError, match="ground-truth"):
        evaluate_cirr(tmp_path, "test1", _cirr_rank)


CIRCO_ROWS = [
    (0, 30, [1, 2], {1: 1, 2: 3}),
    (1, 29, [10, 11, 12, 13, 14, 15], {11: 1, 12: 2, 13: 4, 14: 6, 10: 8, 15: 30}),
    (2, 20, [21], {20: 1, 21: 3}),
]


@pytest.fixture
def circo_root(tmp_path: Path) -> Path:
    _write(
        tmp_path / "annotations" / "val.json",
        [
            {
                "reference_img_id": reference,
                "target_img_id": gt[0],
                "relative_caption": "is held by a little girl on a chair",
                "shared_concept": "a teddy bear",
                "gt_img_ids": gt,
                "id": query_id,
            }
            for query_id, reference, gt, _ in CIRCO_ROWS
        ],
    )
    _write(
        tmp_path / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
        {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(1, 31)]},
    )
    return tmp_path


def _circo_rank(queries: list[CIRCOQuery]) -> list[list[str]]:
    gallery = [str(i) for i in range(1, 31)]
    ranks = {q: {str(i): r for i, r in placed.items()} for q, _, _, placed in CIRCO_ROWS}
    return [_placed(gallery, ranks[q.query_id]) for q in queries]


def test_circo_map_with_multiple_ground_truths(circo_root: Path) -> None:
    m = evaluate_circo(circo_root, "val", _circo_rank)

    ap_a = (1 / 1 + 2 / 3) / 2
    ap_c = (1 / 3) / 1
    assert m["mAP@5"] == pytest.approx(100 * (ap_a + (1 / 1 + 2 / 2 + 3 / 4) / 5 + ap_c) / 3)
    assert m["mAP@10"] == pytest.approx(100 * (ap_a + (1 / 1 + 2 / 2 + 3 / 4 + 4 / 6 + 5 / 8) / 6 + ap_c) / 3)
    assert m["mAP@25"] == pytest.approx(m["mAP@10"])
    assert m["mAP@50"] == pytest.approx(
        100 * (ap_a + (1 / 1 + 2 / 2 + 3 / 4 + 4 / 6 + 5 / 8 + 6 / 30) / 6 + ap_c) / 3
    )


def test_circo_recall_uses_annotated_target(circo_root: Path) -> None:
    m = evaluate_circo(circo_root, "val", _circo_rank)

    assert m["R@5"] == pytest.approx(100 * 2 / 3)
    assert m["R@10"] == pytest.approx(100 * 3 / 3)


def test_circo_loaders_parse_official_fields(circo_root: Path) -> None:
    query = load_circo_queries(circo_root, "val")[1]

    assert query == CIRCOQuery(1, "29", "is held by a little girl on a chair", "a teddy bear", "10",
                               ("10", "11", "12", "13", "14", "15"))
    assert load_circo_gallery(circo_root) == [str(i) for i in range(1, 31)]


def test_average_precision_normalises_by_min_k_and_ground_truth_size() -> None:
    assert average_precision_at_k(["a", "b", "c"], ["a", "b", "c"], 2) == pytest.approx((1 / 1 + 2 / 2) / 2)
    assert average_precision_at_k(["a", "x", "b"], ["a", "b", "c"], 5) == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert average_precision_at_k(["x", "a"], ["a"], 1) == pytest.approx(0.0)


def test_recall_at_k_and_rankings_from_scores() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.2]])

    rankings = rankings_from_scores(scores, ["a", "b", "c"])
    assert rankings == [["b", "c", "a"], ["a", "b", "c"]]
    assert rankings_from_scores(scores, ["a", "b", "c"], top_k=1) == [["b"], ["a"]]
    assert recall_at_k(rankings, ["c", "c"], [1, 2, 3]) == pytest.approx({1: 0.0, 2: 50.0, 3: 100.0})


def test_missing_annotation_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cap\.rc2\.val\.json"):
        evaluate_cirr(tmp_path, "val", _cirr_rank)


def test_missing_gallery_file_is_named(fiq_root: Path) -> None:
    (fiq_root / "image_splits" / "split.shirt.val.json").unlink()

    with pytest.raises(FileNotFoundError, match=r"split\.shirt\.val\.json"):
        evaluate_fashioniq(fiq_root, "val", _fiq_rank(fiq_root))


def test_invalid_json_is_named(fiq_root: Path) -> None:
    (fiq_root / "captions" / "cap.dress.val.json").write_text('[{"target": "dress01",', encoding="utf-8")

    with pytest.raises(ValueError, match=r"cap\.dress\.val\.json: not valid JSON"):
        evaluate_fashioniq(fiq_root, "val", _fiq_rank(fiq_root))


def test_missing_field_names_file_entry_and_key(circo_root: Path) -> None:
    path = circo_root / "annotations" / "val.json"
    entries = json.loads(path.read_text(encoding="utf-8"))
    del entries[2]["relative_caption"]
    _write(path, entries)

    with pytest.raises(ValueError, match=r"val\.json: entry 2: missing key 'relative_caption'"):
        evaluate_circo(circo_root, "val", _circo_rank)


def test_wrongly_typed_field_is_rejected(cirr_root: Path) -> None:
    path = cirr_root / "captions" / "cap.rc2.val.json"
    entries = json.loads(path.read_text(encoding="utf-8"))
    entries[0]["img_set"]["members"] = "dev-0-img0"
    _write(path, entries)

    with pytest.raises(ValueError, match=r"cap\.rc2\.val\.json: entry 0, img_set, key 'members'"):
        load_cirr_queries(cirr_root, "val")


def test_unknown_split_is_rejected(cirr_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown CIRR split 'test'"):
        evaluate_cirr(cirr_root, "test", _cirr_rank)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda r: [*r[:-1], "not-an-image"], "not in the gallery"),
        (lambda r: [r[0], *r], "ranked twice"),
        (lambda r: r[:40], "at least 50 are needed"),
        (lambda r: [i for i in r if i not in {"dev-3-img0", "dev-4-img0"}], "img_set members"),
    ],
)
def test_bad_rankings_are_rejected(
    cirr_root: Path, mangle: Callable[[list[str]], list[str]], message: str
) -> None:
    def rank(queries: list[CIRRQuery]) -> list[list[str]]:
        return [mangle(r) for r in _cirr_rank(queries)]

    with pytest.raises(ValueError, match=message):
        evaluate_cirr(cirr_root, "val", rank)


def test_rank_must_answer_every_query(cirr_root: Path) -> None:
    with pytest.raises(ValueError, match="3 queries"):
        evaluate_cirr(cirr_root, "val", lambda queries: _cirr_rank(queries)[:2])
