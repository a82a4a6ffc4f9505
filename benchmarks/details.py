"""``python -m benchmarks.details``: fine-detail composed retrieval, written to ``docs/benchmarks/details.*``.

Stage 1's two components (patch injection, soft alignment) did not help on the demo world, where nothing is a
detail that a pooled embedding blurs. This benchmark asks again on the fine-detail catalog
(``training.detail_world``: t-shirts and dresses told apart by a small logo, buttons, a chest pocket, pinstripes and
contrast stitching). The catalog is written as a shop's files and prepared by ``training.build.CatalogBuild`` (schema
inferred from its CSV, tiny backbone trained on its training labels, ingested); then stage 1 is trained three ways
(full, without patch injection, without soft alignment), stage 2 on each with the same synthetic triplets (1- and
2-attribute edits of the detail attributes only), and every model and the image-only, text-only and image+text sum
baselines answer the same held-out detail edits (targets of held-out attribute combinations). Deterministic from
the seed; wall times are as measured.

    python -m benchmarks.details --threads 1       # 20 min on 2 cores shared with two other jobs, then BENCHMARKS.md
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from benchmarks.report import main as render_report
from retrieval.backbone import load_backbone
from retrieval.query_encoder import QueryEncoder
from training import evaluate as ev
from training.build import BuildConfig, CatalogBuild, SharedText, digest
from training.catalog_labels import HELDOUT, TRAIN
from training.detail_world import (
    CATEGORIES,
    COLOURS,
    DETAIL_ATTRIBUTES,
    DETAILS,
    DetailWorldConfig,
    all_looks,
    detail_catalog_dir,
    write_detail_catalog,
)
from training.pretrain_backbone import BackboneTrainConfig
from training.registry import Registry
from training.render_details import render_detail_garment
from training.schema_triplets import evaluation_sets, make_catalog_triplets
from training.stage1 import Stage1Config, train_stage1
from training.stage2 import Stage2Config, train_stage2

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python -m benchmarks.details"
BACKBONE_MODEL = "circhat-tiny-rn-96"
KS = (1, 5, 10, 50)
VARIANTS: dict[str, dict[str, bool]] = {
    "full (patch injection + soft alignment)": {},
    "without patch injection": {"use_patches": False},
    "without soft alignment": {"soft_alignment": False},
}
COMPONENTS = {"patch injection": "without patch injection", "soft alignment": "without soft alignment"}
FULL = next(iter(VARIANTS))
SUM = "image + text (sum)"
SETS = ("1-attr held-out", "2-attr held-out", "1-attr held-out phrasing", "2-attr held-out phrasing")
NOISE_POINTS = 3.0
SEEN, CHANCE_BAND = 75.0, 60.0
FOOTPRINT_SIZES = (64, 96)
FOOTPRINT_THRESHOLD = 24


@dataclass(frozen=True)
class DetailBenchConfig:
    """What one run renders, trains and evaluates."""

    seed: int = 0
    n_images: int = 3000
    image_size: int = 96
    backbone_pairs: int = 30_000
    backbone_batch: int = 64
    stage1: Stage1Config = field(default_factory=lambda: Stage1Config(steps=250))
    stage2: Stage2Config = field(default_factory=lambda: Stage2Config(steps=250))
    triplets: int = 3000
    eval_queries: int = 500
    heldout_share: float = 0.2

    def build_config(self) -> BuildConfig:
        """The catalog build's part: the backbone recipe and the held-out split (stages are trained here)."""
        return BuildConfig(backbone=BackboneTrainConfig(model=BACKBONE_MODEL, pairs=self.backbone_pairs,
                                                        batch_size=self.backbone_batch, seed=self.seed),
                           stage1=self.stage1, stage2=self.stage2, triplets=self.triplets, text_triplets=0,
                           heldout_share=self.heldout_share, eval_queries=self.eval_queries, seed=self.seed)


def detail_footprint(seed: int, sizes: tuple[int, ...] = FOOTPRINT_SIZES, samples: int = 12) -> dict[str, dict]:
    """Per detail and image size: how many pixels it changes (max channel difference above a threshold) between
    two renders that differ only in that detail, averaged over ``samples`` garments."""
    rng = np.random.default_rng([seed, 9])
    looks = [all_looks()[int(i)] for i in rng.choice(len(all_looks()), size=samples, replace=False)]
    out: dict[str, dict] = {}
    for attribute in DETAIL_ATTRIBUTES:
        field_name = DETAILS[attribute][2]
        out[attribute] = {}
        for size in sizes:
            counts = []
            for n, look in enumerate(looks):
                without, with_detail = replace(look, **{field_name: False}), replace(look, **{field_name: True})
                a, b = (np.asarray(render_detail_garment(x, np.random.default_rng([seed, 10, n]), size), dtype=float)
                        for x in (without, with_detail))
                counts.append(int((np.abs(a - b).max(-1) > FOOTPRINT_THRESHOLD).sum()))
            out[attribute][str(size)] = {"pixels": round(float(np.mean(counts)), 1),
                                         "share": round(float(np.mean(counts)) / size ** 2 * 100, 2)}
    return out


@torch.no_grad()
def detail_probe(labels, features, backbone, rows: np.ndarray) -> dict[str, float]:
    """Per detail: how often an image is closer to its own caption than to that caption with the detail flipped
    (50 is chance): whether the frozen backbone sees the detail at all."""
    images = features.pooled[rows].to(backbone.device)
    out = {}
    for attribute in DETAIL_ATTRIBUTES:
        plain, detailed, _ = DETAILS[attribute]
        values = [labels.values[r] for r in rows.tolist()]
        flipped = [{**v, attribute: plain if v[attribute] == detailed else detailed} for v in values]
        own = backbone.encode_text([labels.space.caption(v) for v in values]).to(images.device)
        other = backbone.encode_text([labels.space.caption(v) for v in flipped]).to(images.device)
        out[attribute] = round(float(((images * own).sum(1) > (images * other).sum(1)).float().mean()) * 100, 1)
    return out


def _scores(encode: ev.Encode, sets: dict, features, ks: tuple[int, ...]) -> dict[str, dict[str, float]]:
    return {name: {k: round(v, 2) for k, v in ev.evaluate(encode, triplets, features, ks).items() if "image" not in k}
            for name, triplets in sets.items()}


def run_details(config: DetailBenchConfig, out_dir: Path, data_dir: Path | None = None,
                progress: bool = True) -> dict:
    """Render, build, train the three stage-1 variants and their stage 2, evaluate everything on the same queries."""
    start = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)
    torch.manual_seed(config.seed)
    timings: dict[str, float] = {}
    world = DetailWorldConfig(seed=config.seed, n_images=config.n_images, image_size=config.image_size)
    folder = detail_catalog_dir(world, data_dir)
    tick = time.perf_counter()
    csv_path = write_detail_catalog(folder, world, progress)
    timings["render the catalog (or reuse it)"] = time.perf_counter() - tick
    build_config = config.build_config()
    work = folder / f"bench-{digest(asdict(build_config.backbone))[:12]}"
    build = CatalogBuild(folder, csv_path, work / "catalog.lancedb", config=build_config, work=work / "build",
                         registry=Registry(work / "models"), progress=progress)
    tick = time.perf_counter()
    build.prepare()
    timings["schema, backbone, ingest (build.prepare)"] = time.perf_counter() - tick
    labels, features, spec = build.labels, build.features, build.spec
    train_rows = labels.rows(TRAIN)
    backbone_sees = detail_probe(labels, features, build.backbone, labels.rows(HELDOUT))
    triplets = make_catalog_triplets(labels, config.triplets, config.seed + 1, (1, 2), attributes=DETAIL_ATTRIBUTES)
    sets = evaluation_sets(labels, config.eval_queries, config.seed + 100, attributes=DETAIL_ATTRIBUTES)
    sets = {name: sets[name] for name in SETS if name in sets}
    ks = tuple(k for k in KS if k < len(labels))

    plain = SharedText(QueryEncoder(build.backbone, None))
    methods = {"image only": _scores(ev.image_only(features), sets, features, ks),
               "text only": _scores(ev.text_only(plain), sets, features, ks),
               SUM: _scores(ev.image_plus_text(features, plain), sets, features, ks)}
    stage1_only, two_stage, runs = {}, {}, {}
    for name, change in VARIANTS.items():
        mapper, run1 = train_stage1(load_backbone(spec), features, train_rows, replace(config.stage1, **change),
                                    progress)
        stage1_only[name] = _scores(ev.composed(features, QueryEncoder(load_backbone(spec), mapper)), sets, features,
                                    ks)
        encoder, run2 = train_stage2(load_backbone(spec), mapper, features, triplets, train_rows, config.stage2,
                                     progress)
        two_stage[name] = _scores(ev.composed(features, encoder), sets, features, ks)
        runs[name] = {"stage 1 s": run1.seconds, "stage 2 s": run2.seconds}
        timings[f"stage 1 + stage 2: {name}"] = run1.seconds + run2.seconds

    timings["whole run"] = time.perf_counter() - start
    results = {
        "command": COMMAND,
        "methods": methods | {f"two-stage, {n}": s for n, s in two_stage.items()},
        "stage1_only": stage1_only,
        "ablations": ablation_deltas(two_stage, stage1_only),
        "catalog": {**labels.summary(), "attributes": list(labels.space.attributes),
                    "detail_attributes": list(DETAIL_ATTRIBUTES), "categories": list(CATEGORIES),
                    "colours": list(COLOURS), "image_size": config.image_size,
                    "patch_grid": int(features.patches.shape[1]), "folder": str(folder)},
        "footprint": detail_footprint(config.seed),
        "backbone_sees": backbone_sees,
        "triplets": {"train": len(triplets), "edits": {str(k): sum(len(t.edits) == k for t in triplets)
                                                       for k in (1, 2)},
                     "queries": {name: len(t) for name, t in sets.items()}},
        "backbone": {"model": BACKBONE_MODEL, "pairs": build.backbone_metrics.get("pairs"),
                     "heldout_text_to_image": build.backbone_metrics.get("heldout_text_to_image"),
                     "train_seconds": build.backbone_metrics.get("train_seconds")},
        "runs": runs,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "config": asdict(config),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "device": "cuda" if torch.cuda.is_available() else "cpu", "load_avg_start": load_at_start,
                    "load_avg_end": round(os.getloadavg()[0], 2)},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "details.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "details.md").write_text(markdown(results))
    return results


def ablation_deltas(two_stage: dict[str, dict], stage1_only: dict[str, dict]) -> dict[str, dict]:
    """What each stage-1 component adds (full minus without it), in R@1 and R@10 points, per query set,
    after stage 2 and with stage 1 alone."""
    out = {}
    for component, without in COMPONENTS.items():
        out[component] = {
            stage: {name: {m: round(scores[FULL][name][m] - scores[without][name][m], 2) for m in ("R@1", "R@10")}
                    for name in scores[FULL]}
            for stage, scores in (("two-stage", two_stage), ("stage 1 only", stage1_only))}
    return out


def _verdict(deltas: list[float]) -> str:
    if all(d >= NOISE_POINTS for d in deltas):
        return "helps"
    if all(d <= -NOISE_POINTS for d in deltas):
        return "**hurts**"
    if all(abs(d) < NOISE_POINTS for d in deltas):
        return f"**makes no difference beyond noise** (every change under {NOISE_POINTS:.0f} points)"
    return "**mixed**"


def reading(results: dict) -> list[str]:
    """The sentences that say what the numbers show, computed from them (either way)."""
    methods, ablations = results["methods"], results["ablations"]
    ours, base = methods[f"two-stage, {FULL}"], methods[SUM]
    gains = {name: ours[name]["R@1"] - base[name]["R@1"] for name in ("1-attr held-out", "2-attr held-out")}
    beats = all(g > 0 for g in gains.values())
    sees = results.get("backbone_sees", {})
    seen = [a for a, v in sees.items() if v >= SEEN]
    blind = [a for a, v in sees.items() if v < CHANCE_BAND]
    lines = [f"- The frozen backbone tells apart {', '.join(seen) or 'none of the details'} (≥ {SEEN:.0f} in the "
             f"flip test); {', '.join(blind) or 'none'} "
             + ("is" if len(blind) == 1 else "are") + f" at chance (< {CHANCE_BAND:.0f}): neither stage can compose "
             "a detail the frozen image embedding and patch tokens do not carry."] if sees else []
    r10 = [ours[name]["R@10"] - base[name]["R@10"] for name in ("1-attr held-out", "2-attr held-out")]
    lines += [f"- Two-stage (full) against the image+text sum: {gains['1-attr held-out']:+.1f} R@1 on 1-attr detail "
             f"edits, {gains['2-attr held-out']:+.1f} on 2-attr (R@10 {r10[0]:+.1f} / {r10[1]:+.1f}); "
             + ("it composes small details better than the sum." if beats else
                "**by R@1 it does not beat the sum on small details here.**")]
    for component, by_stage in ablations.items():
        after = by_stage["two-stage"]
        deltas = [after[s]["R@1"] for s in ("1-attr held-out", "2-attr held-out")]
        alone = by_stage["stage 1 only"]
        lines.append(
            f"- {component}: {after['1-attr held-out']['R@1']:+.1f} R@1 on 1-attr detail edits, "
            f"{after['2-attr held-out']['R@1']:+.1f} on 2-attr (R@10 {after['1-attr held-out']['R@10']:+.1f} / "
            f"{after['2-attr held-out']['R@10']:+.1f}) after stage 2; with stage 1 alone "
            f"{alone['1-attr held-out']['R@1']:+.1f} / {alone['2-attr held-out']['R@1']:+.1f} R@1, "
            f"{alone['1-attr held-out']['R@10']:+.1f} / {alone['2-attr held-out']['R@10']:+.1f} R@10. "
            f"After stage 2 the component {_verdict(deltas)} on fine details.")
    return lines


def _table(rows: dict[str, dict], sets: list[str]) -> list[str]:
    head = " | ".join(f"{s} R@1 | {s} R@10" for s in sets)
    lines = [f"| method | {head} |", "|---|" + "---|" * (2 * len(sets))]
    for method, by_set in rows.items():
        lines.append(f"| {method} | " + " | ".join(f"{by_set[s]['R@1']:.1f} | {by_set[s]['R@10']:.1f}" for s in sets)
                     + " |")
    return lines


def markdown(results: dict) -> str:
    """The report section: the catalog, the ablation lines, the tables and what they show."""
    cat, bb, tr, cfg = results["catalog"], results["backbone"], results["triplets"], results["config"]
    foot = results["footprint"]
    sizes = sorted(next(iter(foot.values())), key=int)
    footprint = "; ".join(f"{a} " + " / ".join(f"{foot[a][s]['pixels']:.0f}" for s in sizes) for a in foot)
    held = bb.get("heldout_text_to_image") or {}
    machine = results["machine"]
    main_sets = [s for s in SETS[:2] if s in next(iter(results["methods"].values()))]
    phrasing_sets = [s for s in SETS[2:] if s in next(iter(results["methods"].values()))]
    rows = {**results["methods"], **{f"stage 1 only, {n}": s for n, s in results["stage1_only"].items()}}
    lines = [
        "# Fine details (issue 15)",
        "",
        "Composed retrieval where every edit is a small detail, on a **synthetic** catalog "
        "(`training/detail_world.py`): these numbers compare methods and stage-1 components on the same generated "
        "images; they are not estimates of accuracy on real product photos.",
        "",
        f"Reproduce: `{results['command']}` (seed {cfg['seed']}; JSON: `docs/benchmarks/details.json`); whole run "
        f"{results['timings_s']['whole run']:.0f} s on {machine['platform']}, {machine['threads']} threads, "
        f"{machine['device']}, load average {machine['load_avg_start']} at start and {machine['load_avg_end']} at "
        "the end.",
        "",
        f"Catalog: {cat['items']} images of {cat['labels']} combinations ({' and '.join(cat['categories'])}; "
        f"{len(cat['colours'])} colours; five two-valued details: {', '.join(cat['detail_attributes'])}), "
        f"{cat['heldout_labels']} combinations held out (never trained on, the targets of every query), read "
        "through its inferred schema like a shop's CSV. Images are "
        f"{cat['image_size']} px: pixels each detail changes at {' / '.join(sizes)} px: {footprint} (of "
        f"{' / '.join(str(int(s) ** 2) for s in sizes)}); at 96 px the backbone's patch grid, which patch "
        f"injection reads, is {int(cat['patch_grid'] ** 0.5)}×{int(cat['patch_grid'] ** 0.5)} "
        "(2×2 at 64 px). "
        f"Backbone `{bb['model']}` trained on {bb['pairs']} pairs of the training combinations (held-out "
        f"text→image R@1 {held.get('R@1', float('nan')):.1f}, R@10 {held.get('R@10', float('nan')):.1f}; "
        "how often a held-out image is closer to its own caption than to the caption with one detail flipped, 50 "
        "being chance: " + ", ".join(f"{a} {v:.0f}" for a, v in results.get("backbone_sees", {}).items()) + "). "
        f"Stage 1: {cfg['stage1']['steps']} steps per variant; stage 2: {cfg['stage2']['steps']} steps on the same "
        f"{tr['train']} image triplets for every variant ({tr['edits']['1']} one-detail and {tr['edits']['2']} "
        f"two-detail edits; no text-only triplets). Queries: {cfg['eval_queries']} per set, edits of detail "
        "attributes only, to held-out combinations; correct = any image of the target's combination, the "
        "reference excluded.",
        "",
        "## What the stage-1 components and the two-stage model do on fine details",
        "",
        *reading(results),
        "",
        f"Verdicts count a change of {NOISE_POINTS:.0f} R@1 points or more, on both the 1- and the 2-attr set, as "
        f"an effect: one seed and {cfg['eval_queries']} queries per set, so smaller gaps are within run-to-run "
        "noise.",
        "",
        "## Held-out detail edits",
        "",
        *_table(rows, main_sets),
        "",
        "## Held-out detail edits in held-out phrasings",
        "",
        *_table(rows, phrasing_sets),
        "",
        "Wall time of each phase (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["timings_s"].items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def main(
    out_dir: Annotated[Path, typer.Option(help="Where details.json and details.md go.")] = Path("docs/benchmarks"),
    data_dir: Annotated[Path | None, typer.Option(help="Where the catalog and its models are cached [env "
                                                       "CIRCHAT_HOME, default ~/.cache/circhat].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the catalog and of every training run.")] = 0,
    render: Annotated[bool, typer.Option(help="Re-render BENCHMARKS.md afterwards.")] = True,
    threads: Annotated[int, typer.Option(help="Torch CPU threads (0: torch's default); on cores other jobs "
                                              "share, 1 can be faster.")] = 0,
    report_only: Annotated[bool, typer.Option(help="Only re-write details.md from the details.json there.")] = False,
) -> None:
    """Measure stage 1's components and the two-stage model against the baselines on fine-detail edits."""
    if report_only:
        (out_dir / "details.md").write_text(markdown(json.loads((out_dir / "details.json").read_text())))
    else:
        if threads:
            torch.set_num_threads(threads)
        run_details(DetailBenchConfig(seed=seed), out_dir, data_dir)
    typer.echo(f"wrote {out_dir}/details.md" + ("" if report_only else f" and {out_dir}/details.json"))
    if render:
        render_report(out_dir, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    typer.run(main)
