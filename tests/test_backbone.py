"""The demo backbone: a real open_clip model that learned the world, saved and loaded as open_clip does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.backbone import DEMO_MODEL, BackboneSpec, BackboneUnavailable, load_backbone
from training.loop import bf16_autocast
from training.pretrain_backbone import BackboneTrainConfig, augment
from training.world import Combo, caption


def test_backbone_reads_heldout_captions(small_backbone):
    spec, metrics = small_backbone
    recall = metrics["heldout_text_to_image"]
    assert recall["queries"] > 20
    assert recall["R@10"] >= 60.0, recall
    folder = Path(spec.model.removeprefix("local-dir:"))
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["circhat"]["base_model"] == DEMO_MODEL
    assert (folder / "open_clip_model.safetensors").stat().st_size > 1_000_000


def test_saved_backbone_loads_through_open_clip_local_dir(small_world, small_backbone):
    spec, _ = small_backbone
    a = load_backbone(spec, "cpu")
    b = load_backbone(spec, "cpu")
    assert a.identity == b.identity and "sha256:" in a.identity
    texts = [caption(Combo.from_key(small_world.items[0].combo.key)), "a photo of a red dress"]
    assert torch.equal(a.encode_text(texts), b.encode_text(texts))
    assert torch.allclose(a.encode_text(texts).norm(dim=-1), torch.ones(2), atol=1e-5)


def test_patch_tokens_come_with_the_pooled_embedding(small_world, small_backbone):
    from PIL import Image

    backbone = load_backbone(small_backbone[0], "cpu")
    images = [Image.open(small_world.image_path(it)) for it in small_world.items[:3]]
    pooled, patches = backbone.encode_images_with_patches(backbone.image_tensor(images))
    assert pooled.shape == (3, backbone.embed_dim)
    assert patches.ndim == 3 and patches.shape[0] == 3 and patches.shape[1] >= 4
    assert torch.allclose(pooled, backbone.encode_images(images), atol=1e-4)


def test_missing_pretrained_weights_fail_clearly():
    with pytest.raises(BackboneUnavailable, match="--pretrained"):
        load_backbone(BackboneSpec("ViT-B-32", "laion2b_s34b_b79k"), "cpu")
    with pytest.raises(BackboneUnavailable, match="cannot load backbone"):
        load_backbone(BackboneSpec("ViT-B-32", "/nonexistent/weights.safetensors"), "cpu")


def test_augmentation_zooms_out_keeping_the_whole_photo_and_mirrors_half_of_them():
    ramp = torch.linspace(-1, 1, 32)
    pixels = torch.stack([ramp.expand(32, 32), ramp[:, None].expand(32, 32), torch.zeros(32, 32)])
    batch = pixels.expand(64, 3, 32, 32).clone()
    assert augment(batch, BackboneTrainConfig(), np.random.default_rng(0)) is batch

    mirrored = augment(batch, BackboneTrainConfig(flip=True), np.random.default_rng(0))
    same = (mirrored - batch).abs().amax((1, 2, 3)) < 1e-5
    flipped = (mirrored - batch.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
    assert bool((same | flipped).all()) and 10 < int(flipped.sum()) < 54

    config = BackboneTrainConfig(zoom_out=1.5, flip=True)
    zoomed = augment(batch, config, np.random.default_rng(1))
    assert torch.equal(zoomed, augment(batch, config, np.random.default_rng(1)))
    assert zoomed.shape == batch.shape
    for channel in (0, 1):
        values = zoomed[:, channel]
        assert torch.allclose(values.amax((-2, -1)), torch.ones(64), atol=0.05), "the whole photo stays in view"
        assert torch.allclose(values.amin((-2, -1)), -torch.ones(64), atol=0.05), "the whole photo stays in view"
    assert int(((zoomed - batch).abs().amax((1, 2, 3)) > 0.05).sum()) > 48


def test_the_build_zooms_out_and_mirrors_only_photos_it_sees_many_times():
    rule = BackboneTrainConfig(pairs=60_000, augment_from_views=30)
    small, large = rule.for_photos(240), rule.for_photos(8_000)
    assert (small.zoom_out, small.flip) == (1.5, True)
    assert (large.zoom_out, large.flip) == (1.0, False)
    assert large.digest() == BackboneTrainConfig(pairs=60_000).digest(), "a large catalog trains as before"
    assert small.digest() not in {large.digest(), rule.digest()}
    assert BackboneTrainConfig(pairs=60_000).for_photos(10) == BackboneTrainConfig(pairs=60_000)


def test_only_augmentation_that_is_on_renames_the_checkpoint():
    plain = BackboneTrainConfig(pairs=100_000)
    assert plain.digest() == "3932350b6f73", "a recipe without augmentation must keep the name it had before"
    names = {plain.digest(), BackboneTrainConfig(pairs=100_000, flip=True).digest(),
             BackboneTrainConfig(pairs=100_000, zoom_out=1.5).digest()}
    assert len(names) == 3


def test_training_on_a_cpu_runs_in_fp32_even_when_bf16_is_asked_for():
    """A CPU without native bf16 ran a backbone step 11x slower under autocast; only CUDA casts."""
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with bf16_autocast(torch.device("cpu"), enabled=True):
        product = a @ b
    assert product.dtype == torch.float32
