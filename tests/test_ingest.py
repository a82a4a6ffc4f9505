"""Ingest into a real LanceDB directory: idempotent, incremental, kill-safe, broken files skipped, model-tagged."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from retrieval.backbone import DEMO_MODEL, BackboneSpec, load_backbone
from retrieval.ingest import IngestBusy, ingest, ingest_lock
from retrieval.query_encoder import ModelMismatch
from retrieval.store import CatalogStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clean(world, backbone, tmp_path_factory):
    """(db, report) of one uninterrupted ingest of the world's catalog."""
    db = tmp_path_factory.mktemp("clean") / "db"
    return db, ingest(world.root, backbone, db, metadata=world.catalog_csv, progress=False)


def table_rows(db: Path) -> pa.Table:
    return lancedb.connect(str(db)).open_table("catalog").to_arrow().sort_by("id")


def assert_same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a.num_rows == b.num_rows and a["id"].to_pylist() == b["id"].to_pylist()
    for name in a.column_names:
        if name in ("embedding", "patches"):
            np.testing.assert_allclose(np.stack(a[name].to_numpy(zero_copy_only=False)),
                                       np.stack(b[name].to_numpy(zero_copy_only=False)), atol=1e-5)
        else:
            assert a[name].to_pylist() == b[name].to_pylist(), name


def image_folder(world, tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "shop"
    (folder / "sub").mkdir(parents=True)
    for i, item in enumerate(world.items[:n]):
        shutil.copy(world.image_path(item), folder / ("sub" if i % 2 else "") / f"look-{i}.png")
    return folder


def test_clean_ingest_writes_every_item_with_metadata(world, clean, backbone):
    db, report = clean
    assert report.added == len(world.items) and not report.failures and report.rows == len(world.items)
    rows = table_rows(db)
    assert rows["id"].to_pylist() == sorted(str(it.id) for it in world.items)
    first = rows.filter(pa.compute.equal(rows["id"], "0")).to_pylist()[0]
    assert first["price"] == world.items[0].price and first["category"] == world.items[0].combo.category
    assert first["model"] == backbone.identity and len(first["content_hash"]) == 64
    assert report.indexes["id"] == "BTree" and "embedding" not in report.indexes


def test_reingest_adds_nothing(world, clean, backbone):
    db, _ = clean
    before = table_rows(db)
    again = ingest(world.root, backbone, db, metadata=world.catalog_csv, progress=False)
    assert (again.added, again.updated, again.relabelled, again.unchanged) == (0, 0, 0, len(world.items))
    assert_same_rows(before, table_rows(db))


def test_new_changed_and_removed_files(world, backbone, tmp_path):
    folder = image_folder(world, tmp_path, 12)
    db = tmp_path / "db"
    assert ingest(folder, backbone, db, progress=False).added == 12
    before = {r["id"]: r for r in table_rows(db).to_pylist()}
    shutil.copy(world.image_path(world.items[50]), folder / "new-look.png")
    shutil.copy(world.image_path(world.items[51]), folder / "look-0.png")
    (folder / "sub" / "look-1.png").unlink()
    report = ingest(folder, backbone, db, progress=False)
    assert (report.added, report.updated, report.unchanged, report.removed) == (1, 1, 10, 0)
    after = {r["id"]: r for r in table_rows(db).to_pylist()}
    assert set(after) == set(before) | {"new-look.png"}
    assert after["look-0.png"]["content_hash"] != before["look-0.png"]["content_hash"]
    assert not np.allclose(after["look-0.png"]["embedding"], before["look-0.png"]["embedding"])
    assert after["look-2.png"] == before["look-2.png"]
    synced = ingest(folder, backbone, db, sync=True, progress=False)
    assert synced.removed == 1 and synced.rows == 12
    assert "sub/look-1.png" not in table_rows(db)["id"].to_pylist()


def test_metadata_change_rewrites_row_without_reembedding(world, backbone, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(world.root / "images", folder / "images")
    lines = world.catalog_csv.read_text().splitlines()[:21]
    (folder / "catalog.csv").write_text("\n".join(lines) + "\n")
    db = tmp_path / "db"
    first = ingest(folder, backbone, db, metadata=folder / "catalog.csv", progress=False)
    assert first.added == 20 and first.unlisted == len(world.items) - 20
    before = {r["id"]: r for r in table_rows(db).to_pylist()}
    lines[3] = lines[3].replace(f",{world.items[2].price:.2f},", ",1.50,")
    (folder / "catalog.csv").write_text("\n".join(lines) + "\n")
    report = ingest(folder, backbone, db, metadata=folder / "catalog.csv", progress=False)
    assert (report.relabelled, report.updated, report.added) == (1, 0, 0)
    after = {r["id"]: r for r in table_rows(db).to_pylist()}
    assert after["2"]["price"] == 1.5 and after["2"]["embedding"] == before["2"]["embedding"]


def test_broken_images_are_reported_and_skipped(world, backbone, tmp_path):
    folder = image_folder(world, tmp_path, 6)
    good = (folder / "look-0.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    (folder / "notes.png").write_text("not an image at all")
    (folder / "vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "readme.txt").write_text("ignored: not an image name")
    db = tmp_path / "db"
    report = ingest(folder, backbone, db, progress=False, batch_size=4)
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert set(reasons) == {"truncated.png", "notes.png", "vector.svg", "empty.jpg"}
    assert "cannot decode" in reasons["truncated.png"] and "not a supported" in reasons["notes.png"]
    assert "empty" in reasons["empty.jpg"]
    assert report.added == 6 and sorted(table_rows(db)["id"].to_pylist()) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("look-*.png"))
    assert "truncated.png: cannot decode" in report.summary()


def test_killed_ingest_then_rerun_equals_clean_run(world, backbone, clean, tmp_path):
    db = tmp_path / "db"
    command = [sys.executable, "-m", "ui.store_commands", "ingest", str(world.root), "--metadata",
               str(world.catalog_csv), "--model", backbone.spec.model, "--db", str(db), "--batch-size", "2",
               "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    written = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        try:
            written = lancedb.connect(str(db)).open_table("catalog").count_rows()
        except Exception:
            written = 0
        if written >= 20:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    partial = table_rows(db)
    assert 0 < partial.num_rows < len(world.items)
    assert len(set(partial["id"].to_pylist())) == partial.num_rows
    report = ingest(world.root, backbone, db, metadata=world.catalog_csv, progress=False)
    assert report.added == len(world.items) - partial.num_rows and report.unchanged == partial.num_rows
    assert_same_rows(table_rows(clean[0]), table_rows(db))


def test_other_backbone_is_refused_until_reembedded(world, backbone, tmp_path):
    folder = image_folder(world, tmp_path, 8)
    db = tmp_path / "db"
    ingest(folder, backbone, db, progress=False)
    other = load_backbone(BackboneSpec(DEMO_MODEL), "cpu")
    with pytest.raises(ModelMismatch, match="--reembed"):
        ingest(folder, other, db, progress=False)
    with pytest.raises(ModelMismatch):
        CatalogStore.open(db, "catalog", other.identity)
    report = ingest(folder, other, db, reembed=True, progress=False)
    assert report.recreated and report.added == 8
    store = CatalogStore.open(db, "catalog", other.identity)
    assert set(store.snapshot(["model"])["model"].to_pylist()) == {other.identity}


def test_a_second_ingest_into_the_same_table_is_refused(world, backbone, tmp_path):
    folder = image_folder(world, tmp_path, 4)
    db = tmp_path / "db"
    command = [sys.executable, "-m", "ui.store_commands", "ingest", str(folder), "--model", backbone.spec.model,
               "--db", str(db), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with ingest_lock(db, "catalog"):
        with pytest.raises(IngestBusy, match=f"pid {os.getpid()}"):
            ingest(folder, backbone, db, progress=False)
        busy = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert busy.returncode == 2 and f"another ingest (pid {os.getpid()})" in busy.stderr
        assert not CatalogStore.exists(db)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(CatalogStore.open(db)) == 4
