"""Learning-rate schedule: linear warmup, then cosine decay, stepped once per optimizer step."""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based).

    Warmup rises linearly from 1/(warmup_steps+1) to 1 (never 0, so the first step already learns), then a
    half cosine falls from 1 to `min_factor` at `total_steps`.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineLR(LRScheduler):
    """`warmup_cosine_factor` as a scheduler; its state dict holds only numbers (weights_only-safe)."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                 min_factor: float = 0.0, last_epoch: int = -1):
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
        if not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"min_factor must be in [0, 1], got {min_factor}")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_factor = min_factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = warmup_cosine_factor(max(0, self.last_epoch), self.total_steps, self.warmup_steps,
                                      self.min_factor)
        return [base * factor for base in self.base_lrs]
