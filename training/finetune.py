"""`circhat finetune --from-triplets`: continue stage 2 on the picks customers made, and register the result.

One round: read the pick log, turn usable records into triplets over the
catalog store's rows, hold out a deterministic share of *sessions*, continue the
parent version's stage-2 adapters (mapper frozen) on the harvested triplets
mixed with synthetic ones, score parent and new version side by side, and add
the new version to the registry. It is activated (unless forced) only if it is
not worse than its parent on the held-out picks *and* passes the forgetting
guard: its R@1 over the fixed synthetic benchmark sets (the same queries for
parent and new, ``benchmark_sets``) falls at most ``forgetting_tolerance`` (1)
point below the parent's. A candidate that fails it is saved with the verdict
"forgets" and refused by ``Registry.use`` like a worse one.

How records are cleaned, in this order (every drop is counted in the report):

* records before ``--since``, text-only picks (no reference image: nothing to
  compose with) and picks with no instructions in force are skipped;
* records whose reference or picked item is no longer in the catalog are
  skipped (``missing_item``); uploaded references are used only when the
  customer consented and the sanitised copy is still stored beside the log
  (else ``upload_not_stored``);
* duplicates (same session, reference, normalised instructions and target)
  count once;
* contradictions (same reference and normalised instructions, different
  targets): every record is one vote for its target's label (the attribute
  combination where the catalog has one, else the item id); the majority label
  is kept, minority records are dropped (``contradicted``), and a group whose top
  labels tie is dropped whole (``tied``). Different items of one combination
  agree, so two customers picking two blue dresses for "en bleu" do not conflict.

Everything is read from the LanceDB store (pooled embedding per row, patch
tokens for the references), so any ingested catalog works; synthetic triplets
and the benchmark sets need the demo attributes and are skipped (and said so)
on a catalog without them. Held-out sessions are chosen by a hash of the
session id, so the same log always splits the same way.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrieval.backbone import Backbone, BackboneSpec, load_backbone
from retrieval.image_io import ImageRejected, load_image
from retrieval.jsonl_log import scan_log
from retrieval.query_encoder import ModelMismatch, QueryEncoder
from retrieval.store import CatalogStore
from training.registry import Registry, Version, learning_figures
from training.stage2 import Stage2Config, continue_stage2, mine_hard_negatives
from training.triplets import Triplet, make_triplets
from training.world import ATTRIBUTES, NONE, VALUES, Combo

KS = (1, 10)
FETCH_CHUNK = 512


class NothingToLearn(ValueError):
    """The log holds no usable pick for training."""


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning round; ``synthetic_per_pick`` synthetic triplets are mixed in per harvested one (at least
    ``min_synthetic``), plus ``text_triplets`` text-only ones (a caption as reference, ``training.stage2``).
    ``hard_negatives`` per triplet: for a pick, the items shown beside it that the customer passed over first."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 1e-3
    temperature: float = 0.05
    hard_negatives: int = 11
    synthetic_per_pick: float = 8.0
    min_synthetic: int = 300
    text_triplets: int = 0
    heldout_share: float = 0.2
    benchmark_queries: int = 300
    forgetting_tolerance: float = 1.0
    seed: int = 0
    bf16: bool = True

    def stage2(self) -> Stage2Config:
        return Stage2Config(steps=self.steps, batch_size=self.batch_size, lr=self.lr, temperature=self.temperature,
                            hard_negatives=self.hard_negatives, seed=self.seed, bf16=self.bf16)


class RowPatches:
    """Patch tokens for the rows asked for only (the references), read from the store on first use."""

    def __init__(self, fetch: Callable[[list[int]], list[torch.Tensor]]):
        self._fetch = fetch
        self._rows: dict[int, torch.Tensor] = {}

    def put(self, row: int, patches: torch.Tensor) -> None:
        self._rows[row] = patches

    def __getitem__(self, rows: Any) -> torch.Tensor:
        rows = [int(r) for r in np.atleast_1d(np.asarray(rows))]
        missing = sorted({r for r in rows if r not in self._rows})
        for i in range(0, len(missing), FETCH_CHUNK):
            chunk = missing[i:i + FETCH_CHUNK]
            for r, tensor in zip(chunk, self._fetch(chunk), strict=True):
                self._rows[r] = tensor
        return torch.stack([self._rows[r] for r in rows])


@dataclass
class CatalogFeatures:
    """A catalog store's rows as stage-2 inputs (``training.stage2.Stage2Features``).

    Row i is catalog item ``ids[i]``; rows from ``n_catalog`` on are uploaded
    references, never ranked. ``combo_keys`` is each row's label: its attribute
    combination when the catalog has the demo attributes (``has_combos``), else its id.
    """

    ids: list[str]
    pooled: torch.Tensor
    patches: RowPatches
    combo_keys: np.ndarray
    splits: np.ndarray
    has_combos: bool
    n_catalog: int
    row_of: dict[str, int] = field(default_factory=dict)

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits[:self.n_catalog] == split)

    def add_upload(self, key: str, pooled: torch.Tensor, patches: torch.Tensor) -> int:
        """Append an uploaded reference's features; returns its row."""
        if key in self.row_of:
            return self.row_of[key]
        row = len(self.pooled)
        self.pooled = torch.cat([self.pooled, pooled.reshape(1, -1).float()])
        self.combo_keys = np.append(self.combo_keys, f"upload:{key}")
        self.splits = np.append(self.splits, "upload")
        self.patches.put(row, patches.reshape(patches.shape[-2:]).float())
        self.row_of[key] = row
        return row


def combo_labels(table: dict[str, list], ids: list[str]) -> tuple[np.ndarray, bool]:
    """Each row's attribute combination (from a ``combo`` column or the attribute columns), else its id."""
    if "combo" in table:
        keys = [str(k or "") for k in table["combo"]]
    elif all(a in table for a in ATTRIBUTES):
        keys = ["|".join(str(table[a][i] or NONE) for a in ATTRIBUTES) for i in range(len(ids))]
    else:
        return np.array(ids, dtype=object).astype(str), False
    if keys and all(_is_combo(k) for k in keys):
        return np.array(keys), True
    return np.array(ids, dtype=object).astype(str), False


def _is_combo(key: str) -> bool:
    parts = key.split("|")
    return len(parts) == len(ATTRIBUTES) and all(p in VALUES[a] or p == NONE for a, p in zip(ATTRIBUTES, parts,
                                                                                              strict=True))


def catalog_features(store: CatalogStore, backbone: Backbone) -> CatalogFeatures:
    """Every row's pooled embedding and label from the store; patch tokens are fetched per reference row."""
    if store.identity != backbone.identity:
        raise ModelMismatch(f"catalog {store.table.name!r} was embedded with backbone {store.identity}, not the "
                            f"loaded {backbone.identity}; re-embed it with `circhat ingest --reembed`")
    names = store.layout.metadata_names
    columns = ["id", "path", "embedding", *(c for c in ("combo", "split", *ATTRIBUTES) if c in names)]
    table = store.snapshot(columns).to_pydict()
    ids = [str(i) for i in table["id"]]
    if len(ids) != len(store):
        raise RuntimeError(f"read {len(ids)} of {len(store)} catalog rows; the store changed while reading, retry")
    paths = list(table["path"])
    keys, has_combos = combo_labels(table, ids)
    splits = np.array([str(s or "train") for s in table["split"]]) if "split" in table else \
        np.full(len(ids), "train")
    shape = store.layout.patch_shape

    def fetch(rows: list[int]) -> list[torch.Tensor]:
        if shape is None:
            pixels = backbone.image_tensor([load_image(paths[r]) for r in rows])
            return list(backbone.encode_images_with_patches(pixels)[1].cpu().float())
        got = {row["id"]: row["patches"] for row in store.fetch([ids[r] for r in rows], ["id", "patches"]).to_pylist()}
        return [torch.tensor(got[ids[r]], dtype=torch.float32).reshape(shape) for r in rows]

    pooled = torch.tensor(np.asarray(table["embedding"], dtype=np.float32))
    return CatalogFeatures(ids=ids, pooled=pooled, patches=RowPatches(fetch), combo_keys=keys, splits=splits,
                           has_combos=has_combos, n_catalog=len(ids), row_of={i: r for r, i in enumerate(ids)})


@dataclass
class Pick:
    """One usable logged pick: (reference, instructions in force, picked item) and what was shown beside it."""

    session: str
    time: str
    reference: str
    upload: Path | None
    instructions: list[str]
    target: str
    shown: list[str]
    model: str | None = None


@dataclass
class Harvest:
    """The picks kept and why the others were not."""

    picks: list[Pick]
    counts: dict[str, int]


COUNT_KEYS = ("records", "before_since", "unreadable", "no_reference", "no_instructions", "missing_item",
              "upload_not_stored", "duplicates", "contradicted", "tied", "kept")


def normalise(instructions: Iterable[str]) -> str:
    """Instructions compared loosely: case, accents' composition, punctuation and spacing do not matter."""
    parts = []
    for text in instructions:
        text = unicodedata.normalize("NFKC", str(text)).casefold()
        text = re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text)).strip()
        if text:
            parts.append(text)
    return " , ".join(parts)


def parse_since(text: str) -> datetime:
    """``2025-03-01`` or a full ISO time; a time without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since takes a date like 2025-03-01 or an ISO time, not {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def harvest(records: Iterable[dict[str, Any]], catalog_ids: set[str] | dict[str, int], log_dir: Path,
            label: Callable[[str], str], since: datetime | None = None) -> Harvest:
    """Usable picks from log records, cleaned as the module docstring says; ``label`` names a target's class."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    candidates: list[Pick] = []
    for record in records:
        counts["records"] += 1
        pick = _pick(record, catalog_ids, Path(log_dir), since, counts)
        if pick is not None:
            candidates.append(pick)
    seen: set[tuple] = set()
    unique: list[Pick] = []
    for pick in candidates:
        key = (pick.session, pick.reference, normalise(pick.instructions), pick.target)
        if key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(key)
        unique.append(pick)
    groups: dict[tuple[str, str], list[Pick]] = defaultdict(list)
    for pick in unique:
        groups[(pick.reference, normalise(pick.instructions))].append(pick)
    dropped: set[int] = set()
    for group in groups.values():
        votes = Counter(label(p.target) for p in group)
        if len(votes) < 2:
            continue
        (top, n), (_, runner_up) = votes.most_common(2)
        if n == runner_up:
            counts["tied"] += len(group)
            dropped.update(id(p) for p in group)
            continue
        losers = [p for p in group if label(p.target) != top]
        counts["contradicted"] += len(losers)
        dropped.update(id(p) for p in losers)
    picks = [p for p in unique if id(p) not in dropped]
    counts["kept"] = len(picks)
    return Harvest(picks, counts)


def _pick(record: dict[str, Any], catalog: set[str] | dict[str, int], log_dir: Path, since: datetime | None,
          counts: dict[str, int]) -> Pick | None:
    try:
        when = datetime.fromisoformat(str(record["time"]))
        target = str(record["picked"]["id"])
        session = str(record["session"])
        instructions = [str(s) for s in record.get("instructions") or []]
        reference = record.get("reference")
        if reference is not None and not isinstance(reference, dict):
            raise TypeError("reference is not an object")
    except (KeyError, TypeError, ValueError):
        counts["unreadable"] += 1
        return None
    if since is not None and (when if when.tzinfo else when.replace(tzinfo=UTC)) < since:
        counts["before_since"] += 1
        return None
    if not reference:
        counts["no_reference"] += 1
        return None
    if not normalise(instructions):
        counts["no_instructions"] += 1
        return None
    upload = None
    if reference.get("kind") == "catalog":
        key = str(reference.get("id"))
        if key not in catalog:
            counts["missing_item"] += 1
            return None
    else:
        key = str(reference.get("sha256"))
        stored = reference.get("stored")
        upload = (log_dir / stored).resolve() if stored and reference.get("consent") else None
        if upload is None or not upload.is_file() or not upload.is_relative_to(log_dir.resolve()):
            counts["upload_not_stored"] += 1
            return None
    if target not in catalog:
        counts["missing_item"] += 1
        return None
    shown = [str(s.get("id")) for s in record.get("shown") or [] if isinstance(s, dict)]
    return Pick(session, str(record["time"]), key, upload, instructions, target, shown, record.get("model"))


def is_heldout(session: str, share: float) -> bool:
    """Whether a (hashed) session id falls in the evaluation share; the same id always falls the same way."""
    digest = hashlib.sha256(f"circhat-heldout:{session}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < share


def pick_triplets(picks: list[Pick], features: CatalogFeatures, backbone: Backbone, negatives: int,
                  seed: int) -> tuple[list[Triplet], np.ndarray, list[list[int]], int]:
    """(triplets over ``features`` rows, their hard negatives, the rows shown with each pick, uploads encoded).

    Negatives are the items shown beside the pick that the customer passed over
    (the ones the model ranked highest), then random catalog rows of another label.
    """
    rng = np.random.default_rng(seed)
    triplets, rows, shown, uploads = [], [], [], 0
    for pick in picks:
        if pick.upload is not None:
            if pick.reference not in features.row_of:
                try:
                    image = load_image(pick.upload)
                except ImageRejected:
                    continue
                pooled, patches = backbone.encode_images_with_patches(backbone.image_tensor([image]))
                uploads += 1
                features.add_upload(pick.reference, pooled.cpu()[0], patches.cpu()[0])
            ref = features.row_of[pick.reference]
        else:
            ref = features.row_of[pick.reference]
        target = features.row_of[pick.target]
        label = features.combo_keys[target]
        triplets.append(Triplet(ref, list(pick.instructions), str(label), target))
        shown.append(sorted({features.row_of[s] for s in pick.shown if s in features.row_of} | {target}))
        passed = [features.row_of[s] for s in pick.shown if s in features.row_of and s != pick.target
                  and features.combo_keys[features.row_of[s]] != label][:negatives]
        while len(passed) < negatives:
            r = int(rng.integers(features.n_catalog))
            if features.combo_keys[r] != label:
                passed.append(r)
        rows.append(passed)
    return triplets, np.array(rows, dtype=np.int64).reshape(len(triplets), negatives), shown, uploads


@dataclass
class CatalogItem:
    """A store row as ``training.triplets`` sees a world item: its row is its id."""

    id: int
    combo: Combo
    split: str


@dataclass
class CatalogWorld:
    """The store's rows in the shape ``make_triplets`` reads (``items`` with id, combo, split)."""

    items: list[CatalogItem]

    @classmethod
    def of(cls, features: CatalogFeatures) -> CatalogWorld:
        return cls([CatalogItem(r, Combo.from_key(str(features.combo_keys[r])), str(features.splits[r]))
                    for r in range(features.n_catalog)])


def benchmark_sets(world: CatalogWorld, features: CatalogFeatures, n: int) -> dict[str, list[Triplet]]:
    """Fixed synthetic query sets over the catalog (1- and 2-attribute edits, held-out combinations when the
    catalog has them), the same for every version so parent and new are compared on identical queries."""
    if n <= 0:
        return {}
    heldout = len(features.rows("heldout")) > 0
    split, refs = ("heldout", ("train", "heldout")) if heldout else ("train", ("train",))
    name = "held-out" if heldout else "seen"
    return {f"{k}-attr {name}": make_triplets(world, n, 20 + k, (k,), split, refs) for k in (1, 2)}  # type: ignore[arg-type]


def catalog_scores(encoder: QueryEncoder, features: CatalogFeatures, triplets: list[Triplet]) -> torch.Tensor:
    """(len(triplets), catalog rows) query-item similarities; a catalog reference is never a candidate."""
    refs = np.array([t.reference_id for t in triplets])
    queries = encoder.encode(features.pooled[refs], features.patches[refs], [t.instructions for t in triplets])
    scores = queries.float() @ features.pooled[:features.n_catalog].float().T
    inside = refs < features.n_catalog
    scores[torch.from_numpy(np.flatnonzero(inside)), torch.from_numpy(refs[inside])] = float("-inf")
    return scores


@torch.no_grad()
def recall(encoder: QueryEncoder, features: CatalogFeatures, triplets: list[Triplet],
           ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@K in percent against the catalog rows (uploads never ranked, a catalog reference never counted),
    by label (any item of the target's combination) and by the picked image itself."""
    if not triplets:
        return {**{f"R@{k}": 0.0 for k in ks}, "queries": 0}
    top = catalog_scores(encoder, features, triplets).topk(max(ks), dim=1).indices.numpy()
    label_hit = features.combo_keys[top] == np.array([t.target_combo for t in triplets])[:, None]
    image_hit = top == np.array([t.target_id for t in triplets])[:, None]
    out = {f"R@{k}": round(float(label_hit[:, :k].any(1).mean() * 100), 2) for k in ks}
    out |= {f"R@{k} (image)": round(float(image_hit[:, :k].any(1).mean() * 100), 2) for k in ks}
    return out | {"queries": len(triplets)}


@torch.no_grad()
def choice(encoder: QueryEncoder, features: CatalogFeatures, triplets: list[Triplet],
           shown: list[list[int]]) -> dict[str, float]:
    """Would this version have made the customer's choice: show the pick itself (its label within the version's
    own top k over the catalog, k the items that turn showed) and rank it first among the items shown with it
    (``choice@1``, %); ``choice MRR`` is the mean reciprocal rank of the pick among them, 0 when not shown.

    Ranking only what the serving version showed does not favour that version the way catalog recall does;
    requiring the pick on the version's own page stops a collapsed model, which orders those few items at
    random, from winning. Items of the pick's label count as the pick; turns that showed nothing else are
    left out."""
    kept = [i for i, t in enumerate(triplets) if any(features.combo_keys[r] != t.target_combo for r in shown[i])]
    if not kept:
        return {"choice@1": 0.0, "choice MRR": 0.0, "choices": 0}
    scores = catalog_scores(encoder, features, [triplets[i] for i in kept])
    first, reciprocal = [], []
    for row_scores, i in zip(scores, kept, strict=True):
        label = triplets[i].target_combo
        page = row_scores.topk(min(len(shown[i]), features.n_catalog)).indices.numpy()
        rows = np.array(shown[i])
        order = rows[row_scores[torch.from_numpy(rows)].argsort(descending=True).numpy()]
        hits = features.combo_keys[order] == label
        on_page = bool((features.combo_keys[page] == label).any())
        first.append(on_page and bool(hits[0]))
        reciprocal.append(1.0 / (1 + int(np.argmax(hits))) if on_page else 0.0)
    return {"choice@1": round(100 * float(np.mean(first)), 2), "choice MRR": round(float(np.mean(reciprocal)), 4),
            "choices": len(kept)}


GUARD_FIGURE = "benchmark R@1"


def benchmark_r1(benchmark: dict[str, dict[str, float]]) -> float | None:
    """The guard's figure: R@1 (%, the target's attribute combination first over the whole catalog) over all
    queries of the fixed synthetic benchmark sets together (each set weighted by its queries); None without sets."""
    queries = sum(int(figures["queries"]) for figures in benchmark.values())
    if not queries:
        return None
    return round(sum(figures["R@1"] * figures["queries"] for figures in benchmark.values()) / queries, 2)


def forgetting_guard(parent: dict[str, dict[str, float]], new: dict[str, dict[str, float]],
                     tolerance: float) -> dict[str, Any]:
    """Did the candidate keep what its parent knew: its benchmark R@1 may fall at most ``tolerance`` points.

    Held-out picks say whether the customers' new words were learned; only a fixed set of queries the parent
    already answered says whether the old ones were kept. ``kept`` is None (unguarded) without benchmark sets."""
    before, after = benchmark_r1(parent), benchmark_r1(new)
    guard = {"figure": GUARD_FIGURE, "sets": sorted(parent), "queries": sum(int(f["queries"]) for f in new.values()),
             "parent": before, "new": after, "tolerance": tolerance}
    if before is None or after is None:
        return guard | {"change": None, "kept": None}
    return guard | {"change": round(after - before, 2), "kept": bool(after >= before - tolerance)}


def verdict(parent: dict[str, float], new: dict[str, float], guard: dict[str, Any] | None = None) -> str:
    """better / same / worse on held-out picks, by choice@1 then choice MRR; untested without held-out choices;
    "forgets" when the picks are not worse but the forgetting guard failed."""
    if not parent.get("choices"):
        picks = "untested"
    else:
        a, b = (new["choice@1"], new["choice MRR"]), (parent["choice@1"], parent["choice MRR"])
        picks = "better" if a > b else "worse" if a < b else "same"
    if picks != "worse" and guard is not None and guard.get("kept") is False:
        return "forgets"
    return picks


def load_store_backbone(store: CatalogStore, device: str | None = None) -> Backbone:
    """The backbone the catalog was embedded with, as its schema records it."""
    spec = store.backbone_spec
    if not spec.get("model"):
        raise ValueError(f"catalog {store.table.name!r} does not record its backbone; it cannot be fine-tuned for")
    backbone = load_backbone(BackboneSpec(spec["model"], spec.get("pretrained")), device)
    if backbone.identity != store.identity:
        raise ModelMismatch(f"the backbone recorded for catalog {store.table.name!r} now loads as "
                            f"{backbone.identity}, but the rows were embedded with {store.identity}; re-embed it")
    return backbone


def finetune_from_log(store: CatalogStore, log_path: Path, registry: Registry,
                      config: FinetuneConfig = FinetuneConfig(), since: datetime | None = None,
                      parent: str | None = None, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """One round of learning from use; returns the before/after report (also saved beside the new version)."""
    start = time.perf_counter()
    log_path = Path(log_path)
    if not log_path.is_file():
        raise FileNotFoundError(f"no triplet log at {log_path} (picks in the app write it)")
    backbone = load_store_backbone(store)
    parent_version = _parent(registry, store, parent)
    encoder = registry.load(parent_version, backbone, store.identity)
    features = catalog_features(store, backbone)
    scan = scan_log(log_path)
    label = lambda item: str(features.combo_keys[features.row_of[item]])  # noqa: E731
    harvested = harvest(scan.records, features.row_of, log_path.parent, label, since)
    counts = {"bad_lines": scan.bad_lines, **harvested.counts}
    train_picks = [p for p in harvested.picks if not is_heldout(p.session, config.heldout_share)]
    heldout_picks = [p for p in harvested.picks if is_heldout(p.session, config.heldout_share)]
    if not train_picks:
        raise NothingToLearn(f"no usable picks to train on in {log_path}: "
                             + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    k = config.hard_negatives
    train, train_negatives, _, uploads_a = pick_triplets(train_picks, features, backbone, k, config.seed)
    heldout, _, heldout_shown, uploads_b = pick_triplets(heldout_picks, features, backbone, k, config.seed)
    synthetic, synthetic_negatives, sets = [], np.zeros((0, config.hard_negatives), dtype=np.int64), {}
    if features.has_combos:
        world = CatalogWorld.of(features)
        n_synthetic = max(config.min_synthetic, round(config.synthetic_per_pick * len(train)))
        synthetic = make_triplets(world, n_synthetic, config.seed + 101)  # type: ignore[arg-type]
        if config.text_triplets:
            synthetic += make_triplets(world, config.text_triplets, config.seed + 102,  # type: ignore[arg-type]
                                       text_references=True)
        synthetic_negatives = mine_hard_negatives(synthetic, features, features.rows("train"),
                                                  config.hard_negatives, config.seed)
        sets = benchmark_sets(world, features, config.benchmark_queries)
    counts |= {"sessions": len({p.session for p in harvested.picks}),
               "heldout_sessions": len({p.session for p in heldout_picks}),
               "train_picks": len(train), "heldout_picks": len(heldout), "synthetic": len(synthetic),
               "uploads_encoded": uploads_a + uploads_b}

    def measure() -> dict[str, Any]:
        return {"heldout_picks": recall(encoder, features, heldout) | choice(encoder, features, heldout, heldout_shown),
                "benchmark": {name: recall(encoder, features, t) for name, t in sets.items()}}

    before = measure()
    run = continue_stage2(encoder, features, train + synthetic, np.concatenate([train_negatives, synthetic_negatives]),
                          features.rows("train"), config.stage2(), progress)
    after = measure()
    guard = forgetting_guard(before["benchmark"], after["benchmark"], config.forgetting_tolerance)
    outcome = verdict(before["heldout_picks"], after["heldout_picks"], guard)
    activate = force or outcome in ("better", "same")
    metrics = {"verdict": outcome, "guard": guard,
               "heldout_picks": {"parent": before["heldout_picks"], "new": after["heldout_picks"]},
               "benchmark": {name: {"parent": before["benchmark"][name], "new": after["benchmark"][name]}
                             for name in sets}}
    training = {"kind": "finetune", "log": str(log_path.resolve()), "since": since.isoformat() if since else None,
                "store": {"db": store.db_uri, "table": store.table.name, "rows": features.n_catalog},
                "counts": counts, "config": asdict(config), "stage2": asdict(run),
                "synthetic_mix": bool(synthetic) or "catalog has no demo attributes: no synthetic triplets mixed in"}
    report = {"parent": parent_version.id, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              **metrics, "training": training, "force": force}
    folder = Path(tempfile.mkdtemp(prefix="circhat-finetune-"))
    try:
        for stale in ("created", "registry_version"):
            encoder.meta.pop(stale, None)
        encoder.save(folder / "composer", extra={"finetune": {"parent": parent_version.id, **asdict(run)}})
        report["seconds"] = round(time.perf_counter() - start, 1)
        version = registry.add(folder / "composer", parent_version.id, training, metrics,
                               report | {"activated": activate})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if activate:
        registry.use(version.id, force=force, store_identity=store.identity)
    return {"version": version.id, "activated": activate, **report}


def _parent(registry: Registry, store: CatalogStore, parent: str | None) -> Version:
    if parent:
        return registry.get(parent)
    active = registry.active(store.identity)
    if active is None:
        raise LookupError(f"no active model version for backbone {store.identity} in {registry.root}; run "
                          f"`circhat demo` (registers the demo composer) or `circhat models use ID`, or pass --parent")
    return active


def format_report(report: dict[str, Any]) -> str:
    """The before/after table a person reads after a fine-tune."""
    lines = [f"version {report['version']} (parent {report['parent']}): {report['verdict']}; "
             + ("activated" if report["activated"] else "NOT activated (saved; `circhat models use ID --force`)")]
    figures = learning_figures(report)
    guard = report.get("guard") or {}
    lines.append(f"held-out picks choice@1 {figures['picks'] or 'untested'}; forgetting guard: {GUARD_FIGURE} "
                 f"{figures['benchmark'] or 'unguarded (no benchmark set)'}"
                 + (f" over {guard['queries']} fixed synthetic queries, {'kept' if guard['kept'] else 'FORGETS'} "
                    f"(it may lose at most {guard['tolerance']:g} point)" if guard.get("kept") is not None else ""))
    counts = report["training"]["counts"]
    lines.append("picks: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v or k in ("kept", "records")))
    picks = report["heldout_picks"]
    if picks["parent"].get("choices"):
        lines.append(f"choice among the items shown (held-out picks, n={picks['new']['choices']}): choice@1 "
                     f"{picks['parent']['choice@1']:.1f} -> {picks['new']['choice@1']:.1f}, MRR "
                     f"{picks['parent']['choice MRR']:.3f} -> {picks['new']['choice MRR']:.3f}")
    lines.append(f"{'query set':<26}{'parent R@1':>11}{'new R@1':>9}{'parent R@10':>13}{'new R@10':>10}{'n':>6}")
    rows = [("held-out picks", picks), *report["benchmark"].items()]
    for name, pair in rows:
        p, n = pair["parent"], pair["new"]
        lines.append(f"{name:<26}{p['R@1']:>11.1f}{n['R@1']:>9.1f}{p['R@10']:>13.1f}{n['R@10']:>10.1f}"
                     f"{n['queries']:>6}")
    return "\n".join(lines)


def replace_config(config: FinetuneConfig, **changes: Any) -> FinetuneConfig:
    """``config`` with the command line's overrides (None means keep)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
