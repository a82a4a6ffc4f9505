"""The one training loop: AdamW steps on a loss, linear warm-up then cosine decay, a progress bar, a typed result.

The backbone, stage 1, stage 2 and fine-tuning each say what one step's loss is (batches and model modes are
theirs, autocast is ``bf16_autocast``); this loop does the rest, so all of them schedule, step and report the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm


@dataclass(frozen=True)
class TrainingRun:
    """What one loop did: its steps, its wall time and the last step's loss."""

    steps: int
    seconds: float
    final_loss: float


def bf16_autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast on a CUDA device only: on a CPU without native bf16 (AVX2 only, an AMD EPYC with 2 cores) it
    made a backbone step 11x slower (10.8 s against 0.93 s in fp32), and even on a CPU with it, a stage-2 step
    was slower with it (0.14 s against 0.12 s)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate rising linearly over ``warmup`` steps, then a cosine to zero at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / steps))))


def train_steps(optimizer: torch.optim.Optimizer, steps: int, warmup: int, step_loss: Callable[[], torch.Tensor],
                desc: str, progress: bool = True,
                after_step: Callable[[], None] | None = None) -> TrainingRun:
    """Run ``steps`` optimiser steps on ``step_loss()``, each followed by the schedule and ``after_step``."""
    schedule = warmup_cosine(optimizer, steps, warmup)
    start = time.perf_counter()
    last = math.nan
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress)
    for _ in bar:
        loss = step_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if after_step is not None:
            after_step()
        last = loss.item()
        bar.set_postfix(loss=f"{last:.3f}")
    return TrainingRun(steps=steps, seconds=round(time.perf_counter() - start, 1), final_loss=last)
