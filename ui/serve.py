"""Wires a catalog store, a backbone, a composer and the triplet log into the app, and serves it.

``launch`` serves a user's catalog (``circhat serve --db ...``); ``launch_demo``
serves the offline demo world (``circhat demo``), ingesting it into its own
LanceDB store the first time. Both bind 127.0.0.1 unless told otherwise, never
create share links, and let the browser fetch only catalog images and the
app's own temp files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
QUEUE_CONCURRENCY = 2
QUEUE_MAX_SIZE = 64


@dataclass
class Served:
    """A running server: the Blocks app, its URL, and the assistant behind it."""

    demo: Any
    url: str
    assistant: Any

    def close(self) -> None:
        self.demo.close()


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """``user:password``, or a file of such lines, or None for no login."""
    if not value:
        return None
    path = Path(value)
    lines = path.read_text().splitlines() if path.is_file() else [value]
    pairs = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth takes user:password or a file of user:password lines")
        pairs.append((user, password))
    return pairs or None


def load_encoder(db: str | Path, table: str, model: str | None, pretrained: str | None, composer: Path | None,
                 device: str | None = None):
    """(store, encoder): the backbone named, else the one the catalog was embedded with, plus the composer."""
    from retrieval.backbone import BackboneSpec, load_backbone
    from retrieval.query_encoder import QueryEncoder
    from retrieval.store import CatalogStore

    if model is None:
        recorded = CatalogStore.open(db, table).backbone_spec
        if not recorded.get("model"):
            raise ValueError(f"catalog {table!r} in {db} does not record its backbone; pass --model")
        model, pretrained = recorded["model"], recorded.get("pretrained")
    backbone = load_backbone(BackboneSpec(model, pretrained), device)
    store = CatalogStore.open(db, table, backbone.identity)
    encoder = QueryEncoder.load(composer, backbone) if composer else QueryEncoder(backbone, None)
    return store, encoder


def make_assistant(store, encoder, log_path: Path | None = None, llm: str | None = None,
                   llm_kwargs: str | None = None, k: int = 12, warm_up: bool = True):
    """The ``Assistant`` for a store and encoder, with the triplet log and the configured parser."""
    from assistant.llm_parser import make_parser
    from assistant.searcher import CatalogSearcher
    from assistant.triplet_log import TripletLog, default_log_path
    from assistant.turns import Assistant

    searcher = CatalogSearcher(store, encoder)
    if warm_up and len(store):
        searcher.search(None, ["a photo"], None, 1, [])
    return Assistant(searcher, make_parser(llm, llm_kwargs), TripletLog(log_path or default_log_path()), k=k)


def serve(assistant, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, auth: Any = None,
          block: bool = True, quiet: bool = False) -> Served:
    """Build the app around ``assistant`` and start it; ``block=False`` returns once it is listening."""
    from ui.app import build_app, launch_kwargs

    searcher = assistant.searcher
    demo = build_app(assistant, searcher.values("category"), searcher.max_value("price"))
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    _, url, _ = demo.launch(**launch_kwargs(searcher.image_root(), host, port, auth),
                            prevent_thread_lock=not block, quiet=quiet)
    return Served(demo, url, assistant)


def launch(db: str | Path, *, table: str = "catalog", model: str | None = None, pretrained: str | None = None,
           composer: Path | None = None, log: Path | None = None, host: str = DEFAULT_HOST,
           port: int | None = DEFAULT_PORT, auth: Any = None, llm: str | None = None, llm_kwargs: str | None = None,
           block: bool = True) -> Served:
    """Serve the assistant on an ingested catalog (``circhat serve``)."""
    store, encoder = load_encoder(db, table, model, pretrained, composer)
    return serve(make_assistant(store, encoder, log, llm, llm_kwargs), host, port, auth, block)


def demo_store(world, spec, progress: bool = True) -> Path:
    """The demo world ingested into its own LanceDB folder (done once; later calls only check it)."""
    from retrieval.backbone import load_backbone
    from retrieval.ingest import ingest
    from retrieval.store import CatalogStore

    db = world.root / "stores" / Path(spec.model.removeprefix("local-dir:")).name
    if CatalogStore.exists(db) and len(CatalogStore.open(db)) == len(world.items):
        return db
    ingest(world.root, load_backbone(spec), db, metadata_csv=world.catalog_csv, progress=progress)
    return db


def launch_demo(world, spec, composer: Path | None = None, *, log: Path | None = None, host: str = DEFAULT_HOST,
                port: int | None = DEFAULT_PORT, auth: Any = None, llm: str | None = None, block: bool = True,
                progress: bool = True) -> Served:
    """Serve the assistant on the demo world (``circhat demo``): world + backbone spec + composer folder."""
    db = demo_store(world, spec, progress)
    return launch(db, model=spec.model, pretrained=spec.pretrained, composer=composer, log=log, host=host,
                  port=port, auth=auth, llm=llm, block=block)
