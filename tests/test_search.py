"""Search over a real ingested catalog: text-only, composed from a catalog id or an image file, filters,
the no-composer fallback, the langchain retriever and ``circhat search``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from retrieval.backbone import DEMO_MODEL, BackboneSpec, load_backbone
from retrieval.image_io import ImageRejected
from retrieval.ingest import ingest
from retrieval.langchain_retriever import CatalogRetriever
from retrieval.mapper import Mapper, MapperConfig
from retrieval.query_encoder import ModelMismatch, QueryEncoder
from retrieval.search import DIVERSE_POOL, PhotoCache, ReferenceNotFound, diversify, search_catalog
from retrieval.store import CatalogStore, Hit
from ui.store_commands import app


@pytest.fixture(scope="module")
def catalog(world, backbone, tmp_path_factory):
    """(db, folder) of an ingested copy of the world, which tests may alter."""
    folder = tmp_path_factory.mktemp("shop")
    shutil.copytree(world.root / "images", folder / "images")
    shutil.copy(world.catalog_csv, folder / "catalog.csv")
    db = folder / "db"
    ingest(folder, backbone, db, metadata=folder / "catalog.csv", progress=False)
    return db, folder


@pytest.fixture(scope="module")
def store(catalog, backbone):
    return CatalogStore.open(catalog[0], "catalog", backbone.identity)


@pytest.fixture(scope="module")
def composer(backbone):
    with torch.random.fork_rng():
        torch.manual_seed(1)
        mapper = Mapper(MapperConfig(embed_dim=backbone.embed_dim, patch_dim=512, token_dim=backbone.token_dim))
    return QueryEncoder(backbone, mapper)


def test_text_only_search_filters_and_ranks(store, backbone):
    result = search_catalog(store, QueryEncoder(backbone, None), None, ["a red dress"], where="category = 'dress'",
                            k=5)
    assert result.mode == "text" and result.query == "a photo of a red dress"
    assert len(result.hits) == 5 and all(h.metadata["category"] == "dress" for h in result.hits)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    with pytest.raises(ValueError, match="nothing to search for"):
        search_catalog(store, QueryEncoder(backbone, None), None, [" "])


def test_a_diverse_search_chooses_among_a_wider_pool_of_the_best(store, composer):
    plain = search_catalog(store, composer, "3", ["en rouge"], k=5)
    pool = search_catalog(store, composer, "3", ["en rouge"], k=5 * DIVERSE_POOL)
    spread = search_catalog(store, composer, "3", ["en rouge"], k=5, diversity=0.5)
    assert [h.id for h in pool.hits[:5]] == [h.id for h in plain.hits] and spread.hits[0].id == plain.hits[0].id
    assert len(spread.hits) == 5 and {h.id for h in spread.hits} <= {h.id for h in pool.hits}
    stored = {r["id"]: np.asarray(r["embedding"], dtype=np.float32)
              for r in store.fetch([h.id for h in spread.hits], ["id", "embedding"]).to_pylist()}
    assert all(np.allclose(h.embedding, stored[h.id]) for h in spread.hits)
    assert all(h.embedding is None for h in plain.hits) and "embedding" not in spread.hits[0].to_dict()
    assert search_catalog(store, composer, "3", ["en rouge"], k=5, diversity=0.0).hits == plain.hits


def test_maximal_marginal_relevance_passes_over_near_copies_of_what_it_chose():
    """Three near-copies score best; a spread keeps the first and takes the different items next."""
    def hit(name, score, vector):
        return Hit(name, name, score, embedding=np.asarray(vector, dtype=np.float32) / np.linalg.norm(vector))

    hits = [hit("a", 0.9, [1, 0, 0]), hit("a2", 0.89, [1, 0.01, 0]), hit("a3", 0.88, [1, 0, 0.01]),
            hit("b", 0.7, [0, 1, 0]), hit("c", 0.6, [0, 0, 1])]
    assert [h.id for h in diversify(hits, 3, 0.5)] == ["a", "b", "c"]
    assert [h.id for h in diversify(hits, 3, 0.0)] == ["a", "a2", "a3"]
    assert [h.id for h in diversify(hits, 3, 0.05)] == ["a", "a2", "a3"], "a little diversity keeps the ranking"
    assert diversify([], 3, 0.5) == []


def test_a_photo_is_encoded_once_for_the_turns_on_it_and_again_when_the_file_changes(store, backbone, catalog,
                                                                                       tmp_path):
    _, folder = catalog
    photo = tmp_path / "upload.png"
    shutil.copy(folder / "images" / "000005.png", photo)
    photos = PhotoCache(size=2)
    first = photos.features(store, backbone, str(photo))
    assert first.kind == "image" and photos.features(store, backbone, str(photo)) is first
    assert photos.features(store, backbone, "5").kind == "catalog" and len(photos.entries) == 1, "ids are not kept"
    shutil.copy(folder / "images" / "000006.png", photo)
    changed = photos.features(store, backbone, str(photo))
    assert changed is not first and not torch.equal(changed.pooled, first.pooled)
    for n in (7, 8, 9):
        shutil.copy(folder / "images" / f"00000{n}.png", tmp_path / f"{n}.png")
        photos.features(store, backbone, str(tmp_path / f"{n}.png"))
    assert len(photos.entries) == 2
    with pytest.raises(ReferenceNotFound):
        photos.features(store, backbone, str(tmp_path / "missing.png"))


def test_catalog_reference_uses_stored_features_not_the_image(store, composer, catalog):
    _, folder = catalog
    image = folder / "images" / "000005.png"
    by_path = search_catalog(store, composer, str(image), ["make it blue", "with stripes"], k=8,
                             exclude=["5"])
    moved = image.rename(image.with_suffix(".moved"))
    try:
        by_id = search_catalog(store, composer, "5", ["make it blue", "with stripes"], k=8)
    finally:
        moved.rename(image)
    assert by_id.mode == "composed" and by_id.query == "a photo of * , make it blue , with stripes"
    assert [h.id for h in by_id.hits] == [h.id for h in by_path.hits]
    np.testing.assert_allclose([h.score for h in by_id.hits], [h.score for h in by_path.hits], atol=1e-4)
    assert "5" not in {h.id for h in by_id.hits}


def test_image_only_reference_finds_itself_unless_excluded(store, backbone):
    encoder = QueryEncoder(backbone, None)
    kept = search_catalog(store, encoder, "17", [], k=3, exclude_reference=False)
    assert kept.mode == "image" and kept.hits[0].id == "17" and kept.hits[0].score == pytest.approx(1, abs=1e-3)
    assert "17" not in {h.id for h in search_catalog(store, encoder, "17", [], k=3).hits}


def test_reference_without_composer_falls_back_to_sum_and_says_so(store, backbone):
    result = search_catalog(store, QueryEncoder(backbone, None), "3", ["make it blue"], where="price < 50", k=4)
    assert result.mode == "image+text sum" and "--composer" in result.note
    assert all(h.metadata["price"] < 50 for h in result.hits)


def test_bad_references_are_refused(store, backbone, tmp_path):
    encoder = QueryEncoder(backbone, None)
    fake = tmp_path / "photo.png"
    fake.write_text("not an image")
    with pytest.raises(ImageRejected, match="not a supported image format"):
        search_catalog(store, encoder, str(fake), ["blue"])
    with pytest.raises(ReferenceNotFound):
        search_catalog(store, encoder, "no-such-item", ["blue"])
    with pytest.raises(ModelMismatch, match="--reembed"):
        search_catalog(store, QueryEncoder(load_backbone(BackboneSpec(DEMO_MODEL), "cpu"), None), None, ["blue"])


def test_langchain_retriever_returns_the_same_ranking(store, composer):
    retriever = CatalogRetriever(store=store, encoder=composer, reference="5", earlier_instructions=["make it blue"],
                                 where="price < 60", k=4)
    documents = retriever.invoke("with stripes")
    expected = search_catalog(store, composer, "5", ["make it blue", "with stripes"], where="price < 60", k=4)
    assert [d.metadata["id"] for d in documents] == [h.id for h in expected.hits]
    first = documents[0]
    assert first.id == first.metadata["id"] and first.metadata["path"].endswith(".png")
    assert first.metadata["score"] == pytest.approx(expected.hits[0].score)
    assert first.page_content == first.metadata["caption"] and first.metadata["price"] < 60


def test_cli_search_prints_json_and_rejects_bad_filters(catalog):
    db, _ = catalog
    runner = CliRunner()
    out = runner.invoke(app, ["search", "--say", "blue", "--say", "striped", "--where", "price < 40", "--k", "3",
                              "--json", "--db", str(db)])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["query"] == "a photo of blue , striped" and len(result["hits"]) == 3
    assert all(hit["metadata"]["price"] < 40 for hit in result["hits"])
    bad = runner.invoke(app, ["search", "--say", "blue", "--where", "colr = 'x'", "--db", str(db)])
    assert bad.exit_code == 2 and "colr" in bad.output


def test_scale_benchmark_runs_on_a_small_catalog(small_world, small_backbone, tmp_path):
    """On a trained backbone's embeddings: a random-weights backbone maps every image to nearly the same vector,
    which no quantised index can rank (the benchmark's point is realistic embeddings)."""
    from benchmarks.store import BenchConfig, bench_store, markdown
    from retrieval.backbone import load_backbone

    backbone = load_backbone(small_backbone[0], "cpu")
    results = bench_store(small_world, backbone, BenchConfig(sizes=(1_500,), queries=20), tmp_path, progress=False)
    assert results["ingest"]["images"] == len(small_world.items) and results["ingest"]["images_per_second"] > 0
    size = results["sizes"][0]
    assert size["items"] == 1_500 and size["recall@10"] >= 0.95 and size["filtered"]["recall@10"] >= 0.95
    assert size["exact"]["p95_ms"] >= size["exact"]["p50_ms"] > 0 and size["disk_mb"] > 0
    assert "| 1,500 |" in markdown(results) and "Partial run" in markdown(results)
