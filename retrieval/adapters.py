"""LoRA adapters on the text tower (peft), the only weights stage 2 trains.

Targets are matched inside the *text* transformer only, so the vision tower is
never caught. The default adapts the MLP projections and the whole attention
modules: composing needs new attention patterns (the edit words must override
what the pseudo-word says), and MLP-only LoRA reached about half the 2-attribute
R@1 in our measurement. LoRA on ``attn.out_proj`` alone would silently do
nothing (nn.MultiheadAttention reads that weight directly).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer

from retrieval.pseudo_token import text_tower


@dataclass(frozen=True)
class AdapterConfig:
    """LoRA shape; ``targets`` is a regex over module names inside the text transformer."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    targets: str = r"resblocks\.\d+\.(attn|mlp\.c_fc|mlp\.c_proj)"


def add_text_adapters(model: torch.nn.Module, config: AdapterConfig) -> list[torch.nn.Parameter]:
    """Inject LoRA into the text transformer in place; returns the trainable adapter weights."""
    transformer = text_tower(model).transformer
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=config.targets)
    try:
        inject_adapter_in_model(lora, transformer)
    except ValueError as err:
        raise ValueError(f"adapter targets {config.targets!r} matched no module of the text transformer") from err
    params = [p for name, p in transformer.named_parameters() if "lora_" in name]
    for p in params:
        p.requires_grad_(True)
    return params


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = get_peft_model_state_dict(text_tower(model).transformer)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_adapter_state(model: torch.nn.Module, config: AdapterConfig, state: dict[str, torch.Tensor]) -> None:
    """Inject adapters shaped by ``config`` and load their trained weights."""
    params = add_text_adapters(model, config)
    result = set_peft_model_state_dict(text_tower(model).transformer, state)
    if result.unexpected_keys:
        raise ValueError(f"adapter weights do not fit this text tower: {result.unexpected_keys[:3]}")
    for p in params:
        p.requires_grad_(False)


@contextmanager
def adapters_disabled(model: torch.nn.Module) -> Iterator[None]:
    """The text tower as the backbone shipped it, for as long as the block runs (adapters kept, not applied)."""
    transformer = text_tower(model).transformer
    layers = [m for m in transformer.modules() if isinstance(m, BaseTunerLayer)]
    trainable = {name: p.requires_grad for name, p in transformer.named_parameters()}
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m in layers:
            m.enable_adapters(True)
        for name, p in transformer.named_parameters():
            p.requires_grad_(trainable.get(name, False))
