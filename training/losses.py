"""The contrastive losses every stage trains with, over logits the caller computes (its own scale or temperature).

* ``multi_positive_infonce``: symmetric InfoNCE where a row may have several positives (the backbone's
  caption-image batches, where every image agreeing with a partial caption is its match; stage 1's
  pseudo-sentence against images of the same label);
* ``soft_alignment_loss``: stage 1's KL pull of the pseudo-sentence towards where captions live;
* ``masked_infonce``: stage 2's and fine-tuning's one-target cross entropy, with the candidates that are equally
  correct (the target's label) masked out rather than counted as negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_positive_infonce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over ``logits`` (queries x keys) where every True in ``positives`` is a match."""
    targets = positives.float()
    forward = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    backward = -(targets.T / targets.T.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
    return (forward + backward) / 2


def soft_alignment_loss(pseudo_sentences: torch.Tensor, images: torch.Tensor, captions: torch.Tensor,
                        temperature: float) -> torch.Tensor:
    """KL(image-vs-captions || pseudo-sentence-vs-captions) over the batch's captions."""
    teacher = F.softmax(images @ captions.T / temperature, dim=1)
    student = F.log_softmax(pseudo_sentences @ captions.T / temperature, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean")


def masked_infonce(logits: torch.Tensor, equally_correct: torch.Tensor) -> torch.Tensor:
    """Row i's target is column i; other columns flagged in ``equally_correct`` are left out, not pushed away."""
    rows = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits.masked_fill(equally_correct, float("-inf")), rows)
