"""Two-stage composed retrieval: injection, adapters, checkpoints, and that it actually composes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval.adapters import AdapterConfig, adapters_disabled, add_text_adapters
from retrieval.backbone import DEMO_MODEL, BackboneSpec, load_backbone
from retrieval.pseudo_token import PLACEHOLDER, encode_text_with_pseudo_tokens, placeholder_token_id
from retrieval.query_encoder import ModelMismatch, QueryEncoder, compose_text
from training import evaluate as ev
from training.stage2 import ReferenceTokens, Stage2Config, batch_rows, curriculum_mask, text_share, train_stage2
from training.triplets import make_triplets

TEXT_ONLY_GAIN = 10
FEW_IMAGE_TRIPLETS = 100


@pytest.fixture()
def fresh_backbone(small_backbone):
    return load_backbone(small_backbone[0], "cpu")


def test_injecting_the_placeholders_own_embedding_reproduces_encode_text(fresh_backbone):
    model, tok = fresh_backbone.model, fresh_backbone.tokenizer
    placeholder = placeholder_token_id(tok)
    tokens = tok([f"a photo of {PLACEHOLDER} , make it blue", f"{PLACEHOLDER} with stripes", "no placeholder"])
    own = model.token_embedding.weight[placeholder].expand(3, -1)
    with torch.no_grad():
        injected = encode_text_with_pseudo_tokens(model, tokens, own, placeholder)
        torch.testing.assert_close(injected, model.encode_text(tokens), rtol=0, atol=1e-5)  # padding is not run
        other = encode_text_with_pseudo_tokens(model, tokens, torch.randn_like(own), placeholder)
    assert not torch.allclose(other[0], injected[0])
    assert torch.equal(other[2], injected[2])


def test_a_large_batch_encodes_each_row_as_it_would_alone(fresh_backbone):
    model, tok = fresh_backbone.model, fresh_backbone.tokenizer
    placeholder = placeholder_token_id(tok)
    edits = ["make it blue", "with stripes", "short sleeves", "a v-neck", "in red", "long"]
    texts = [" , ".join([f"a photo of {PLACEHOLDER}", *edits[:1 + i % len(edits)]]) for i in range(150)]
    tokens = tok(texts)
    pseudo = torch.randn(len(texts), model.token_embedding.weight.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        together = encode_text_with_pseudo_tokens(model, tokens, pseudo, placeholder)
        alone = torch.cat([encode_text_with_pseudo_tokens(model, tokens[i:i + 1], pseudo[i:i + 1], placeholder)
                           for i in range(len(texts))])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


def test_long_instruction_lists_are_cut_only_where_they_overflow(trained_composer):
    tuned, _ = trained_composer
    long = [f"make it blue number {i}" for i in range(20)]
    ids = tuned.tokenize([long, ["make it blue"]], with_reference=True)
    assert torch.equal(ids[0], tuned.backbone.tokenize([tuned.fit_text(long, True)])[0])
    assert torch.equal(ids[1], tuned.backbone.tokenize([compose_text(["make it blue"], True)])[0])


def test_adapters_change_the_text_embedding_and_leave_the_vision_tower_alone(fresh_backbone):
    model = fresh_backbone.model
    tokens = fresh_backbone.tokenize(["a photo of a red dress"])
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        text_before, image_before = model.encode_text(tokens), model.encode_image(image)
    params = add_text_adapters(model, AdapterConfig(rank=4))
    assert not any("lora_" in name for name, _ in model.visual.named_parameters())
    with torch.no_grad():
        assert torch.equal(model.encode_text(tokens), text_before)
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
        assert not torch.allclose(model.encode_text(tokens), text_before, atol=1e-4)
        assert torch.equal(model.encode_image(image), image_before)
        adapted = model.encode_text(tokens)
        with adapters_disabled(model):
            torch.testing.assert_close(model.encode_text(tokens), text_before, rtol=0, atol=1e-4)
            assert not any(p.requires_grad for p in params)
        assert torch.equal(model.encode_text(tokens), adapted)
    assert all(p.requires_grad for p in params), "the adapters stay trainable after the block"


def test_adapter_targets_that_match_nothing_are_refused(fresh_backbone):
    with pytest.raises(ValueError, match="matched no module"):
        add_text_adapters(fresh_backbone.model, AdapterConfig(targets=r"visual\..*"))


def test_compose_text_keeps_order_and_marks_the_reference():
    composed = compose_text(["Make it blue.", " ", "shorter sleeves"], True)
    assert composed == "a photo of * , make it blue , shorter sleeves"
    assert compose_text(["a red striped dress"], False) == "a photo of a red striped dress"


def test_checkpoint_round_trip_and_backbone_mismatch(tmp_path, trained_composer, small_backbone, small_features):
    tuned, _ = trained_composer
    tuned.save(tmp_path / "ckpt")
    loaded = QueryEncoder.load(tmp_path / "ckpt", load_backbone(small_backbone[0], "cpu"))
    refs = np.arange(4)
    instructions = [["make it blue"], ["add stripes", "long sleeves"], ["make it plain"], ["in navy"]]
    a = tuned.encode(small_features.pooled[refs], small_features.patches[refs], instructions)
    b = loaded.encode(small_features.pooled[refs], small_features.patches[refs], instructions)
    assert torch.allclose(a, b, atol=1e-5)
    other = load_backbone(BackboneSpec(DEMO_MODEL), "cpu")
    with pytest.raises(ModelMismatch, match="retrain"):
        QueryEncoder.load(tmp_path / "ckpt", other)


def test_long_instruction_lists_keep_the_newest(trained_composer):
    tuned, _ = trained_composer
    text = tuned.fit_text([f"make it blue number {i}" for i in range(20)] + ["with polka dots"], True)
    assert text.startswith("a photo of *") and text.endswith("with polka dots")


def test_two_stage_beats_single_modality_baselines_on_heldout_combinations(small_world, small_features,
                                                                            trained_composer):
    tuned, plain = trained_composer
    queries = make_triplets(small_world, 300, seed=77, n_edits=(1, 2), target_split="heldout",
                            reference_splits=("train", "heldout"))
    two_stage = ev.evaluate(ev.composed(small_features, tuned), queries, small_features)
    image = ev.evaluate(ev.image_only(small_features), queries, small_features)
    text = ev.evaluate(ev.text_only(plain), queries, small_features)
    assert two_stage["R@10"] > image["R@10"] + 10, (two_stage, image)
    assert two_stage["R@10"] > text["R@10"] + 10, (two_stage, text)
    assert two_stage["R@1"] > max(image["R@1"], text["R@1"]), (two_stage, image, text)


def test_text_only_triplets_lift_a_stage_2_that_has_few_image_triplets(small_world, small_backbone, small_features,
                                                                       trained_composer):
    """100 image triplets plus text-only ones (a caption as the reference, no image) compose held-out edits of
    *image* references better than the same 100 alone."""
    _, plain = trained_composer
    few = make_triplets(small_world, FEW_IMAGE_TRIPLETS, seed=1)
    text = make_triplets(small_world, 3000, seed=2, text_references=True)
    queries = make_triplets(small_world, 300, seed=77, n_edits=(1, 2), target_split="heldout",
                            reference_splits=("train", "heldout"))
    recall = {}
    for name, triplets in (("images", few), ("images + text-only", few + text)):
        tuned, run = train_stage2(load_backbone(small_backbone[0], "cpu"), plain.mapper, small_features, triplets,
                                  small_features.rows("train"), Stage2Config(steps=200), progress=False)
        assert run.text_only == len(triplets) - FEW_IMAGE_TRIPLETS
        recall[name] = ev.evaluate(ev.composed(small_features, tuned), queries, small_features)["R@10"]
    assert recall["images + text-only"] > recall["images"] + TEXT_ONLY_GAIN, recall


def test_caption_references_are_drawn_anew_each_step_and_image_references_are_not(small_world, small_features,
                                                                                   trained_composer):
    tuned, _ = trained_composer
    triplets = make_triplets(small_world, 8, seed=3) + make_triplets(small_world, 8, seed=4, text_references=True)
    references = ReferenceTokens(tuned, small_features, triplets, small_features.rows("train"), noise=0.5, seed=0)
    idx = np.arange(16)
    first, second = references(idx), references(idx)
    assert torch.equal(first[:8], second[:8])
    assert not torch.allclose(first[8:], second[8:])
    exact = tuned.reference_tokens(small_features.pooled[[t.reference_id for t in triplets[:8]]],
                                   small_features.patches[[t.reference_id for t in triplets[:8]]])
    torch.testing.assert_close(first[:8], exact)


def test_a_caption_borrows_the_patches_of_its_nearest_training_image(small_world, small_features, trained_composer):
    """Mean patches made every caption look like one blurred image; the nearest training image's are real ones,
    mostly of the caption's own combination, and never of a held-out image."""
    tuned, _ = trained_composer
    triplets = make_triplets(small_world, 200, seed=5, text_references=True)
    train = small_features.rows("train")
    references = ReferenceTokens(tuned, small_features, triplets, train, noise=0.5, seed=0)
    assert references.patch_rows is not None and np.isin(references.patch_rows, train).all()
    own = small_features.combo_keys[references.patch_rows] == np.array([t.reference_combo for t in triplets])
    chance = np.mean([np.mean(small_features.combo_keys[train] == t.reference_combo) for t in triplets])
    assert own.mean() > 10 * chance, (own.mean(), chance)
    tokens = references(np.arange(len(triplets)))
    with torch.no_grad():
        borrowed = tuned.reference_tokens(references.captions, small_features.patches[references.patch_rows])
    assert torch.nn.functional.cosine_similarity(tokens, borrowed).mean() > 0.5


def test_text_only_triplets_carry_the_batch_when_image_triplets_are_few():
    few, many, none = (np.array([False] * n + [True] * 1000) for n in (100, 5000, 0))
    assert text_share(few, 500) == pytest.approx(500 / 600)
    assert text_share(many, 500) == pytest.approx(500 / 5500)
    assert text_share(none, 500) == 1.0
    assert text_share(np.zeros(10, dtype=bool), 500) == 0.0
    rng = np.random.default_rng(0)
    rows = batch_rows(few, 60, text_share(few, 500), rng)
    assert len(rows) == 60 and few[rows].sum() == 50


def test_curriculum_starts_with_one_edit_and_ends_with_all():
    edits = np.array([1, 2, 3, 1, 3])
    assert curriculum_mask(edits, 0, 100, 0.0).all()
    assert curriculum_mask(edits, 0, 100, 0.5).tolist() == [True, False, False, True, False]
    assert curriculum_mask(edits, 25, 100, 0.5).tolist() == [True, True, False, True, False]
    assert curriculum_mask(edits, 50, 100, 0.5).all() and curriculum_mask(edits, 99, 100, 0.5).all()
    text = np.array([False, False, False, True, True])
    allowed = curriculum_mask(edits, 0, 100, 0.5)
    rows = batch_rows(text, 2, 0.5, np.random.default_rng(0), allowed)
    assert sorted(rows.tolist()) == [0, 3]
