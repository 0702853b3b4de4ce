"""Convolution → BatchNorm → activation, the unit most families are built from.

Submodules are named `conv`, `bn` and `act` so that state-dict keys read `<name>.conv.weight`,
`<name>.bn.running_mean`: the layout timm uses, which keeps weight import a matter of renaming blocks.
"""
from __future__ import annotations

from typing import Callable

from torch import nn


class ConvNormAct(nn.Sequential):
    """`Conv2d` (no bias) + `BatchNorm2d` + optional activation, with "same" padding for odd kernels.

    act_layer: a module class/factory called with no arguments (e.g. `nn.SiLU`), or None for a linear output.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, act_layer: Callable[[], nn.Module] | None = nn.ReLU,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvNormAct needs an odd kernel size for symmetric padding, got {kernel_size}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels ({in_channels} -> {out_channels}) must be divisible by groups={groups}")
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = act_layer() if act_layer is not None else nn.Identity()
