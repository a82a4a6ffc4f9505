"""The demo world's catalog schema, inferred from its planned catalog rows the way ingest infers it from the CSV,
for unit tests that need the demo vocabulary without rendering images."""

from __future__ import annotations

import functools

from assistant.vocabulary import Vocabulary
from retrieval.catalog_schema import CatalogSchema, infer_schema
from training.world import CSV_COLUMNS, SCHEMA_EDITS, WorldConfig, plan_items


@functools.cache
def demo_schema() -> CatalogSchema:
    """The schema ingest writes for the demo world (every value present at 3000 items)."""
    rows = [item.row() for item in plan_items(WorldConfig(n_images=3000))]
    return infer_schema([c for c in CSV_COLUMNS if c not in ("id", "file")], rows, previous=SCHEMA_EDITS)


@functools.cache
def demo_vocabulary() -> Vocabulary:
    return Vocabulary(demo_schema())
