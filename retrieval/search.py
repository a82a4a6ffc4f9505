"""One composed search turn against the catalog: reference + instructions -> query vector -> ranked items.

A reference that is a catalog id is read back from the store (stored embedding
and patch features: no image decode, no vision tower); a reference that is an
image file goes through the sanitising decode of ``retrieval.image_io`` and the
backbone. Without a composer checkpoint (no mapper) a reference plus words falls
back to the sum of the normalised image and text embeddings, and says so.

A diverse search (``diversity`` > 0) ranks a wider pool by maximal marginal
relevance (Carbonell & Goldstein, 1998): each next item is the one whose score,
less ``diversity`` times its similarity to the items already chosen, is
highest, so the page shows a spread instead of near-copies of one guess.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from retrieval.backbone import Backbone
from retrieval.image_io import load_image
from retrieval.query_encoder import ModelMismatch, QueryEncoder, compose_text
from retrieval.store import CatalogStore, Hit

DIVERSE_POOL = 20
"""A diverse search chooses its ``k`` items among the ``DIVERSE_POOL * k`` best."""

SUM_FALLBACK_NOTE = ("no composer checkpoint loaded: the query is the sum of the reference image embedding and the "
                     "instruction text embedding (baseline); pass --composer for composed retrieval")


class ReferenceNotFound(LookupError):
    """A reference that is neither a catalog id nor a readable image file."""


@dataclass
class Reference:
    """A reference image's backbone features, and where they came from."""

    source: str
    kind: str
    pooled: torch.Tensor
    patches: torch.Tensor | None
    catalog_id: str | None = None


@dataclass
class SearchResult:
    """The composed query as text, how it was formed, and the ranked hits."""

    query: str
    mode: str
    instructions: list[str]
    hits: list[Hit]
    reference: str | None = None
    note: str | None = None
    where: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "query": self.query, "mode": self.mode, "reference": self.reference, "instructions": self.instructions,
            "where": self.where, "note": self.note, "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "hits": [hit.to_dict() for hit in self.hits],
        }


def reference_features(store: CatalogStore, backbone: Backbone, reference: str) -> Reference:
    """Features of ``reference``: a catalog id (stored vectors) or an image file (decoded and encoded)."""
    item = store.item(reference)
    if item is not None:
        pooled = torch.from_numpy(item.embedding)[None]
        if item.patches is not None:
            return Reference(reference, "catalog", pooled, torch.from_numpy(item.patches)[None], item.id)
        _, patches = _encode_file(backbone, item.path)
        return Reference(reference, "catalog", pooled, patches, item.id)
    if Path(reference).is_file():
        pooled, patches = _encode_file(backbone, reference)
        return Reference(reference, "image", pooled, patches)
    raise ReferenceNotFound(f"{reference!r} is neither an id in catalog {store.table.name!r} nor an image file")


class PhotoCache:
    """Features of photo references, kept for the next turns on the same photo: a shopper refines one upload over
    several turns, and decoding and encoding it again each turn is most of an upload turn's time. Keyed by the
    file's path, size and modification time and the backbone, so a changed file is encoded again. Safe to share
    between the server's threads."""

    def __init__(self, size: int = 64):
        self.size = size
        self.entries: OrderedDict[tuple, Reference] = OrderedDict()
        self.lock = threading.Lock()

    def features(self, store: CatalogStore, backbone: Backbone, reference: str) -> Reference:
        """``reference_features``, from the cache when the reference is a photo seen before."""
        try:
            stat = Path(reference).stat()
            key = (reference, stat.st_size, stat.st_mtime_ns, backbone.identity)
        except (OSError, ValueError):
            key = None
        with self.lock:
            cached = self.entries.get(key) if key is not None else None
            if cached is not None:
                self.entries.move_to_end(key)
                return cached
        found = reference_features(store, backbone, reference)
        if key is not None and found.kind == "image":
            with self.lock:
                self.entries[key] = found
                while len(self.entries) > self.size:
                    self.entries.popitem(last=False)
        return found


def _encode_file(backbone: Backbone, path: str) -> tuple[torch.Tensor, torch.Tensor]:
    pooled, patches = backbone.encode_images_with_patches(backbone.image_tensor([load_image(path)]))
    return pooled.cpu(), patches.cpu()


def query_vector(encoder: QueryEncoder, reference: Reference | None, instructions: list[str]
                 ) -> tuple[np.ndarray, str, str, str | None]:
    """(query vector, composed text, mode, note) for a reference (or None) and instructions."""
    if reference is None:
        if not instructions:
            raise ValueError("nothing to search for: give a reference, an instruction, or both")
        vector = encoder.encode(None, None, [instructions])[0]
        return vector.numpy(), encoder.fit_text(instructions, with_reference=False), "text", None
    if not instructions:
        return reference.pooled[0].numpy(), "(the reference image)", "image", None
    if encoder.mapper is None:
        text = compose_text(instructions, with_reference=False)
        words = encoder.backbone.encode_text([text]).cpu()[0]
        vector = F.normalize(F.normalize(reference.pooled[0], dim=-1) + words, dim=-1)
        return vector.numpy(), f"[reference image] + {text!r}", "image+text sum", SUM_FALLBACK_NOTE
    vector = encoder.encode(reference.pooled, reference.patches, [instructions])[0]
    return vector.numpy(), encoder.fit_text(instructions, with_reference=True), "composed", None


def diversify(hits: Sequence[Hit], k: int, diversity: float) -> list[Hit]:
    """``k`` of ``hits`` (best first, with embeddings) by maximal marginal relevance; ``diversity`` 0 keeps the
    ranking."""
    if not hits or diversity <= 0:
        return list(hits[:k])
    vectors = np.stack([h.embedding for h in hits])
    scores = np.array([h.score for h in hits])
    chosen = [0]
    nearest = vectors @ vectors[0]
    while len(chosen) < min(k, len(hits)):
        value = (1 - diversity) * scores - diversity * nearest
        value[chosen] = -np.inf
        best = int(value.argmax())
        chosen.append(best)
        nearest = np.maximum(nearest, vectors @ vectors[best])
    return [hits[i] for i in chosen]


def search_catalog(store: CatalogStore, encoder: QueryEncoder, reference: str | None = None,
                   instructions: Sequence[str] = (), where: str | None = None, k: int = 10,
                   exclude: Sequence[str] = (), exclude_reference: bool = True, exact: bool = False,
                   diversity: float = 0.0, photos: PhotoCache | None = None) -> SearchResult:
    """Rank catalog items for a reference (catalog id or image path, or None) plus ordered instructions; with
    ``diversity`` > 0, a spread of the best (see the module docstring); ``photos`` keeps photo features between
    turns.

    >>> search_catalog(store, encoder, "1042", ["make it blue", "shorter sleeves"], "price < 40")  # doctest: +SKIP
    """
    if store.identity != encoder.backbone.identity:
        raise ModelMismatch(f"catalog {store.table.name!r} was embedded with backbone {store.identity}, the query "
                            f"encoder uses {encoder.backbone.identity}; re-embed with `circhat ingest --reembed`")
    instructions = [s.strip() for s in instructions if s and s.strip()]
    start = time.perf_counter()
    features = photos.features if photos is not None else reference_features
    ref = features(store, encoder.backbone, reference) if reference else None
    vector, text, mode, note = query_vector(encoder, ref, instructions)
    encoded = time.perf_counter()
    excluded = list(exclude)
    if ref is not None and ref.catalog_id is not None and exclude_reference:
        excluded.append(ref.catalog_id)
    if diversity > 0:
        pool = store.search(vector, k=DIVERSE_POOL * k, where=where, exclude=excluded, exact=exact, embeddings=True)
        hits = diversify(pool, k, diversity)
    else:
        hits = store.search(vector, k=k, where=where, exclude=excluded, exact=exact)
    done = time.perf_counter()
    return SearchResult(query=text, mode=mode, instructions=instructions, hits=hits, reference=reference,
                        note=note, where=where,
                        timings_ms={"encode": (encoded - start) * 1e3, "search": (done - encoded) * 1e3})
