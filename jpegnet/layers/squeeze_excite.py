"""Squeeze-and-excitation (Hu et al., 2018): channel gates from globally pooled features."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """x * sigmoid(expand(act(reduce(mean_hw(x))))), with 1×1 convolutions (with bias) as the two FC layers.

    `reduced_channels` is given explicitly because families differ in what they reduce from: EfficientNet
    takes a quarter of the *block input* width, not of the expanded width the gate is applied to.
    """

    def __init__(self, channels: int, reduced_channels: int, act_layer: Callable[[], nn.Module] = nn.SiLU):
        super().__init__()
        if reduced_channels < 1:
            raise ValueError(f"SqueezeExcite needs reduced_channels >= 1, got {reduced_channels}")
        self.reduce = nn.Conv2d(channels, reduced_channels, 1, bias=True)
        self.act = act_layer()
        self.expand = nn.Conv2d(reduced_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * torch.sigmoid(scale)
