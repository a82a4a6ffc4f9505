"""Scale benchmark of the catalog store: exact vs IVF_SQ search at 10k-1M items, and demo-catalog ingest speed.

Index quality depends on the data, and isotropic random vectors make every index
look bad, so the large catalogs are drawn from the real embedding distribution
of the demo catalog: each synthetic item is a fresh draw of a real item's
attribute combination (the combination's mean embedding plus a Gaussian-weighted mix of three real
within-combination deviations), with that item's metadata and patch features.
Queries are half text turns (caption embeddings of random combinations) and half
image turns (fresh draws not in the catalog).

    python -m benchmarks.store --sizes 10000,100000,1000000
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import torch
import typer
from lancedb.index import IvfPq
from tqdm import tqdm

from retrieval.backbone import Backbone, load_backbone
from retrieval.ingest import ingest
from retrieval.store import ANN_MIN_ROWS, DEFAULT_INDEX, VECTOR_INDEX, CatalogStore, IndexSettings
from training.pretrain_backbone import BackboneTrainConfig, ensure_backbone
from training.world import Combo, WorldConfig, build_world, caption

OUT_DIR = Path("docs/benchmarks")
SWEEP = ((8, 5), (16, 10), (24, 10), (32, 10), (48, 20))
FILTER = "category = 'dress' AND price < 60"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    queries: int = 200
    k: int = 10
    patches: bool = True
    chunk: int = 50_000
    seed: int = 0


@dataclass
class RealCatalog:
    """The demo catalog as ingested: vectors, patch features and metadata, grouped by attribute combination."""

    embeddings: np.ndarray
    patches: np.ndarray | None
    metadata: pa.Table
    combo_rows: dict[str, np.ndarray]
    combo_of: np.ndarray
    centroids: dict[str, np.ndarray]
    row_centroids: np.ndarray

    @classmethod
    def read(cls, store: CatalogStore) -> RealCatalog:
        columns = ["id", "path", "category", "colour", "pattern", "price", "combo", "embedding"]
        columns += ["patches"] if store.layout.patch_shape else []
        table = store.table.search().select(columns).to_arrow().sort_by("id")
        embeddings = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
        patches = (np.stack(table["patches"].to_numpy(zero_copy_only=False)).astype(np.float32)
                   if store.layout.patch_shape else None)
        combos = np.array(table["combo"].to_pylist())
        rows = {c: np.flatnonzero(combos == c) for c in np.unique(combos)}
        centroids = {c: embeddings[r].mean(0) for c, r in rows.items()}
        return cls(embeddings, patches, table.drop_columns([c for c in ("embedding", "patches") if c in columns]),
                   rows, combos, centroids, np.stack([centroids[c] for c in combos]))

    def draw(self, n: int, rng: np.random.Generator, mates: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """(source rows, unit vectors): fresh draws of the sources' attribute combinations.

        Each vector is its source's combination mean plus a Gaussian-weighted mix of ``mates`` real
        within-combination deviations, so draws keep the real spread and direction of variation but no two are
        equal (exact duplicates would turn recall@10 into a tie-breaking lottery).
        """
        sources = rng.integers(0, len(self.embeddings), n)
        picked = np.stack([rng.choice(self.combo_rows[self.combo_of[s]], mates) for s in sources])
        weights = rng.normal(size=(n, mates, 1)) / np.sqrt(mates)
        deviations = self.embeddings[picked] - self.row_centroids[picked]
        vectors = self.row_centroids[sources] + (weights * deviations).sum(1)
        return sources, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "mean_ms": round(float(ms.mean()), 2)}


def timed_search(store: CatalogStore, queries: np.ndarray, k: int, where: str | None = None, exact: bool = False,
                 settings: IndexSettings = DEFAULT_INDEX) -> tuple[list[list[str]], dict[str, float]]:
    for q in queries[:5]:
        store.search(q, k=k, where=where, exact=exact, settings=settings)
    results, seconds = [], []
    for q in queries:
        start = time.perf_counter()
        hits = store.search(q, k=k, where=where, exact=exact, settings=settings)
        seconds.append(time.perf_counter() - start)
        results.append([h.id for h in hits])
    return results, percentiles(seconds)


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    """Mean share of the exact top-k that the index also returns (recall@k against brute force)."""
    shares = [len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth, strict=True)]
    return round(float(np.mean(shares)), 4)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def build_synthetic(real: RealCatalog, template: CatalogStore, db: Path, n: int, config: BenchConfig,
                    progress: bool) -> tuple[CatalogStore, float]:
    """A catalog of ``n`` drawn items in the store's own schema; returns it and the write time."""
    store = CatalogStore.create(db, "catalog", template.layout, template.identity, template.backbone_spec)
    rng = np.random.default_rng([config.seed, n])
    start = time.perf_counter()
    for first in tqdm(range(0, n, config.chunk), desc=f"writing {n} items", disable=not progress, leave=False):
        count = min(config.chunk, n - first)
        sources, vectors = real.draw(count, rng)
        meta = real.metadata.take(pa.array(sources))
        rows = {name: meta[name].to_pylist() if name in meta.column_names else [None] * count
                for name in template.layout.metadata_names}
        rows |= {"id": [f"item-{first + i}" for i in range(count)], "path": meta["path"].to_pylist(),
                 "content_hash": [f"{first + i:064x}" for i in range(count)]}
        patches = real.patches[sources] if real.patches is not None else None
        store.table.add(store.rows(rows, vectors, patches))
    store.ensure_indexes(ann_min_rows=n + 1, optimize=False)
    return store, time.perf_counter() - start


def measure_size(real: RealCatalog, template: CatalogStore, backbone: Backbone, n: int, config: BenchConfig,
                 workdir: Path, progress: bool) -> dict:
    """Latency, recall and cost of exact and indexed search on one synthetic catalog size."""
    db = workdir / f"bench-{n}"
    shutil.rmtree(db, ignore_errors=True)
    store, write_s = build_synthetic(real, template, db, n, config, progress)
    rng = np.random.default_rng([config.seed, n, 1])
    keys = rng.choice(sorted(real.combo_rows), config.queries // 2)
    text = backbone.encode_text([caption(Combo.from_key(key)) for key in keys]).cpu().numpy()
    _, image = real.draw(config.queries - len(text), rng)
    queries = np.concatenate([text, image]).astype(np.float32)

    truth, exact = timed_search(store, queries, config.k, exact=True)
    truth_f, exact_f = timed_search(store, queries, config.k, where=FILTER, exact=True)
    settings = DEFAULT_INDEX
    start = time.perf_counter()
    store.table.create_index("embedding", config=settings.config(n, store.layout.embed_dim), replace=True,
                             name=f"{VECTOR_INDEX}{n}")
    index_s = time.perf_counter() - start
    found, indexed = timed_search(store, queries, config.k, settings=settings)
    found_f, indexed_f = timed_search(store, queries, config.k, where=FILTER, settings=settings)
    sweep = []
    for nprobes, refine in SWEEP:
        tuned = IndexSettings(nprobes=nprobes, refine_factor=refine)
        got, timing = timed_search(store, queries, config.k, settings=tuned)
        sweep.append({"nprobes": nprobes, "refine_factor": refine, "recall@10": recall(got, truth), **timing})
    alternatives = compare_indexes(store, queries, truth, config, settings) if n == max(config.sizes) else []
    result = {
        "items": n, "write_s": round(write_s, 2), "index_build_s": round(index_s, 2),
        "disk_mb": round(folder_bytes(Path(db) / "catalog.lance") / 2**20, 1),
        "bytes_per_row": round(folder_bytes(Path(db) / "catalog.lance") / n),
        "index": {"type": "IVF_SQ", **asdict(settings), **_index_shape(settings, n, store.layout.embed_dim)},
        "exact": exact, "indexed": indexed, "recall@10": recall(found, truth),
        "filtered": {"where": FILTER, "exact": exact_f, "indexed": indexed_f, "recall@10": recall(found_f, truth_f)},
        "sweep": sweep, "alternatives": alternatives,
    }
    shutil.rmtree(db, ignore_errors=True)
    return result


def compare_indexes(store: CatalogStore, queries: np.ndarray, truth: list[list[str]], config: BenchConfig,
                    settings: IndexSettings) -> list[dict]:
    """IVF_PQ (the usual default) on the same table and queries, to show what the IVF_SQ choice buys."""
    n, dim = len(store), store.layout.embed_dim
    out = []
    for sub_vectors in (dim // 8, dim // 4):
        start = time.perf_counter()
        store.table.create_index("embedding", name=f"{VECTOR_INDEX}{n}", replace=True, config=IvfPq(
            distance_type="cosine", num_partitions=settings.config(n, dim).num_partitions, num_sub_vectors=sub_vectors))
        build_s = round(time.perf_counter() - start, 2)
        for refine in (10, 50):
            tuned = IndexSettings(nprobes=settings.nprobes, refine_factor=refine)
            got, timing = timed_search(store, queries, config.k, settings=tuned)
            out.append({"index": f"IVF_PQ, {sub_vectors} sub-vectors", "build_s": build_s, "nprobes": tuned.nprobes,
                        "refine_factor": refine, "recall@10": recall(got, truth), **timing})
    return out


def _index_shape(settings: IndexSettings, rows: int, dim: int) -> dict[str, int]:
    config = settings.config(rows, dim)
    return {"num_partitions": config.num_partitions}


def ingest_throughput(world, backbone: Backbone, db: Path, patches: bool) -> tuple[dict, CatalogStore]:
    """End-to-end ingest of the demo catalog (hash, decode, embed, write, index) into a fresh table."""
    shutil.rmtree(db, ignore_errors=True)
    report = ingest(world.root, backbone, db, metadata=world.catalog_csv, patches=patches, progress=False)
    rerun = ingest(world.root, backbone, db, metadata=world.catalog_csv, patches=patches, progress=False)
    return {
        "images": report.scanned, "seconds": round(report.seconds, 2),
        "images_per_second": round(report.images_per_second, 1),
        "failures": len(report.failures), "noop_rerun_seconds": round(rerun.seconds, 2),
        "torch_threads": torch.get_num_threads(),
    }, CatalogStore.open(db, "catalog", backbone.identity)


def bench_store(world, backbone: Backbone, config: BenchConfig = BenchConfig(), workdir: Path | None = None,
                progress: bool = True) -> dict:
    """Run the whole benchmark; returns the JSON-ready results."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="circhat-bench-store-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    ingest_result, demo = ingest_throughput(world, backbone, workdir / "demo", config.patches)
    real = RealCatalog.read(demo)
    sizes = []
    for n in config.sizes:
        sizes.append(measure_size(real, demo, backbone, n, config, workdir, progress))
        if progress:
            s = sizes[-1]
            typer.echo(f"{n:>9} items: exact p95 {s['exact']['p95_ms']} ms, indexed p95 {s['indexed']['p95_ms']} ms, "
                       f"recall@10 {s['recall@10']}", err=True)
    return {
        "config": asdict(config), "ann_min_rows": ANN_MIN_ROWS,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_start": round(load, 2)},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "backbone": backbone.identity, "demo_catalog": str(world.root),
        "ingest": ingest_result, "sizes": sizes,
    }


def markdown(results: dict) -> str:
    """The benchmark as a markdown section."""
    ingest_result = results["ingest"]
    lines = [
        "# Catalog store benchmark",
        "",
        f"Measured {results['date']} on {results['machine']['cpus']} CPUs ({results['machine']['platform']}; "
        f"load average {results['machine']['load_avg_at_start']} at start). Backbone `{results['backbone']}`. "
        f"Vectors are drawn from the demo catalog's real embedding distribution (see `benchmarks/store.py`); "
        f"{results['config']['queries']} queries, half text turns and half image turns; recall@10 is against exact "
        f"(brute-force) search on the same table. Latency is one `CatalogStore.search` call, result conversion "
        f"included.",
        "",
        f"**Ingest** of the demo catalog ({ingest_result['images']} images, end to end: hash, sanitising decode, "
        f"embed, upsert, indexes): **{ingest_result['images_per_second']} images/s** "
        f"({ingest_result['seconds']} s); a no-op rerun takes {ingest_result['noop_rerun_seconds']} s.",
        "",
        "| items | disk MB | bytes/row | write s | index build s | exact p50 / p95 ms | IVF_SQ p50 / p95 ms "
        "| recall@10 | filtered exact p95 ms | filtered IVF_SQ p95 ms | filtered recall@10 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["sizes"]:
        f = s["filtered"]
        lines.append(
            f"| {s['items']:,} | {s['disk_mb']} | {s['bytes_per_row']} | {s['write_s']} | {s['index_build_s']} "
            f"| {s['exact']['p50_ms']} / {s['exact']['p95_ms']} | {s['indexed']['p50_ms']} / {s['indexed']['p95_ms']} "
            f"| {s['recall@10']} | {f['exact']['p95_ms']} | {f['indexed']['p95_ms']} | {f['recall@10']} |")
    lines += ["", f"Filter: `{FILTER}` (BITMAP index on category, BTREE on price, applied before ranking).", ""]
    if max(s["items"] for s in results["sizes"]) < 1_000_000:
        lines += ["**Partial run**: only the sizes above were measured. The full benchmark (10k, 100k, 1M) is "
                  "`python -m benchmarks.store` on a quiet machine.", ""]
    for s in results["sizes"]:
        ix = s["index"]
        lines += [f"IVF_SQ sweep at {s['items']:,} items ({ix['num_partitions']} partitions; default nprobes "
                  f"{ix['nprobes']}, refine {ix['refine_factor']}):", "",
                  "| nprobes | refine | p50 ms | p95 ms | recall@10 |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {w['nprobes']} | {w['refine_factor']} | {w['p50_ms']} | {w['p95_ms']} | {w['recall@10']} |"
                  for w in s["sweep"]]
        lines.append("")
        if s.get("alternatives"):
            lines += [f"Other index types at {s['items']:,} items (same queries; why the store uses IVF_SQ):", "",
                      "| index | build s | nprobes | refine | p50 ms | p95 ms | recall@10 |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {a['index']} | {a['build_s']} | {a['nprobes']} | {a['refine_factor']} | {a['p50_ms']} "
                      f"| {a['p95_ms']} | {a['recall@10']} |" for a in s["alternatives"]]
            lines.append("")
    return "\n".join(lines)


def main(
    sizes: Annotated[str, typer.Option(help="Comma-separated catalog sizes.")] = "10000,100000,1000000",
    queries: Annotated[int, typer.Option(help="Queries per measurement.")] = 200,
    patches: Annotated[bool, typer.Option(help="Store patch features, as ingest does by default.")] = True,
    seed: Annotated[int, typer.Option(help="Demo world seed.")] = 0,
    n_images: Annotated[int, typer.Option(help="Demo catalog size (the source distribution).")] = 10_000,
    pairs: Annotated[int, typer.Option(help="Pairs the demo backbone is trained on (cached).")] = 100_000,
    data_dir: Annotated[Path | None, typer.Option(help="Where worlds are cached.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Scratch directory for the tables [temp].")] = None,
    out: Annotated[Path, typer.Option(help="Folder for store.json and store.md.")] = OUT_DIR,
) -> None:
    """Measure the catalog store and write docs/benchmarks/store.{json,md}."""
    world = build_world(WorldConfig(seed=seed, n_images=n_images), data_dir)
    spec, _ = ensure_backbone(world, BackboneTrainConfig(pairs=pairs, seed=seed))
    backbone = load_backbone(spec)
    config = BenchConfig(sizes=tuple(int(s) for s in sizes.split(",") if s.strip()), queries=queries,
                         patches=patches, seed=seed)
    results = bench_store(world, backbone, config, workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "store.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "store.md").write_text(markdown(results) + "\n")
    typer.echo(markdown(results))


if __name__ == "__main__":
    typer.run(main)
