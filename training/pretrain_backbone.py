"""Trains the tiny demo CLIP from scratch on the world's images and captions.

The real product uses a pretrained open_clip model; this one exists so that the
demo and the tests have a backbone without a model hub. Training is budgeted in
image-caption pairs seen, not minutes, so a slow machine gives the same model.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from retrieval.backbone import DEMO_MODEL, Backbone, BackboneSpec, load_backbone, save_backbone
from training.catalog_labels import HELDOUT, TRAIN, LabelledCatalog, LabelSpace
from training.loop import TrainingRun, bf16_autocast, train_steps
from training.losses import multi_positive_infonce
from training.world import ATTRIBUTES, VALUES, Combo, World, caption

ATTRIBUTE_WORD_ORDER = ("colour", "pattern", "length", "sleeve", "neckline", "category")
NO_AUGMENTATION = {("zoom_out", 1.0), ("flip", False), ("augment_from_views", None)}
SMALL_CATALOG_ZOOM_OUT = 1.5
SMALL_CATALOG_VIEWS = 30.0


@dataclass(frozen=True)
class BackboneTrainConfig:
    """How the tiny backbone is trained; its hash names the checkpoint.

    ``zoom_out`` and ``flip`` augment each training image every time it is drawn: it is seen through a window of
    up to ``zoom_out`` times its area (1.0: none), at a random place, so the item shrinks and shifts but stays whole
    (a crop could cut off the strap or hem a caption names), and mirrored half of the time. A few hundred photos
    seen hundreds of times each are otherwise learnt by heart, while a large catalog learns more slowly with them
    at the same budget; ``augment_from_views`` turns on ``SMALL_CATALOG_ZOOM_OUT`` with mirrors when ``pairs`` per
    training photo reach it (``for_photos``), which is how ``circhat build`` trains (docs/catalog.md has the
    figures). Off by default.
    """

    model: str = DEMO_MODEL
    pairs: int = 100_000
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_share: float = 0.05
    full_caption_share: float = 0.5
    zoom_out: float = 1.0
    flip: bool = False
    augment_from_views: float | None = None
    seed: int = 0
    bf16: bool = True

    def for_photos(self, photos: int) -> BackboneTrainConfig:
        """The recipe for ``photos`` training photos: zoom-out and mirrors turned on when each photo would be seen at
        least ``augment_from_views`` times, and the rule itself resolved away."""
        if self.augment_from_views is None or self.pairs < self.augment_from_views * photos:
            return replace(self, augment_from_views=None)
        return replace(self, zoom_out=max(self.zoom_out, SMALL_CATALOG_ZOOM_OUT), flip=True, augment_from_views=None)

    def digest(self) -> str:
        """Names the checkpoint; augmentation left off stays out, so a recipe from before it keeps its name."""
        fields = {k: v for k, v in asdict(self).items() if (k, v) not in NO_AUGMENTATION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def backbone_dir(world: World, config: BackboneTrainConfig) -> Path:
    return world.root / f"backbone-{config.digest()}"


def combo_codes(combos: list[Combo]) -> torch.Tensor:
    """Attribute values as integers, one column per attribute ("none" is its own value)."""
    index = {a: {v: i + 1 for i, v in enumerate(VALUES[a])} for a in ATTRIBUTES}
    return torch.tensor([[index[a].get(c.get(a), 0) for a in ATTRIBUTES] for c in combos])


def partial_caption(combo: Combo, rng: np.random.Generator, full_share: float) -> tuple[str, list[bool]]:
    """A caption naming all or a random subset of the combo's attributes, and which it names."""
    applicable = combo.applicable()
    if rng.random() < full_share:
        named = set(applicable)
    else:
        named = {a for a in applicable if rng.random() < 0.5}
        if rng.random() < 0.8:
            named.add("category")
        if not named:
            named = {"colour"}
    words = []
    for a in ATTRIBUTE_WORD_ORDER:
        value = combo.get(a)
        if a in named and not (a == "pattern" and value == "solid" and len(named) > 1):
            words.append(value)
    if "category" not in named:
        words.append("garment")
    article = "an" if words[0][0] in "aeiou" else "a"
    return f"a photo of {article} " + " ".join(words), [a in named for a in ATTRIBUTES]


def load_pixels(paths: list[str], preprocess, progress: bool = True) -> torch.Tensor:
    """Preprocessed pixel tensors for the image files ``paths``, loaded once."""
    return torch.stack([
        preprocess(Image.open(path).convert("RGB"))
        for path in tqdm(paths, desc="loading images", unit="img", disable=not progress, leave=False)
    ])


@torch.no_grad()
def text_to_image_recall(backbone: Backbone, pixels: torch.Tensor, keys: np.ndarray, captions: dict[str, str],
                         ks: tuple[int, ...] = (1, 10)) -> dict[str, float]:
    """Recall@K of each label's caption in ``captions`` against the gallery ``pixels`` (any image of that label
    counts; ``keys`` labels the gallery)."""
    gallery = torch.cat([backbone.encode_images_with_patches(pixels[i:i + 1024])[0]
                         for i in range(0, len(pixels), 1024)])
    queries = sorted(captions)
    if not queries:
        return {f"R@{k}": 0.0 for k in ks} | {"queries": 0}
    text = backbone.encode_text([captions[k] for k in queries])
    top = (text @ gallery.T).topk(min(max(ks), len(gallery)), dim=1).indices.cpu().numpy()
    hits = keys[top] == np.array(queries)[:, None]
    return {f"R@{k}": float(hits[:, :k].any(1).mean() * 100) for k in ks} | {"queries": len(queries)}


CaptionSampler = Callable[[int, np.random.Generator], tuple[str, list[bool]]]


def augment(pixels: torch.Tensor, config: BackboneTrainConfig, rng: np.random.Generator) -> torch.Tensor:
    """``pixels`` (B, C, H, W) each seen through a random window of 1..``zoom_out`` times its area (aspect 4:5..5:4,
    never narrower than the image, edge pixels beyond it) and mirrored half of the time when ``config.flip``, in one
    resampling; unchanged when neither is asked for."""
    if config.zoom_out <= 1.0 and not config.flip:
        return pixels
    n = len(pixels)
    area = rng.uniform(1.0, max(1.0, config.zoom_out), n)
    aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25), n)) if config.zoom_out > 1.0 else np.ones(n)
    width, height = np.maximum(1.0, np.sqrt(area * aspect)), np.maximum(1.0, np.sqrt(area / aspect))
    centre_x, centre_y = rng.uniform(-1, 1, n) * (width - 1), rng.uniform(-1, 1, n) * (height - 1)
    mirror = np.where(config.flip & (rng.random(n) < 0.5), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.from_numpy(width * mirror).float()
    theta[:, 0, 2] = torch.from_numpy(centre_x).float()
    theta[:, 1, 1] = torch.from_numpy(height).float()
    theta[:, 1, 2] = torch.from_numpy(centre_y).float()
    grid = F.affine_grid(theta.to(pixels.device, pixels.dtype), list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def fit_clip(model: torch.nn.Module, tokenizer, pixels: torch.Tensor, codes: torch.Tensor,
             sample_caption: CaptionSampler, config: BackboneTrainConfig, progress: bool = True) -> TrainingRun:
    """The contrastive step both backbones train with, run by the one training loop.

    Each step draws a batch of training images and, per image, a caption naming some of its attributes
    (``sample_caption(row, rng)`` returns the caption and which label columns it names); every image agreeing
    with a caption on the columns it names is that caption's positive.
    """
    device = next(model.parameters()).device
    rng = np.random.default_rng(config.seed)
    steps = math.ceil(config.pairs / config.batch_size)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))
    autocast = bf16_autocast(device, config.bf16)
    batch = min(config.batch_size, len(pixels))

    def step_loss() -> torch.Tensor:
        idx = torch.from_numpy(rng.choice(len(pixels), size=batch, replace=False))
        sampled = [sample_caption(i, rng) for i in idx.tolist()]
        texts, named = [t for t, _ in sampled], torch.tensor([n for _, n in sampled])
        batch_codes = codes[idx]
        positives = ((batch_codes[:, None, :] == batch_codes[None, :, :]) | ~named[:, None, :]).all(-1)
        with autocast:
            image = F.normalize(model.encode_image(augment(pixels[idx].to(device), config, rng)).float(), dim=-1)
            text = F.normalize(model.encode_text(tokenizer(texts).to(device)).float(), dim=-1)
        return multi_positive_infonce(model.logit_scale.exp() * text @ image.T, positives.to(device))

    def clamp_logit_scale() -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

    model.train()
    run = train_steps(optimizer, steps, max(1, int(steps * config.warmup_share)), step_loss, "training backbone",
                      progress, after_step=clamp_logit_scale)
    model.eval()
    return run


def save_trained(model: torch.nn.Module, config: BackboneTrainConfig, out_dir: Path,
                 measure: Callable[[Backbone], dict]) -> tuple[BackboneSpec, dict]:
    """Save a trained backbone as an open_clip local-dir with ``measure(backbone)``'s metrics, atomically."""
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    spec = save_backbone(model.eval(), config.model, partial, extra={"train_config": asdict(config)})
    metrics = measure(load_backbone(spec, next(model.parameters()).device))
    metrics |= {"device": next(model.parameters()).device.type, "threads": torch.get_num_threads(),
                "config": asdict(config)}
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.replace(out_dir)
    return BackboneSpec.local_dir(out_dir), metrics


def new_model(config: BackboneTrainConfig):
    """(model, preprocess, tokenizer) of ``config.model`` with fresh weights from ``config.seed``."""
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, preprocess, _ = open_clip.create_model_and_transforms(config.model, device=device)
    return model, preprocess, open_clip.get_tokenizer(config.model)


def train_backbone(world: World, config: BackboneTrainConfig = BackboneTrainConfig(),
                   out_dir: Path | None = None, progress: bool = True) -> tuple[BackboneSpec, dict]:
    """Train the demo CLIP on the world's training split and save it as an open_clip local-dir."""
    out_dir = Path(out_dir or backbone_dir(world, config))
    train_rows = torch.tensor([i for i, it in enumerate(world.items) if it.split == "train"])
    config = config.for_photos(len(train_rows))
    model, preprocess, tokenizer = new_model(config)
    all_pixels = load_pixels([str(world.image_path(it)) for it in world.items], preprocess, progress)
    combos = [world.items[i].combo for i in train_rows.tolist()]
    run = fit_clip(model, tokenizer, all_pixels[train_rows], combo_codes(combos),
                       lambda i, rng: partial_caption(combos[i], rng, config.full_caption_share), config, progress)
    keys = np.array([it.combo.key for it in world.items])

    def measure(backbone: Backbone) -> dict:
        def captions(split: str) -> dict[str, str]:
            return {it.combo.key: caption(it.combo) for it in world.items if it.split == split}

        return {"heldout_text_to_image": text_to_image_recall(backbone, all_pixels, keys, captions("heldout")),
                "train_text_to_image": text_to_image_recall(backbone, all_pixels, keys, captions("train")),
                "train_seconds": run.seconds, "pairs": math.ceil(config.pairs / config.batch_size)
                * config.batch_size}

    return save_trained(model, config, out_dir, measure)


def label_codes(catalog: LabelledCatalog, rows: np.ndarray) -> torch.Tensor:
    """Each row's label values as integers, one column per label attribute (0: no value)."""
    space = catalog.space
    index = {a: {v: i + 1 for i, v in enumerate(space.alternatives(a))} for a in space.attributes}
    return torch.tensor([[index[a].get(catalog.values[r].get(a, ""), 0) for a in space.attributes]
                         for r in rows.tolist()], dtype=torch.long).reshape(len(rows), len(space.attributes))


def partial_label_caption(space: LabelSpace, values: dict[str, str], rng: np.random.Generator,
                          full_share: float) -> tuple[str, list[bool]]:
    """The schema's caption of all or a random subset of an item's label values, and which columns it names."""
    present = [a for a in space.attributes if values.get(a)]
    if rng.random() < full_share:
        named = set(present)
    else:
        named = {a for a in present if rng.random() < 0.5}
        if space.schema.category in present and rng.random() < 0.8:
            named.add(space.schema.category)
        if not named and present:
            named = {present[-1]}
    return space.caption({a: values[a] for a in named}), [a in named for a in space.attributes]


def train_catalog_backbone(catalog: LabelledCatalog, config: BackboneTrainConfig, out_dir: Path,
                           progress: bool = True) -> tuple[BackboneSpec, dict]:
    """Train the tiny CLIP on a shop catalog's training images with captions made from its metadata."""
    train = catalog.rows(TRAIN)
    config = config.for_photos(len(train))
    model, preprocess, tokenizer = new_model(config)
    all_pixels = load_pixels(catalog.paths, preprocess, progress)
    values = [catalog.values[r] for r in train.tolist()]
    run = fit_clip(model, tokenizer, all_pixels[torch.from_numpy(train)], label_codes(catalog, train),
                       lambda i, rng: partial_label_caption(catalog.space, values[i], rng, config.full_caption_share),
                       config, progress)

    def measure(backbone: Backbone) -> dict:
        def captions(split: str) -> dict[str, str]:
            return {str(catalog.keys[r]): catalog.space.caption(catalog.values[r]) for r in catalog.rows(split)}

        return {"heldout_text_to_image": text_to_image_recall(backbone, all_pixels, catalog.keys, captions(HELDOUT)),
                "train_text_to_image": text_to_image_recall(backbone, all_pixels, catalog.keys, captions(TRAIN)),
                "train_seconds": run.seconds,
                "pairs": math.ceil(config.pairs / config.batch_size) * config.batch_size}

    return save_trained(model, config, Path(out_dir), measure)


def ensure_backbone(world: World, config: BackboneTrainConfig = BackboneTrainConfig(),
                    progress: bool = True) -> tuple[BackboneSpec, dict]:
    """The world's trained demo backbone, training it first if it is not cached."""
    folder = backbone_dir(world, config)
    if (folder / "metrics.json").exists():
        return BackboneSpec.local_dir(folder), json.loads((folder / "metrics.json").read_text())
    return train_backbone(world, config, folder, progress)
