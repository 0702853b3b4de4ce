"""Model cost accounting: parameters, FLOPs (torch.utils.flop_counter), per-stage figures.

FLOPs follow torch.utils.flop_counter's convention: one multiply-add counts as 2 FLOPs, so ResNet-50 at
224×224 is ~8.2 GFLOPs (4.1 GMACs, the figure papers usually quote as "FLOPs").
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as fixed kernels and BN statistics are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...] | None = None, size=None) -> int:
    """FLOPs of one forward pass at batch 1 (inputs default to the model's example inputs)."""
    if inputs is None:
        inputs = model.example_inputs(1, size)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
