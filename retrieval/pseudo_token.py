"""Pseudo-token injection: run the CLIP text tower with a vector in place of a word.

The template's placeholder (``*``) is tokenized like any word; its token
embedding is then swapped for the mapper's output before the text transformer
runs, so "a photo of * , make it blue" reads the reference image as a word.
"""

from __future__ import annotations

import torch
from open_clip.transformer import text_global_pool

PLACEHOLDER = "*"
PAD_ID = 0


def placeholder_token_id(tokenizer) -> int:
    """The id of the placeholder word, checked to be a single token."""
    ids = [int(t) for t in tokenizer([PLACEHOLDER])[0].tolist() if t != 0]
    if len(ids) != 3:
        raise ValueError(f"placeholder {PLACEHOLDER!r} is not one token for this tokenizer: {ids}")
    return ids[1]


def text_tower(model: torch.nn.Module) -> torch.nn.Module:
    """The module holding token_embedding / transformer / ln_final (CLIP or CustomTextCLIP)."""
    tower = model if hasattr(model, "token_embedding") else getattr(model, "text", None)
    if tower is None or not hasattr(tower, "token_embedding"):
        raise NotImplementedError(
            f"{type(model).__name__} has no CLIP-style text transformer; pseudo-token injection "
            "needs an open_clip text tower (HF text towers are not supported)")
    if getattr(tower, "cls_emb", None) is not None:
        raise NotImplementedError("text towers with a class token are not supported")
    return tower


LENGTH_GROUP_ROWS = 32
MAX_LENGTH_GROUPS = 2


def encode_text_with_pseudo_tokens(model: torch.nn.Module, tokens: torch.Tensor, pseudo: torch.Tensor | None,
                                   placeholder_id: int) -> torch.Tensor:
    """Text embeddings (unnormalised) with every placeholder position replaced by ``pseudo[b]``.

    ``tokens``: (B, L) token ids; ``pseudo``: (B, D) vectors in the token-embedding space, or None
    for plain text. Rows without a placeholder encode exactly as ``model.encode_text``. Under a causal mask
    with end-of-text pooling the padding after a row's last token changes nothing, so it is not run: rows
    are encoded in groups of similar length, each cut to its longest row.
    """
    tower = text_tower(model)
    pool_type = getattr(tower, "text_pool_type", None) or getattr(tower, "pool_type", "argmax")
    if tower.attn_mask is None or pool_type != "argmax":
        return _encode_rows(tower, tokens, pseudo, placeholder_id, pool_type, tokens.shape[1])
    lengths = (tokens != PAD_ID).sum(1).clamp(min=1)
    groups = max(1, min(MAX_LENGTH_GROUPS, len(tokens) // LENGTH_GROUP_ROWS))
    if groups == 1:
        return _encode_rows(tower, tokens, pseudo, placeholder_id, pool_type, int(lengths.max()))
    order = torch.argsort(lengths, stable=True)
    parts = [_encode_rows(tower, tokens[rows], None if pseudo is None else pseudo[rows], placeholder_id, pool_type,
                          int(lengths[rows].max())) for rows in torch.tensor_split(order, groups)]
    return torch.cat(parts)[torch.argsort(order)]


def _encode_rows(tower: torch.nn.Module, tokens: torch.Tensor, pseudo: torch.Tensor | None, placeholder_id: int,
                 pool_type: str, length: int) -> torch.Tensor:
    tokens = tokens[:, :length]
    attn_mask = tower.attn_mask if tower.attn_mask is None else tower.attn_mask[:length, :length]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(tokens).to(cast_dtype)
    if pseudo is not None:
        slots = (tokens == placeholder_id).unsqueeze(-1)
        x = torch.where(slots, pseudo.to(cast_dtype).unsqueeze(1), x)
    x = x + tower.positional_embedding[:length].to(cast_dtype)
    x = tower.transformer(x, attn_mask=attn_mask)
    x = tower.ln_final(x)
    x = text_global_pool(x, tokens, pool_type, eos_token_id=getattr(tower, "text_eos_id", None))
    projection = tower.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
