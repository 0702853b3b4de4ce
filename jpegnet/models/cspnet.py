"""CSPNet (Wang et al., CVPRW 2020): Cross Stage Partial networks.

A cross-stage-partial stage splits its base feature map by channel into two parts: one crosses the stage
untouched, the other goes through the stage's blocks; a *partial transition* then fuses them. This doubles
the gradient paths while only part of the channels pays for the blocks, cutting computation and memory
traffic (CIO, see `jpegnet.profile.count_cio`).

Two families live here:

- `CspNet`, the ResNet/ResNeXt/Darknet variants (`cspresnet50`, `cspresnext50`, `cspdarknet53`). A stage is:
  optional 3×3 stride-2 `conv_down` → 1×1 `conv_exp` → split in halves → blocks on one half →
  1×1 `conv_transition_b` → concat with the other half → 1×1 `conv_transition`.
  **Reference: timm** (`timm.models.cspnet`, 21,616,168 / 20,569,896 / 27,642,184 parameters), not the
  official Darknet cfgs (21.57 M / 20.50 M / 27.61 M). timm is the reference because it is the source of
  usable PyTorch weights: `import_weights(model, sd, 'timm')` reproduces timm's outputs, which is only
  possible with timm's exact layout (a single `conv_exp` split in two where Darknet routes two 1×1 convs,
  and timm's first-stage widths, are what make the small parameter differences). For the same reason the
  activation is LeakyReLU with timm's slope 0.01 (Darknet's cfgs use 0.1) and the state-dict keys are timm's,
  except `head.fc.*`, which is `fc.*` here.

- `CspDenseNet`, the paper's partial dense block with the three partial transition layouts of its Fig. 3
  (`cspdensenet` builder): the stage input is split into x0′ (crosses) and x0″ (part_ratio of the channels,
  through the dense block), then
    fusion='both'  (Fig. 3b, CSPDenseNet): dense → transition → concat with x0′ → transition;
    fusion='first' (Fig. 3c): concat(x0′, dense output) → transition;
    fusion='last'  (Fig. 3d): dense → transition → concat with x0′.
  Dense layers are DenseNet-BC's (BN-ReLU-1×1 to 4k, BN-ReLU-3×3 to k, output concatenated). Transitions are
  pre-activation BN-ReLU-1×1 convs with DenseNet's compression 0.5 (of everything they fuse); every stage,
  the last included, ends in one, since the partial transition is what merges the two paths. There is no
  PyTorch reference for CSPDenseNet-201 (the paper's 20.17 M is the "+Elastic" variant), so its golden count
  (19,185,224) is our own; as a check of the plumbing, part_ratio=1 with fusion='first' is exactly
  DenseNet-201 plus one 1×1 transition after its last block (tests compare with torchvision's densenet201).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ..layers.classifier import ClassifierHead, check_drop_rate
from ..layers.conv import ConvNormAct
from ..layers.drop_path import DropPath
from .dct_adapter import Stride8Entry, register_dct_variant
from .registry import InputConfig, JpegNetModel, register_model
from .weights import WeightImportError, register_converter

LEAKY_SLOPE = 0.01  # timm's nn.LeakyReLU default; see the module docstring
CSP_INPUT = dict(input_size=(256, 256), crop_pct=0.887)  # timm's pretrained config for these three


def _leaky() -> nn.Module:
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


class ResBottleneck(nn.Module):
    """ResNe(X)t bottleneck inside a CSP stage: 1×1 → grouped 3×3 → 1×1 (linear), residual add, activation."""

    def __init__(self, in_channels: int, out_channels: int, bottle_ratio: float, groups: int,
                 drop_path_rate: float = 0.0):
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"ResBottleneck needs in == out channels for its residual, got {in_channels}, "
                             f"{out_channels}")
        mid = int(round(out_channels * bottle_ratio))
        self.conv1 = ConvNormAct(in_channels, mid, 1, act_layer=_leaky)
        self.conv2 = ConvNormAct(mid, mid, 3, groups=groups, act_layer=_leaky)
        self.conv3 = ConvNormAct(mid, out_channels, 1, act_layer=None)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act3 = _leaky()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act3(self.drop_path(self.conv3(self.conv2(self.conv1(x)))) + x)


class DarkBlock(nn.Module):
    """Darknet residual block: 1×1 → 3×3, residual add (no activation after the sum)."""

    def __init__(self, in_channels: int, out_channels: int, bottle_ratio: float, groups: int = 1,
                 drop_path_rate: float = 0.0):
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"DarkBlock needs in == out channels for its residual, got {in_channels}, "
                             f"{out_channels}")
        mid = int(round(out_channels * bottle_ratio))
        self.conv1 = ConvNormAct(in_channels, mid, 1, act_layer=_leaky)
        self.conv2 = ConvNormAct(mid, out_channels, 3, groups=groups, act_layer=_leaky)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.conv2(self.conv1(x))) + x


BLOCK_TYPES = {"bottle": ResBottleneck, "dark": DarkBlock}


class CrossStage(nn.Module):
    """One CSP stage (see the module docstring). `expand_ratio` sets the width of `conv_exp` relative to the
    stage output; its output is split in halves; `block_ratio` sets the blocks' width relative to the output."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, depth: int, block_type: str,
                 expand_ratio: float = 1.0, block_ratio: float = 1.0, bottle_ratio: float = 1.0,
                 groups: int = 1, down_growth: bool = False, cross_linear: bool = False,
                 drop_path_rates: list[float] | None = None):
        super().__init__()
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"block_type must be one of {sorted(BLOCK_TYPES)}, got {block_type!r}")
        if depth < 1:
            raise ValueError(f"a CSP stage needs at least one block, got depth={depth}")
        if stride != 1:
            # Darknet grows the width in the downsampling conv itself; ResNet keeps it and grows in conv_exp
            down_channels = out_channels if down_growth else in_channels
            self.conv_down = ConvNormAct(in_channels, down_channels, 3, stride=stride, groups=groups,
                                         act_layer=_leaky)
        else:
            down_channels = in_channels
            self.conv_down = nn.Identity()
        self.expand_channels = int(round(out_channels * expand_ratio))
        if self.expand_channels % 2:
            raise ValueError(f"conv_exp width {self.expand_channels} must be even to split in halves")
        # cross_linear: no activation on conv_exp (timm's CSPResNe(X)t)
        self.conv_exp = ConvNormAct(down_channels, self.expand_channels, 1,
                                    act_layer=None if cross_linear else _leaky)
        half = self.expand_channels // 2
        block_channels = int(round(out_channels * block_ratio))
        if block_channels != half:
            raise ValueError(f"blocks take {half} channels but block_ratio gives {block_channels}")
        rates = drop_path_rates or [0.0] * depth
        block_cls = BLOCK_TYPES[block_type]
        self.blocks = nn.Sequential(*[block_cls(half, block_channels, bottle_ratio, groups, rates[i])
                                      for i in range(depth)])
        self.conv_transition_b = ConvNormAct(block_channels, half, 1, act_layer=_leaky)
        self.conv_transition = ConvNormAct(self.expand_channels, out_channels, 1, act_layer=_leaky)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_exp(self.conv_down(x))
        cross, through = x.split(self.expand_channels // 2, dim=1)
        through = self.conv_transition_b(self.blocks(through))
        return self.conv_transition(torch.cat([cross, through], dim=1))


@dataclass(frozen=True)
class CspConfig:
    stem_channels: int
    stem_kernel: int
    stem_stride: int
    stem_pool: bool
    depths: tuple[int, ...]
    out_channels: tuple[int, ...]
    strides: tuple[int, ...]
    block_type: str
    expand_ratios: tuple[float, ...]
    block_ratios: tuple[float, ...]
    bottle_ratios: tuple[float, ...]
    groups: int = 1
    down_growth: bool = False
    cross_linear: bool = False


def _per_stage(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


CONFIGS = {
    "cspresnet50": CspConfig(64, 7, 2, True, (3, 3, 5, 2), (128, 256, 512, 1024), (1, 2, 2, 2), "bottle",
                             _per_stage(2.0, 4), _per_stage(1.0, 4), _per_stage(0.5, 4), cross_linear=True),
    "cspresnext50": CspConfig(64, 7, 2, True, (3, 3, 5, 2), (256, 512, 1024, 2048), (1, 2, 2, 2), "bottle",
                              _per_stage(1.0, 4), _per_stage(0.5, 4), _per_stage(1.0, 4), groups=32,
                              cross_linear=True),
    "cspdarknet53": CspConfig(32, 3, 1, False, (1, 2, 8, 8, 4), (64, 128, 256, 512, 1024), (2, 2, 2, 2, 2),
                              "dark", (2.0, 1, 1, 1, 1), (1.0, .5, .5, .5, .5), (0.5, 1, 1, 1, 1),
                              down_growth=True),
}


def _stride8_stage(feature_info: list[dict]) -> int:
    """Index into `stages` of the last stage at reduction 8."""
    stage_infos = [f for f in feature_info if f["module"].startswith("stages.")]
    return max(int(f["module"].split(".")[1]) for f in stage_infos if f["reduction"] == 8)


def _linear_drop_path(depths, rate: float) -> list[list[float]]:
    """Per-block drop-path rates rising linearly from 0 to `rate` over the whole network."""
    total = sum(depths)
    rates = [rate * i / max(total - 1, 1) for i in range(total)]
    out, start = [], 0
    for d in depths:
        out.append(rates[start:start + d])
        start += d
    return out


class CspNet(Stride8Entry, ClassifierHead, JpegNetModel):
    """CSPResNet / CSPResNeXt / CSPDarknet from a `CspConfig` (layout and reference: module docstring)."""

    def __init__(self, cfg: CspConfig, num_classes: int = 1000, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, in_chans: int = 3):
        super().__init__()
        check_drop_rate(drop_path_rate, "drop_path_rate")
        self.cfg = cfg
        self.input_config = InputConfig(**CSP_INPUT)
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", ConvNormAct(in_chans, cfg.stem_channels, cfg.stem_kernel,
                                                  stride=cfg.stem_stride, act_layer=_leaky))
        reduction = cfg.stem_stride
        self.feature_info = [{"module": "stem.conv1", "num_chs": cfg.stem_channels, "reduction": reduction}]
        if cfg.stem_pool:
            self.stem.add_module("pool", nn.MaxPool2d(3, stride=2, padding=1))
            reduction *= 2
        channels = cfg.stem_channels
        stages = []
        rates = _linear_drop_path(cfg.depths, drop_path_rate)
        for i, depth in enumerate(cfg.depths):
            stages.append(CrossStage(channels, cfg.out_channels[i], cfg.strides[i], depth, cfg.block_type,
                                     cfg.expand_ratios[i], cfg.block_ratios[i], cfg.bottle_ratios[i], cfg.groups,
                                     cfg.down_growth, cfg.cross_linear, rates[i]))
            channels = cfg.out_channels[i]
            reduction *= cfg.strides[i]
            self.feature_info.append({"module": f"stages.{i}", "num_chs": channels, "reduction": reduction})
        self.stages = nn.Sequential(*stages)
        self.init_head(channels, num_classes, drop_rate)  # `fc`: timm's `head.fc` (see _timm_to_jpegnet)
        self._stride8_stage = _stride8_stage(self.feature_info)
        self.stride8_prefix = ("stem",) + tuple(f"stages.{i}" for i in range(self._stride8_stage + 1))
        self.stride8_channels = cfg.out_channels[self._stride8_stage]
        _init_weights(self)

    def forward_from_stride8(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages[self._stride8_stage + 1:]:
            x = stage(x)
        return x


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


@register_model
def cspresnet50(num_classes: int = 1000, **kwargs) -> CspNet:
    """CSPResNet-50, timm layout: 21,616,168 parameters (official Darknet cfg: 21.57 M)."""
    return CspNet(CONFIGS["cspresnet50"], num_classes=num_classes, **kwargs)


@register_model
def cspresnext50(num_classes: int = 1000, **kwargs) -> CspNet:
    """CSPResNeXt-50 (32 groups), timm layout: 20,569,896 parameters (official Darknet cfg: 20.50 M)."""
    return CspNet(CONFIGS["cspresnext50"], num_classes=num_classes, **kwargs)


@register_model
def cspdarknet53(num_classes: int = 1000, **kwargs) -> CspNet:
    """CSPDarknet-53, timm layout: 27,642,184 parameters (official Darknet cfg: 27.61 M)."""
    return CspNet(CONFIGS["cspdarknet53"], num_classes=num_classes, **kwargs)


register_dct_variant("cspresnet50")


@register_converter(CspNet, "timm")
def _timm_to_jpegnet(model: CspNet, sd: dict) -> dict:
    """timm's CspNet keys are ours but for the classifier (`head.fc.*` → `fc.*`)."""
    out = {}
    for key, value in sd.items():
        if m := re.fullmatch(r"head\.fc\.(weight|bias)", key):
            out[f"fc.{m[1]}"] = value
        elif key.startswith(("stem.", "stages.")):
            out[key] = value
        else:
            raise WeightImportError(f"unexpected timm CSPNet key {key!r}")
    return out


# ------------------------------------------------------------------------------------------------ CSPDenseNet

class PreActConv(nn.Sequential):
    """DenseNet's BN → ReLU → conv (pre-activation) unit."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)


class DenseLayer(nn.Module):
    """DenseNet-BC layer: BN-ReLU-1×1 (bn_size·k) → BN-ReLU-3×3 (k); returns only the k new channels."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.bottleneck = PreActConv(in_channels, bn_size * growth_rate, 1)
        self.conv = PreActConv(bn_size * growth_rate, growth_rate, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bottleneck(x))


class DenseBlock(nn.Module):
    """m dense layers, each fed the concatenation of the block input and all earlier layers' outputs."""

    def __init__(self, in_channels: int, num_layers: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
                                    for i in range(num_layers))
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


FUSIONS = ("both", "first", "last")


class PartialDenseStage(nn.Module):
    """Optional 2×2 average-pool downsampling, then a partial dense block with a partial transition layer.

    The first `in_channels - part` channels (x0′) cross the stage; the last `part = round(part_ratio ·
    in_channels)` (x0″) go through the dense block. `fusion` picks the transition layout (module docstring).
    """

    def __init__(self, in_channels: int, num_layers: int, growth_rate: int, bn_size: int, part_ratio: float,
                 fusion: str, compression: float, downsample: bool):
        super().__init__()
        self.pool = nn.AvgPool2d(2) if downsample else nn.Identity()
        self.part_channels = int(round(part_ratio * in_channels))
        if not 1 <= self.part_channels <= in_channels:
            raise ValueError(f"part_ratio {part_ratio} leaves {self.part_channels} of {in_channels} channels "
                             "for the dense block; it needs at least one")
        self.cross_channels = in_channels - self.part_channels
        self.fusion = fusion
        self.dense = DenseBlock(self.part_channels, num_layers, growth_rate, bn_size)
        dense_out = self.dense.out_channels
        if fusion == "first":
            self.transition_b = nn.Identity()
            self.transition = PreActConv(self.cross_channels + dense_out,
                                         int(compression * (self.cross_channels + dense_out)), 1)
            self.out_channels = self.transition.conv.out_channels
        else:
            self.transition_b = PreActConv(dense_out, int(compression * dense_out), 1)
            fused = self.cross_channels + self.transition_b.conv.out_channels
            if fusion == "both":
                self.transition = PreActConv(fused, int(compression * (self.cross_channels + dense_out)), 1)
                self.out_channels = self.transition.conv.out_channels
            else:  # 'last': the concatenation is the output; gradients of the two paths never mix here
                self.transition = nn.Identity()
                self.out_channels = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        cross, through = x.split([self.cross_channels, self.part_channels], dim=1)
        through = self.transition_b(self.dense(through))
        return self.transition(torch.cat([cross, through], dim=1))


class CspDenseNet(ClassifierHead, JpegNetModel):
    """CSPDenseNet: DenseNet-BC's stem and block sizes with partial dense stages (module docstring)."""

    def __init__(self, block_layers: tuple[int, ...] = (6, 12, 48, 32), growth_rate: int = 32,
                 stem_channels: int = 64, bn_size: int = 4, compression: float = 0.5, part_ratio: float = 0.5,
                 fusion: str = "both", num_classes: int = 1000, drop_rate: float = 0.0, in_chans: int = 3):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if not 0.0 < part_ratio <= 1.0:
            raise ValueError(f"part_ratio must be in (0, 1], got {part_ratio}")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        if not block_layers or any(int(n) != n or n < 1 for n in block_layers):
            raise ValueError(f"block_layers must be positive ints, got {block_layers!r}")
        self.fusion, self.part_ratio = fusion, part_ratio
        self.input_config = InputConfig(input_size=(224, 224), crop_pct=0.875)
        # DenseNet stem: 7×7 s2 conv-BN-ReLU, 3×3 s2 max-pool
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", ConvNormAct(in_chans, stem_channels, 7, stride=2, act_layer=nn.ReLU))
        self.stem.add_module("pool", nn.MaxPool2d(3, stride=2, padding=1))
        self.feature_info = [{"module": "stem.conv1", "num_chs": stem_channels, "reduction": 2}]
        channels, reduction, stages = stem_channels, 4, []
        for i, n in enumerate(block_layers):
            stage = PartialDenseStage(channels, n, growth_rate, bn_size, part_ratio, fusion,
                                      compression, downsample=i > 0)
            reduction *= 2 if i > 0 else 1
            channels = stage.out_channels
            stages.append(stage)
            self.feature_info.append({"module": f"stages.{i}", "num_chs": channels, "reduction": reduction})
        self.stages = nn.Sequential(*stages)
        # transitions end in a conv (pre-activation), so one BN-ReLU before pooling, like DenseNet's norm5
        self.final_norm = nn.BatchNorm2d(channels)
        self.final_act = nn.ReLU(inplace=True)
        self.init_head(channels, num_classes, drop_rate)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_act(self.final_norm(self.stages(self.stem(x))))


@register_model
def cspdensenet(num_classes: int = 1000, block_layers: tuple[int, ...] = (6, 12, 48, 32), growth_rate: int = 32,
                part_ratio: float = 0.5, fusion: str = "both", **kwargs) -> CspDenseNet:
    """A CSPDenseNet with any dense-block sizes, partial ratio and fusion ('both', 'first', 'last': Fig. 3)."""
    return CspDenseNet(block_layers=tuple(block_layers), growth_rate=growth_rate, part_ratio=part_ratio,
                       fusion=fusion, num_classes=num_classes, **kwargs)


@register_model
def cspdensenet201(num_classes: int = 1000, **kwargs) -> CspDenseNet:
    """CSPDenseNet-201: DenseNet-201's blocks (6, 12, 48, 32), growth 32, half the channels in each dense
    block, fusion 'both' (Fig. 3b)."""
    kwargs.setdefault("fusion", "both")
    return cspdensenet(num_classes, block_layers=(6, 12, 48, 32), growth_rate=32, **kwargs)


@register_model
def cspdensenet_small(num_classes: int = 1000, **kwargs) -> CspDenseNet:
    """A small CSPDenseNet for quick experiments: blocks (3, 6, 12, 8), growth 16, 32-channel stem."""
    kwargs.setdefault("fusion", "both")
    return cspdensenet(num_classes, block_layers=(3, 6, 12, 8), growth_rate=16, stem_channels=32, **kwargs)
