"""The architecture users bring: an open_clip ViT-B-32 through the whole ``circhat build`` path and a search.

No pretrained weights can be downloaded here, so the test writes ViT-B-32 with seeded random weights to a local
safetensors file and passes it as ``--pretrained``, the way a shop passes a checkpoint it downloaded. The weights'
quality is not the point: every step must run on the real architecture at its own input size (224 px, 7x7 patch
tokens of width 768 from the ViT's token outputs, a 12-layer text tower with LoRA adapters).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from retrieval.store import CatalogStore
from tests.server_harness import ROOT, ServerProcess, connect, reply_details
from training.accessories_world import AccessoriesConfig, write_accessories_catalog

pytestmark = pytest.mark.slow

MODEL = "ViT-B-32"


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model(MODEL)
    path = tmp_path_factory.mktemp("vit") / "vit-b-32-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_vit_b_32_builds_serves_and_searches(vit_weights, tmp_path):
    shop = write_accessories_catalog(tmp_path / "shop", AccessoriesConfig(seed=1, n_products=6), progress=False).parent
    db, home = tmp_path / "catalog.lancedb", tmp_path / "home"
    env = {**os.environ, "CIRCHAT_HOME": str(home), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "ui.cli", "build", str(shop), "--metadata", str(shop / "products.csv"),
               "--db", str(db), "--model", MODEL, "--pretrained", str(vit_weights), "--stage1-steps", "4",
               "--stage2-steps", "3", "--triplets", "16", "--sessions", "2", "--eval-queries", "30", "--no-progress",
               "--json"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert not report["backbone"]["trained"] and report["backbone"]["spec"].startswith(MODEL)
    assert report["backbone"]["identity"].startswith("vit-b-32-random-sha256:")

    store = CatalogStore.open(db)
    assert store.layout.embed_dim == 512 and store.layout.patch_shape == (49, 768)
    assert len(store) == report["catalog"]["items"] > 20
    composer = home / "models" / report["version"] / "composer"
    meta = json.loads((composer / "composer.json").read_text())
    assert meta["backbone"] == report["backbone"]["identity"]
    assert meta["mapper"]["patch_dim"] == 768 and meta["mapper"]["token_dim"] == 512
    assert meta["adapter"] is not None and (composer / "adapter.safetensors").is_file()
    assert set(report["evaluation"]["1-attr held-out"]) == {"image only", "text only", "image + text (sum)",
                                                            "two-stage"}

    server = ServerProcess.start(db, log=tmp_path / "picks.jsonl", env={"CIRCHAT_HOME": str(home)}, timeout=300)
    try:
        with urllib.request.urlopen(server.url + "config", timeout=10) as response:
            assert report["version"] in response.read().decode()
        client = connect(server.url)
        opening = reply_details(client.predict({"text": "a bag", "files": []}, "any", client.no_price_limit,
                                               api_name="/send"))
        assert opening["results"] and opening["mode"] == "text", opening
        picked = opening["results"][0]["id"]
        client.predict(picked, "any", client.no_price_limit, False, api_name="/pick")
        composed = reply_details(client.predict({"text": "make it red", "files": []}, "any", client.no_price_limit,
                                                api_name="/send"))
        assert composed["mode"] == "composed" and composed["results"], composed
        assert picked not in {r["id"] for r in composed["results"]}
    finally:
        server.stop()
