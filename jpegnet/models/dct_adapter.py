"""The generic DCT input adapter: put any backbone on JPEG DCT input by entering it at stride 8.

A JPEG's Y coefficients are already a stride-8 feature map (64 channels: one per DCT frequency) and its
4:2:0 chroma a stride-16 one (2 × 64 channels). A network built for RGB reaches stride 8 after its stem
and first stages; the adapter drops those layers and feeds the backbone, at its stride-8 entry point, with
a small learned stem over the coefficients:

    y (64, H/8, W/8) ─ BN ──────────────────┐
                                            ├ concat (192) ─ 1×1 conv ─ BN ─ ReLU ─▶ backbone from stride 8
    cbcr (128, H/16, W/16) ─ BN ─ 2× nearest ┘

That is the `dct_stem="linear"` stem. It is not the paper's UpSampling variant (`dct_upsampling`), which feeds
the 192 concatenated channels straight into ResNet-50's CB3 stage run at stride 1: the adapter adds the 1×1
fusion conv to the backbone's stride-8 width instead, and drops the backbone's own stride-8 stage (CB3 in
ResNet-50) with everything before it.

For a backbone whose stride-8 width is small (EfficientNet-B0: 40 channels, 24 at width 0.5) the single linear
1×1 squeezes 192 coefficient channels through that width before any non-linearity; `dct_stem="block"` instead runs an inverted-bottleneck
block at stride 8 (1×1 to 192, BN-ReLU, depthwise 3×3, BN-ReLU, 1×1 to the entry width, BN-ReLU), which the
accuracy study (benchmarks/accuracy.py) compares with the linear stem.

A backbone supports the adapter by implementing the *stride-8 entry protocol*, once, through the `Stride8Entry`
mixin below: it lists in `stride8_prefix` the modules that run, in order, from its input to its stride-8
activation, sets `stride8_channels` (the channels of that activation) and implements `forward_from_stride8(x)`
(the rest of `forward_features`). The mixin provides `forward_features`, `forward_to_stride8` and
`drop_before_stride8()`, which replaces the prefix modules with `nn.Identity`, so the DCT model neither holds
nor counts their parameters. The adapter uses nothing else of the backbone but its classifier head.
Features: the stem's output is the stride-8 map; the backbone's entries with reduction > 8 keep their names
(under `backbone.`).
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..input_config import DCT_CBCR_CHANNELS, DCT_Y_CHANNELS
from .registry import JpegNetModel, model_builder, register_variant


class DctStem(nn.Module):
    """Coefficients → a stride-8 feature map of `out_channels` (BN on inputs, chroma upsampled, 1×1 fusion)."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.bn_y = nn.BatchNorm2d(DCT_Y_CHANNELS)
        self.bn_cbcr = nn.BatchNorm2d(DCT_CBCR_CHANNELS)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(DCT_Y_CHANNELS + DCT_CBCR_CHANNELS, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.bn_y(y), self.upsample(self.bn_cbcr(cbcr))], dim=1)
        return self.act(self.bn(self.conv(x)))


class DctBlockStem(DctStem):
    """The linear stem widened into an inverted-bottleneck block at stride 8 (see the module docstring)."""

    def __init__(self, out_channels: int, hidden_channels: int = DCT_Y_CHANNELS + DCT_CBCR_CHANNELS):
        super().__init__(hidden_channels)
        self.conv_dw = nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1, groups=hidden_channels, bias=False)
        self.bn_dw = nn.BatchNorm2d(hidden_channels)
        self.conv_project = nn.Conv2d(hidden_channels, out_channels, 1, bias=False)
        self.bn_project = nn.BatchNorm2d(out_channels)

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        x = super().forward(y, cbcr)
        x = self.act(self.bn_dw(self.conv_dw(x)))
        return self.act(self.bn_project(self.conv_project(x)))


DCT_STEMS = {"linear": DctStem, "block": DctBlockStem}


class Stride8Entry:
    """The stride-8 entry protocol (module docstring), for a JpegNetModel whose `forward_features` is
    `forward_from_stride8(forward_to_stride8(x))`.

    Families set `stride8_prefix` (module names, dotted paths allowed, in the order they run up to the stride-8
    activation; a class attribute, or an instance one when it depends on the configuration), `stride8_channels`,
    and implement `forward_from_stride8(x)`.
    """

    stride8_prefix: tuple[str, ...] = ()
    _entered_at_stride8 = False

    def forward_to_stride8(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stride8_prefix:
            x = self.get_submodule(name)(x)
        return x

    def forward_from_stride8(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self._entered_at_stride8:
            raise RuntimeError(f"this {type(self).__name__} was cut at stride 8 (drop_before_stride8); "
                               "call forward_from_stride8 or use it through the DCT adapter")
        return self.forward_from_stride8(self.forward_to_stride8(x))

    def drop_before_stride8(self) -> None:
        """Replace every module of `stride8_prefix` with nn.Identity; keep the feature_info entries that still
        run (reduction > 8)."""
        for name in self.stride8_prefix:
            parent, _, child = name.rpartition(".")
            setattr(self.get_submodule(parent), child, nn.Identity())
        self.feature_info = [info for info in self.feature_info if info["reduction"] > 8]
        self._entered_at_stride8 = True


def supports_dct_entry(model: nn.Module) -> bool:
    return isinstance(model, Stride8Entry)


class DctAdapter(JpegNetModel):
    """A backbone entered at stride 8 from DCT coefficients: `model(y, cbcr)`."""

    def __init__(self, backbone: JpegNetModel, dct_stem: str = "linear"):
        super().__init__()
        if not supports_dct_entry(backbone):
            raise TypeError(f"{type(backbone).__name__} does not implement the stride-8 entry protocol")
        if dct_stem not in DCT_STEMS:
            raise ValueError(f"dct_stem must be one of {sorted(DCT_STEMS)}, got {dct_stem!r}")
        backbone.drop_before_stride8()
        self.stem = DCT_STEMS[dct_stem](backbone.stride8_channels)
        self.input_batchnorms = (("y", "stem.bn_y"), ("cbcr", "stem.bn_cbcr"))
        self.backbone = backbone
        self.num_classes = backbone.num_classes
        self.num_features = backbone.num_features
        # DCT input is whole 16x16 MCUs: a backbone evaluated at another size (EfficientNet-Lite2 at 260) gets
        # the nearest multiple of 16 (256)
        size = tuple(max(16, 16 * round(side / 16)) for side in backbone.input_config.input_size)
        self.input_config = replace(backbone.input_config, representation="dct", input_size=size)
        # The stem's output is the stride-8 feature map (the backbone's own stride-8 modules were dropped);
        # deeper features keep their backbone names.
        self.feature_info = [dict(module="stem", num_chs=backbone.stride8_channels, reduction=8)] + [
            dict(info, module=f"backbone.{info['module']}") for info in backbone.feature_info
            if info["reduction"] > 8]

    def forward_features(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_from_stride8(self.stem(y, cbcr))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.backbone.forward_head(x, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        self.backbone.reset_classifier(num_classes)
        self.num_classes = num_classes


def _adapted(rgb_name: str):
    def build(num_classes: int = 1000, dct_stem: str = "linear", **kwargs) -> DctAdapter:
        return DctAdapter(model_builder(rgb_name)(num_classes=num_classes, **kwargs), dct_stem=dct_stem)
    return build


def register_dct_variant(rgb_name: str) -> None:
    """Register `dct_<rgb_name>`: the registered RGB model `rgb_name` behind the DCT adapter."""
    register_variant(f"dct_{rgb_name}", _adapted(rgb_name),
                     f"{rgb_name} on DCT input through the generic stride-8 adapter (see jpegnet.models.dct_adapter).")


__all__ = ["DCT_STEMS", "DctAdapter", "DctBlockStem", "DctStem", "Stride8Entry", "register_dct_variant",
           "supports_dct_entry"]
