"""``circhat build`` on a shop's own files, as a user runs it: a subprocess, a folder of photos and a Shopify CSV.

The second catalog (bags, shoes and hats) is written by the generator as files only; the build command never
imports the generator. One build is run to the end, then the same build is SIGKILLed at two seeded-random steps
and rerun: the store rows, the model version and the report must be the same as an uninterrupted build's. The
built catalog is then served with ``circhat serve --db`` and searched through the app's API.

The budgets are small (15k backbone pairs and 200 steps a stage for the full build, 4k and 40 for the killed
ones), so the figures asserted here are coarse floors a broken pipeline would fail; the real figures are in
BENCHMARKS.md (``python -m benchmarks.build``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from retrieval.store import CatalogStore
from tests.server_harness import ROOT, ServerProcess, connect, reply_details
from training.accessories_world import AccessoriesConfig, write_accessories_catalog
from training.build import BuildConfig

pytestmark = pytest.mark.slow

CONFIG = AccessoriesConfig(seed=0, n_products=24)
BUDGET = ("--backbone-pairs", "15000", "--stage1-steps", "200", "--stage2-steps", "200", "--triplets", "1000",
          "--sessions", "20")
KILL_CONFIG = AccessoriesConfig(seed=2, n_products=12)
KILL_BUDGET = ("--backbone-pairs", "4000", "--stage1-steps", "40", "--stage2-steps", "40", "--triplets", "200",
               "--sessions", "5")
KILLABLE = ("backbone", "ingest", "stage 1", "stage 2", "evaluate")
GENERATOR_MODULES = ("training.accessories_world", "training.render_accessories")


def build_command(shop: Path, db: Path, budget: tuple[str, ...] = BUDGET) -> list[str]:
    return [sys.executable, "-X", "importtime", "-m", "ui.cli", "build", str(shop), "--metadata",
            str(shop / "products.csv"), "--db", str(db), "--no-progress", *budget]


def build_env(home: Path) -> dict[str, str]:
    return {**os.environ, "CIRCHAT_HOME": str(home), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def outcome(db: Path, home: Path) -> dict:
    """What a build leaves behind, without timings: store rows, registry versions, active version, report."""
    store = CatalogStore.open(db)
    rows = store.snapshot(["id", "content_hash", "path", "embedding"]).sort_by("id").to_pydict()
    report = json.loads((Path(str(db) + ".build") / "catalog" / "report.json").read_text())
    report.pop("steps")
    models = home / "models"
    versions = sorted(p.name for p in models.iterdir() if (p / "version.json").is_file())
    digests = {v: json.loads((models / v / "version.json").read_text())["training"]["weights_digest"]
               for v in versions}
    return {"ids": rows["id"], "hashes": rows["content_hash"], "paths": rows["path"],
            "embeddings": np.asarray(rows["embedding"], dtype=np.float32), "versions": digests,
            "active": json.loads((models / "active.json").read_text()), "report": report}


def killed_build(shop: Path, db: Path, home: Path, step: str, log: Path) -> int:
    """Start the build and SIGKILL it a moment after it announces ``step``; returns the exit status."""
    with log.open("wb") as sink:
        process = subprocess.Popen(build_command(shop, db, KILL_BUDGET), cwd=ROOT, env=build_env(home),
                                   stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if f"/7] {step}" in log.read_text(errors="replace"):
            time.sleep(random.Random(step).uniform(0.0, 0.3))
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    return process.wait()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The shop's files and one uninterrupted build of them (its outcome and its stdout and import report)."""
    root = tmp_path_factory.mktemp("build")
    shop = write_accessories_catalog(root / "shop", CONFIG, progress=False).parent
    db, home = root / "catalog.lancedb", root / "home"
    done = subprocess.run(build_command(shop, db), cwd=ROOT, env=build_env(home), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"root": root, "shop": shop, "db": db, "home": home, "stdout": done.stdout, "stderr": done.stderr,
            "outcome": outcome(db, home)}


def test_build_reports_the_catalogs_own_model_against_the_baselines(built):
    """The report names the shop's attributes, counts its triplets and held-out queries, and the two-stage model,
    trained on nothing but the shop's files, beats the sum baseline on two-attribute held-out edits."""
    imported = {line.rsplit("|", 1)[-1].strip() for line in built["stderr"].splitlines()
                if line.startswith("import time:")}
    assert "training.build" in imported
    assert not imported & set(GENERATOR_MODULES)
    report = built["outcome"]["report"]
    assert report["catalog"]["format"] == "shopify"
    assert {"category", "color", "size", "material", "strap", "heel_height", "toe_shape", "buckle",
            "brim"} <= set(report["catalog"]["attributes"])
    assert "sleeve" not in report["catalog"]["attributes"]
    assert report["catalog"]["heldout_labels"] > 0 and report["triplets"]["train"] == 1000
    assert report["triplets"]["text_only"] == BuildConfig().text_triplets > 0
    assert report["backbone"]["trained"] and report["version"] in built["outcome"]["versions"]
    assert report["backbone"]["augmentation"] == {"zoom_out": 1.5, "flip": True}, report["backbone"]
    assert "photos zoomed out up to 1.5x and mirrored" in built["stdout"]
    held = report["evaluation"]["2-attr held-out"]
    assert set(held) == {"image only", "text only", "image + text (sum)", "two-stage"}
    assert held["two-stage"]["queries"] >= 100
    assert held["two-stage"]["R@10"] > held["image + text (sum)"]["R@10"] + 15, held
    assert held["two-stage"]["R@10"] > max(held["image only"]["R@10"], held["text only"]["R@10"]), held
    assert report["sessions"]["sessions"] == 20 and len(report["sessions"]["success@10"]) == 3
    assert f"model version {report['version']} (active)" in built["stdout"]
    assert f"circhat serve --db {built['db']}" in built["stdout"]


def test_a_rerun_trains_nothing(built):
    """Every training step is cached by its inputs: the same build again reuses them all."""
    done = subprocess.run(build_command(built["shop"], built["db"]), cwd=ROOT, env=build_env(built["home"]),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for step in ("backbone", "stage 1", "stage 2", "evaluate", "sessions"):
        assert f"] {step}: cached" in done.stderr, (step, done.stderr[-2000:])
    assert "added 0, updated 0" in done.stderr
    again = outcome(built["db"], built["home"])
    assert again["report"] == built["outcome"]["report"]


def test_a_build_with_another_backbone_re_embeds_its_catalog(built, tmp_path):
    """A changed backbone recipe retrains the backbone; the build re-embeds the table the first build filled
    (instead of refusing it as another backbone's) and serves a new version."""
    db, home = tmp_path / "catalog.lancedb", tmp_path / "home"
    shutil.copytree(built["db"], db)
    shutil.copytree(Path(str(built["db"]) + ".build"), Path(str(db) + ".build"))
    shutil.copytree(built["home"], home)
    first = CatalogStore.open(db).identity
    done = subprocess.run(build_command(built["shop"], db, KILL_BUDGET), cwd=ROOT, env=build_env(home),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((Path(str(db) + ".build") / "catalog" / "report.json").read_text())
    assert CatalogStore.open(db).identity == report["backbone"]["identity"] != first
    assert report["version"] != built["outcome"]["report"]["version"]
    assert json.loads((home / "models" / "active.json").read_text()) != built["outcome"]["active"]


def test_sigkill_at_random_steps_then_rerun_gives_the_same_build(tmp_path):
    """Killed (SIGKILL) twice at seeded-random steps and rerun, a build ends with the same store rows, model
    version and report as the same build run without interruption."""
    shop = write_accessories_catalog(tmp_path / "shop", KILL_CONFIG, progress=False).parent
    db, home = tmp_path / "catalog.lancedb", tmp_path / "home"

    def complete() -> dict:
        done = subprocess.run(build_command(shop, db, KILL_BUDGET), cwd=ROOT, env=build_env(home),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return outcome(db, home)

    reference = complete()
    for path in (db, Path(str(db) + ".build"), home):
        shutil.rmtree(path)
    first, second = sorted(random.Random(14).sample(range(len(KILLABLE)), 2))
    for step in (KILLABLE[first], KILLABLE[second]):
        log = tmp_path / f"killed-{step.replace(' ', '')}.log"
        status = killed_build(shop, db, home, step, log)
        assert status == -signal.SIGKILL, (step, log.read_text()[-2000:])
    resumed = complete()
    assert resumed["ids"] == reference["ids"] and resumed["hashes"] == reference["hashes"]
    assert resumed["paths"] == reference["paths"]
    np.testing.assert_array_equal(resumed["embeddings"], reference["embeddings"])
    assert resumed["versions"] == reference["versions"]
    assert resumed["active"] == reference["active"]
    assert resumed["report"] == reference["report"]


def test_the_built_catalog_is_served_with_its_model_version(built, tmp_path):
    """``circhat serve --db`` serves the build's active version, and a search in the shop's words answers with
    items of the asked-for value."""
    report = built["outcome"]["report"]
    server = ServerProcess.start(built["db"], log=tmp_path / "picks.jsonl", env={"CIRCHAT_HOME": str(built["home"])})
    try:
        with urllib.request.urlopen(server.url + "config", timeout=10) as response:
            assert report["version"] in response.read().decode()
        client = connect(server.url)
        details = reply_details(client.predict({"text": "a bag with a long strap", "files": []}, "any",
                                               client.no_price_limit, api_name="/send"))
        results = details["results"]
        assert results, details
        top = [r["metadata"] for r in results[:5]]
        assert all(m["category"] == "Bag" for m in top), top
        assert sum(m["strap"] == "Long" for m in top) >= 3, top
    finally:
        server.stop()
