"""Wires a catalog store, a backbone, a composer and the triplet log into the app, and serves it.

``launch`` serves a user's catalog (``circhat serve --db ...``); ``launch_demo``
serves the offline demo world (``circhat demo``) from its catalog build, as
soon as the store is ingested, switching from the sum baseline to the
two-stage model when that has trained. Both bind 127.0.0.1 unless told otherwise, never
create share links, and let the browser fetch only catalog images and the
app's own temp files: ``FileGuard`` sits in front of Gradio's file routes and
answers 403 to any path that is not a catalog image (by its exact stored path)
or inside Gradio's own upload/cache folder, so neither a symlink nor a catalog
row that points elsewhere can widen what is served.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
QUEUE_CONCURRENCY = 1
QUEUE_MAX_SIZE = 64
MODEL_GROUP = "model"
MAX_IMAGE_ROOTS = 32
FILE_ROUTE = re.compile(r"/file[=/]")


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
    """(store, encoder): the backbone named, else the one the catalog was embedded with, plus the composer
    (without one, the registry's active version for that backbone, if set: ``training.registry``)."""
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
    if composer is None:
        from training.registry import Registry

        registry = Registry()
        active = registry.active(backbone.identity)
        if active is not None:
            return store, registry.load(active, backbone, store.identity)
    encoder = QueryEncoder.load(composer, backbone) if composer else QueryEncoder(backbone, None)
    return store, encoder


def make_assistant(store, encoder, log_path: Path | None = None, llm: str | None = None,
                   llm_kwargs: str | None = None, k: int = 12, warm_up: bool = True):
    """The ``Assistant`` for a store and encoder, with the triplet log and the configured parser."""
    from assistant.llm_parser import make_parser
    from assistant.searcher import CatalogSearcher
    from assistant.triplet_log import TripletLog, default_log_path
    from assistant.turns import Assistant
    from assistant.vocabulary import Vocabulary

    searcher = CatalogSearcher(store, encoder)
    if warm_up and len(store):
        searcher.search(None, ["a photo"], None, 1, [])
    parser = make_parser(Vocabulary(searcher.schema), llm, llm_kwargs)
    return Assistant(searcher, parser, TripletLog(log_path or default_log_path()), k=k)


class FileGuard:
    """ASGI middleware in front of Gradio's ``/file=`` routes: catalog images and Gradio's temp files, nothing else.

    Gradio would serve anything under ``allowed_paths``; a folder there is wider than the catalog (a CSV row or a
    symlink can point a catalog image anywhere), so every requested path is checked here first, the same way
    Gradio will read it (``os.path.abspath`` of the decoded route path, relative to this process's folder).
    """

    def __init__(self, app: Any, allowed: Callable[[str], bool]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            match = FILE_ROUTE.search(scope.get("path", ""))
            if match is not None:
                from starlette.concurrency import run_in_threadpool
                from starlette.responses import PlainTextResponse

                if not await run_in_threadpool(self.allowed, scope["path"][match.end():]):
                    await PlainTextResponse("File not allowed.", status_code=403)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class ServableFiles:
    """Which files the browser may fetch: catalog images by exact path, and what Gradio put in its own folder."""

    def __init__(self, catalog_paths: Iterable[str], lookup: Callable[[str], bool] | None = None,
                 temp_roots: Iterable[str | Path] = ()):
        self.catalog = frozenset(os.path.abspath(p) for p in catalog_paths)
        self.lookup = lookup
        self.temp_roots = [os.path.realpath(r) for r in temp_roots]

    def __call__(self, requested: str) -> bool:
        try:
            path = os.path.abspath(requested)
            if path in self.catalog:
                return True
            real = os.path.realpath(path)
            if any(real == root or real.startswith(root + os.sep) for root in self.temp_roots):
                return True
            return self.lookup is not None and self.lookup(path)
        except (ValueError, OSError):
            return False


def servable_files(store, paths: Iterable[str]) -> ServableFiles:
    """The catalog's image paths (and a lookup for rows ingested after start-up) plus Gradio's upload folder."""
    from gradio.utils import get_upload_folder

    from retrieval.store import sql_literal

    def lookup(path: str) -> bool:
        store.refresh()
        return store.table.count_rows(f"path = {sql_literal(path)}") > 0

    return ServableFiles(paths, lookup if store is not None else None, [get_upload_folder()])


def image_roots(paths: Iterable[str], limit: int = MAX_IMAGE_ROOTS) -> list[Path]:
    """The folders holding the catalog images (symlinks resolved), for Gradio's own check on returned files.

    Files leave through Gradio's cache, so this only decides which catalog images may be copied there; what a
    browser may fetch is ``ServableFiles``' call, so folding many folders into their common parent is safe.
    """
    folders = sorted({os.path.dirname(os.path.realpath(p)) for p in paths})
    roots = [f for i, f in enumerate(folders) if not any(f.startswith(r + os.sep) for r in folders[:i])]
    if len(roots) > limit:
        roots = [os.path.commonpath(roots)]
    return [Path(r) for r in roots]


def serve(assistant, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, auth: Any = None,
          block: bool = True, quiet: bool = False, concurrency: int = QUEUE_CONCURRENCY,
          max_size: int = QUEUE_MAX_SIZE) -> Served:
    """Build the app around ``assistant`` and start it; ``block=False`` returns once it is listening.

    Every event joins one concurrency group, so ``concurrency`` is the number of turns running at once across
    all buttons (Gradio's default is a separate group per event function). It is 1 because the turns share one
    model and peft's LoRA on ``nn.MultiheadAttention`` swaps merged weights into the module during each forward:
    two forwards at once crash ("no attribute 'in_proj_weight'") or encode with the other's weights (seen in
    ``python -m benchmarks.load``). ``max_size`` more turns wait; the next one is answered at once with "busy, try
    again" (HTTP 503; the browser says so, ``gradio_client`` raises ``QueueError``) rather than waiting unbounded.
    """
    from ui.app import build_app, launch_kwargs

    searcher = assistant.searcher
    demo = build_app(assistant)
    for fn in demo.fns.values():
        fn.concurrency_id = MODEL_GROUP
    demo.queue(default_concurrency_limit=concurrency, max_size=max_size)
    store = getattr(searcher, "store", None)
    paths = store.snapshot(["path"])["path"].to_pylist() if store is not None else []
    guard = servable_files(store, paths)
    _, url, _ = demo.launch(**launch_kwargs(image_roots(paths), host, port, auth, guard, assistant.schema),
                            prevent_thread_lock=not block, quiet=quiet)
    return Served(demo, url, assistant)


def launch(db: str | Path, *, table: str = "catalog", model: str | None = None, pretrained: str | None = None,
           composer: Path | None = None, log: Path | None = None, host: str = DEFAULT_HOST,
           port: int | None = DEFAULT_PORT, auth: Any = None, llm: str | None = None, llm_kwargs: str | None = None,
           block: bool = True, status: str = "") -> Served:
    """Serve the assistant on an ingested catalog (``circhat serve``); ``status`` is shown beside the model version
    (and followed by the page) until the searcher switches models."""
    store, encoder = load_encoder(db, table, model, pretrained, composer)
    if store.layout.metadata_names and not store.catalog_schema.attributes:
        print(f"circhat: catalog {table!r} in {db} has metadata columns but no catalog schema (it was ingested "
              "before circhat stored one): run `circhat ingest` on it again to get filters, chips and the parser "
              "for its attributes", file=sys.stderr)
    assistant = make_assistant(store, encoder, log, llm, llm_kwargs)
    assistant.searcher.status = status
    return serve(assistant, host, port, auth, block)


TRAINING_STATUS = ("results use the image+text sum baseline while the two-stage model trains ({step}); the page "
                   "switches to it by itself")


def start_demo(build, registry, *, log: Path | None = None, host: str = DEFAULT_HOST,
               port: int | None = DEFAULT_PORT, auth: Any = None, llm: str | None = None,
               say: Callable[[str], None] | None = None) -> tuple[Served, Callable[[], Any]]:
    """(the demo's running server, what is left to train) from its prepared build (``training.build.CatalogBuild``).

    With the two-stage model already trained for this store, it is served at once and nothing is left. Otherwise
    the page comes up on the image+text sum baseline (labelled so in the page) and the returned callable trains
    the rest of the build, then switches the searcher to the new version between turns; the page's header follows
    the training and the switch by itself.
    """
    from retrieval.backbone import load_backbone

    say = say or (lambda message: print(message, file=sys.stderr, flush=True))
    common = {"table": build.table, "model": build.spec.model, "pretrained": build.spec.pretrained, "log": log,
              "host": host, "port": port, "auth": auth, "llm": llm, "block": False}
    if build.composer_cached():
        report = build.finish()
        return launch(build.db, composer=registry.composer_dir(report.active), **common), lambda: report
    served = launch(build.db, composer=None, status=TRAINING_STATUS.format(step="starting"), **common)
    searcher = served.assistant.searcher
    say(f"circhat: the page is up at {served.url} on the baseline; training the two-stage model now")

    def follow(message: str) -> None:
        say(message)
        if message.startswith("["):
            searcher.status = TRAINING_STATUS.format(step=message.split("]", 1)[1].strip())

    def train() -> Any:
        build.say = follow
        report = build.finish()
        searcher.use(registry.load(report.active, load_backbone(build.spec), searcher.store.identity))
        say(f"circhat: now serving model version {searcher.model_version} at {served.url}")
        return report

    return served, train


def launch_demo(build, registry, *, log: Path | None = None, host: str = DEFAULT_HOST,
                port: int | None = DEFAULT_PORT, auth: Any = None, llm: str | None = None,
                block: bool = True, say: Callable[[str], None] | None = None) -> Served:
    """Serve the demo (``circhat demo``): the page first, then whatever of the model is left to train."""
    served, train = start_demo(build, registry, log=log, host=host, port=port, auth=auth, llm=llm, say=say)
    train()
    if block:
        served.demo.block_thread()
    return served
