"""VGNet: "Efficient CNN Architecture Design Guided by Visualization" (Zhang et al., ICME 2022).

The design came from drawing the kernels and feature maps of trained networks (see `jpegnet.visualize`):
adjacent layers' feature maps are very similar, so half of the channels can be passed on unchanged; many
learned depthwise kernels are blurs or edge detectors, so they can be fixed.

Layout, as in the authors' reference implementation (ffiirree/cv-models, `cvm/models/vgnet.py`):

    stem 3×3 conv, stride 2 → 4 stages, each: DownsamplingBlock (stride 2) + (n − 1) × HalfIdentityBlock,
    concatenated → 3×3 depthwise + 1×1 conv → global average pool → dropout 0.2 → linear.

A stage carries a pair of half-width tensors [x0, x1]. A HalfIdentityBlock filters x1 with a 3×3 depthwise
conv, concatenates it with x0, mixes all C channels with a 1×1 conv down to C/2 and returns [x1, new]: every
block passes half of its input on untouched (the "half identity"). A DownsamplingBlock reduces resolution
with a depthwise filter (a fixed Gaussian blur in VGNetG/E/F, a learned 3×3 in VGNetC), keeps some of the
blurred channels as they are and makes the rest with a 1×1 conv.

Variants: VGNetC learns its downsampling kernels; VGNetG downsamples with fixed Gaussians (σ = 1); VGNetE also
fixes the depthwise kernels of every HalfIdentityBlock and of the head to four edge detectors; VGNetF to the
four edges, two diagonal gradients and two Gaussians. `_se` variants add squeeze-and-excitation (ratio ¼)
after every 1×1 conv of the blocks. Units are conv → SiLU → BN (the reference's activation and normalization
order). Fixed kernels are buffers (`jpegnet.layers.fixed_kernels`).

The reference defines (and publishes weights for) vgnetg_{1_0,1_5,2_0,2_5}mp[_se], vgnetg_5_0mp[_se],
vgnetc_1_0mp, vgnetc_1_5mp, vgnete_1_5mp and vgnetf_1_5mp; the other family × size combinations are
registered too (the same sizes with the other kernel choices), see `REFERENCE_MODELS`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..layers.channels import make_divisible
from ..layers.classifier import ClassifierHead
from ..layers.fixed_kernels import edge_detection, edge_gaussian, gaussian_blur
from ..layers.squeeze_excite import SqueezeExcite
from .dct_adapter import Stride8Entry, register_dct_variant
from .registry import InputConfig, JpegNetModel, register_variant

__all__ = ["DownsamplingBlock", "HalfIdentityBlock", "VGNet", "VGNET_SIZES", "REFERENCE_MODELS"]

# size name → (channels [stem, stage1..stage4], layers per stage: 1 DownsamplingBlock + n-1 HalfIdentityBlocks)
VGNET_SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "1_0mp": ((28, 56, 112, 224, 368), (4, 7, 13, 2)),
    "1_5mp": ((32, 64, 128, 256, 512), (3, 7, 14, 2)),
    "2_0mp": ((32, 72, 168, 376, 512), (3, 6, 13, 2)),
    "2_5mp": ((32, 80, 192, 400, 544), (3, 6, 16, 2)),
    "5_0mp": ((32, 88, 216, 456, 856), (4, 7, 15, 5)),
}
# family letter → (downsampling method, depthwise kernels of the blocks and head)
VGNET_FAMILIES: dict[str, tuple[str, str]] = {
    "c": ("dwconv", "learned"),
    "g": ("blur", "learned"),
    "e": ("blur", "edge"),
    "f": ("blur", "edge_gaussian"),
}
REFERENCE_MODELS = (
    "vgnetc_1_0mp", "vgnetc_1_5mp", "vgnete_1_5mp", "vgnetf_1_5mp",
    *(f"vgnetg_{size}{se}" for size in VGNET_SIZES for se in ("", "_se")),
)
SE_RATIO = 0.25
_DOWNSAMPLING = ("blur", "dwconv")
_KERNELS = ("learned", "edge", "edge_gaussian")


def _squeeze_excite(channels: int, ratio: float, act_layer) -> SqueezeExcite:
    """The reference's SE: squeeze width make_divisible(int(C·ratio), 8), from the gated width itself."""
    return SqueezeExcite(channels, make_divisible(int(channels * ratio)), act_layer=act_layer)


class ConvActNorm(nn.Sequential):
    """conv (no bias) → activation → BatchNorm: the reference's unit (normalization *after* activation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 act_layer: Callable[[], nn.Module] = nn.SiLU):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.act = act_layer()
        self.bn = nn.BatchNorm2d(out_channels)


def _pointwise(in_channels: int, out_channels: int, se_ratio: float, act_layer) -> nn.Module:
    block = ConvActNorm(in_channels, out_channels, 1, act_layer=act_layer)
    if se_ratio > 0:
        block.add_module("se", _squeeze_excite(out_channels, se_ratio, act_layer))
    return block


def _depthwise(channels: int, kernels: str, stride: int = 1) -> nn.Module:
    """The 3×3 depthwise filter of a block: learned (bare conv, as the reference) or fixed (+ BatchNorm)."""
    if kernels == "learned":
        return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)
    fixed = edge_detection(channels, stride) if kernels == "edge" else edge_gaussian(channels, stride)
    # The fixed kernels have arbitrary gains; the BN gives each channel a learned scale and shift.
    return nn.Sequential(fixed, nn.BatchNorm2d(channels))


class HalfIdentityBlock(nn.Module):
    """[x0, x1] → [x1, pw(concat(x0, dw3×3(x1)))]: half of the channels pass through unchanged."""

    def __init__(self, channels: int, se_ratio: float = 0.0, kernels: str = "learned",
                 act_layer: Callable[[], nn.Module] = nn.SiLU):
        super().__init__()
        if channels % 2:
            raise ValueError(f"HalfIdentityBlock needs an even channel count, got {channels}")
        half = channels // 2
        self.dw = _depthwise(half, kernels)
        self.pw = _pointwise(channels, half, se_ratio, act_layer)

    def forward(self, pair: list[torch.Tensor]) -> list[torch.Tensor]:
        x0, x1 = pair
        return [x1, self.pw(torch.cat([x0, self.dw(x1)], dim=1))]


class DownsamplingBlock(nn.Module):
    """Downsample all channels, keep up to half of them as they are, make the rest with a 1×1 conv.

    method 'blur': fixed Gaussian (σ = 1) at `stride`; 'dwconv': learned 3×3 depthwise conv. The kept part is
    the last min(out/2, in) filtered channels; when out > 2·in or in > out the concatenation is re-split into
    two equal halves, so the stage always continues with a pair of out/2 channels.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, method: str = "blur",
                 se_ratio: float = 0.0, act_layer: Callable[[], nn.Module] = nn.SiLU):
        super().__init__()
        if method not in _DOWNSAMPLING:
            raise ValueError(f"downsampling method must be one of {_DOWNSAMPLING}, got {method!r}")
        if out_channels % 2:
            raise ValueError(f"DownsamplingBlock needs an even output channel count, got {out_channels}")
        if method == "blur" and stride > 1:
            self.downsample = gaussian_blur(in_channels, stride=stride, sigma=1.0)
        else:
            self.downsample = nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False)
        self.kept_channels = 0 if in_channels > out_channels else min(out_channels // 2, in_channels)
        self.pw = _pointwise(in_channels, out_channels - self.kept_channels, se_ratio, act_layer)
        self.rehalve = out_channels > 2 * in_channels or in_channels > out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.downsample(x)
        kept = x[:, x.shape[1] - self.kept_channels:]
        made = self.pw(x)
        if self.rehalve:
            return list(torch.cat([kept, made], dim=1).chunk(2, dim=1))
        return [kept, made]


class VGNetStage(nn.Module):
    """A DownsamplingBlock, then HalfIdentityBlocks on the pair; returns the pair concatenated."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, stride: int, method: str,
                 se_ratio: float, kernels: str, act_layer):
        super().__init__()
        if layers < 1:
            raise ValueError(f"a VGNet stage needs at least 1 layer, got {layers}")
        self.blocks = nn.ModuleList(
            [DownsamplingBlock(in_channels, out_channels, stride, method, se_ratio, act_layer)]
            + [HalfIdentityBlock(out_channels, se_ratio, kernels, act_layer) for _ in range(layers - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pair = self.blocks[0](x)
        for block in self.blocks[1:]:
            pair = block(pair)
        return torch.cat(pair, dim=1)


class VGNet(Stride8Entry, ClassifierHead, JpegNetModel):
    """VGNet on RGB input. Implements the stride-8 entry protocol (entry after stage 2) for the DCT adapter."""

    classifier_attr = "classifier"
    stride8_prefix = ("stem", "stage1", "stage2")

    def __init__(self, channels: Sequence[int], layers: Sequence[int], downsampling: str = "blur",
                 kernels: str = "learned", se_ratio: float = 0.0, num_classes: int = 1000,
                 drop_rate: float = 0.2, act_layer: Callable[[], nn.Module] = nn.SiLU, in_chans: int = 3):
        super().__init__()
        if len(channels) != 5 or len(layers) != 4:
            raise ValueError(f"VGNet needs 5 channel counts and 4 layer counts, got {channels}, {layers}")
        if kernels not in _KERNELS:
            raise ValueError(f"kernels must be one of {_KERNELS}, got {kernels!r}")
        if downsampling not in _DOWNSAMPLING:
            raise ValueError(f"downsampling must be one of {_DOWNSAMPLING}, got {downsampling!r}")
        if not 0.0 <= se_ratio < 1.0:
            raise ValueError(f"se_ratio must be in [0, 1), got {se_ratio!r}")
        self.channels, self.layers = tuple(channels), tuple(layers)
        self.input_config = InputConfig(crop_pct=224 / 232)  # the reference evaluates resize 232, crop 224
        self.stem = ConvActNorm(in_chans, channels[0], 3, stride=2, act_layer=act_layer)
        for i in range(4):
            self.add_module(f"stage{i + 1}", VGNetStage(channels[i], channels[i + 1], layers[i], 2, downsampling,
                                                        se_ratio, kernels, act_layer))
        self.final_conv = nn.Sequential()
        self.final_conv.add_module("dw", _depthwise(channels[-1], kernels))
        self.final_conv.add_module("pw", ConvActNorm(channels[-1], channels[-1], 1, act_layer=act_layer))
        self.init_head(channels[-1], num_classes, drop_rate)
        self.feature_info = [
            dict(module="stem", num_chs=channels[0], reduction=2),
            dict(module="stage1", num_chs=channels[1], reduction=4),
            dict(module="stage2", num_chs=channels[2], reduction=8),
            dict(module="stage3", num_chs=channels[3], reduction=16),
            dict(module="final_conv", num_chs=channels[4], reduction=32),
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # stride-8 entry protocol -------------------------------------------------------------------------
    @property
    def stride8_channels(self) -> int:
        return self.channels[2]

    def forward_from_stride8(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stage4(self.stage3(x)))


def _register(family: str, size: str, se: bool) -> None:
    downsampling, kernels = VGNET_FAMILIES[family]
    channels, layers = VGNET_SIZES[size]
    name = f"vgnet{family}_{size}{'_se' if se else ''}"
    doc = (f"VGNet{family.upper()}-{size.replace('_', '.').upper()}{' + SE' if se else ''}: "
           f"channels {channels}, layers {layers}, {downsampling} downsampling, {kernels} kernels"
           f"{'' if name in REFERENCE_MODELS else ' (not in the reference model list)'}.")
    register_variant(name, VGNet, doc, channels=channels, layers=layers, downsampling=downsampling,
                     kernels=kernels, se_ratio=SE_RATIO if se else 0.0)


for _family in VGNET_FAMILIES:
    for _size in VGNET_SIZES:
        for _se in (False, True):
            _register(_family, _size, _se)
for _size in VGNET_SIZES:
    for _se in ("", "_se"):
        register_dct_variant(f"vgnetg_{_size}{_se}")
del _family, _size, _se
