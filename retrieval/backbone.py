"""Loads the frozen CLIP backbone through open_clip and exposes what retrieval needs.

A backbone is named the way open_clip names it: a model config plus a
``pretrained`` tag or checkpoint file (``ViT-B-32`` + ``laion2b_s34b_b79k``), or
a ``local-dir:`` folder holding ``open_clip_config.json`` and weights, which is
how the demo backbone trained by ``training`` is stored.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

MODEL_CONFIGS = Path(__file__).parent / "model_configs"
DEMO_MODEL = "circhat-tiny-rn"
open_clip.add_model_config(MODEL_CONFIGS)
TEXT_PROBES = {"en": "a red striped dress with long sleeves", "ja": "赤いストライプの長袖ワンピース"}
MAX_TOKENS_PER_CHARACTER = 1.0


class BackboneUnavailable(RuntimeError):
    """The requested weights cannot be loaded here (offline, missing file, bad config)."""


@dataclass(frozen=True)
class BackboneSpec:
    """Which open_clip model to load: a name and an optional pretrained tag or file."""

    model: str
    pretrained: str | None = None

    @classmethod
    def local_dir(cls, path: Path) -> BackboneSpec:
        return cls(model=f"local-dir:{Path(path).resolve()}")

    def describe(self) -> str:
        return self.model + (f" ({self.pretrained})" if self.pretrained else "")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _weights_file(spec: BackboneSpec) -> Path | None:
    if spec.model.startswith("local-dir:"):
        folder = Path(spec.model.removeprefix("local-dir:"))
        found = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pt"))
        return found[0] if found else None
    if spec.pretrained and Path(spec.pretrained).is_file():
        return Path(spec.pretrained)
    return None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Backbone:
    """A loaded, frozen open_clip model with its preprocessing, tokenizer and identity."""

    def __init__(self, model: torch.nn.Module, preprocess: Any, tokenizer: Any, spec: BackboneSpec,
                 identity: str, device: torch.device):
        self.model = model.eval().requires_grad_(False).to(device)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.spec = spec
        self.identity = identity
        self.device = device

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1])

    @property
    def token_dim(self) -> int:
        return int(self.model.token_embedding.weight.shape[-1])

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.device)

    def image_tensor(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch_size: int = 512) -> torch.Tensor:
        """Normalised text embeddings."""
        out = [self.model.encode_text(self.tokenize(texts[i:i + batch_size]), normalize=True)
               for i in range(0, len(texts), batch_size)]
        return torch.cat(out).float()

    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Normalised image embeddings."""
        return F.normalize(self.model.encode_image(self.image_tensor(images)).float(), dim=-1)

    @torch.no_grad()
    def encode_images_with_patches(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised pooled embeddings and the unpooled patch tokens the mapper reads."""
        return image_features_with_patches(self.model, pixels.to(self.device))

    @functools.cached_property
    def text_languages(self) -> frozenset[str]:
        """The languages its text tower reads, told by its tokenizer (see ``tokenizer_languages``)."""
        return tokenizer_languages(self.tokenizer)

    def describe(self) -> dict[str, str | int]:
        return {"spec": self.spec.describe(), "identity": self.identity, "embed_dim": self.embed_dim,
                "text_languages": ",".join(sorted(self.text_languages))}


def tokenizer_languages(tokenizer: Any, probes: Mapping[str, str] = TEXT_PROBES) -> frozenset[str]:
    """The probe languages a text tokenizer has words for: a sentence in the language becomes at most one token per
    character, none unknown.

    CLIP's byte-level BPE (every standard open_clip English tower and the demo's tiny one) cuts Japanese into byte
    fragments, about 1.5 tokens a character, so it reads English only; the sentencepiece vocabularies of the
    multilingual towers (``xlm-roberta-base-ViT-B-32``, ``nllb-clip-*``) hold Japanese words and read both. A
    tokenizer of a kind not known here is trusted with every language, as before.
    """
    readers = {}
    for language, sentence in probes.items():
        ids = _token_ids(tokenizer, sentence)
        if ids is None:
            return frozenset(probes)
        ids, unknown = ids
        characters = len(sentence.replace(" ", ""))
        readers[language] = unknown not in ids and len(ids) <= MAX_TOKENS_PER_CHARACTER * characters
    return frozenset(language for language, reads in readers.items() if reads)


def _token_ids(tokenizer: Any, sentence: str) -> tuple[list[int], int | None] | None:
    """(the sentence's token ids without special tokens, the unknown token's id) from an open_clip tokenizer."""
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "decoder"):
        return list(tokenizer.encode(sentence)), None
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and callable(inner):
        return list(inner(sentence, add_special_tokens=False)["input_ids"]), getattr(inner, "unk_token_id", None)
    return None


def image_features_with_patches(model: torch.nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled (normalised) image embeddings plus patch tokens, for ViT and ResNet towers."""
    visual = model.visual
    if isinstance(visual, open_clip.transformer.VisionTransformer):
        previous = visual.output_tokens
        visual.output_tokens = True
        try:
            pooled, tokens = visual(pixels)
        finally:
            visual.output_tokens = previous
    elif isinstance(visual, open_clip.modified_resnet.ModifiedResNet):
        x = visual.stem(pixels.to(visual.conv1.weight.dtype))
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
        tokens = x.flatten(2).transpose(1, 2)
        pooled = visual.attnpool(x)
    else:
        pooled = visual(pixels)
        tokens = pooled[:, None, :]
    return F.normalize(pooled.float(), dim=-1), tokens.float()


def load_backbone(spec: BackboneSpec, device: torch.device | str | None = None) -> Backbone:
    """Build the open_clip model for ``spec``; a clear error if its weights are not here.

    >>> backbone = load_backbone(BackboneSpec("ViT-B-32", "laion2b_s34b_b79k"))  # doctest: +SKIP
    >>> backbone = load_backbone(BackboneSpec.local_dir(world.backbone_dir))     # doctest: +SKIP
    """
    device = torch.device(device) if device is not None else default_device()
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.model, pretrained=spec.pretrained, device=device, require_pretrained=spec.pretrained is not None,
        )
    except Exception as err:
        hint = ("pretrained weights are fetched from the model hub or a local file; this machine has no "
                "copy of them. Pass --pretrained /path/to/open_clip_pytorch_model.bin (or .safetensors), "
                "or --model local-dir:/folder with open_clip_config.json and weights.")
        raise BackboneUnavailable(f"cannot load backbone {spec.describe()}: {err}\n{hint}") from err
    tokenizer = open_clip.get_tokenizer(spec.model)
    weights = _weights_file(spec)
    if weights is not None:
        identity = f"{weights.stem}-sha256:{_file_digest(weights)}"
    else:
        identity = f"{spec.model}:{spec.pretrained or 'random-init'}"
    return Backbone(model, preprocess, tokenizer, spec, identity, device)


def save_backbone(model: torch.nn.Module, model_name: str, folder: Path, extra: dict | None = None) -> BackboneSpec:
    """Write a trained model as an open_clip ``local-dir`` (config + safetensors)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": open_clip.get_model_config(model_name),
        "preprocess_cfg": asdict(open_clip.transform.PreprocessCfg(size=model.visual.image_size)),
        "circhat": {"base_model": model_name, **(extra or {})},
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2, default=_jsonable) + "\n")
    return BackboneSpec.local_dir(folder)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
