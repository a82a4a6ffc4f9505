"""The port between the conversation and the catalog: one composed search, whatever serves it.

``Searcher`` is what the assistant needs; ``CatalogSearcher`` serves it from the
LanceDB store and the composed query encoder through ``retrieval.search``.
Tests and other front ends can pass any object with the same methods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from retrieval.catalog_schema import CatalogSchema
from retrieval.query_encoder import QueryEncoder
from retrieval.search import PhotoCache, search_catalog
from retrieval.store import CatalogStore, Hit

FREE_TEXT_DIVERSITY = 0.5
"""How much a turn with free text trades score for a spread: words the rules could not place may mean anything, and
a pick among varied items says what they meant (and teaches ``assistant.word_learning``)."""

@dataclass
class Results:
    """Ranked hits for one query, the text the model composed, and how it was formed."""

    query: str
    mode: str
    hits: list[Hit]
    note: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class Searcher(Protocol):
    """What a conversation turn needs from the catalog."""

    model_version: str
    schema: CatalogSchema
    text_languages: frozenset[str]

    def search(self, reference: str | None, instructions: Sequence[str], where: str | None, k: int,
               exclude: Sequence[str], diverse: bool = False) -> Results: ...

    def item(self, item_id: str) -> Hit | None: ...

    def values(self, column: str) -> list[str]: ...

    def max_value(self, column: str) -> float | None: ...


def model_version(encoder: QueryEncoder) -> str:
    """Which model produced a logged query: the registry's version id (``training.registry``) when the
    checkpoint came from the registry, else the backbone identity plus a digest of the composer's config."""
    if encoder.meta.get("registry_version"):
        return str(encoder.meta["registry_version"])
    if encoder.mapper is None:
        return f"{encoder.backbone.identity}+no-composer"
    created = str(encoder.meta.get("created", ""))
    blob = hashlib.sha256(repr(sorted((k, str(v)) for k, v in encoder.meta.items())).encode()).hexdigest()[:12]
    stage = "stage2" if encoder.adapter is not None else "stage1"
    return f"{encoder.backbone.identity}+composer-{stage}-{blob}" + (f"@{created}" if created else "")


class CatalogSearcher:
    """``Searcher`` over a ``CatalogStore`` with a ``QueryEncoder``."""

    def __init__(self, store: CatalogStore, encoder: QueryEncoder, version: str | None = None, status: str = ""):
        self.store = store
        self.encoder = encoder
        self.model_version = version or model_version(encoder)
        self.schema = store.catalog_schema
        self.status = status
        self.photos = PhotoCache()

    @property
    def text_languages(self) -> frozenset[str]:
        """The languages the model's text tower reads; free text in others is reported as not understood."""
        return self.encoder.backbone.text_languages

    def use(self, encoder: QueryEncoder) -> None:
        """Switch to another model between turns (the demo's two-stage model once it has trained)."""
        self.encoder = encoder
        self.model_version = model_version(encoder)
        self.status = ""

    def search(self, reference: str | None, instructions: Sequence[str], where: str | None, k: int,
               exclude: Sequence[str], diverse: bool = False) -> Results:
        result = search_catalog(self.store, self.encoder, reference, list(instructions), where=where, k=k,
                                exclude=list(exclude), diversity=FREE_TEXT_DIVERSITY if diverse else 0.0,
                                photos=self.photos)
        return Results(query=result.query, mode=result.mode, hits=result.hits, note=result.note,
                       timings_ms=result.timings_ms)

    def item(self, item_id: str) -> Hit | None:
        stored = self.store.item(item_id)
        if stored is None:
            return None
        return Hit(id=stored.id, path=stored.path, score=0.0, metadata=dict(stored.metadata))

    def values(self, column: str) -> list[str]:
        """Distinct values of a metadata column (for filter choices); empty if there is no such column."""
        if column not in self.store.layout.metadata_names:
            return []
        return sorted({str(v) for v in self.store.snapshot([column])[column].to_pylist() if v not in (None, "")})

    def max_value(self, column: str) -> float | None:
        if column not in self.store.layout.numeric or len(self.store) == 0:
            return None
        values = [v for v in self.store.snapshot([column])[column].to_pylist() if v is not None]
        return max(values) if values else None
