"""``circhat build`` on catalogs written as files only, as a shop would run it; writes ``docs/benchmarks/build.*``.

For each catalog the benchmark writes its folder of photos and its metadata file, then runs ``python -m ui.cli build
FOLDER --metadata FILE --json`` in a subprocess (the generators are never imported by the build) with the default
recipe: tiny backbone trained on the catalog's own photos and metadata captions, stage 1, synthetic triplets from
pairs of its items, stage 2, held-out evaluation against the baselines, simulated shoppers through the assistant.

* ``accessories``: the second catalog, bags, shoes and hats in a Shopify 2024+ export
  (``training.accessories_world``);
* ``demo``: the demo world's folder and ``catalog.csv`` (``training.world``), the same path, with the demo's
  recipe (``training.pipeline.demo_config``: what ``circhat demo`` serves);
* ``accessories-300`` and ``demo-300``: small shops of about 300 items (32 products of the second catalog; a
  300-image demo world), built from their own items only with the default recipe, where most attribute
  combinations have one item and the schema's text-only triplets carry most of stage 2.

    python -m benchmarks.build                      # every catalog, then re-renders BENCHMARKS.md
    python -m benchmarks.build --catalogs accessories
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.report import main as render_report
from training.accessories_world import AccessoriesConfig, write_accessories_catalog
from training.build import backbone_origin
from training.pipeline import demo_config
from training.world import WorldConfig, build_world

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python -m benchmarks.build"
CATALOGS = ("accessories", "demo", "accessories-300", "demo-300")
SMALL_SHOP = {"accessories-300": 32, "demo-300": 300}
SMALL_SHOP_GAIN = 20
HEADLINE = "2-attr held-out"
SUM = "image + text (sum)"


def write_catalog(name: str, folder: Path) -> tuple[Path, Path, list[str]]:
    """(photo folder, metadata file, the build's options) of one benchmark catalog, written as files; the demo is
    built with the recipe ``circhat demo`` uses."""
    if name == "accessories":
        csv_path = write_accessories_catalog(folder / "accessories", AccessoriesConfig(seed=0), progress=True)
        return csv_path.parent, csv_path, []
    if name == "demo":
        world = build_world(WorldConfig(seed=0, n_images=10_000), folder / "worlds")
        recipe = demo_config()
        return world.root, world.catalog_csv, ["--backbone-pairs", str(recipe.backbone.pairs), "--triplets",
                                               str(recipe.triplets)]
    if name == "accessories-300":
        csv_path = write_accessories_catalog(folder / name, AccessoriesConfig(seed=0, n_products=SMALL_SHOP[name]),
                                             progress=True)
        return csv_path.parent, csv_path, []
    if name == "demo-300":
        world = build_world(WorldConfig(seed=0, n_images=SMALL_SHOP[name]), folder / "worlds")
        return world.root, world.catalog_csv, []
    raise typer.BadParameter(f"unknown catalog {name!r} (one of {', '.join(CATALOGS)})")


def run_build(photos: Path, metadata: Path, work: Path, options: list[str]) -> dict:
    """The build command as a user runs it, from a clean store; its JSON report plus the wall time."""
    db = work / "catalog.lancedb"
    for path in (db, Path(str(db) + ".build"), work / "home"):
        shutil.rmtree(path, ignore_errors=True)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CIRCHAT_HOME": str(work / "home"), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    command = [sys.executable, "-m", "ui.cli", "build", str(photos), "--metadata", str(metadata), "--db", str(db),
               "--json", "--no-progress", *options]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"circhat build failed on {photos} (exit {done.returncode})")
    return {**json.loads(done.stdout), "wall_s": round(time.perf_counter() - start, 1)}


def markdown(results: dict[str, dict]) -> str:
    """The report section: per catalog, held-out R@1/R@10 of every method, sessions, and the time of each step."""
    lines = ["# `circhat build` on a shop's own files", "",
             f"Reproduce: `{COMMAND}` (JSON: `docs/benchmarks/build.json`). Each catalog is written as a folder of "
             "photos plus its metadata file and built with `circhat build FOLDER --metadata FILE` in a subprocess, "
             "default recipe, tiny backbone trained on that catalog only. Held-out queries target attribute "
             "combinations no step trained on (20% of each catalog's combinations, by a seeded hash); "
             "\"phrasing\" sets also use sentence templates no step trained on. R@K: an item with the target's "
             "attribute combination is in the top K.", ""]
    for name, report in results.items():
        c = report["catalog"]
        lines += [f"## {name}: {c['items']} items, {c['labels']} combinations ({c['heldout_labels']} held out), "
                  f"{report['triplets']['train']} image triplets + {report['triplets'].get('text_only', 0)} "
                  "text-only", "",
                  f"Attributes: {', '.join(c['attributes'])}. Backbone held-out text→image R@1/R@10: "
                  f"{report['backbone']['heldout_text_to_image']['R@1']:.1f} / "
                  f"{report['backbone']['heldout_text_to_image']['R@10']:.1f} ({backbone_origin(report['backbone'])}).",
                  "",
                  "| query set | " + " | ".join(f"{m} R@1 / R@10" for m in report["evaluation"][HEADLINE]) + " |",
                  "|---|" + "---|" * len(report["evaluation"][HEADLINE])]
        for set_name, methods in report["evaluation"].items():
            lines.append(f"| {set_name} ({next(iter(methods.values()))['queries']:.0f}) | "
                         + " | ".join(f"{r['R@1']:.1f} / {r['R@10']:.1f}" for r in methods.values()) + " |")
        held = report["evaluation"][HEADLINE]
        best_baseline = max(r["R@10"] for m, r in held.items() if m != "two-stage")
        s = report["sessions"]
        second, small = name == "accessories", name in SMALL_SHOP
        gain = held["two-stage"]["R@1"] - held[SUM]["R@1"]
        target = (f" (acceptance for the second catalog: +{SMALL_SHOP_GAIN})" if second else
                  f" (acceptance for a small shop: +{SMALL_SHOP_GAIN}; "
                  f"{'met' if gain >= SMALL_SHOP_GAIN else '**not met**'})" if small else "")
        lines += ["", f"- Two-stage minus sum on {HEADLINE}: **{gain:+.1f} R@1**" + target
                  + f", R@10 {held['two-stage']['R@10']:.1f} against the best baseline's {best_baseline:.1f}.",
                  f"- Simulated shoppers through the assistant (rule parser, the catalog's own words, start 3 "
                  f"attributes away, a pick per turn): target in the top 10 by turn "
                  f"{', '.join(f'{t + 1}: {v:.0f}%' for t, v in enumerate(s['success@10']))} of {s['sessions']} "
                  "sessions" + (" (acceptance for the second catalog: 90% by turn 3)." if second else "."),
                  "- Step times (s): " + ", ".join(f"{st['name']} {st['seconds']:.0f}" for st in report["steps"])
                  + f"; whole command {report['wall_s']:.0f} s.", ""]
    machine = next(iter(results.values())).get("machine", {})
    if machine:
        lines.append(f"Machine: {machine['platform']}, {machine['cpus']} CPUs.")
    return "\n".join(lines) + "\n"


def main(catalogs: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(CATALOGS)}.")] = ",".join(CATALOGS),
         out_dir: Annotated[Path, typer.Option(help="Where build.json and build.md go.")] = Path("docs/benchmarks"),
         work: Annotated[Path, typer.Option(help="Scratch folder for the catalogs and stores.")] = Path(
             "/tmp/circhat-bench-build")) -> None:
    """Build each catalog from its files with `circhat build` and report it beside the others."""
    results = {}
    for name in [c.strip() for c in catalogs.split(",") if c.strip()]:
        photos, metadata, options = write_catalog(name, work / "catalogs")
        results[name] = run_build(photos, metadata, work / name, options)
        results[name]["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "build.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved |= results
    path.write_text(json.dumps(saved, indent=2) + "\n")
    (out_dir / "build.md").write_text(markdown(saved))
    render_report(out_dir, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    typer.run(main)
