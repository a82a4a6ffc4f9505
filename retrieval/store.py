"""The catalog store: one LanceDB table of catalog items, their embeddings and their metadata.

The table's Arrow schema is stated once, in ``catalog_schema``:

* ``id`` — stable item id (the catalog CSV's id, else the file's path relative to
  the ingested folder); upserts key on it, so re-ingesting never duplicates.
* ``path`` — the source image file; ``content_hash`` — sha256 of its bytes,
  which decides whether a re-ingest must re-embed it.
* metadata columns from the catalog CSV (``price`` and other numeric columns as
  float64, the rest as strings), filterable with SQL ``where`` clauses and
  backed by scalar indexes (BITMAP for few distinct values, BTREE for numbers;
  free text such as names gets none).
* ``model`` — identity of the backbone that produced the row's vectors.
* ``embedding`` — the pooled, normalised image embedding (fixed-size float32 list).
* ``patches`` — the backbone's patch tokens, flattened (fixed-size float32 list),
  optional: a turn whose reference is a catalog item reads them back instead of
  decoding the image and running the vision tower again, so only the (small)
  mapper and text tower run per turn. They depend only on the backbone, not on
  the composer checkpoint, so fine-tuning the composer never invalidates them.
  They cost ``P*W*4`` bytes a row (8 KiB for the demo backbone, ~150 KiB for a
  ViT-B/32), so large backbones can leave them out and decode on demand.

The schema metadata records the backbone identity; opening the table with a
different backbone raises ``ModelMismatch`` until the catalog is re-embedded.
The catalog's vocabulary (``retrieval.catalog_schema``, its ``schema.json``)
rides beside it, as metadata of the ``id`` field: LanceDB's Python API can
update field metadata in a versioned commit but not table-level metadata, and a
re-ingest must be able to update the vocabulary without rewriting the rows.
Small catalogs are searched exactly (brute force); from ``ANN_MIN_ROWS`` rows an
IVF_SQ index (8-bit scalar quantisation) with a refine step on full vectors takes
over. Measured with ``benchmarks/store.py`` on 2 cores (demo embeddings,
128-d, drawn from the real distribution): exact search costs ~6 ms at 10k rows,
~25 ms (p50) at 100k and ~240 ms at 1M, growing linearly; at 1M, IVF_SQ with
~1,000 rows a partition, 24 probes and refine 10 answered in ~8 ms (p95 ~10 ms)
with recall@10 1.0 against exact and built in ~12 s, while IVF_PQ needed refine
50 to pass 0.95 recall (p95 ~12-15 ms) and built 2-4x slower.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import Bitmap, BTree, IvfSq

from retrieval.catalog_schema import CatalogSchema
from retrieval.query_encoder import ModelMismatch

DEFAULT_TABLE = "catalog"
SCHEMA_VERSION = "1"
CORE_COLUMNS = ("id", "path", "content_hash", "model", "embedding", "patches")
ANN_MIN_ROWS = 25_000
RETRAIN_GROWTH = 2.0
VECTOR_INDEX = "embedding_ivf_"
BITMAP_MAX_DISTINCT = 1_000
KEEP_OLD_VERSIONS = timedelta(minutes=10)
_META = "circhat."
CATALOG_SCHEMA_KEY = f"{_META}catalog_schema"


class StoreNotFound(FileNotFoundError):
    """No catalog table where one was expected (nothing ingested yet)."""


class LayoutMismatch(ValueError):
    """Rows or a catalog CSV do not fit the existing table's columns."""


class BadFilter(ValueError):
    """A ``where`` clause the store cannot evaluate."""


@dataclass(frozen=True)
class IndexSettings:
    """IVF_SQ build and query settings; chosen from ``benchmarks/store.py`` measurements."""

    partition_rows: int = 1_000
    nprobes: int = 24
    refine_factor: int = 10

    def config(self, rows: int, embed_dim: int) -> IvfSq:
        partitions = max(1, min(rows // self.partition_rows, int(math.sqrt(rows))))
        return IvfSq(distance_type="cosine", num_partitions=partitions)


DEFAULT_INDEX = IndexSettings()


@dataclass(frozen=True)
class CatalogLayout:
    """What varies between catalog tables: vector sizes and the CSV's metadata columns."""

    embed_dim: int
    patch_shape: tuple[int, int] | None
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def metadata_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.metadata)

    @property
    def numeric(self) -> frozenset[str]:
        return frozenset(name for name, kind in self.metadata if kind == "float")

    @property
    def patch_size(self) -> int:
        return 0 if self.patch_shape is None else self.patch_shape[0] * self.patch_shape[1]


@dataclass
class Hit:
    """One ranked search result."""

    id: str
    path: str
    score: float
    metadata: dict[str, str | float | None] = field(default_factory=dict)
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "score": round(self.score, 6), "metadata": self.metadata}


@dataclass
class StoredItem:
    """A catalog row with its vectors, as a reference for a composed query."""

    id: str
    path: str
    embedding: np.ndarray
    patches: np.ndarray | None
    metadata: dict[str, str | float | None]


def catalog_schema(layout: CatalogLayout, identity: str, backbone_spec: Mapping[str, str | None] | None = None
                   ) -> pa.Schema:
    """The catalog table's Arrow schema; the only place its columns are spelled out."""
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        *(pa.field(name, pa.float64() if kind == "float" else pa.string()) for name, kind in layout.metadata),
        pa.field("model", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), layout.embed_dim), nullable=False),
    ]
    if layout.patch_shape is not None:
        fields.append(pa.field("patches", pa.list_(pa.float32(), layout.patch_size), nullable=False))
    metadata = {
        f"{_META}schema_version": SCHEMA_VERSION,
        f"{_META}model": identity,
        f"{_META}backbone_spec": json.dumps(dict(backbone_spec or {})),
        f"{_META}embed_dim": str(layout.embed_dim),
        f"{_META}patch_shape": json.dumps(layout.patch_shape),
        f"{_META}metadata": json.dumps(layout.metadata),
    }
    return pa.schema(fields, metadata=metadata)


def layout_of(schema: pa.Schema) -> tuple[CatalogLayout, str, dict]:
    """(layout, backbone identity, backbone spec) recorded in a catalog table's schema."""
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    if f"{_META}model" not in meta:
        raise LayoutMismatch("this table was not written by circhat (no model identity in its schema)")
    patch_shape = json.loads(meta[f"{_META}patch_shape"])
    layout = CatalogLayout(
        embed_dim=int(meta[f"{_META}embed_dim"]),
        patch_shape=tuple(patch_shape) if patch_shape else None,
        metadata=tuple((name, kind) for name, kind in json.loads(meta[f"{_META}metadata"])),
    )
    return layout, meta[f"{_META}model"], json.loads(meta.get(f"{_META}backbone_spec", "{}"))


def sql_literal(value: str | float | int) -> str:
    """A value as a SQL literal for LanceDB filters (strings quoted, quotes doubled)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not catalog values")
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return "'" + str(value).replace("'", "''") + "'"


def where_clause(equals: Mapping[str, str | Sequence[str]] | None = None,
                 ranges: Mapping[str, tuple[float | None, float | None]] | None = None) -> str | None:
    """A safe SQL filter from structured conditions: ``{"colour": ["red", "navy"]}``, ``{"price": (10, 50)}``."""
    parts = []
    for column, value in (equals or {}).items():
        _check_identifier(column)
        values = [value] if isinstance(value, str) else list(value)
        if len(values) == 1:
            parts.append(f"{column} = {sql_literal(values[0])}")
        elif values:
            parts.append(f"{column} IN ({', '.join(sql_literal(v) for v in values)})")
    for column, (low, high) in (ranges or {}).items():
        _check_identifier(column)
        if low is not None:
            parts.append(f"{column} >= {sql_literal(float(low))}")
        if high is not None:
            parts.append(f"{column} <= {sql_literal(float(high))}")
    return " AND ".join(parts) or None


def _check_identifier(name: str) -> None:
    if not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise BadFilter(f"not a column name: {name!r}")


def id_filter(ids: Iterable[str], negate: bool = False) -> str:
    quoted = ", ".join(sql_literal(i) for i in ids)
    return f"id {'NOT IN' if negate else 'IN'} ({quoted})"


class CatalogStore:
    """A handle on one catalog table, bound to the backbone identity its vectors must come from."""

    def __init__(self, table: lancedb.table.Table, db_uri: str):
        self.table = table
        self.db_uri = db_uri
        self.layout, self.identity, self.backbone_spec = layout_of(table.schema)

    @staticmethod
    def connect(db: str | Path, consistency: timedelta | None = None) -> lancedb.DBConnection:
        return lancedb.connect(str(db), read_consistency_interval=consistency)

    @classmethod
    def exists(cls, db: str | Path, name: str = DEFAULT_TABLE) -> bool:
        """Whether a readable table is there (a directory left by a create killed mid-way is not)."""
        try:
            cls.connect(db).open_table(name)
        except (ValueError, FileNotFoundError):
            return False
        return True

    @classmethod
    def open(cls, db: str | Path, name: str = DEFAULT_TABLE, identity: str | None = None,
             consistency: timedelta | None = timedelta(seconds=1)) -> CatalogStore:
        """Open an existing table; with ``identity``, refuse one embedded by another backbone.

        ``consistency`` is how stale reads may be while another process writes (None: never refresh).
        """
        connection = cls.connect(db, consistency)
        try:
            table = connection.open_table(name)
        except (ValueError, FileNotFoundError):
            hint = f"run `circhat ingest DIR --db {db}` first"
            raise StoreNotFound(f"no catalog table {name!r} in {db}; {hint}") from None
        store = cls(table, str(db))
        if identity is not None and identity != store.identity:
            raise ModelMismatch(
                f"catalog {name!r} in {db} was embedded with backbone {store.identity}, but the loaded "
                f"backbone is {identity}; re-embed it with `circhat ingest DIR --reembed --db {db}` "
                f"(or load the backbone it was built with)")
        return store

    @classmethod
    def create(cls, db: str | Path, name: str, layout: CatalogLayout, identity: str,
               backbone_spec: Mapping[str, str | None] | None = None) -> CatalogStore:
        """Create an empty table (or open the existing one, which must have this layout and backbone)."""
        try:
            store = cls.open(db, name, identity)
        except StoreNotFound:
            schema = catalog_schema(layout, identity, backbone_spec)
            return cls(cls.connect(db).create_table(name, schema=schema, exist_ok=True), str(db))
        if store.layout != layout:
            raise LayoutMismatch(f"catalog {name!r} in {db} has layout {store.layout}, not {layout}; "
                                 f"ingest into a new --table or re-embed with --reembed")
        return store

    @classmethod
    def drop(cls, db: str | Path, name: str = DEFAULT_TABLE) -> None:
        connection = cls.connect(db)
        if name in connection.list_tables().tables:
            connection.drop_table(name)

    def __len__(self) -> int:
        return self.table.count_rows()

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    @property
    def catalog_schema(self) -> CatalogSchema:
        """The catalog's vocabulary as last ingested (an empty schema for a catalog ingested without metadata)."""
        blob = (self.schema.field("id").metadata or {}).get(CATALOG_SCHEMA_KEY.encode())
        return CatalogSchema.from_json(blob.decode(), f"catalog {self.table.name!r}") if blob else CatalogSchema()

    def save_catalog_schema(self, schema: CatalogSchema) -> None:
        """Record the catalog's vocabulary in the table, as one versioned commit."""
        self.table.update_field_metadata({"path": "id", "metadata": {CATALOG_SCHEMA_KEY: schema.to_json()}})

    def refresh(self) -> None:
        """See other processes' writes now."""
        self.table.checkout_latest()

    def rows(self, rows: Mapping[str, Sequence], embeddings: np.ndarray, patches: np.ndarray | None) -> pa.Table:
        """Arrow rows in this table's schema; ``rows`` holds id, path, content_hash and metadata columns."""
        n = len(rows["id"])
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(n, self.layout.embed_dim)
        columns: dict[str, pa.Array] = {
            "id": pa.array(rows["id"], pa.string()),
            "path": pa.array(rows["path"], pa.string()),
            "content_hash": pa.array(rows["content_hash"], pa.string()),
        }
        for name, kind in self.layout.metadata:
            values = rows.get(name, [None] * n)
            columns[name] = pa.array(values, pa.float64() if kind == "float" else pa.string())
        columns["model"] = pa.array([self.identity] * n, pa.string())
        columns["embedding"] = _fixed_list(embeddings)
        if self.layout.patch_shape is not None:
            if patches is None:
                raise LayoutMismatch("this catalog stores patch features; rows must carry them")
            columns["patches"] = _fixed_list(np.asarray(patches, dtype=np.float32).reshape(n, self.layout.patch_size))
        return pa.table(columns, schema=self.schema)

    def upsert(self, rows: pa.Table) -> None:
        """Insert new ids and replace existing ones, in one atomic commit."""
        if rows.num_rows:
            (self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
             .execute(rows.cast(self.schema)))

    def delete(self, ids: Sequence[str], chunk: int = 1_000) -> int:
        """Remove rows by id; returns how many ids were asked for."""
        for i in range(0, len(ids), chunk):
            self.table.delete(id_filter(ids[i:i + chunk]))
        return len(ids)

    def snapshot(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every row's non-vector columns (what an incremental ingest compares against)."""
        columns = list(columns or ["id", "path", "content_hash", "model", *self.layout.metadata_names])
        return self.table.search().select(columns).to_arrow()

    def fetch(self, ids: Sequence[str], columns: Sequence[str] | None = None) -> pa.Table:
        """Rows for ``ids`` (all columns unless told), in no particular order."""
        if not ids:
            return self.schema.empty_table()
        query = self.table.search().where(id_filter(ids))
        return (query.select(list(columns)) if columns else query).to_arrow()

    def item(self, item_id: str) -> StoredItem | None:
        """One catalog item with its stored vectors, or None if the id is not in the catalog."""
        rows = self.fetch([item_id]).to_pylist()
        if not rows:
            return None
        row = rows[0]
        patches = None
        if self.layout.patch_shape is not None:
            patches = np.asarray(row["patches"], dtype=np.float32).reshape(self.layout.patch_shape)
        return StoredItem(
            id=row["id"], path=row["path"], embedding=np.asarray(row["embedding"], dtype=np.float32),
            patches=patches, metadata={name: row[name] for name in self.layout.metadata_names},
        )

    def vector_index(self):
        """The IVF index on ``embedding``, or None while the catalog is searched exactly."""
        return max(self._vector_indexes(), key=_trained_rows, default=None)

    def _vector_indexes(self) -> list:
        return [ix for ix in self.table.list_indices() if ix.columns == ["embedding"]]

    def search(self, vector: np.ndarray, k: int = 10, where: str | None = None, exclude: Sequence[str] = (),
               exact: bool = False, settings: IndexSettings = DEFAULT_INDEX, embeddings: bool = False) -> list[Hit]:
        """The ``k`` items nearest ``vector`` (cosine), optionally filtered, best first.

        ``where`` is a SQL condition on metadata columns (``category = 'dress' AND price < 40``),
        applied before ranking. ``exact`` forces brute force even when an index exists. ``embeddings`` also
        returns each hit's stored embedding (to compare the hits with each other).
        """
        columns = ["id", "path", *self.layout.metadata_names, *(["embedding"] if embeddings else []), "_distance"]
        query = (self.table.search(np.asarray(vector, dtype=np.float32).ravel(), vector_column_name="embedding")
                 .distance_type("cosine").limit(k).select(columns))
        conditions = [f"({where})"] if where and where.strip() else []
        if exclude:
            conditions.append(id_filter(exclude, negate=True))
        if conditions:
            query = query.where(" AND ".join(conditions), prefilter=True)
        if exact:
            query = query.bypass_vector_index()
        else:
            query = query.nprobes(settings.nprobes).refine_factor(settings.refine_factor)
        try:
            result = query.to_arrow()
        except (ValueError, RuntimeError, OSError) as err:
            if where:
                raise BadFilter(f"cannot apply filter {where!r}: {_first_line(err)} "
                                f"(columns: {', '.join(self.layout.metadata_names) or 'none'})") from None
            raise
        vectors = result.column("embedding").to_numpy(zero_copy_only=False) if embeddings else None
        return [
            Hit(id=row["id"], path=row["path"], score=1.0 - float(row["_distance"]),
                metadata={name: row[name] for name in self.layout.metadata_names},
                embedding=np.asarray(vectors[i], dtype=np.float32) if vectors is not None else None)
            for i, row in enumerate(result.select([c for c in columns if c != "embedding"]).to_pylist())
        ]

    def ensure_indexes(self, ann_min_rows: int = ANN_MIN_ROWS, settings: IndexSettings = DEFAULT_INDEX,
                       optimize: bool = True) -> dict[str, str]:
        """Create the scalar indexes and, past ``ann_min_rows``, the vector index; then fold new rows in.

        Idempotent: a rerun after a crash creates whatever is missing and nothing twice.
        """
        rows = len(self)
        if rows and optimize:
            self.optimize()
        existing = {tuple(ix.columns) for ix in self.table.list_indices()}
        wanted = {"id": BTree()} if rows else {}
        strings = [name for name, kind in self.layout.metadata if kind == "string"]
        snapshot = self.snapshot(strings) if rows and strings else None
        for name, kind in self.layout.metadata if rows else ():
            if kind == "float":
                wanted[name] = BTree()
            elif pc.count_distinct(snapshot[name]).as_py() <= min(BITMAP_MAX_DISTINCT, rows // 4):
                wanted[name] = Bitmap()
        for column, config in wanted.items():
            if (column,) not in existing:
                self.table.create_index(column, config=config, replace=False)
        self._ensure_vector_index(rows, ann_min_rows, settings)
        return {",".join(ix.columns): ix.index_type for ix in self.table.list_indices()}

    def _ensure_vector_index(self, rows: int, ann_min_rows: int, settings: IndexSettings) -> None:
        """Build the IVF_SQ index once the catalog is big enough, and retrain it when the catalog has grown.

        ``optimize`` folds new rows into the existing partitions, whose centroids were trained on the rows
        present at build time; once the table is ``RETRAIN_GROWTH`` times that size the partitions are too
        few and too coarse, so a fresh index (named after its training row count) replaces the old one. The
        new index is built before the old one is dropped, so a crash in between leaves two and the next call
        drops the stale one.
        """
        current = self.vector_index()
        if rows >= ann_min_rows and (current is None or rows >= RETRAIN_GROWTH * _trained_rows(current)):
            name = f"{VECTOR_INDEX}{rows}"
            self.table.create_index("embedding", config=settings.config(rows, self.layout.embed_dim),
                                    replace=True, name=name)
            current = next(ix for ix in self._vector_indexes() if ix.name == name)
        for stale in self._vector_indexes():
            if current is not None and stale.name != current.name:
                self.table.drop_index(stale.name)

    def optimize(self) -> None:
        """Compact the many small fragments per-batch upserts leave and add new rows to the indexes."""
        self.table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS)

    def describe(self) -> dict:
        index = self.vector_index()
        return {
            "db": self.db_uri, "table": self.table.name, "rows": len(self), "model": self.identity,
            "layout": {"embed_dim": self.layout.embed_dim, "patch_shape": self.layout.patch_shape,
                       "metadata": dict(self.layout.metadata)},
            "search": "ann (IVF_SQ + refine)" if index else "exact",
            "indexes": sorted(",".join(ix.columns) + ":" + ix.index_type for ix in self.table.list_indices()),
            "version": self.table.version,
        }


def _trained_rows(index) -> int:
    """The row count an IVF index was trained on, from its name (0 when unknown, so it gets retrained)."""
    suffix = index.name.removeprefix(VECTOR_INDEX)
    return int(suffix) if index.name.startswith(VECTOR_INDEX) and suffix.isdigit() else 0


def _fixed_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel(), pa.float32()), matrix.shape[1])


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
