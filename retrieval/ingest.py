"""Catalog ingest: a folder of images (and optionally a metadata CSV) into the LanceDB catalog table.

Incremental and idempotent. Every file is hashed; a row is (re-)embedded only if
its id is new, its bytes changed, or it was embedded by another backbone; a row
whose file is unchanged but whose CSV metadata or path changed is rewritten
from its stored vectors. Each batch is one ``merge_insert`` on ``id`` (an atomic
upsert), so a run killed at any moment leaves a readable table and the next run
completes it with no duplicates. Images that fail the sanitising decode
(``retrieval.image_io``) are reported with the reason and never written.

Engines: ``local`` decodes on a thread pool and embeds in this process; ``ray``
runs decode+embed on Ray Data (``map_batches`` over actors that each hold the
model) and streams the embedded batches back to this process, which writes them
through the same upsert path, so both engines produce the same table.

One ingest at a time per table: a second ``ingest`` into the same local table
fails at once with ``IngestBusy`` rather than interleaving upserts (the lock is
an ``flock`` beside the table, released by the kernel if the holder dies).
Object-store URIs (``s3://``…) have no local lock; run one ingest there at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from retrieval.backbone import Backbone, BackboneSpec, load_backbone
from retrieval.catalog_schema import SCHEMA_FILE, CatalogSchema, infer_schema, load_schema, parse_number, save_schema
from retrieval.image_io import ImageRejected, load_image, read_limited
from retrieval.metadata_formats import read_metadata, resolve_images
from retrieval.query_encoder import ModelMismatch
from retrieval.store import ANN_MIN_ROWS, DEFAULT_TABLE, CatalogLayout, CatalogStore, LayoutMismatch

IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".svg", ".svgz", ".heic", ".heif", ".avif", ".ico", ".psd",
})
RESERVED_COLUMNS = frozenset({"id", "path", "content_hash", "model", "embedding", "patches"})
ENGINES = ("local", "ray")
OPTIMIZE_EVERY = 100


@dataclass(frozen=True)
class SourceItem:
    """One image the catalog should contain, with its CSV metadata."""

    id: str
    path: str
    metadata: dict[str, str | float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """An item that was not ingested, and why."""

    path: str
    reason: str
    id: str | None = None


@dataclass
class Catalog:
    """What a folder (and metadata file) says the catalog is: items, columns, schema, and what could not be read."""

    items: list[SourceItem]
    metadata: tuple[tuple[str, str], ...]
    failures: list[Failure]
    schema: CatalogSchema
    format: str | None = None
    notes: list[str] = field(default_factory=list)
    unlisted: int = 0
    schema_file: Path | None = None


@dataclass
class IngestReport:
    """What an ingest run did; ``summary()`` is the text the CLI prints."""

    db: str
    table: str
    engine: str
    model: str
    scanned: int = 0
    added: int = 0
    updated: int = 0
    relabelled: int = 0
    unchanged: int = 0
    removed: int = 0
    unlisted: int = 0
    rows: int = 0
    seconds: float = 0.0
    recreated: bool = False
    format: str | None = None
    indexes: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.scanned / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["images_per_second"] = round(self.images_per_second, 1)
        return out

    def summary(self) -> str:
        lines = [
            f"catalog {self.table!r} in {self.db} ({self.engine} engine, model {self.model})",
            f"  scanned {self.scanned} images in {self.seconds:.1f}s ({self.images_per_second:.0f} images/s)",
            f"  added {self.added}, re-embedded {self.updated}, metadata updated {self.relabelled}, "
            f"unchanged {self.unchanged}, removed {self.removed}; table now has {self.rows} rows",
        ]
        if self.recreated:
            lines.append("  table rebuilt for the new backbone (--reembed)")
        if self.unlisted:
            lines.append(f"  {self.unlisted} image files in the folder are not in the metadata file (not ingested)")
        if self.format:
            lines.append(f"  metadata read as {self.format}" + "".join(f"; {n}" for n in self.notes))
        if self.schema:
            lines.append("  catalog schema (edit schema.json beside the metadata file, then ingest again):")
            lines += [f"  {line}" for line in self.schema]
        if self.failures:
            lines.append(f"  {len(self.failures)} skipped:")
            lines += [f"    {f.path}: {f.reason}" for f in self.failures[:50]]
            if len(self.failures) > 50:
                lines.append(f"    ... and {len(self.failures) - 50} more")
        return "\n".join(lines)


def walk_images(folder: Path) -> Iterator[Path]:
    """Image-like files under ``folder`` (by suffix; the content is checked at decode), hidden ones skipped."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(root) / name


def schema_path(metadata: Path) -> Path:
    """Where a catalog's ``schema.json`` lives: beside its metadata file."""
    return Path(metadata).with_name(SCHEMA_FILE)


def read_catalog(folder: Path, metadata: Path | None = None, format: str | None = None,
                 encoding: str | None = None) -> Catalog:
    """The items to ingest and the catalog's schema: every image in ``folder``, or the products of ``metadata``
    (a plain CSV, a Shopify export or a Merchant feed; ``retrieval.metadata_formats``) with their images found
    under ``folder``. The schema is inferred from the metadata, keeping the edits of an existing ``schema.json``.
    Raises ``MetadataError`` / ``SchemaError`` before anything is written when the file cannot be used."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    files = list(walk_images(folder))
    if metadata is None:
        items = [SourceItem(id=p.relative_to(folder).as_posix(), path=str(p)) for p in files]
        return Catalog(items=items, metadata=(), failures=[], schema=CatalogSchema())
    table = read_metadata(Path(metadata), format, encoding)
    resolved, issues = resolve_images(table, folder)
    failures = [Failure(f"{metadata}:{i.line}", i.reason, i.id) for i in (*table.skipped, *issues)]
    previous_file = schema_path(Path(metadata))
    previous = load_schema(previous_file) if previous_file.exists() else None
    rows = [row.values for row, _ in resolved]
    schema = infer_schema(table.columns, rows, table.roles, previous, currency=table.currency)
    numeric = {n.name for n in schema.numeric}
    names = [c for c in table.columns if c not in RESERVED_COLUMNS]
    kinds = tuple((c, "float" if c in numeric else "string") for c in names)
    items = []
    for row, path in resolved:
        try:
            values = {c: _typed(row.values.get(c), kind, c) for c, kind in kinds}
        except ValueError as err:
            failures.append(Failure(str(path), f"{metadata}:{row.line}: {err}", row.id))
            continue
        items.append(SourceItem(id=row.id, path=str(path), metadata=values))
    listed = {it.path for it in items}
    return Catalog(items=items, metadata=kinds, failures=failures, schema=schema, format=table.format,
                   notes=list(table.notes), unlisted=sum(str(p) not in listed for p in files),
                   schema_file=previous_file)


def _typed(value: str | None, kind: str, column: str) -> str | float | None:
    value = (value or "").strip()
    if not value:
        return None
    if kind == "float":
        number = parse_number(value)
        if number is None:
            raise ValueError(f"{column} {value!r} is not a number")
        return number
    return value


def file_hash(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class EmbeddedBatch:
    """Decode+embed output for a batch of files; row i failed iff ``errors[i]`` is set."""

    hashes: list[str]
    errors: list[str | None]
    embeddings: np.ndarray
    patches: np.ndarray | None


@dataclass
class DecodedBatch:
    """Preprocessed pixels of the files that decoded (rows ``ok``), with every file's hash and error."""

    hashes: list[str]
    errors: list[str | None]
    ok: list[int]
    pixels: torch.Tensor | None


def thread_budget(cpus: int | None = None) -> tuple[int, int]:
    """(decode threads, torch threads) that keep every core busy without oversubscribing it.

    Measured on 2 shared cores: the tiny demo model encodes ~3x faster per image with one torch
    thread than with two once another process holds a core (OpenMP barriers stall), and decoding
    on a second thread overlaps with it.
    """
    cpus = cpus or os.cpu_count() or 1
    decode = min(8, max(1, cpus // 4))
    return decode, max(1, cpus - decode)


class Embedder:
    """Decodes files through ``image_io`` and embeds them with the backbone (in-process or in a Ray actor).

    Pixels go to the model channels-last: ~15% faster per image on CPU for the demo tower (measured),
    and the layout GPUs prefer.
    """

    def __init__(self, backbone: Backbone, patch_size: int | None, decode_threads: int = 1):
        self.backbone = backbone
        self.patch_size = patch_size
        self.pool = ThreadPoolExecutor(max(1, decode_threads))

    def _decode_one(self, path: str) -> tuple[str, torch.Tensor | None, str | None]:
        try:
            data = read_limited(Path(path))
            digest = hashlib.sha256(data).hexdigest()
        except ImageRejected as err:
            return "", None, err.reason
        try:
            return digest, self.backbone.preprocess(load_image(data)), None
        except ImageRejected as err:
            return digest, None, err.reason

    def decode(self, paths: Sequence[str]) -> DecodedBatch:
        decoded = list(self.pool.map(self._decode_one, paths))
        ok = [i for i, (_, pixels, _) in enumerate(decoded) if pixels is not None]
        return DecodedBatch(hashes=[d[0] for d in decoded], errors=[d[2] for d in decoded], ok=ok,
                            pixels=torch.stack([decoded[i][1] for i in ok]) if ok else None)

    def encode(self, batch: DecodedBatch) -> EmbeddedBatch:
        n = len(batch.hashes)
        embeddings = np.zeros((n, self.backbone.embed_dim), np.float32)
        patches = None if self.patch_size is None else np.zeros((n, self.patch_size), np.float32)
        if batch.ok:
            pixels = batch.pixels.contiguous(memory_format=torch.channels_last)
            pooled, tokens = self.backbone.encode_images_with_patches(pixels)
            embeddings[batch.ok] = pooled.cpu().numpy()
            if patches is not None:
                patches[batch.ok] = tokens.flatten(1).cpu().numpy()
        return EmbeddedBatch(hashes=batch.hashes, errors=batch.errors, embeddings=embeddings, patches=patches)

    def __call__(self, paths: Sequence[str]) -> EmbeddedBatch:
        return self.encode(self.decode(paths))

    def close(self) -> None:
        self.pool.shutdown()


def patch_shape(backbone: Backbone) -> tuple[int, int]:
    """(patches, width) of the backbone's patch tokens, from one blank image."""
    from PIL import Image

    pixels = backbone.image_tensor([Image.new("RGB", (32, 32), (255, 255, 255))])
    _, tokens = backbone.encode_images_with_patches(pixels)
    return int(tokens.shape[1]), int(tokens.shape[2])


def _hash_all(items: list[SourceItem], threads: int) -> dict[str, str | Failure]:
    def one(item: SourceItem) -> tuple[str, str | Failure]:
        try:
            return item.id, file_hash(item.path)
        except OSError as err:
            return item.id, Failure(item.path, f"cannot read file ({err.strerror or err})", item.id)

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, items))


def open_for_ingest(db: str | Path, table: str, backbone: Backbone, layout: CatalogLayout,
                    reembed: bool) -> tuple[CatalogStore, bool]:
    """The table to write, created if missing; rebuilt for a new backbone or layout only with ``reembed``."""
    spec = {"model": backbone.spec.model, "pretrained": backbone.spec.pretrained}
    if CatalogStore.exists(db, table):
        existing = CatalogStore.open(db, table)
        if existing.identity == backbone.identity and existing.layout == layout:
            return existing, False
        if not reembed:
            if existing.identity != backbone.identity:
                CatalogStore.open(db, table, backbone.identity)
            raise LayoutMismatch(
                f"catalog {table!r} in {db} has columns {existing.layout.metadata_names} and patch shape "
                f"{existing.layout.patch_shape}, this ingest has {layout.metadata_names} and {layout.patch_shape}; "
                f"rebuild it with --reembed or use another --table")
        CatalogStore.drop(db, table)
        return CatalogStore.create(db, table, layout, backbone.identity, spec), True
    return CatalogStore.create(db, table, layout, backbone.identity, spec), False


class IngestBusy(RuntimeError):
    """Another ingest is writing to the same catalog table."""


@contextlib.contextmanager
def ingest_lock(db: str | Path, table: str) -> Iterator[None]:
    """Hold the table's ingest lock for the duration (a no-op for object-store URIs)."""
    if "://" in str(db):
        yield
        return
    folder = Path(db)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f".{table}.ingest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise IngestBusy(f"another ingest (pid {holder}) is writing to table {table!r} in {db}; wait for it "
                             f"to finish or stop it, then rerun (a rerun completes whatever it left)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def ingest(folder: str | Path, backbone: Backbone, db: str | Path, table: str = DEFAULT_TABLE,
           metadata: str | Path | None = None, *, format: str | None = None, encoding: str | None = None,
           sync: bool = False, reembed: bool = False,
           engine: str = "local", address: str | None = None, batch_size: int = 128, patches: bool = True,
           ann_min_rows: int = ANN_MIN_ROWS,
           threads: tuple[int, int] | None = None, actors: int | None = None, progress: bool = True) -> IngestReport:
    """Bring the catalog table in line with ``folder`` (and ``metadata``); see the module docstring.

    The catalog's schema is inferred from the metadata (keeping the edits of the ``schema.json`` beside it),
    written back there and stored in the table, so ``circhat serve --db`` needs nothing else.

    ``threads`` is (decode threads, torch threads) for the local engine [``thread_budget()``];
    ``actors`` is the Ray actor pool size [one per GPU, else per CPU].
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    with ingest_lock(db, table):
        start = time.perf_counter()
        threads = threads or thread_budget()
        catalog = read_catalog(Path(folder), Path(metadata) if metadata else None, format, encoding)
        layout = CatalogLayout(backbone.embed_dim, patch_shape(backbone) if patches else None, catalog.metadata)
        learned = CatalogStore.open(db, table).catalog_schema.learned if CatalogStore.exists(db, table) else []
        store, recreated = open_for_ingest(db, table, backbone, layout, reembed)
        schema = catalog.schema.with_learned(learned)
        report = IngestReport(db=str(db), table=table, engine=engine, model=backbone.identity, recreated=recreated,
                              scanned=len(catalog.items), unlisted=catalog.unlisted, failures=list(catalog.failures),
                              format=catalog.format, notes=catalog.notes, schema=schema.summary())

        current = {row["id"]: row for row in store.snapshot().to_pylist()}
        hashes = _hash_all(catalog.items, max(2, threads[0]))
        todo: list[SourceItem] = []
        relabel: list[SourceItem] = []
        for item in catalog.items:
            digest = hashes[item.id]
            if isinstance(digest, Failure):
                report.failures.append(digest)
                continue
            old = current.get(item.id)
            if old is None or old["content_hash"] != digest or old["model"] != store.identity:
                todo.append(item)
            elif old["path"] != item.path or any(old[k] != v for k, v in item.metadata.items()):
                relabel.append(item)
            else:
                report.unchanged += 1

        by_id = {item.id: item for item in todo}
        patch_size = layout.patch_size or None
        embedded = (_embed_local(todo, backbone, patch_size, batch_size, threads) if engine == "local"
                    else _embed_ray(todo, backbone, patch_size, batch_size, address, actors, progress))
        bar = tqdm(total=len(todo), desc="ingesting", unit="img", disable=not progress)
        for commit, (ids, batch) in enumerate(embedded, start=1):
            good = [i for i, err in enumerate(batch.errors) if err is None]
            for i, err in enumerate(batch.errors):
                if err is not None:
                    report.failures.append(Failure(by_id[ids[i]].path, err, ids[i]))
            if good:
                items = [by_id[ids[i]] for i in good]
                rows = _columns(items, [batch.hashes[i] for i in good], layout)
                store.upsert(store.rows(rows, batch.embeddings[good],
                                        None if batch.patches is None else batch.patches[good]))
                for item in items:
                    if item.id in current:
                        report.updated += 1
                    else:
                        report.added += 1
            if commit % OPTIMIZE_EVERY == 0:
                store.optimize()
            bar.update(len(ids))
        bar.close()

        for i in range(0, len(relabel), batch_size):
            report.relabelled += _relabel(store, relabel[i:i + batch_size], layout)
        if sync:
            wanted = {item.id for item in catalog.items}
            report.removed = store.delete(sorted(set(current) - wanted))
        if store.catalog_schema != schema:
            store.save_catalog_schema(schema)
        if catalog.schema_file is not None:
            save_schema(catalog.schema, catalog.schema_file)
        report.indexes = store.ensure_indexes(ann_min_rows)
        report.rows = len(store)
        report.seconds = time.perf_counter() - start
        return report


def _columns(items: Sequence[SourceItem], hashes: Sequence[str], layout: CatalogLayout) -> dict[str, list]:
    columns: dict[str, list] = {"id": [it.id for it in items], "path": [it.path for it in items],
                                "content_hash": list(hashes)}
    for name in layout.metadata_names:
        columns[name] = [it.metadata.get(name) for it in items]
    return columns


def _relabel(store: CatalogStore, items: Sequence[SourceItem], layout: CatalogLayout) -> int:
    """Rewrite path and metadata of unchanged images from their stored vectors (no decode, no embed)."""
    stored = store.fetch([it.id for it in items])
    order = {row_id: i for i, row_id in enumerate(stored["id"].to_pylist())}
    items = [it for it in items if it.id in order]
    take = pa.array([order[it.id] for it in items])
    stored = stored.take(take)
    columns = _columns(items, stored["content_hash"].to_pylist(), layout)
    embeddings = np.stack(stored["embedding"].to_numpy(zero_copy_only=False))
    patches = np.stack(stored["patches"].to_numpy(zero_copy_only=False)) if layout.patch_shape else None
    store.upsert(store.rows(columns, embeddings, patches))
    return len(items)


def _chunks(items: Sequence[SourceItem], size: int) -> Iterator[Sequence[SourceItem]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _embed_local(todo: list[SourceItem], backbone: Backbone, patch_size: int | None, batch_size: int,
                 threads: tuple[int, int]) -> Iterator[tuple[list[str], EmbeddedBatch]]:
    """Decode the next batches on worker threads while this thread embeds the current one."""
    decode_threads, torch_threads = threads
    embedder = Embedder(backbone, patch_size, decode_threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    ahead = ThreadPoolExecutor(1)
    chunks = list(_chunks(todo, batch_size))
    pending = deque(ahead.submit(embedder.decode, [it.path for it in c]) for c in chunks[:2])
    try:
        for i, chunk in enumerate(chunks):
            decoded = pending.popleft().result()
            if i + 2 < len(chunks):
                pending.append(ahead.submit(embedder.decode, [it.path for it in chunks[i + 2]]))
            yield [it.id for it in chunk], embedder.encode(decoded)
    finally:
        for future in pending:
            future.cancel()
        ahead.shutdown()
        embedder.close()
        torch.set_num_threads(previous)


class RayEmbedder:
    """A Ray Data actor: loads the backbone once, then decodes+embeds the batches it is given."""

    def __init__(self, spec: BackboneSpec, identity: str, patch_size: int | None, threads: int = 1):
        torch.set_num_threads(max(1, threads))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        backbone = load_backbone(spec, device)
        if backbone.identity != identity:
            raise ModelMismatch(f"Ray worker loaded backbone {backbone.identity}, the driver has {identity}; "
                                f"workers must see the same weights (a shared path or an object-store URI)")
        self.embedder = Embedder(backbone, patch_size, decode_threads=1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.embedder([str(p) for p in batch["path"]])
        columns = {
            "id": batch["id"], "content_hash": np.array(out.hashes),
            "error": np.array([e or "" for e in out.errors]), "embedding": out.embeddings,
        }
        if out.patches is not None:
            columns["patches"] = out.patches
        return columns


def _embed_ray(todo: list[SourceItem], backbone: Backbone, patch_size: int | None, batch_size: int,
               address: str | None, actors: int | None, progress: bool) -> Iterator[tuple[list[str], EmbeddedBatch]]:
    """Decode+embed on Ray Data actors; batches stream back here to be written."""
    if not todo:
        return
    import ray
    import ray.data

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            root = str(Path(__file__).resolve().parent.parent)
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
    ray.data.DataContext.get_current().enable_progress_bars = progress
    resources = ray.cluster_resources()
    gpus = 1 if resources.get("GPU") else 0
    actors = actors or max(1, int(resources.get("GPU" if gpus else "CPU", 1)))
    ds = ray.data.from_items([{"id": it.id, "path": it.path} for it in todo])
    model = {"spec": backbone.spec, "identity": backbone.identity, "patch_size": patch_size}
    ds = ds.map_batches(RayEmbedder, fn_constructor_kwargs=model, batch_size=batch_size,
                        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1, num_gpus=gpus)
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        ids = [str(i) for i in batch["id"]]
        yield ids, EmbeddedBatch(
            hashes=[str(h) for h in batch["content_hash"]],
            errors=[str(e) or None for e in batch["error"]],
            embeddings=np.asarray(batch["embedding"], np.float32),
            patches=np.asarray(batch["patches"], np.float32) if patch_size else None,
        )
