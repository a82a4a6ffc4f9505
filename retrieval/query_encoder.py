"""The composed query encoder: reference image + ordered instructions -> one vector.

query = normalize(text_tower("a photo of * , inst1 , inst2") with * = mapper(reference)),
through the stage-2 adapters when present. With no reference the plain text
embedding of "a photo of inst1 , inst2" is the query. A checkpoint folder holds
the mapper, the adapters and the identity of the backbone they were trained on;
loading it on another backbone is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from retrieval.adapters import AdapterConfig, adapter_state, load_adapter_state
from retrieval.backbone import Backbone
from retrieval.mapper import Mapper, MapperConfig
from retrieval.pseudo_token import PLACEHOLDER, encode_text_with_pseudo_tokens, placeholder_token_id

CHECKPOINT_FILE = "composer.json"


class ModelMismatch(ValueError):
    """A checkpoint or an embedding belongs to a different backbone than the one loaded."""


def compose_text(instructions: list[str], with_reference: bool) -> str:
    """The text the tower reads: the placeholder for the reference, then the instructions in order."""
    parts = [s.strip().rstrip(".").lower() for s in instructions if s.strip()]
    if with_reference:
        return " , ".join([f"a photo of {PLACEHOLDER}", *parts])
    return "a photo of " + " , ".join(parts)


class QueryEncoder:
    """Turns (reference features, instructions) into normalised query embeddings."""

    def __init__(self, backbone: Backbone, mapper: Mapper | None, adapter: AdapterConfig | None = None,
                 meta: dict | None = None):
        self.backbone = backbone
        self.mapper = mapper.to(backbone.device).eval() if mapper is not None else None
        self.adapter = adapter
        self.meta = meta or {}
        self.placeholder = placeholder_token_id(backbone.tokenizer)

    def fit_text(self, instructions: list[str], with_reference: bool) -> str:
        """The composed text, dropping the oldest instructions if it would not fit the context."""
        kept = list(instructions)
        context = int(self.backbone.model.context_length)
        while True:
            text = compose_text(kept, with_reference)
            length = int((self.backbone.tokenize([text])[0] != 0).sum())
            if length < context or len(kept) <= 1:
                return text
            kept.pop(0)

    def reference_tokens(self, pooled: torch.Tensor, patches: torch.Tensor | None) -> torch.Tensor:
        """Pseudo-word tokens for reference images (their pooled embeddings and patch tokens)."""
        if self.mapper is None:
            raise ValueError("this encoder has no mapper; it cannot read a reference image")
        device = self.backbone.device
        return self.mapper(pooled.to(device), None if patches is None else patches.to(device))

    def tokenize(self, instructions: list[list[str]], with_reference: bool) -> torch.Tensor:
        """Token ids of each row's composed text (a training loop tokenizes its triplets once)."""
        distinct = list(dict.fromkeys(tuple(inst) for inst in instructions))
        ids = self.backbone.tokenize([compose_text(list(inst), with_reference) for inst in distinct])
        for n in torch.nonzero(ids[:, -1] != 0).flatten().tolist():
            ids[n] = self.backbone.tokenize([self.fit_text(list(distinct[n]), with_reference)])[0]
        row = {inst: n for n, inst in enumerate(distinct)}
        return ids[[row[tuple(inst)] for inst in instructions]]

    def encode_tokens(self, tokens: torch.Tensor | None, instructions: list[list[str]]) -> torch.Tensor:
        """Queries for rows of (reference token or None, instructions); differentiable when adapters train."""
        return self.encode_ids(tokens, self.tokenize(instructions, tokens is not None))

    def encode_ids(self, tokens: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
        """Queries for rows of (reference token or None, token ids from ``tokenize``)."""
        out = encode_text_with_pseudo_tokens(self.backbone.model, ids, tokens, self.placeholder)
        return F.normalize(out.float(), dim=-1)

    @torch.no_grad()
    def encode(self, pooled: torch.Tensor | None, patches: torch.Tensor | None,
               instructions: list[list[str]], batch_size: int = 512) -> torch.Tensor:
        """Queries for a batch: ``pooled``/``patches`` of the references (None: text-only)."""
        out = []
        for i in range(0, len(instructions), batch_size):
            rows = slice(i, i + batch_size)
            tokens = None
            if pooled is not None:
                tokens = self.reference_tokens(pooled[rows], None if patches is None else patches[rows])
            out.append(self.encode_tokens(tokens, instructions[rows]).cpu())
        return torch.cat(out)

    def save(self, folder: Path, extra: dict | None = None) -> Path:
        """Write mapper + adapter weights and their config, tagged with the backbone's identity."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.mapper is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.mapper.state_dict().items()},
                      str(folder / "mapper.safetensors"))
        if self.adapter is not None:
            save_file(adapter_state(self.backbone.model), str(folder / "adapter.safetensors"))
        meta = {
            "backbone": self.backbone.identity,
            "backbone_spec": self.backbone.spec.describe(),
            "mapper": asdict(self.mapper.config) if self.mapper is not None else None,
            "adapter": asdict(self.adapter) if self.adapter is not None else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.meta, **(extra or {}),
        }
        (folder / CHECKPOINT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path, backbone: Backbone) -> QueryEncoder:
        """Load a checkpoint onto ``backbone`` (its adapters are added to ``backbone.model`` in place)."""
        folder = Path(folder)
        path = folder / CHECKPOINT_FILE
        if not path.exists():
            raise FileNotFoundError(f"no composer checkpoint at {folder} ({CHECKPOINT_FILE} missing)")
        meta = json.loads(path.read_text())
        if meta["backbone"] != backbone.identity:
            raise ModelMismatch(
                f"checkpoint {folder} was trained on backbone {meta['backbone']} "
                f"({meta.get('backbone_spec')}), but the loaded backbone is {backbone.identity} "
                f"({backbone.spec.describe()}); retrain stages 1 and 2 for this backbone")
        mapper = None
        if meta.get("mapper"):
            mapper = Mapper(MapperConfig(**meta["mapper"]))
            mapper.load_state_dict(load_file(str(folder / "mapper.safetensors")))
        adapter = None
        if meta.get("adapter"):
            adapter = AdapterConfig(**meta["adapter"])
            load_adapter_state(backbone.model, adapter, load_file(str(folder / "adapter.safetensors")))
        return cls(backbone, mapper, adapter, meta)
