"""`python -m benchmarks.cir` (`./run.sh bench`): trains what it needs on the cached demo world, writes BENCHMARKS.md.

Every number in BENCHMARKS.md comes from one run of this module; the JSON beside
it (docs/benchmarks/cir.json) holds the same figures for machines. Deterministic
from the seed; wall times depend on the machine and are reported as measured.
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

from benchmarks.report import write_report
from retrieval.backbone import load_backbone
from retrieval.query_encoder import QueryEncoder
from training import evaluate as ev
from training.features import FrozenFeatures, world_features
from training.pretrain_backbone import BackboneTrainConfig, ensure_backbone
from training.stage1 import Stage1Config, train_stage1
from training.stage2 import Stage2Config, train_stage2
from training.triplets import Triplet, make_triplets
from training.world import World, WorldConfig, build_world

DATA_EFFICIENCY = (0, 100, 250, 500, 1000, 2000, 5000)
NOISE = 0.3
TEXT_ONLY = " + text-only"
CURRICULUM = 0.5


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run trains and evaluates."""

    seed: int = 0
    n_images: int = 10_000
    backbone_pairs: int = 100_000
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    main_triplets: int = 5000
    text_triplets: int = 20_000
    eval_queries: int = 500
    sessions: int = 300
    quick: bool = False


def eval_sets(world: World, config: BenchConfig) -> dict[str, list[Triplet]]:
    """The query sets: 1- and 2-attribute edits, seen and held-out combinations, held-out phrasings."""
    n, s = config.eval_queries, config.seed * 1000
    sets = {}
    for edits in (1, 2):
        sets[f"{edits}-attr seen"] = make_triplets(world, n, s + 10 + edits, (edits,), "train", ("train",))
        sets[f"{edits}-attr held-out"] = make_triplets(world, n, s + 20 + edits, (edits,), "heldout",
                                                       ("train", "heldout"))
        sets[f"{edits}-attr held-out phrasing"] = make_triplets(world, n, s + 30 + edits, (edits,), "heldout",
                                                                ("train", "heldout"), held_out_phrasing=True)
    return sets


def score(encode: ev.Encode, sets: dict[str, list[Triplet]], features: FrozenFeatures) -> dict[str, dict]:
    return {name: ev.evaluate(encode, triplets, features) for name, triplets in sets.items()}


class Bench:
    """Holds the world, backbone and features shared by every measurement of one run."""

    def __init__(self, config: BenchConfig, data_dir: Path | None = None, progress: bool = True):
        self.config = config
        self.progress = progress
        self.timings: dict[str, float] = {}
        start = time.perf_counter()
        self.world = build_world(WorldConfig(seed=config.seed, n_images=config.n_images), data_dir,
                                 progress=progress)
        self.spec, self.backbone_metrics = ensure_backbone(
            self.world, BackboneTrainConfig(pairs=config.backbone_pairs, seed=config.seed), progress=progress)
        self.timings["world + backbone (cached or built)"] = time.perf_counter() - start
        self.features = world_features(self.world, load_backbone(self.spec), progress=progress)
        self.rows = self.features.rows("train")
        self.sets = eval_sets(self.world, config)
        self.pool_clean = make_triplets(self.world, max(DATA_EFFICIENCY), config.seed + 1)
        self.pool_noisy = make_triplets(self.world, max(DATA_EFFICIENCY), config.seed + 1, noise=NOISE)
        self.pool_text = make_triplets(self.world, config.text_triplets, config.seed + 2, text_references=True)

    def backbone(self):
        return load_backbone(self.spec)

    def stage1(self, name: str, config: Stage1Config):
        mapper, run = train_stage1(self.backbone(), self.features, self.rows, config, self.progress)
        self.timings[f"stage 1: {name}"] = run.seconds
        return mapper

    def stage2(self, name: str, mapper, triplets: list[Triplet], config: Stage2Config) -> QueryEncoder:
        if not triplets:
            return QueryEncoder(self.backbone(), mapper)
        encoder, run = train_stage2(self.backbone(), mapper, self.features, triplets, self.rows, config,
                                    self.progress)
        text = f" + {run.text_only} text-only" if run.text_only else ""
        self.timings[f"stage 2: {name} ({run.triplets - run.text_only} triplets{text})"] = run.seconds
        return encoder


def run_benchmark(config: BenchConfig, out_dir: Path, data_dir: Path | None = None,
                  progress: bool = True) -> dict:
    """Train every method and ablation once and evaluate all of them on the same queries."""
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)
    bench = Bench(config, data_dir, progress)
    s1, s2 = config.stage1, config.stage2
    main_triplets = bench.pool_clean[:config.main_triplets] + bench.pool_text

    mapper = bench.stage1("full (patches + soft alignment)", s1)
    pic2word_mapper = bench.stage1("Pic2Word-style (pooled only, contrastive only)",
                                   replace(s1, use_patches=False, soft_alignment=False))
    plain = QueryEncoder(bench.backbone(), None)
    two_stage = bench.stage2("two-stage", mapper, main_triplets, s2)
    methods = {
        "image only": ev.image_only(bench.features),
        "text only": ev.text_only(plain),
        "image + text (sum)": ev.image_plus_text(bench.features, plain),
        "Pic2Word-style (single stage)": ev.composed(bench.features, QueryEncoder(bench.backbone(), pic2word_mapper)),
        "two-stage (ours)": ev.composed(bench.features, two_stage),
    }
    results = {"methods": {name: score(encode, bench.sets, bench.features) for name, encode in methods.items()}}

    ablations = {"two-stage (ours)": results["methods"]["two-stage (ours)"]}
    for name, change in [("stage 1 without patch injection", {"use_patches": False}),
                         ("stage 1 without soft alignment", {"soft_alignment": False})]:
        m = bench.stage1(name, replace(s1, **change))
        ablations[name] = score(ev.composed(bench.features, bench.stage2(name, m, main_triplets, s2)),
                                bench.sets, bench.features)
    ablations["stage 2 with a one-to-three-edit curriculum"] = score(
        ev.composed(bench.features, bench.stage2("edit curriculum", mapper, main_triplets,
                                                 replace(s2, curriculum=CURRICULUM))), bench.sets, bench.features)
    ablations["stage 2 without hard negatives"] = score(
        ev.composed(bench.features, bench.stage2("no hard negatives", mapper, main_triplets,
                                                 replace(s2, hard_negatives=0))), bench.sets, bench.features)
    ablations["stage 1 only (no stage 2)"] = score(
        ev.composed(bench.features, QueryEncoder(bench.backbone(), mapper)), bench.sets, bench.features)
    results["ablations"] = ablations

    curve_sets = {k: v for k, v in bench.sets.items() if "held-out" in k and "phrasing" not in k}
    curve: dict[str, dict[int, dict]] = {}
    sizes = DATA_EFFICIENCY if not config.quick else (0, 250, 1000)
    for text in ("", TEXT_ONLY):
        for noise, pool in (("clean", bench.pool_clean), ("noisy", bench.pool_noisy)):
            kind = noise + text
            curve[kind] = {}
            for n in sizes:
                if n == 0 and noise == "noisy":
                    curve[kind][n] = curve["clean" + text][0]
                    continue
                if n == 0 and not text:
                    curve[kind][n] = {k: ablations["stage 1 only (no stage 2)"][k] for k in curve_sets}
                    continue
                if n == config.main_triplets and kind == "clean" + TEXT_ONLY:
                    curve[kind][n] = {k: results["methods"]["two-stage (ours)"][k] for k in curve_sets}
                    continue
                triplets = pool[:n] + (bench.pool_text if text else [])
                encoder = bench.stage2(kind, mapper, triplets, s2)
                curve[kind][n] = score(ev.composed(bench.features, encoder), curve_sets, bench.features)
    results["data_efficiency"] = curve

    sessions = ev.make_sessions(bench.world, bench.features, config.sessions, config.seed + 5)
    results["multi_turn"] = {
        f"{name}, from {mode}": ev.simulate(methods[name], sessions, bench.features, bench.world, mode,
                                            seed=config.seed)
        for name in ("two-stage (ours)", "image + text (sum)") for mode in ("first", "latest")
    }
    results["timings_s"] = {k: round(v, 1) for k, v in bench.timings.items()}
    results["backbone"] = bench.backbone_metrics
    results["config"] = asdict(config)
    results["machine"] = {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                          "device": "cuda" if torch.cuda.is_available() else "cpu",
                          "load_avg_start": load_at_start, "load_avg_end": round(os.getloadavg()[0], 2)}
    results["wall_s"] = round(time.perf_counter() - start, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cir.json").write_text(json.dumps(results, indent=2, default=_json) + "\n")
    return results


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))


def main(
    out: Annotated[Path, typer.Option(help="Markdown report to write.")] = Path("BENCHMARKS.md"),
    json_dir: Annotated[Path, typer.Option(help="Folder for the JSON and plots.")] = Path("docs/benchmarks"),
    data_dir: Annotated[Path | None, typer.Option(help="Where worlds and models are cached [env CIRCHAT_HOME, "
                                                       "default ~/.cache/circhat].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the demo world; same seed, same bytes.")] = 0,
    quick: Annotated[bool, typer.Option(help="Fewer queries and curve points (a smoke run).")] = False,
) -> None:
    """Train every method, baseline and ablation on the demo world and write BENCHMARKS.md."""
    config = BenchConfig(seed=seed, quick=quick, eval_queries=200 if quick else 500, sessions=100 if quick else 300)
    results = run_benchmark(config, json_dir, data_dir)
    command = "./run.sh bench" + (f" --seed {seed}" if seed else "") + (" --quick" if quick else "")
    write_report(results, json_dir, out, command)
    typer.echo(f"wrote {out} and {json_dir}/cir.json")


if __name__ == "__main__":
    typer.run(main)
