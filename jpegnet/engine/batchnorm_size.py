"""The smallest batch a model's BatchNorm layers can train on.

BatchNorm in train mode normalizes each channel over the batch and the spatial positions; with a single value
per channel (one image whose feature map is 1x1 there) the variance is undefined and PyTorch raises. A model
whose last feature maps are 1x1 at the chosen input size (e.g. a DCT ResNet at 32 px) therefore cannot train
on a one-image batch, which skipped unreadable files can leave behind.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def batchnorm_values_per_image(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int | None:
    """The fewest values per channel that one image gives any BatchNorm layer of `model` (None: no such
    layer), found by one eval-mode forward pass of the first image of `inputs`. Eval mode draws no random
    numbers (no dropout, no drop-path) and leaves the running statistics alone, so training is unchanged."""
    counts: list[int] = []

    def record(module, args, output):
        x = args[0]
        counts.append(x.numel() // max(1, x.shape[0] * x.shape[1]))

    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not layers:
        return None
    hooks = [m.register_forward_hook(record) for m in layers]
    was_training = model.training
    try:
        model.eval()
        model(*(x[:1] for x in inputs))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return min(counts) if counts else None


def smallest_trainable_batch(values_per_image: int | None) -> int:
    """Images a batch (or gradient-accumulation micro-batch) needs so every BatchNorm sees 2+ values."""
    if values_per_image is None or values_per_image > 1:
        return 1
    return 2
