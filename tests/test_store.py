"""The LanceDB catalog table on a real directory: schema, filters, exclusion, indexes, model refusal."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.query_encoder import ModelMismatch
from retrieval.store import BadFilter, CatalogLayout, CatalogStore, IndexSettings, StoreNotFound, where_clause

CATEGORIES = ("dress", "skirt", "t-shirt", "trousers")
COLOURS = ("red", "blue", "navy", "black", "O'Neil green")
LAYOUT = CatalogLayout(embed_dim=32, patch_shape=(4, 8),
                       metadata=(("category", "string"), ("colour", "string"), ("price", "float")))


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in 40 tight clusters, closer to real catalog embeddings than isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, LAYOUT.embed_dim))
    vectors = centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, LAYOUT.embed_dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _fill(store: CatalogStore, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = _clustered(n, seed)
    rows = {
        "id": [f"item-{i}" for i in range(n)], "path": [f"/catalog/{i}.png" for i in range(n)],
        "content_hash": [f"{i:064x}" for i in range(n)],
        "category": [CATEGORIES[i % 4] for i in range(n)], "colour": [COLOURS[i % 5] for i in range(n)],
        "price": rng.uniform(5, 100, n).round(2).tolist(),
    }
    store.upsert(store.rows(rows, vectors, rng.normal(size=(n, 32)).astype(np.float32)))
    return vectors


@pytest.fixture
def store(tmp_path):
    return CatalogStore.create(tmp_path / "db", "catalog", LAYOUT, "model-a")


def test_schema_records_model_and_rows_round_trip(store, tmp_path):
    vectors = _fill(store, 50)
    reopened = CatalogStore.open(tmp_path / "db", "catalog", "model-a")
    assert reopened.layout == LAYOUT and reopened.identity == "model-a" and len(reopened) == 50
    fields = {f.name: str(f.type) for f in reopened.schema}
    assert fields["price"] == "double" and fields["category"] == "string"
    assert fields["embedding"] == "fixed_size_list<item: float>[32]"
    assert fields["patches"] == "fixed_size_list<item: float>[32]"
    item = reopened.item("item-7")
    assert item.patches.shape == (4, 8) and item.metadata["category"] == CATEGORIES[3]
    np.testing.assert_array_equal(item.embedding, vectors[7])
    assert reopened.item("no-such-id") is None


def test_table_directory_left_by_a_killed_create_is_recreated(tmp_path):
    (tmp_path / "db" / "catalog.lance" / "_versions").mkdir(parents=True)
    assert not CatalogStore.exists(tmp_path / "db", "catalog")
    with pytest.raises(StoreNotFound):
        CatalogStore.open(tmp_path / "db", "catalog")
    store = CatalogStore.create(tmp_path / "db", "catalog", LAYOUT, "model-a")
    _fill(store, 3)
    assert len(CatalogStore.open(tmp_path / "db", "catalog", "model-a")) == 3


def test_upsert_replaces_instead_of_duplicating(store):
    _fill(store, 30)
    _fill(store, 30, seed=1)
    ids = store.snapshot(["id"])["id"].to_pylist()
    assert len(ids) == 30 and len(set(ids)) == 30


def test_other_backbone_is_refused(store, tmp_path):
    _fill(store, 5)
    with pytest.raises(ModelMismatch, match="--reembed"):
        CatalogStore.open(tmp_path / "db", "catalog", "model-b")
    with pytest.raises(StoreNotFound, match="circhat ingest"):
        CatalogStore.open(tmp_path / "db", "other", "model-a")


@pytest.mark.parametrize("indexed", [False, True])
def test_filters_and_exclusion_return_only_matching_rows(store, indexed):
    vectors = _fill(store, 600)
    indexes = store.ensure_indexes(ann_min_rows=500 if indexed else 10_000)
    assert ("embedding" in indexes) == indexed
    assert indexes["category"] == "Bitmap" and indexes["price"] == "BTree" and indexes["id"] == "BTree"
    where = where_clause({"category": ["dress", "skirt"], "colour": "O'Neil green"}, {"price": (20, 60)})
    hits = store.search(vectors[0], k=20, where=where)
    assert hits, "the filter matches some rows"
    for hit in hits:
        assert hit.metadata["category"] in ("dress", "skirt") and hit.metadata["colour"] == "O'Neil green"
        assert 20 <= hit.metadata["price"] <= 60
    expected = {row["id"] for row in store.snapshot().to_pylist()
                if row["category"] in ("dress", "skirt") and row["colour"] == COLOURS[4] and 20 <= row["price"] <= 60}
    assert {h.id for h in store.search(vectors[0], k=600, where=where, exact=True)} == expected
    top = store.search(vectors[3], k=5)
    assert top[0].id == "item-3" and top[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in top] == sorted((h.score for h in top), reverse=True)
    excluded = store.search(vectors[3], k=5, exclude=["item-3", top[1].id])
    assert {"item-3", top[1].id}.isdisjoint(h.id for h in excluded)


def test_ann_index_recall_against_exact(store):
    vectors = _fill(store, 2_000)
    store.ensure_indexes(ann_min_rows=1_000)
    assert store.vector_index() is not None
    queries = _clustered(30, seed=9)
    overlap = [len({h.id for h in store.search(q, k=10)} & {h.id for h in store.search(q, k=10, exact=True)}) / 10
               for q in queries]
    assert np.mean(overlap) >= 0.95
    assert store.search(vectors[11], k=1, settings=IndexSettings(nprobes=1, refine_factor=1))[0].id == "item-11"


def test_ensure_indexes_is_idempotent_and_folds_in_new_rows(store):
    _fill(store, 300)
    first = store.ensure_indexes(ann_min_rows=100)
    assert store.ensure_indexes(ann_min_rows=100) == first
    rng = np.random.default_rng(5)
    extra = {"id": ["late"], "path": ["/late.png"], "content_hash": ["0" * 64], "category": ["dress"],
             "colour": ["red"], "price": [1.0]}
    store.upsert(store.rows(extra, _clustered(1, seed=77), rng.normal(size=(1, 32))))
    store.ensure_indexes(ann_min_rows=100)
    assert store.vector_index().num_unindexed_rows == 0
    assert store.search(_clustered(1, seed=77)[0], k=1)[0].id == "late"


def test_vector_index_is_retrained_once_the_catalog_doubles(store):
    _fill(store, 300)
    store.ensure_indexes(ann_min_rows=100)
    assert store.vector_index().name == "embedding_ivf_300"
    _fill(store, 500)
    store.ensure_indexes(ann_min_rows=100)
    assert store.vector_index().name == "embedding_ivf_300" and store.vector_index().num_unindexed_rows == 0
    vectors = _fill(store, 700)
    store.ensure_indexes(ann_min_rows=100)
    vector_indexes = [ix for ix in store.table.list_indices() if ix.columns == ["embedding"]]
    assert [ix.name for ix in vector_indexes] == ["embedding_ivf_700"]
    assert store.search(vectors[650], k=1)[0].id == "item-650"


def test_bad_filters_get_clear_errors(store):
    vectors = _fill(store, 20)
    with pytest.raises(BadFilter, match="colr"):
        store.search(vectors[0], where="colr = 'red'")
    with pytest.raises(BadFilter):
        where_clause({"colour; DROP": "red"})
