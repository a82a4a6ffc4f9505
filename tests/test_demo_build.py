"""The demo goes the way of any shop's catalog: its world's folder and ``catalog.csv`` through ``CatalogBuild``, and
on a first run the page comes up on the sum baseline as soon as the store is ingested, then switches to the
two-stage model once it has trained, the page's header following by itself (Chromium, when installed).

A small world and small budgets keep it short; the full demo's figures are in BENCHMARKS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_app import free_port
from tests.server_harness import connect, reply_details
from training.build import BuildConfig
from training.pretrain_backbone import BackboneTrainConfig
from training.registry import Registry
from training.stage1 import Stage1Config
from training.stage2 import Stage2Config

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SMALL = BuildConfig(backbone=BackboneTrainConfig(pairs=6000, seed=3), stage1=Stage1Config(steps=60),
                    stage2=Stage2Config(steps=60), triplets=400, eval_queries=60, sessions=5, seed=3)


def composed_search(client) -> dict:
    """A text search, a pick of its first result, then an edit of the pick: what the searcher composed with."""
    opening = reply_details(client.predict({"text": "a red dress", "files": []}, "any", client.no_price_limit,
                                           api_name="/send"))
    client.predict(opening["results"][0]["id"], "any", client.no_price_limit, False, api_name="/pick")
    return reply_details(client.predict({"text": "make it red", "files": []}, "any", client.no_price_limit,
                                        api_name="/send"))


def test_first_run_serves_the_baseline_at_once_then_switches_to_the_trained_model(tmp_path):
    from assistant.turns import Assistant
    from training.pipeline import prepare_demo
    from ui.serve import start_demo

    registry = Registry(tmp_path / "models")
    built = prepare_demo(tmp_path, seed=3, n_images=600, say=lambda _: None, progress=False, registry=registry,
                         config=SMALL, shop_assistant=Assistant.for_catalog)
    assert built.db == built.world.root / "catalog.lancedb"
    assert not built.build.composer_cached()
    served, train = start_demo(built.build, registry, log=tmp_path / "picks.jsonl", port=free_port(),
                               say=lambda _: None)
    browser = page = None
    try:
        searcher = served.assistant.searcher
        assert "sum baseline" in searcher.status
        assert composed_search(connect(served.url))["mode"] == "image+text sum"
        if CHROMIUM.exists():
            from playwright.sync_api import expect, sync_playwright

            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(served.url)
            expect(page.locator("#model-version")).to_contain_text("sum baseline", timeout=30_000)

        report = train()

        assert searcher.status == "" and searcher.model_version == report.active == report.version
        assert report.sessions["sessions"] == 5 and len(report.sessions["success@10"]) == SMALL.session_turns
        assert composed_search(connect(served.url))["mode"] == "composed"
        if page is not None:
            expect(page.locator("#model-version")).to_contain_text(report.version, timeout=30_000)
            expect(page.locator("#model-version")).not_to_contain_text("baseline")
    finally:
        if browser is not None:
            browser.close()
            playwright.stop()
        served.close()

    again = prepare_demo(tmp_path, seed=3, n_images=600, say=lambda _: None, progress=False, registry=registry,
                         config=SMALL)
    assert again.build.composer_cached()
    served, train = start_demo(again.build, registry, log=tmp_path / "picks.jsonl", port=free_port(),
                               say=lambda _: None)
    try:
        assert served.assistant.searcher.status == ""
        assert served.assistant.searcher.model_version == report.version
        again_report = train()
        assert again_report.version == report.version
        assert again_report.sessions == {}, "without an assistant handed in, the shoppers' step is skipped"
        assert [s.name for s in again_report.steps if s.name == "sessions"] == []
    finally:
        served.close()
