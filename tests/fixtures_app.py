"""A real circhat server for the API and browser tests (load with ``pytest_plugins``).

The session's small demo world, its trained backbone and two-stage composer
(fixtures of conftest.py), ingested into a temporary LanceDB catalog and served
by ``ui.serve.launch`` on a free 127.0.0.1 port, with its own triplet log.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server_harness import free_port
from training.world import World


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, for None, unset) environment variables for the duration; a session fixture cannot monkeypatch."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class AppServer:
    """What the tests need to know about the running app."""

    url: str
    log: Path
    world: World
    served: object


@pytest.fixture(scope="session")
def app_catalog(small_world, small_backbone, tmp_path_factory) -> Path:
    """The small world ingested with its backbone into a temporary LanceDB folder."""
    from retrieval.backbone import load_backbone
    from retrieval.ingest import ingest

    db = tmp_path_factory.mktemp("app-catalog") / "catalog.lancedb"
    ingest(small_world.root, load_backbone(small_backbone[0], "cpu"), db, metadata=small_world.catalog_csv,
           progress=False)
    return db


@pytest.fixture(scope="session")
def app_server(app_catalog, small_world, trained_composer, tmp_path_factory):
    """The app as ``circhat serve`` starts it (``ui.serve.launch``), on a free port, with the trained two-stage
    composer saved and reloaded, the rules parser and a fresh triplet log."""
    from ui.serve import launch

    folder = tmp_path_factory.mktemp("app-run")
    composer = trained_composer[0].save(folder / "composer")
    with environment(CIRCHAT_LOG_SALT="test-salt", CIRCHAT_LLM=None):
        served = launch(app_catalog, composer=composer, log=folder / "triplets" / "triplets.jsonl",
                        host="127.0.0.1", port=free_port(), block=False)
    yield AppServer(url=served.url, log=served.assistant.log.path, world=small_world, served=served)
    served.close()
