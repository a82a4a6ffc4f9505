"""``circhat build``: a shop's folder of photos and its metadata file, to a servable catalog with its own model.

One path for any catalog, the demo's included::

    read metadata + schema -> backbone (pretrained open_clip, or the tiny one trained on the catalog's own
    images and metadata captions) -> ingest into LanceDB -> stage 1 on the catalog's images -> synthetic
    triplets from pairs of its items (``training.schema_triplets``) -> stage 2 with mined hard negatives ->
    held-out evaluation against the image-only, text-only and sum baselines -> simulated shoppers through the
    assistant -> a registered, active model version -> ``report.json``

Every training step is cached in the build folder under a digest of its inputs (the catalog's contents, the
backbone's identity, the step's config), written to a ``.partial`` folder and renamed when complete, so a
killed build resumes at the first step that had not finished, and a rerun with nothing changed trains nothing.
Ingest is incremental by itself. Held-out labels (``training.catalog_labels``) are never trained on.

>>> report = build_catalog(Path("shop"), Path("shop/products.csv"), Path("shop.lancedb"))  # doctest: +SKIP
>>> report.evaluation["2-attr held-out"]["two-stage"]["R@1"]                               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrieval.backbone import Backbone, BackboneSpec, load_backbone
from retrieval.durable_files import write_atomically
from retrieval.image_io import load_image
from retrieval.ingest import file_hash, ingest, read_catalog
from retrieval.query_encoder import QueryEncoder
from retrieval.store import DEFAULT_TABLE, CatalogStore
from training import evaluate as ev
from training.catalog_labels import TRAIN, LabelledCatalog
from training.features import FrozenFeatures
from training.pretrain_backbone import SMALL_CATALOG_VIEWS, BackboneTrainConfig, train_catalog_backbone
from training.registry import Registry, register_build
from training.schema_triplets import evaluation_sets, make_catalog_text_triplets, make_catalog_triplets
from training.simulated_customers import (
    CATALOG_STYLE,
    CustomerCatalog,
    CustomerConfig,
    ShopAssistantFactory,
    simulate_customers,
)
from training.stage1 import Stage1Config, train_stage1
from training.stage2 import Stage2Config, train_stage2
from training.triplets import Triplet

STEP_FILE = "step.json"
REPORT_FILE = "report.json"
BACKBONE_DIR = "model"
STEPS = ("backbone", "ingest", "stage 1", "stage 2", "evaluate", "sessions", "register")


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build trains and measures; each step's part of it is in that step's cache digest."""

    backbone: BackboneTrainConfig = field(default_factory=lambda: BackboneTrainConfig(
        pairs=60_000, augment_from_views=SMALL_CATALOG_VIEWS))
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    triplets: int = 3000
    text_triplets: int = 20_000
    heldout_share: float = 0.2
    eval_queries: int = 300
    sessions: int = 100
    session_turns: int = 3
    seed: int = 0


@dataclass
class StepRecord:
    """How one step went: its cache folder, whether it was reused, and the seconds it took when it ran."""

    name: str
    folder: str | None
    cached: bool
    seconds: float


def backbone_origin(backbone: dict[str, Any]) -> str:
    """A report's backbone as given, or trained here and with which augmentation, so two builds can be told apart."""
    if not backbone["trained"]:
        return "given"
    augmentation = backbone.get("augmentation") or {}
    if augmentation.get("zoom_out", 1.0) > 1.0 or augmentation.get("flip"):
        return (f"trained on this catalog, photos zoomed out up to {augmentation['zoom_out']:g}x"
                f"{' and mirrored' if augmentation['flip'] else ''}")
    return "trained on this catalog"


@dataclass
class BuildReport:
    """What ``circhat build`` did and measured; ``to_dict`` is ``report.json``."""

    catalog: dict[str, Any]
    backbone: dict[str, Any]
    triplets: dict[str, Any]
    evaluation: dict[str, dict[str, dict[str, float]]]
    sessions: dict[str, Any]
    version: str
    active: str
    db: str
    table: str
    steps: list[StepRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """The closing lines a shop reads: what was built, how it scored against the baselines, how long it took."""
        c = self.catalog
        lines = [f"built {c['items']} items ({c['labels']} attribute combinations, {c['heldout_labels']} held out) "
                 f"from {c['metadata'] or c['folder']}",
                 f"  attributes: {', '.join(c['attributes'])}",
                 f"  backbone: {self.backbone['spec']} ({backbone_origin(self.backbone)})",
                 f"  triplets: {self.triplets['train']} synthetic from the catalog's images and "
                 f"{self.triplets.get('text_only', 0)} text-only from its schema for stage 2",
                 "  held-out R@1 / R@10:"]
        for name, by_method in self.evaluation.items():
            row = "  ".join(f"{m} {r['R@1']:.1f}/{r['R@10']:.1f}" for m, r in by_method.items())
            lines.append(f"    {name} ({next(iter(by_method.values()))['queries']:.0f} queries): {row}")
        if self.sessions:
            turns = self.sessions["success@10"]
            lines.append(f"  simulated shoppers: target in the top 10 by turn {len(turns)} in {turns[-1]:.0f}% of "
                         f"{self.sessions['sessions']} sessions")
        state = "active" if self.active == self.version else f"the active version stays {self.active}"
        lines.append(f"  model version {self.version} ({state}); serve it with: circhat serve --db {self.db}"
                     + (f" --table {self.table}" if self.table != DEFAULT_TABLE else ""))
        lines.append("  steps: " + ", ".join(f"{s.name} {'cached' if s.cached else f'{s.seconds:.0f}s'}"
                                             for s in self.steps))
        return "\n".join(lines)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _numbered(name: str) -> str:
    """A step's progress line head, ``[3/7] stage 1``; a step outside ``STEPS`` is numbered 0."""
    return f"[{STEPS.index(name) + 1 if name in STEPS else 0}/{len(STEPS)}] {name}"


class StepCache:
    """Step outputs under ``root``, each in ``<name>-<digest of its inputs>/`` with ``step.json`` written last."""

    def __init__(self, root: Path, say: Callable[[str], None]):
        self.root = Path(root)
        self.say = say
        self.records: list[StepRecord] = []

    def run(self, name: str, inputs: dict[str, Any], make: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict]:
        """``make(folder)`` fills a fresh folder and returns the step's result, unless this exact step is done."""
        key = digest(inputs)
        folder = self.root / f"{name.replace(' ', '')}-{key}"
        done = folder / STEP_FILE
        if done.is_file():
            saved = json.loads(done.read_text())
            self.say(f"{_numbered(name)}: cached ({folder.name})")
            self.records.append(StepRecord(name, folder.name, True, saved["seconds"]))
            return folder, saved["result"]
        self.say(_numbered(name))
        partial = self.root / f".{folder.name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        start = time.perf_counter()
        result = make(partial)
        seconds = round(time.perf_counter() - start, 1)
        write_atomically(partial / STEP_FILE, (json.dumps({"name": name, "inputs": inputs, "result": result,
                                                           "seconds": seconds}, indent=2, default=str) + "\n").encode())
        if folder.exists():
            shutil.rmtree(folder)
        partial.replace(folder)
        self.records.append(StepRecord(name, folder.name, False, seconds))
        return folder, result

    def skip(self, name: str, why: str) -> None:
        """A step this build does not run, said so in its place."""
        self.say(f"{_numbered(name)}: skipped ({why})")

    def timed(self, name: str, work: Callable[[], Any]) -> Any:
        """A step that is not cached here (it is incremental by itself), timed and reported like the others."""
        self.say(_numbered(name))
        start = time.perf_counter()
        out = work()
        self.records.append(StepRecord(name, None, False, round(time.perf_counter() - start, 1)))
        return out


def default_work_dir(db: Path, table: str) -> Path:
    """Where a build keeps its cached steps: beside the LanceDB folder, ``<db>.build/<table>``."""
    return Path(str(db).rstrip("/") + ".build") / table


def catalog_fingerprint(items: list, schema_json: str) -> str:
    """The catalog's contents as training sees them: every item's id, image bytes and metadata, and the schema."""
    rows = sorted((it.id, file_hash(it.path), json.dumps(it.metadata, sort_keys=True, default=str)) for it in items)
    return digest({"items": rows, "schema": schema_json})


def store_features(store: CatalogStore, backbone: Backbone, heldout_share: float, seed: int
                   ) -> tuple[LabelledCatalog, FrozenFeatures, str]:
    """The stored catalog, sorted by id, as labelled rows and frozen features, and a digest of its rows."""
    schema = store.catalog_schema
    names = [n for n in schema.attribute_names if n in store.layout.metadata_names]
    columns = ["id", "path", "content_hash", "embedding", *names]
    if store.layout.patch_shape is not None:
        columns.append("patches")
    table = store.snapshot(columns).sort_by("id").to_pydict()
    metadata = [{n: table[n][i] for n in names} for i in range(len(table["id"]))]
    labels = LabelledCatalog.build(schema, table["id"], table["path"], metadata, heldout_share, seed)
    pooled = torch.tensor(np.asarray(table["embedding"], dtype=np.float32))
    if "patches" in table:
        patches = torch.tensor(np.asarray(table["patches"], dtype=np.float32)).reshape(
            len(pooled), *store.layout.patch_shape)
    else:
        patches = torch.cat([backbone.encode_images_with_patches(backbone.image_tensor(
            [load_image(p) for p in labels.paths[i:i + 64]]))[1].cpu().float() for i in range(0, len(labels), 64)])
    captions = backbone.encode_text(labels.captions).cpu().float()
    features = FrozenFeatures(pooled=pooled, patches=patches, captions=captions, combo_keys=labels.keys,
                              splits=labels.splits)
    rows_digest = digest({"rows": list(zip(table["id"], table["content_hash"], strict=True)),
                          "labels": labels.keys.tolist(), "splits": labels.splits.tolist(), "model": backbone.identity})
    return labels, features, rows_digest


def triplet_counts(triplets: list[Triplet]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in triplets:
        counts[f"{len(t.edits)} edits"] = counts.get(f"{len(t.edits)} edits", 0) + 1
    return dict(sorted(counts.items()))


class SharedText:
    """The plain text tower's embedding of each instruction list, computed once for the text-only and sum baselines."""

    def __init__(self, encoder: QueryEncoder):
        self.encoder = encoder
        self._done: dict[tuple, torch.Tensor] = {}

    def encode(self, pooled: None, patches: None, instructions: list[list[str]]) -> torch.Tensor:
        key = tuple(tuple(i) for i in instructions)
        if key not in self._done:
            self._done[key] = self.encoder.encode(pooled, patches, instructions)
        return self._done[key]


def evaluate_methods(labels: LabelledCatalog, features: FrozenFeatures, plain: QueryEncoder, two_stage: QueryEncoder,
                     queries: int, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Held-out R@K of the two-stage model and the three baselines on the same queries."""
    text = SharedText(plain)
    methods = {"image only": ev.image_only(features), "text only": ev.text_only(text),
               "image + text (sum)": ev.image_plus_text(features, text), "two-stage": ev.composed(features, two_stage)}
    sets = evaluation_sets(labels, queries, seed)
    ks = tuple(k for k in (1, 5, 10, 50) if k < len(labels))
    out = {}
    for name, triplets in sets.items():
        out[name] = {}
        for method, encode in methods.items():
            scores = ev.evaluate(encode, triplets, features, ks)
            out[name][method] = {k: round(v, 2) for k, v in scores.items() if "image" not in k}
    return out


def run_sessions(store: CatalogStore, encoder: QueryEncoder, config: BuildConfig,
                 shop_assistant: ShopAssistantFactory, progress: bool) -> dict[str, Any]:
    """Simulated shoppers through the assistant ``shop_assistant`` makes for this catalog, logged to a scratch file."""
    with tempfile.TemporaryDirectory(prefix="circhat-build-sessions-") as scratch:
        assistant = shop_assistant(store, encoder, Path(scratch) / "picks.jsonl", b"build")
        customers = CustomerConfig(sessions=config.sessions, seed=config.seed, style=CATALOG_STYLE, differing=3,
                                   turns=config.session_turns, consent=0.0)
        result = simulate_customers(assistant, CustomerCatalog.from_store(store), customers, progress)
    result.pop("model", None)
    return result


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class CatalogBuild:
    """One catalog's build in two phases: ``prepare`` (schema, backbone, ingest: the store can be served from
    here, with the sum baseline) and ``finish`` (stage 1, stage 2, evaluation, sessions, model version)."""

    def __init__(self, folder: Path, metadata: Path | None, db: Path, table: str = DEFAULT_TABLE, *,
                 spec: BackboneSpec | None = None, config: BuildConfig = BuildConfig(), work: Path | None = None,
                 registry: Registry | None = None, format: str | None = None, encoding: str | None = None,
                 shop_assistant: ShopAssistantFactory | None = None, say: Callable[[str], None] = _stderr,
                 progress: bool = True):
        self.folder, self.metadata, self.db, self.table = Path(folder), Path(metadata) if metadata else None, \
            Path(db), table
        self.spec, self.config, self.format, self.encoding = spec, config, format, encoding
        self.registry = registry or Registry()
        self.work = Path(work) if work else default_work_dir(self.db, table)
        self.say, self.progress, self.shop_assistant = say, progress, shop_assistant
        self.steps = StepCache(self.work, lambda message: self.say(message))
        self.trained_backbone = spec is None
        self.backbone_metrics: dict[str, Any] = {}

    def prepare(self) -> CatalogStore:
        """Read the metadata, get the backbone (training the tiny one if asked), ingest; returns the store.

        The build owns its table: one embedded by another backbone, or with other columns, is re-embedded (a
        retrained backbone or an edited schema), never refused; unchanged rows are kept as they are."""
        torch.manual_seed(self.config.seed)
        config, say = self.config, self.say
        self.catalog = read_catalog(self.folder, self.metadata, self.format, self.encoding)
        if not self.catalog.items:
            raise ValueError(f"no usable catalog items in {self.folder}"
                             + (f" and {self.metadata}" if self.metadata else ""))
        items = self.catalog.items
        read_labels = LabelledCatalog.build(self.catalog.schema, [it.id for it in items], [it.path for it in items],
                                            [it.metadata for it in items], config.heldout_share, config.seed)
        say(f"      {len(items)} items, {read_labels.summary()['labels']} attribute combinations; label "
            f"attributes: {', '.join(read_labels.space.attributes)}")
        if self.spec is None:
            fingerprint = catalog_fingerprint(items, self.catalog.schema.to_json())

            def train_backbone(out: Path) -> dict:
                _, metrics = train_catalog_backbone(read_labels, config.backbone, out / BACKBONE_DIR, self.progress)
                return metrics

            folder, self.backbone_metrics = self.steps.run(
                "backbone", {"catalog": fingerprint, "config": asdict(config.backbone),
                             "heldout": [config.heldout_share, config.seed]}, train_backbone)
            self.spec = BackboneSpec.local_dir(folder / BACKBONE_DIR)
        else:
            self.steps.records.append(StepRecord("backbone", None, True, 0.0))
        self.backbone = load_backbone(self.spec)
        say(f"      {self.spec.describe()} ({self.backbone.identity})")
        self.ingest_report = self.steps.timed("ingest", lambda: ingest(
            self.folder, self.backbone, self.db, self.table, self.metadata, format=self.format,
            encoding=self.encoding, reembed=True, progress=self.progress))
        report = self.ingest_report
        say(f"      {report.rows} rows in {self.db} (added {report.added}, updated {report.updated}, unchanged "
            f"{report.unchanged}; {len(report.failures)} rows skipped or failed)")
        self.store = CatalogStore.open(self.db, self.table, self.backbone.identity)
        self.labels, self.features, self.rows_digest = store_features(self.store, self.backbone,
                                                                      config.heldout_share, config.seed)
        return self.store

    def _stage1_inputs(self) -> dict[str, Any]:
        return {"rows": self.rows_digest, "config": asdict(self.config.stage1)}

    def composer_cached(self) -> bool:
        """Whether ``finish`` would train nothing (both stages are cached for this store and config)."""
        stage1 = self.work / f"stage1-{digest(self._stage1_inputs())}"
        stage2 = self.work / f"stage2-{digest(self._stage2_inputs(stage1.name))}"
        return (stage1 / STEP_FILE).is_file() and (stage2 / STEP_FILE).is_file()

    def _stage2_inputs(self, stage1_name: str) -> dict[str, Any]:
        return {"stage 1": stage1_name,
                "triplets": [self.config.triplets, self.config.text_triplets, self.config.seed],
                "config": asdict(self.config.stage2)}

    def _triplets(self) -> list[Triplet]:
        """The catalog's image triplets and the schema's text-only ones; either alone is enough to train on."""
        config, labels = self.config, self.labels
        text = make_catalog_text_triplets(labels, config.text_triplets, config.seed + 2) \
            if config.text_triplets else []
        try:
            return make_catalog_triplets(labels, config.triplets, config.seed + 1) + text
        except ValueError:
            if not text:
                raise
            self.say("  no two items of one category differ in 1-3 attributes: stage 2 learns from the schema's "
                     "text-only triplets alone")
            return text

    def _sessions(self, composer: Path, two_stage: QueryEncoder) -> dict[str, Any]:
        """Simulated shoppers through the assistant the caller handed in; none (and said so) without one."""
        config, shop_assistant = self.config, self.shop_assistant
        if shop_assistant is None or not config.sessions:
            self.steps.skip("sessions", "no assistant given" if shop_assistant is None else "0 sessions asked")
            return {}
        _, sessions = self.steps.run(
            "sessions", {"composer": composer.name, "sessions": config.sessions, "turns": config.session_turns,
                         "seed": config.seed},
            lambda out: run_sessions(self.store, two_stage, config, shop_assistant, self.progress))
        return sessions

    def finish(self) -> BuildReport:
        """Train (or reuse) both stages, evaluate, simulate shoppers, register the version, write the report."""
        config, labels, features, backbone, spec = self.config, self.labels, self.features, self.backbone, self.spec
        train_rows = labels.rows(TRAIN)

        def stage1(out: Path) -> dict:
            mapper, run = train_stage1(backbone, features, train_rows, config.stage1, self.progress)
            QueryEncoder(backbone, mapper).save(out, extra={"stage1": {**asdict(config.stage1), **asdict(run)}})
            return asdict(run)

        stage1_folder, stage1_stats = self.steps.run("stage 1", self._stage1_inputs(), stage1)
        triplets = self._triplets()

        def stage2(out: Path) -> dict:
            trainable = load_backbone(spec)
            mapper = QueryEncoder.load(stage1_folder, trainable).mapper
            encoder, run = train_stage2(trainable, mapper, features, triplets, train_rows, config.stage2,
                                        self.progress)
            encoder.save(out, extra={"stage1": stage1_stats, "stage2": {**asdict(config.stage2), **asdict(run)}})
            return asdict(run)

        composer, _ = self.steps.run("stage 2", self._stage2_inputs(stage1_folder.name), stage2)
        two_stage = QueryEncoder.load(composer, load_backbone(spec))
        plain = QueryEncoder(backbone, None)
        _, evaluation = self.steps.run(
            "evaluate", {"composer": composer.name, "queries": config.eval_queries, "seed": config.seed},
            lambda out: evaluate_methods(labels, features, plain, two_stage, config.eval_queries, config.seed + 100))
        sessions = self._sessions(composer, two_stage)
        training = {"kind": "build", "catalog": str(self.folder.resolve()), "metadata": str(self.metadata or ""),
                    "triplets": sum(not t.text_only for t in triplets),
                    "text_triplets": sum(t.text_only for t in triplets),
                    "heldout_labels": labels.summary()["heldout_labels"]}
        version, active = self.steps.timed("register", lambda: register_build(
            self.registry, composer, training, {"verdict": "root", "heldout": evaluation}))
        report = BuildReport(
            catalog={"folder": str(self.folder.resolve()), "metadata": str(self.metadata or ""),
                     "format": self.catalog.format, **labels.summary(), "attributes": list(labels.space.attributes),
                     "failures": len(self.ingest_report.failures)},
            backbone={"spec": spec.describe(), "identity": backbone.identity, "trained": self.trained_backbone,
                      "heldout_text_to_image": self.backbone_metrics.get("heldout_text_to_image"),
                      "augmentation": {k: self.backbone_metrics["config"][k] for k in ("zoom_out", "flip")}
                      if self.trained_backbone else None},
            triplets={"train": sum(not t.text_only for t in triplets), "text_only": sum(t.text_only for t in triplets),
                      **triplet_counts([t for t in triplets if not t.text_only]),
                      "heldout_queries": {name: next(iter(m.values()))["queries"] for name, m in evaluation.items()}},
            evaluation=evaluation, sessions=sessions, version=version.id, active=active.id, db=str(self.db),
            table=self.table, steps=self.steps.records)
        write_atomically(self.work / REPORT_FILE, (json.dumps(report.to_dict(), indent=2) + "\n").encode())
        return report


def build_catalog(folder: Path, metadata: Path | None, db: Path, table: str = DEFAULT_TABLE, *,
                  spec: BackboneSpec | None = None, config: BuildConfig = BuildConfig(), work: Path | None = None,
                  registry: Registry | None = None, format: str | None = None, encoding: str | None = None,
                  shop_assistant: ShopAssistantFactory | None = None, say: Callable[[str], None] = _stderr,
                  progress: bool = True) -> BuildReport:
    """Build (or resume building) a catalog's store and two-stage model; see the module docstring.

    ``spec`` is a pretrained open_clip backbone to use as is; without it the tiny backbone is trained on the
    catalog. Raises ``MetadataError``/``SchemaError`` on a metadata file that cannot be used (nothing written),
    ``ValueError`` when the catalog has nothing to compose (no attribute with two values, or no pairs).
    ``shop_assistant`` (``assistant.turns.Assistant.for_catalog``) lets simulated shoppers try the new model
    through the assistant; without it that step is skipped.
    """
    build = CatalogBuild(folder, metadata, db, table, spec=spec, config=config, work=work, registry=registry,
                         format=format, encoding=encoding, shop_assistant=shop_assistant, say=say,
                         progress=progress)
    build.prepare()
    return build.finish()
