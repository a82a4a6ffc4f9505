"""Evaluators for the FashionIQ, CIRR and CIRCO composed image retrieval benchmarks.

They read the official annotation files and compute the official metrics, so that
numbers from any model can be compared with published ones. Each benchmark has
loaders (official files -> small dataclasses), pure metric functions (rankings ->
metrics) and an ``evaluate_*`` function that joins the two around a ``rank``
callable: given the queries, it returns for each one the gallery ids ranked
best-first. ``rankings_from_scores`` turns a query-by-gallery score matrix into
such rankings.

Protocol details, as in the official code:

* FashionIQ (XiaoxiaoGuo/fashion-iq; ABaldrati/CLIP4Cir ``src/validate.py``):
  Recall@10/50 per category over that category's ``image_splits`` gallery, the
  reference image left in the ranking; the average over the three categories,
  and the mean of the two averages.
* CIRR (Cuberick-Orion/CIRR, Cuberick-Orion/CIRPLANT, CLIP4Cir): Recall@1/5/10/50
  over the split gallery against ``target_hard`` with the reference image removed
  from the ranking; Recall_subset@1/2/3 over the query's ``img_set`` members,
  the reference again removed.
* CIRCO (miccunifi/CIRCO ``src/evaluation.py``): mAP@5/10/25/50 where
  AP@K = sum_{k<=K} P@k * rel(k) / min(K, |GT|); the ranking is scored as given,
  without removing the reference image. Recall@K of ``target_img_id`` is
  reported too, as the official script does.

All values are percentages (0-100).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_SPLITS = ("train", "val", "test")
FASHIONIQ_KS = (10, 50)

CIRR_VERSION = "rc2"
CIRR_SPLITS = ("train", "val", "test1")
CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)

CIRCO_SPLITS = ("val", "test")
CIRCO_KS = (5, 10, 25, 50)
CIRCO_GALLERY_FILE = Path("COCO2017_unlabeled") / "annotations" / "image_info_unlabeled2017.json"


@dataclass(frozen=True, slots=True)
class FashionIQQuery:
    """One FashionIQ triplet; ``target`` is None in the test split."""

    category: str
    reference: str
    captions: tuple[str, ...]
    target: str | None


@dataclass(frozen=True, slots=True)
class CIRRQuery:
    """One CIRR query; ``target`` (``target_hard``) is None in the test1 split."""

    pair_id: int
    reference: str
    caption: str
    subset_id: int
    subset_members: tuple[str, ...]
    target: str | None
    target_soft: dict[str, float] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class CIRCOQuery:
    """One CIRCO query; ``target`` and ``ground_truth`` are absent in the test split."""

    query_id: int
    reference: str
    caption: str
    shared_concept: str
    target: str | None
    ground_truth: tuple[str, ...]


Rankings = Sequence[Sequence[str]]


def _read_json(path: Path) -> Any:
    """Parses an annotation file, naming it in any error."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
    """Rejects a split or category name the benchmark does not define."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """Returns ``value`` if it has the JSON type the official format prescribes."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{where}: expected {names}, got {type(value).__name__}")
    return value


def _get(entry: Any, key: str, kind: type | tuple[type, ...], where: str, required: bool = True) -> Any:
    """Reads one typed field of an annotation entry; None if optional and absent."""
    _expect(entry, dict, where)
    if key not in entry:
        if required:
            raise ValueError(f"{where}: missing key {key!r}")
        return None
    return _expect(entry[key], kind, f"{where}, key {key!r}")


def _image_id(value: Any, where: str) -> str:
    """Normalises an image id (a name, or a COCO integer id) to a string."""
    return str(_expect(value, (str, int), where))


def _image_ids(values: Any, where: str) -> tuple[str, ...]:
    """Normalises a JSON list of image ids to a tuple of strings."""
    return tuple(_image_id(value, f"{where}[{i}]") for i, value in enumerate(_expect(values, list, where)))


def _entries(path: Path) -> list[Any]:
    """Reads an annotation file whose top level is a list of entries."""
    return _expect(_read_json(path), list, f"{path}: top level")


def fashioniq_captions_path(annotation_root: Path, category: str, split: str) -> Path:
    """Location of the official FashionIQ caption file for a category and split."""
    return Path(annotation_root) / "captions" / f"cap.{category}.{split}.json"


def fashioniq_gallery_path(annotation_root: Path, category: str, split: str) -> Path:
    """Location of the official FashionIQ image-split (gallery) file."""
    return Path(annotation_root) / "image_splits" / f"split.{category}.{split}.json"


def load_fashioniq_queries(annotation_root: Path, category: str, split: str) -> list[FashionIQQuery]:
    """Parses ``captions/cap.{category}.{split}.json`` into queries."""
    _check_choice(category, FASHIONIQ_CATEGORIES, "FashionIQ category")
    _check_choice(split, FASHIONIQ_SPLITS, "FashionIQ split")
    path = fashioniq_captions_path(annotation_root, category, split)
    queries = []
    for index, entry in enumerate(_entries(path)):
        where = f"{path}: entry {index}"
        captions = _get(entry, "captions", list, where)
        queries.append(
            FashionIQQuery(
                category=category,
                reference=_get(entry, "candidate", str, where),
                captions=tuple(_expect(c, str, f"{where}, captions[{i}]") for i, c in enumerate(captions)),
                target=_get(entry, "target", str, where, required=False),
            )
        )
    return queries


def load_fashioniq_gallery(annotation_root: Path, category: str, split: str) -> list[str]:
    """Parses ``image_splits/split.{category}.{split}.json``: the category's gallery."""
    _check_choice(category, FASHIONIQ_CATEGORIES, "FashionIQ category")
    _check_choice(split, FASHIONIQ_SPLITS, "FashionIQ split")
    path = fashioniq_gallery_path(annotation_root, category, split)
    names = _expect(_read_json(path), list, f"{path}: top level")
    return list(dict.fromkeys(_expect(n, str, f"{path}: item {i}") for i, n in enumerate(names)))


def cirr_captions_path(annotation_root: Path, split: str) -> Path:
    """Location of the official CIRR caption file for a split."""
    return Path(annotation_root) / "captions" / f"cap.{CIRR_VERSION}.{split}.json"


def cirr_gallery_path(annotation_root: Path, split: str) -> Path:
    """Location of the official CIRR image-split (gallery) file."""
    return Path(annotation_root) / "image_splits" / f"split.{CIRR_VERSION}.{split}.json"


def load_cirr_queries(annotation_root: Path, split: str) -> list[CIRRQuery]:
    """Parses ``captions/cap.rc2.{split}.json`` into queries."""
    _check_choice(split, CIRR_SPLITS, "CIRR split")
    path = cirr_captions_path(annotation_root, split)
    queries = []
    for index, entry in enumerate(_entries(path)):
        where = f"{path}: entry {index}"
        img_set = _get(entry, "img_set", dict, where)
        soft = _get(entry, "target_soft", dict, where, required=False) or {}
        queries.append(
            CIRRQuery(
                pair_id=_get(entry, "pairid", int, where),
                reference=_get(entry, "reference", str, where),
                caption=_get(entry, "caption", str, where),
                subset_id=_get(img_set, "id", int, f"{where}, img_set"),
                subset_members=_image_ids(_get(img_set, "members", list, f"{where}, img_set"),
                                          f"{where}, img_set members"),
                target=_get(entry, "target_hard", str, where, required=False),
                target_soft={
                    name: float(_expect(score, (int, float), f"{where}, target_soft[{name!r}]"))
                    for name, score in soft.items()
                },
            )
        )
    return queries


def load_cirr_gallery(annotation_root: Path, split: str) -> list[str]:
    """Parses ``image_splits/split.rc2.{split}.json`` (name -> path): the split's gallery."""
    _check_choice(split, CIRR_SPLITS, "CIRR split")
    path = cirr_gallery_path(annotation_root, split)
    mapping = _expect(_read_json(path), dict, f"{path}: top level")
    for name, relative in mapping.items():
        _expect(relative, str, f"{path}: value of {name!r}")
    return list(mapping)


def circo_annotations_path(annotation_root: Path, split: str) -> Path:
    """Location of the official CIRCO annotation file for a split."""
    return Path(annotation_root) / "annotations" / f"{split}.json"


def circo_gallery_path(annotation_root: Path) -> Path:
    """Location of the COCO 2017 unlabeled image list that is CIRCO's gallery."""
    return Path(annotation_root) / CIRCO_GALLERY_FILE


def load_circo_queries(annotation_root: Path, split: str) -> list[CIRCOQuery]:
    """Parses ``annotations/{split}.json`` into queries, image ids as strings."""
    _check_choice(split, CIRCO_SPLITS, "CIRCO split")
    path = circo_annotations_path(annotation_root, split)
    queries = []
    for index, entry in enumerate(_entries(path)):
        where = f"{path}: entry {index}"
        target = _get(entry, "target_img_id", (str, int), where, required=False)
        ground_truth = _get(entry, "gt_img_ids", list, where, required=False)
        queries.append(
            CIRCOQuery(
                query_id=_get(entry, "id", int, where),
                reference=_image_id(_get(entry, "reference_img_id", (str, int), where), where),
                caption=_get(entry, "relative_caption", str, where),
                shared_concept=_get(entry, "shared_concept", str, where),
                target=None if target is None else str(target),
                ground_truth=() if ground_truth is None else _image_ids(ground_truth, f"{where}, gt_img_ids"),
            )
        )
    return queries


def load_circo_gallery(annotation_root: Path) -> list[str]:
    """Parses the COCO ``image_info_unlabeled2017.json`` into gallery ids (strings)."""
    path = circo_gallery_path(annotation_root)
    images = _get(_read_json(path), "images", list, f"{path}: top level")
    return list(dict.fromkeys(
        _image_id(_get(image, "id", (str, int), f"{path}: images[{i}]"), f"{path}: images[{i}]")
        for i, image in enumerate(images)
    ))


def rankings_from_scores(
    scores: np.ndarray, gallery_ids: Sequence[str], top_k: int | None = None
) -> list[list[str]]:
    """Turns a (queries x gallery) similarity matrix into gallery ids ranked best-first."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != len(gallery_ids):
        raise ValueError(f"scores must have shape (n_queries, {len(gallery_ids)}), got {matrix.shape}")
    if np.isnan(matrix).any():
        raise ValueError("scores contain NaN")
    order = np.argsort(-matrix, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :top_k]
    ids = np.asarray(gallery_ids, dtype=object)
    return [ids[row].tolist() for row in order]


def _checked_ks(ks: Iterable[int]) -> tuple[int, ...]:
    """Validates cut-offs so that a typo cannot silently give a meaningless metric."""
    values = tuple(ks)
    if not values or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in values):
        raise ValueError(f"cut-offs must be positive integers, got {values}")
    return values


def _check_pairing(rankings: Sequence[Any], others: Sequence[Any], what: str) -> None:
    """Makes sure there is exactly one ranking per query and at least one query."""
    if len(rankings) != len(others):
        raise ValueError(f"got {len(rankings)} rankings for {len(others)} {what}")
    if not rankings:
        raise ValueError("no queries to evaluate")


def recall_at_k(rankings: Rankings, targets: Sequence[str], ks: Iterable[int]) -> dict[int, float]:
    """Percentage of queries whose target is among the first k ranked ids, for each k."""
    cutoffs = _checked_ks(ks)
    _check_pairing(rankings, targets, "targets")
    positions = []
    for ranking, target in zip(rankings, targets, strict=True):
        ranked = list(ranking)
        positions.append(ranked.index(target) if target in ranked else None)
    return {
        k: 100.0 * sum(p is not None and p < k for p in positions) / len(positions) for k in cutoffs
    }


def average_precision_at_k(ranking: Sequence[str], relevant: Collection[str], k: int) -> float:
    """CIRCO AP@k as a fraction: sum of P@i at relevant ranks i <= k, over min(k, |relevant|)."""
    (k,) = _checked_ks((k,))
    if not relevant:
        raise ValueError("AP needs at least one relevant image")
    relevant_set = set(relevant)
    hits = 0
    total = 0.0
    for position, image in enumerate(list(ranking)[:k], start=1):
        if image in relevant_set:
            hits += 1
            total += hits / position
    return total / min(k, len(relevant))


def mean_average_precision_at_k(
    rankings: Rankings, relevant: Sequence[Collection[str]], ks: Iterable[int]
) -> dict[int, float]:
    """mAP@k as a percentage: AP@k averaged over queries, for each k."""
    cutoffs = _checked_ks(ks)
    _check_pairing(rankings, relevant, "ground-truth sets")
    pairs = list(zip(rankings, relevant, strict=True))
    return {k: 100.0 * float(np.mean([average_precision_at_k(r, g, k) for r, g in pairs])) for k in cutoffs}


def without_reference(ranking: Sequence[str], reference: str) -> list[str]:
    """The ranking with the query's reference image removed, as CIRR scores it."""
    return [image for image in ranking if image != reference]


def subset_ranking(ranking: Sequence[str], members: Collection[str], reference: str) -> list[str]:
    """The ranking restricted to the CIRR ``img_set`` members other than the reference."""
    keep = set(members) - {reference}
    return [image for image in ranking if image in keep]


def _targets(queries: Sequence[FashionIQQuery | CIRRQuery | CIRCOQuery]) -> list[str]:
    """The ground-truth target of every query; fails for splits whose labels are withheld."""
    missing = [q for q in queries if q.target is None]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(queries)} queries have no ground-truth target "
            "(the test splits withhold it; use the official evaluation server)"
        )
    return [q.target for q in queries if q.target is not None]


def fashioniq_metrics(
    queries: Sequence[FashionIQQuery], rankings: Rankings, ks: Iterable[int] = FASHIONIQ_KS
) -> dict[str, float]:
    """FashionIQ Recall@k for one category; the reference image stays in the ranking."""
    return {f"R@{k}": value for k, value in recall_at_k(rankings, _targets(queries), ks).items()}


def cirr_metrics(
    queries: Sequence[CIRRQuery],
    rankings: Rankings,
    ks: Iterable[int] = CIRR_KS,
    subset_ks: Iterable[int] = CIRR_SUBSET_KS,
) -> dict[str, float]:
    """CIRR Recall@k and Recall_subset@k against ``target_hard``, reference removed; R_avg too."""
    targets = _targets(queries)
    _check_pairing(rankings, queries, "queries")
    pruned = [without_reference(r, q.reference) for q, r in zip(queries, rankings, strict=True)]
    subsets = [subset_ranking(r, q.subset_members, q.reference) for q, r in zip(queries, pruned, strict=True)]
    metrics = {f"R@{k}": value for k, value in recall_at_k(pruned, targets, ks).items()}
    metrics.update({f"R_subset@{k}": value for k, value in recall_at_k(subsets, targets, subset_ks).items()})
    if "R@5" in metrics and "R_subset@1" in metrics:
        metrics["R_avg"] = (metrics["R@5"] + metrics["R_subset@1"]) / 2
    return metrics


def circo_metrics(
    queries: Sequence[CIRCOQuery], rankings: Rankings, ks: Iterable[int] = CIRCO_KS
) -> dict[str, float]:
    """CIRCO mAP@k over all ground truths and Recall@k of ``target_img_id``, ranking as given."""
    cutoffs = _checked_ks(ks)
    targets = _targets(queries)
    if any(not q.ground_truth for q in queries):
        raise ValueError("every CIRCO query needs gt_img_ids to compute mAP")
    ground_truth = [q.ground_truth for q in queries]
    maps = mean_average_precision_at_k(rankings, ground_truth, cutoffs)
    metrics = {f"mAP@{k}": value for k, value in maps.items()}
    metrics.update({f"R@{k}": value for k, value in recall_at_k(rankings, targets, cutoffs).items()})
    return metrics


def _run_rank(rank: Callable[[list[Any]], Rankings], queries: list[Any], what: str) -> list[list[str]]:
    """Calls the model's ranker and checks it answered once per query."""
    rankings = rank(list(queries))
    if isinstance(rankings, str | bytes) or not isinstance(rankings, Sequence):
        raise ValueError(f"{what}: rank must return a sequence of rankings, got {type(rankings).__name__}")
    if len(rankings) != len(queries):
        raise ValueError(f"{what}: rank returned {len(rankings)} rankings for {len(queries)} queries")
    return [list(ranking) for ranking in rankings]


def _validate_rankings(
    rankings: Sequence[list[str]],
    labels: Sequence[str],
    gallery: Collection[str],
    removed: Sequence[str | None],
    depth: int,
) -> None:
    """Rejects rankings with foreign or repeated ids, or too short for the deepest cut-off."""
    for ranking, label, skip in zip(rankings, labels, removed, strict=True):
        seen: set[str] = set()
        for image in ranking:
            if not isinstance(image, str):
                raise ValueError(f"{label}: ranked ids must be strings, got {type(image).__name__} {image!r}")
            if image not in gallery:
                raise ValueError(f"{label}: ranked id {image!r} is not in the gallery")
            if image in seen:
                raise ValueError(f"{label}: id {image!r} is ranked twice")
            seen.add(image)
        usable = len(seen) - (skip in seen)
        needed = min(depth, len(gallery) - (skip in gallery))
        if usable < needed:
            raise ValueError(f"{label}: ranking holds {usable} candidates, at least {needed} are needed")


def _require_in_gallery(images: Iterable[str], gallery: Collection[str], label: str, source: Path) -> None:
    """Fails when an annotated target cannot be retrieved because the gallery lacks it."""
    for image in images:
        if image not in gallery:
            raise ValueError(f"{label}: ground-truth image {image!r} is not in the gallery file {source}")


def evaluate_fashioniq(
    annotation_root: Path,
    split: str,
    rank: Callable[[list[FashionIQQuery]], Rankings],
    categories: Sequence[str] = FASHIONIQ_CATEGORIES,
) -> dict[str, float]:
    """FashionIQ R@10/R@50 per category, their averages, and the mean of both averages.

    ``rank`` is called once per category with that category's queries and must rank
    ``load_fashioniq_gallery(annotation_root, category, split)``, at least 50 deep.
    """
    if not categories:
        raise ValueError("no FashionIQ categories to evaluate")
    metrics: dict[str, float] = {}
    for category in categories:
        queries = load_fashioniq_queries(annotation_root, category, split)
        gallery = load_fashioniq_gallery(annotation_root, category, split)
        captions = fashioniq_captions_path(annotation_root, category, split)
        source = fashioniq_gallery_path(annotation_root, category, split)
        targets = _targets(queries)
        labels = [f"{captions.name} entry {i}" for i in range(len(queries))]
        gallery_set = set(gallery)
        for label, target in zip(labels, targets, strict=True):
            _require_in_gallery([target], gallery_set, label, source)
        rankings = _run_rank(rank, queries, f"FashionIQ {category}")
        _validate_rankings(rankings, labels, gallery_set, [None] * len(queries), max(FASHIONIQ_KS))
        for name, value in fashioniq_metrics(queries, rankings).items():
            metrics[f"{category}_{name}"] = value
    for k in FASHIONIQ_KS:
        metrics[f"avg_R@{k}"] = float(np.mean([metrics[f"{c}_R@{k}"] for c in categories]))
    metrics["avg"] = float(np.mean([metrics[f"avg_R@{k}"] for k in FASHIONIQ_KS]))
    return metrics


def evaluate_cirr(
    annotation_root: Path, split: str, rank: Callable[[list[CIRRQuery]], Rankings]
) -> dict[str, float]:
    """CIRR R@1/5/10/50, R_subset@1/2/3 and R_avg = (R@5 + R_subset@1) / 2.

    ``rank`` must rank ``load_cirr_gallery(annotation_root, split)`` deep enough to
    hold 50 candidates besides the reference and every ``img_set`` member; the full
    ranking always is. A reference image left in the ranking is removed here.
    """
    queries = load_cirr_queries(annotation_root, split)
    gallery = set(load_cirr_gallery(annotation_root, split))
    source = cirr_gallery_path(annotation_root, split)
    targets = _targets(queries)
    labels = [f"CIRR pairid {q.pair_id}" for q in queries]
    for label, target in zip(labels, targets, strict=True):
        _require_in_gallery([target], gallery, label, source)
    rankings = _run_rank(rank, queries, "CIRR")
    _validate_rankings(rankings, labels, gallery, [q.reference for q in queries], max(CIRR_KS))
    for query, label, ranking in zip(queries, labels, rankings, strict=True):
        absent = sorted((set(query.subset_members) - {query.reference} - set(ranking)) & gallery)
        if absent:
            raise ValueError(f"{label}: img_set members {absent} are missing from the ranking")
    return cirr_metrics(queries, rankings)


def evaluate_circo(
    annotation_root: Path, split: str, rank: Callable[[list[CIRCOQuery]], Rankings]
) -> dict[str, float]:
    """CIRCO mAP@5/10/25/50 (and Recall@K of the annotated target), ranking scored as given.

    ``rank`` must rank ``load_circo_gallery(annotation_root)`` (image ids as strings)
    at least 50 deep; as in the official evaluation the reference is not removed.
    """
    queries = load_circo_queries(annotation_root, split)
    gallery = set(load_circo_gallery(annotation_root))
    source = circo_gallery_path(annotation_root)
    _targets(queries)
    labels = [f"CIRCO query id {q.query_id}" for q in queries]
    for query, label in zip(queries, labels, strict=True):
        _require_in_gallery(query.ground_truth, gallery, label, source)
    rankings = _run_rank(rank, queries, "CIRCO")
    _validate_rankings(rankings, labels, gallery, [None] * len(queries), max(CIRCO_KS))
    return circo_metrics(queries, rankings)
