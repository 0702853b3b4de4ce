"""Oct-ResNet-50 (Chen et al., "Drop an Octave", ICCV 2019): ResNet-50 built from octave convolutions.

As in the official code (facebookresearch/OctConv, gluon `resnetv1.py`, `resnet50_v1b`):
- the stem (7×7 conv, BN, ReLU, max pool) is ordinary;
- stages 1–3 run with a low-frequency ratio α: the first octave layer (stage 1, block 1) takes a plain
  tensor (α_in = 0) and produces a (high, low) pair; every later conv, BN and ReLU acts on pairs;
- stage 4 is ordinary (α = 0): its first block's 1×1 convs take the pair and return only a high part,
  so the head sees one full-resolution tensor;
- stride 2 sits on the 3×3 conv (and the 1×1 shortcut), implemented by average pooling inside OctConv2d.

Module names follow torchvision's ResNet-50 (conv1, bn1, layer1..4 with conv1/bn1/.../downsample, fc), with
OctConv2d / OctBatchNorm2d in place of Conv2d / BatchNorm2d. For every α the parameter count is ResNet-50's,
25,557,032: the octave paths only split the weights of each layer.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.octconv import OctBatchNorm2d, OctConv2d, OctReLU
from .registry import register_model, register_variant
from .resnet import ResNetBase, init_resnet_weights

__all__ = ["OctBottleneck", "OctResNet", "OCT_ALPHAS"]

OCT_ALPHAS = (0.125, 0.25, 0.5, 0.75)


class OctBottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 bottleneck on (high, low) pairs."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, alpha_in: float, alpha: float):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = OctConv2d(in_ch, width, 1, alpha_in, alpha)
        self.bn1 = OctBatchNorm2d(width, alpha)
        self.conv2 = OctConv2d(width, width, 3, alpha, alpha, stride=stride)
        self.bn2 = OctBatchNorm2d(width, alpha)
        self.conv3 = OctConv2d(width, out_ch, 1, alpha, alpha)
        self.bn3 = OctBatchNorm2d(out_ch, alpha)
        self.relu = OctReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(OctConv2d(in_ch, out_ch, 1, alpha_in, alpha, stride=stride),
                                            OctBatchNorm2d(out_ch, alpha))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        high, low = self.bn3(self.conv3(out))
        high = high + identity[0]
        low = low + identity[1] if low is not None else None
        return self.relu((high, low))


class OctResNet(ResNetBase):
    """Oct-ResNet-50 with low-frequency ratio `alpha` in stages 1–3 (stage 4 ordinary)."""

    def __init__(self, alpha: float = 0.5, num_classes: int = 1000, layers=(3, 4, 6, 3)):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be a number in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        ratios = (self.alpha, self.alpha, self.alpha, 0.0)
        in_ch, alpha_in = 64, 0.0
        self.feature_info = [dict(module="relu", num_chs=64, reduction=2)]
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = []
            for b in range(blocks):
                stage.append(OctBottleneck(in_ch, width, 2 if (b == 0 and i > 0) else 1, alpha_in, ratios[i]))
                in_ch, alpha_in = width * OctBottleneck.expansion, ratios[i]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        # Stages 1–3 output (high, low) pairs, which a feature tap cannot hand out as one map; the high part
        # at its stride is what `features_only` returns for them; stage 4 is plain.
        for i, ch in enumerate((256, 512, 1024, 2048)):
            self.add_module(f"tap{i + 1}", _HighFrequencyTap())
            self.feature_info.append(dict(module=f"tap{i + 1}", num_chs=ch - int(ratios[i] * ch),
                                          reduction=4 * 2 ** i))
        self.init_head(2048, num_classes)  # pooling and `fc` as ResNet-50's
        init_resnet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        pair = (x, None)
        for i in range(1, 5):
            pair = getattr(self, f"layer{i}")(pair)
            getattr(self, f"tap{i}")(pair[0])
        return pair[0]

class _HighFrequencyTap(nn.Identity):
    """A named no-op on a stage's high-frequency output, so `features_only` can hook one tensor per stage."""


@register_model
def octresnet50(num_classes: int = 1000, alpha: float = 0.5, **kwargs) -> OctResNet:
    """Oct-ResNet-50; `alpha` (default 0.5) is the low-frequency channel ratio of stages 1–3."""
    return OctResNet(alpha=alpha, num_classes=num_classes, **kwargs)


for _alpha in OCT_ALPHAS:
    register_variant(f"octresnet50_a{str(_alpha).replace('0.', '')}", OctResNet,
                     f"Oct-ResNet-50 with alpha = {_alpha}.", alpha=_alpha)
del _alpha
