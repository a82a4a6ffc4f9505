"""The model registry on a real folder: list, use, refuse-worse, model-mismatch, and what serve/demo load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from assistant.searcher import CatalogSearcher, model_version
from retrieval.adapters import AdapterConfig, add_text_adapters
from retrieval.backbone import DEMO_MODEL, BackboneSpec, load_backbone
from retrieval.mapper import Mapper, MapperConfig
from retrieval.query_encoder import CHECKPOINT_FILE, ModelMismatch, QueryEncoder
from retrieval.store import CatalogLayout, CatalogStore
from training.registry import ACTIVE_FILE, REPORT_FILE, Registry, UnknownVersion, WorseVersion, register_build
from ui.cli import app
from ui.stats_tab import stats_view


def make_composer(backbone, folder: Path, seed: int) -> Path:
    """A small untrained two-stage checkpoint for ``backbone`` (fresh weights per seed)."""
    fresh = load_backbone(backbone.spec, "cpu")
    with torch.no_grad():
        _, patches = fresh.encode_images_with_patches(torch.zeros(1, 3, 64, 64))
    torch.manual_seed(seed)
    mapper = Mapper(MapperConfig(embed_dim=fresh.embed_dim, patch_dim=patches.shape[-1], token_dim=fresh.token_dim,
                                 hidden=32))
    adapter = AdapterConfig(rank=2)
    for p in add_text_adapters(fresh.model, adapter):
        p.data.normal_(0, 0.02)
    return QueryEncoder(fresh, mapper, adapter).save(folder)


@pytest.fixture()
def composers(backbone, tmp_path):
    return [make_composer(backbone, tmp_path / f"composer-{i}", seed=i) for i in range(3)]


def test_round_trip_list_use_load_and_the_version_the_searcher_reports(composers, backbone, tmp_path):
    registry = Registry(tmp_path / "models")
    root = registry.ensure_root(composers[0])
    assert registry.ensure_root(composers[0]).id == root.id and len(registry.versions()) == 1
    assert registry.active(backbone.identity) is None
    assert register_build(registry, composers[0])[1].id == root.id
    assert registry.active(backbone.identity).id == root.id
    child = registry.add(composers[1], root.id, {"kind": "finetune", "counts": {"train_picks": 7}},
                         {"verdict": "better"}, report={"parent": root.id})
    assert [v.id for v in registry.versions()] == [root.id, child.id]
    assert child.id.startswith("v2-") and child.parent == root.id and child.backbone == backbone.identity
    assert json.loads((registry.root / child.id / REPORT_FILE).read_text())["version"] == child.id
    assert register_build(registry, composers[0])[1].id == root.id, "an active version is kept, not reset"

    registry.use(child.id)
    assert json.loads((registry.root / ACTIVE_FILE).read_text()) == {backbone.identity: child.id}
    assert not list(registry.root.glob(".*.tmp")), "the active file is replaced by rename, no temp left behind"
    assert register_build(registry, composers[0]) == (root, child)
    saved = json.loads((registry.composer_dir(child) / CHECKPOINT_FILE).read_text())
    assert saved["registry_version"] == child.id
    encoder = registry.load(child.id, load_backbone(backbone.spec, "cpu"), backbone.identity)
    assert model_version(encoder) == child.id
    with pytest.raises(UnknownVersion, match="known: v1-"):
        registry.use("v9-nothere")

    result = CliRunner().invoke(app, ["models", "list", "--registry", str(registry.root)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].split()[:2] == ["version", "parent"]
    assert lines[1].startswith(f"  {root.id}") and lines[2].startswith(f"* {child.id}")
    result = CliRunner().invoke(app, ["models", "use", root.id, "--registry", str(registry.root)])
    assert result.exit_code == 0 and registry.active(backbone.identity).id == root.id


def finetune_metrics(verdict: str, choice: tuple[float, float], benchmark: tuple[float, float]) -> dict:
    """A fine-tune's metrics as ``training.finetune`` records them: held-out picks and the forgetting guard."""
    picks = {which: {"choice@1": c, "choice MRR": c / 100, "choices": 80, "R@1": c, "R@10": 90.0}
             for which, c in zip(("parent", "new"), choice, strict=True)}
    guard = {"figure": "benchmark R@1", "parent": benchmark[0], "new": benchmark[1],
             "change": round(benchmark[1] - benchmark[0], 2), "tolerance": 1.0, "queries": 600,
             "kept": benchmark[1] >= benchmark[0] - 1.0}
    return {"verdict": verdict, "heldout_picks": picks, "guard": guard}


@pytest.mark.parametrize(("verdict", "choice", "benchmark", "why"), [
    ("worse", (40.0, 30.0), (90.0, 90.0), "was worse than its parent"),
    ("forgets", (10.0, 60.0), (90.0, 84.5), "forgot what it knew"),
])
def test_a_worse_or_forgetting_version_is_refused_unless_forced(composers, backbone, tmp_path, verdict, choice,
                                                                benchmark, why):
    registry = Registry(tmp_path / "models")
    root = registry.use(registry.ensure_root(composers[0]).id)
    refused = registry.add(composers[1], root.id, {"kind": "finetune"}, finetune_metrics(verdict, choice, benchmark))
    figures = f"held-out picks choice@1 {choice[0]:.1f} -> {choice[1]:.1f}; benchmark R@1 {benchmark[0]:.1f} -> "
    with pytest.raises(WorseVersion, match=re.escape(why) + ".*" + re.escape(figures)):
        registry.use(refused.id)
    assert registry.active(backbone.identity).id == root.id
    listed = CliRunner().invoke(app, ["models", "list", "--registry", str(registry.root)])
    row = next(line for line in listed.output.splitlines() if refused.id in line)
    assert f"{verdict} " in row and f"{choice[0]:.1f} -> {choice[1]:.1f}" in row
    assert f"{benchmark[0]:.1f} -> {benchmark[1]:.1f} ({benchmark[1] - benchmark[0]:+.1f})" in row
    stats_rows = stats_view(None, None, registry.root)[-1]
    assert stats_rows == [["", refused.id, root.id, refused.created, verdict, f"{choice[0]:.1f} -> {choice[1]:.1f}",
                           f"{benchmark[0]:.1f} -> {benchmark[1]:.1f} ({benchmark[1] - benchmark[0]:+.1f})"],
                          ["*", root.id, "", root.created, "root", "", ""]], "the Stats tab shows both figures"
    result = CliRunner().invoke(app, ["models", "use", refused.id, "--registry", str(registry.root)])
    assert result.exit_code == 2 and "--force" in result.output
    assert registry.active(backbone.identity).id == root.id
    result = CliRunner().invoke(app, ["models", "use", refused.id, "--force", "--registry", str(registry.root)])
    assert result.exit_code == 0, result.output
    assert registry.active(backbone.identity).id == refused.id


def test_a_version_for_another_backbone_is_refused(composers, backbone, tmp_path):
    registry = Registry(tmp_path / "models")
    version = registry.ensure_root(composers[0])
    other = load_backbone(BackboneSpec(DEMO_MODEL), "cpu")
    assert other.identity != backbone.identity
    with pytest.raises(ModelMismatch, match="re-embed the catalog"):
        registry.load(version, other)
    layout = CatalogLayout(embed_dim=backbone.embed_dim, patch_shape=None)
    CatalogStore.create(tmp_path / "other-db", "catalog", layout, other.identity)
    CatalogStore.create(tmp_path / "same-db", "catalog", layout, backbone.identity)
    with pytest.raises(ModelMismatch, match=re.escape(f"catalog uses backbone {other.identity}")):
        registry.use(version.id, store_identity=other.identity)
    result = CliRunner().invoke(app, ["models", "use", version.id, "--registry", str(registry.root),
                                      "--db", str(tmp_path / "other-db")])
    assert result.exit_code == 2 and "was trained on backbone" in result.output
    assert registry.active_ids() == {}
    result = CliRunner().invoke(app, ["models", "use", version.id, "--registry", str(registry.root),
                                      "--db", str(tmp_path / "same-db")])
    assert result.exit_code == 0, result.output
    assert registry.active(backbone.identity).id == version.id


def test_serve_loads_the_active_version_of_the_catalogs_backbone(composers, backbone, world, tmp_path, monkeypatch):
    from retrieval.ingest import ingest
    from ui.serve import load_encoder

    db = tmp_path / "catalog.lancedb"
    ingest(world.root, backbone, db, metadata=world.catalog_csv, progress=False)
    monkeypatch.setenv("CIRCHAT_HOME", str(tmp_path / "home"))
    store, encoder = load_encoder(db, "catalog", None, None, None)
    assert encoder.mapper is None, "no composer and no active version: the sum baseline, as before"
    registry = Registry()
    assert registry.root == tmp_path / "home" / "models"
    version = registry.use(registry.add(composers[2], None, {"kind": "shipped"}).id)
    store, encoder = load_encoder(db, "catalog", None, None, None)
    assert encoder.meta["registry_version"] == version.id
    assert CatalogSearcher(store, encoder).model_version == version.id
    _, explicit = load_encoder(db, "catalog", None, None, composers[1])
    assert "registry_version" not in explicit.meta, "an explicit --composer wins over the registry"
