"""The stage-1 mapper: an image's features become one pseudo-word token.

With ``use_patches`` the mapper performs visual semantic injection: a few
learned queries, conditioned on the pooled embedding, cross-attend over the
backbone's patch tokens, so fine detail (pattern, sleeves) that the pooled
vector blurs reaches the token. Without it, the mapper is Pic2Word's: an MLP on
the pooled embedding alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MapperConfig:
    """Shape of the mapper; saved beside its weights."""

    embed_dim: int
    patch_dim: int
    token_dim: int
    hidden: int = 384
    queries: int = 4
    heads: int = 4
    use_patches: bool = True
    dropout: float = 0.1


class Mapper(nn.Module):
    """Image features -> one vector in the text tower's token-embedding space."""

    def __init__(self, config: MapperConfig):
        super().__init__()
        self.config = config
        h = config.hidden
        self.global_in = nn.Sequential(nn.Linear(config.embed_dim, h), nn.GELU(), nn.Dropout(config.dropout))
        if config.use_patches:
            self.patch_in = nn.Sequential(nn.LayerNorm(config.patch_dim), nn.Linear(config.patch_dim, h))
            self.queries = nn.Parameter(torch.randn(config.queries, h) * 0.02)
            self.attend = nn.MultiheadAttention(h, config.heads, dropout=config.dropout, batch_first=True)
            self.attend_norm = nn.LayerNorm(h)
        fused = h * (2 if config.use_patches else 1)
        self.out = nn.Sequential(
            nn.Linear(fused, h), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(h, config.token_dim),
        )

    def forward(self, pooled: torch.Tensor, patches: torch.Tensor | None = None) -> torch.Tensor:
        g = self.global_in(pooled)
        if not self.config.use_patches:
            return self.out(g)
        if patches is None:
            raise ValueError("this mapper reads patch tokens; pass the backbone's patch features")
        keys = self.patch_in(patches)
        q = self.queries.unsqueeze(0) + g.unsqueeze(1)
        attended, _ = self.attend(q, keys, keys, need_weights=False)
        local = self.attend_norm(attended.mean(1))
        return self.out(torch.cat([g, local], dim=-1))
