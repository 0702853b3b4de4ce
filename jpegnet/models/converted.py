"""Converted models: a pretrained pixel CNN run on JPEG coefficients (`jpegnet convert`), with one of two entries.

entry="learned" (the default): the teacher's front is replaced by a learned DCT entry, distilled from it.

    y (64, H/8, W/8), cbcr (128, H/16, W/16) ─ DctEntry ─▶ features at the cut ─ the teacher's remainder ─▶ logits

entry="pixels": an exact entry, nothing learned. Pixels are a linear function of the coefficients, so
`PixelEntry` rebuilds the teacher's normalized input from them (jpegnet.dct.rebuild: block IDCT, 4:2:0 chroma
box upsampling, JFIF colours, clip to [0, 1], then the teacher's mean / std) and the WHOLE teacher follows,
unchanged and uncut: with the teacher's weights it is a working pretrained DCT model at once. It costs what
the teacher costs plus the IDCT and colour conversion as tensor ops; only the learned entry would skip the
teacher's front.

    y, cbcr ─ PixelEntry ─▶ the teacher's normalized pixels (3, H, W) ─ the whole teacher ─▶ logits

The registered builder `converted(teacher=..., entry=..., cut=..., entry_width=..., entry_depth=...,
entry_kernel=...)` rebuilds the architecture from those keywords alone (a checkpoint's model name and model_kwargs): the teacher
network is built randomly initialised (`jpegnet.models.cut.build_teacher_architecture`: a jpegnet model, or
timm's for `timm:NAME`, never downloading), cut, and its front dropped (entry="pixels": kept whole, no cut); the checkpoint's state dict holds the
entry's and the remainder's weights (entry="pixels": the entry's normalization buffers and the whole teacher's
weights, under `remainder.`). No teacher weights file is needed to use a converted model.

The entry (`DctEntry`) sees the coefficients at stride 8: BatchNorm on Y and on the 4:2:0 chroma (nearest
upsampled ×2), a 1×1 fusion to `entry_width` × 192 channels (a multiple of the coefficient channels, rounded to
8; keyword values stay small numbers, as checkpoints require), then `entry_depth` residual depthwise-separable blocks
(k×k depthwise, 1×1 pointwise), each widening the receptive field by 2·(k−1)·4 pixels (EfficientNet-Lite0's front
sees 67 pixels at stride 8; the single-block stem of the generic adapter sees about 40), and a linear 1×1
projection to the cut's channels (a teacher's stride-8 output is often a linear bottleneck, so no activation).
A cut at stride 4 (e.g. `cut="blocks.1"`) ends in a depth-to-space: 4× the channels at stride 8, pixel-shuffled
to stride 4. A cut at stride 16 (e.g. `cut="blocks.4"` of an EfficientNet) starts with a space-to-depth instead:
each 2×2 group of luma blocks becomes 4 × 64 channels beside the chroma block under it, so the whole entry runs
at stride 16 on 384 coefficient channels, a quarter of the positions (README, "Cheaper entries": the
remainder after such a cut is cheap, but the entry has far more of the teacher to imitate). `entry_width`
counts in coefficient channels at the entry's own stride: 192 at stride 4 and 8, 384 at stride 16. Each block's
last BatchNorm starts at zero, so a fresh entry is its linear fusion + projection and the blocks grow from there.
`entry_stride=16` runs the entry at stride 16 whatever the cut (the space-to-depth above) and ends, for a
cut at stride 8 or 4, in a depth-to-space back to the cut's stride: a quarter of the positions, so twice the
width for the same multiply-adds in its 1×1s, each position seeing a whole MCU at once (the default, None, is
16 for a stride-16 cut, else 8). `entry_expand` > 1 makes the blocks inverted residuals
(`InvertedResidualEntryBlock`: 1×1 expand, depthwise, 1×1 project, on a linear stream of `entry_width`
channels): the teacher's own block design, wide inside and cheap outside.
"""
from __future__ import annotations

import torch
from torch import nn

from ..dct.rebuild import REBUILD_SHAPES, RebuildWeights, rebuild, rebuild_weights
from ..input_config import DCT_CBCR_CHANNELS, DCT_Y_CHANNELS, INTERPOLATIONS, InputConfig, normalization
from .cut import TeacherError, _feature_info, build_teacher_architecture, find_cut, remove_front, teacher_preprocessing
from .registry import JpegNetModel, register_model

ENTRY_REDUCTIONS = (4, 8, 16)
ENTRIES = ("learned", "pixels")
#: The learned entry's keywords and their defaults: an exact (pixels) entry takes none of them.
LEARNED_ENTRY_DEFAULTS = {"cut": None, "entry_width": 1.0, "entry_depth": 4, "entry_kernel": 3, "entry_expand": 1,
                          "entry_stride": None}
#: the strides an entry computes at: 8 (the blocks' own grid) or 16 (each MCU's 2x2 luma blocks folded into channels)
ENTRY_STRIDES = (8, 16)


class EntryBlock(nn.Module):
    """x + BN(1×1(ReLU(BN(depthwise k×k(x))))): a residual depthwise-separable block at constant width."""

    def __init__(self, width: int, kernel: int):
        super().__init__()
        self.conv_dw = nn.Conv2d(width, width, kernel, padding=kernel // 2, groups=width, bias=False)
        self.bn_dw = nn.BatchNorm2d(width)
        self.act = nn.ReLU(inplace=True)
        self.conv_pw = nn.Conv2d(width, width, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(width)
        nn.init.zeros_(self.bn_pw.weight)  # the block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn_pw(self.conv_pw(self.act(self.bn_dw(self.conv_dw(x))))))


class InvertedResidualEntryBlock(nn.Module):
    """x + BN(1×1(ReLU(BN(depthwise k×k(ReLU(BN(1×1 expand(x)))))))): MobileNetV2's inverted residual, the
    block the teacher's own front is made of. Its depthwise and ReLUs run `expand` times wider than the
    residual stream, which stays linear (no activation on a narrow stream, so nothing is lost to ReLU there).
    Per position its 1×1s cost 2 · expand · w² multiply-adds on a stream of w channels, a plain block's w'²
    at width w': a stream of 48 expanded 4× computes at 192 channels for half the 1×1 cost of a plain
    192-channel block."""

    def __init__(self, width: int, kernel: int, expand: int):
        super().__init__()
        hidden = width * expand
        self.conv_expand = nn.Conv2d(width, hidden, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(hidden)
        self.conv_dw = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False)
        self.bn_dw = nn.BatchNorm2d(hidden)
        self.conv_pw = nn.Conv2d(hidden, width, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(width)
        nn.init.zeros_(self.bn_pw.weight)  # the block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn_expand(self.conv_expand(x)))
        h = torch.relu(self.bn_dw(self.conv_dw(h)))
        return x + self.bn_pw(self.conv_pw(h))


class DctEntry(nn.Module):
    """Coefficients → the teacher's feature map at the cut (see the module docstring)."""

    def __init__(self, out_channels: int, out_reduction: int = 8, width: float = 1.0, depth: int = 4,
                 kernel: int = 3, expand: int = 1, stride: int | None = None):
        super().__init__()
        if out_reduction not in ENTRY_REDUCTIONS:
            raise TeacherError(f"a DCT entry produces features at stride {ENTRY_REDUCTIONS}, not "
                               f"{out_reduction}; cut the teacher at one of those")
        if stride is None:
            stride = 16 if out_reduction == 16 else 8
        if isinstance(stride, bool) or stride not in ENTRY_STRIDES:
            raise TeacherError(f"entry_stride must be one of {ENTRY_STRIDES} (or None: the cut's), got {stride!r}")
        if stride < out_reduction:
            raise TeacherError(f"entry_stride {stride} is finer than the cut's stride {out_reduction}: an entry "
                               f"computes at the cut's stride or coarser (then shuffles depth back to space)")
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.05 <= width <= 16:
            raise TeacherError(f"entry_width must be a number in [0.05, 16] (times the coefficient channels), "
                               f"got {width!r}")
        for name, value, low in (("entry_depth", depth, 0), ("entry_kernel", kernel, 1), ("entry_expand", expand, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TeacherError(f"{name} must be an integer >= {low}, got {value!r}")
        if kernel % 2 == 0:
            raise TeacherError(f"entry_kernel must be odd, got {kernel}")
        # stride 16: the luma's 2×2 block groups folded into channels (space-to-depth), beside their chroma block
        self.luma_fold = 2 if stride == 16 else 1
        coefficients = DCT_Y_CHANNELS * self.luma_fold ** 2 + DCT_CBCR_CHANNELS
        width = max(8, int(round(width * coefficients / 8)) * 8)
        self.bn_y = nn.BatchNorm2d(DCT_Y_CHANNELS)
        self.bn_cbcr = nn.BatchNorm2d(DCT_CBCR_CHANNELS)
        self.fuse = nn.Conv2d(coefficients, width, 1, bias=False)
        self.bn_fuse = nn.BatchNorm2d(width)
        # expand 1: plain residual depthwise-separable blocks on a ReLU stream (checkpoints before entry_expand);
        # expand > 1: inverted residuals on a linear stream
        self.linear_stream = expand > 1
        self.blocks = nn.Sequential(*[InvertedResidualEntryBlock(width, kernel, expand) if self.linear_stream
                                      else EntryBlock(width, kernel) for _ in range(depth)])
        # depth-to-space by the entry's stride over the cut's (a stride-4 cut's entry computes at stride 8)
        self.shuffle = stride // out_reduction
        outputs = out_channels * self.shuffle ** 2
        self.project = nn.Conv2d(width, outputs, 1, bias=False)
        self.bn_out = nn.BatchNorm2d(out_channels)

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        if self.luma_fold == 2:
            x = torch.cat([nn.functional.pixel_unshuffle(self.bn_y(y), 2), self.bn_cbcr(cbcr)], dim=1)
        else:
            x = torch.cat([self.bn_y(y), nn.functional.interpolate(self.bn_cbcr(cbcr), scale_factor=2.0,
                                                                   mode="nearest")], dim=1)
        x = self.bn_fuse(self.fuse(x))
        if not self.linear_stream:
            x = torch.relu(x)
        x = self.project(self.blocks(x))
        if self.shuffle > 1:
            x = nn.functional.pixel_shuffle(x, self.shuffle)
        return self.bn_out(x)


class PixelEntry(nn.Module):
    """Coefficients → the teacher's normalized pixels, exactly: undoes the batch's DCT normalization
    (`dct_mean`, `dct_std`: 192 values each), runs the block IDCT, upsamples the chroma, converts JFIF YCbCr to
    RGB in [0, 1], then (rgb − `rgb_mean`) / `rgb_std`, the teacher's. The four statistics are buffers, so a
    checkpoint carries them; `set_normalization` replaces them. What runs is their fold
    (`jpegnet.dct.rebuild.rebuild_weights`: three 1×1 convolutions and a clip), kept as non-persistent buffers
    refolded whenever the statistics change (here or by `load_state_dict`), so an ONNX graph holds the folded
    weights as constants rather than computing them on every call."""

    _FOLDED = RebuildWeights._fields

    def __init__(self, dct_mean, dct_std, rgb_mean, rgb_std):
        super().__init__()
        for name, values, n in (("dct_mean", dct_mean, DCT_Y_CHANNELS + DCT_CBCR_CHANNELS),
                                ("dct_std", dct_std, DCT_Y_CHANNELS + DCT_CBCR_CHANNELS),
                                ("rgb_mean", rgb_mean, 3), ("rgb_std", rgb_std, 3)):
            self.register_buffer(name, self._values(name, values, n))
        folded = (RebuildWeights(*(torch.empty(shape, device="meta") for shape in REBUILD_SHAPES))
                  if self.dct_mean.is_meta else self._fold())  # a skeleton (shapes only) has nothing to fold
        for name, tensor in zip(self._FOLDED, folded):
            self.register_buffer(f"folded_{name}", tensor, persistent=False)
        self.register_load_state_dict_post_hook(PixelEntry._refold_after_load)  # a function, so it pickles

    @staticmethod
    def _values(name: str, values, n: int) -> torch.Tensor:
        t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        if t.numel() != n:
            raise TeacherError(f"the pixel entry's {name} needs {n} values, got {t.numel()}")
        if name.endswith("std") and not t.is_meta and bool((t <= 0).any()):
            raise TeacherError(f"the pixel entry's {name} must be positive, got a minimum of {float(t.min())}")
        return t.clone()

    def _fold(self) -> RebuildWeights:
        return rebuild_weights(self.dct_mean, self.dct_std, self.rgb_mean, self.rgb_std,
                               device=self.dct_mean.device)

    @staticmethod
    def _refold_after_load(module: "PixelEntry", _incompatible_keys) -> None:
        module.refold()

    @torch.no_grad()
    def refold(self) -> None:
        """Recompute the folded weights from the statistics (after they changed in place)."""
        if any(getattr(self, n).is_meta for n in ("dct_mean", "dct_std", "rgb_mean", "rgb_std")):
            return  # shapes only: nothing to fold yet
        for name, tensor in zip(self._FOLDED, self._fold()):
            buffer = getattr(self, f"folded_{name}")
            if buffer.is_meta:
                setattr(self, f"folded_{name}", tensor.to(buffer.dtype))
            else:
                buffer.copy_(tensor)

    @torch.no_grad()
    def set_normalization(self, dct_mean, dct_std, rgb_mean, rgb_std) -> None:
        for name, values in (("dct_mean", dct_mean), ("dct_std", dct_std), ("rgb_mean", rgb_mean),
                             ("rgb_std", rgb_std)):
            buffer = getattr(self, name)
            if buffer.is_meta:
                continue  # shapes only
            buffer.copy_(self._values(name, values, buffer.numel()).to(buffer.device))
        self.refold()

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        return rebuild(y, cbcr, RebuildWeights(*(getattr(self, f"folded_{n}") for n in self._FOLDED)))


class ConvertedModel(JpegNetModel):
    """`model(y, cbcr)`: a DCT entry followed by a teacher's remainder (see the module docstring); with
    entry="pixels" the exact PixelEntry followed by the whole teacher (then the "features" below are the
    teacher's normalized pixels).

    `model(y, cbcr, return_features=True)` returns (logits, entry features): what distillation compares
    with the teacher, in one forward (so DistributedDataParallel sees the whole step); `features_only=True`
    returns (None, entry features) without running the remainder (a feature-only objective);
    `return_late=True` (with return_features) adds the remainder's last feature map, before pooling:
    (logits, entry features, late features)."""

    def __init__(self, teacher: str, cut: str | None = None, num_classes: int = 1000, entry_width: float = 1.0,
                 entry_depth: int = 4, entry_kernel: int = 3, entry: str = "learned", entry_expand: int = 1,
                 entry_stride: int | None = None):
        super().__init__()
        if entry not in ENTRIES:
            raise TeacherError(f"entry must be one of {list(ENTRIES)}, got {entry!r}")
        if entry == "pixels":
            given = dict(cut=cut, entry_width=entry_width, entry_depth=entry_depth, entry_kernel=entry_kernel,
                         entry_expand=entry_expand, entry_stride=entry_stride)
            odd = [k for k, v in given.items() if v != LEARNED_ENTRY_DEFAULTS[k]]
            if odd:
                raise TeacherError(f"entry='pixels' runs the whole teacher after an exact entry: {', '.join(odd)} "
                                   f"belong{'s' if len(odd) == 1 else ''} to the learned entry; leave "
                                   f"{'it' if len(odd) == 1 else 'them'} out")
        self.entry_kind = entry
        net = build_teacher_architecture(teacher, num_classes=num_classes)
        prep = teacher_preprocessing(net)
        self.teacher_spec = teacher
        self.num_classes = num_classes
        self.num_features = int(getattr(net, "num_features", 0))
        # The teacher's RGB normalization stays in mean / std: distillation rebuilds its pixels with it (and
        # the pixel entry applies it).
        config = InputConfig(representation="dct", input_size=tuple(prep["input_size"]),
                             mean=tuple(prep["mean"]), std=tuple(prep["std"]), crop_pct=prep["crop_pct"],
                             # the teacher's resize filter, where the DCT resampler has it
                             interpolation=(prep["interpolation"] if prep["interpolation"]
                                            in INTERPOLATIONS else "bilinear"))
        if entry == "pixels":
            self.cut = None
            dct_mean, dct_std = normalization(config, "dct")
            self.entry = PixelEntry(dct_mean, dct_std, config.mean, config.std)
            self.remainder = net  # the whole teacher: nothing cut
            # int8 export keeps the exact entry in float: quantizing the coefficients to 8 bits over their
            # whole range (DC's thousands beside AC's units) costs accuracy, the IDCT costs ~1% of the FLOPs
            self.int8_fp32_modules = ("entry",)
            self.feature_info = [dict(module=f"remainder.{d['module']}", num_chs=d["num_chs"],
                                      reduction=d["reduction"]) for d in _feature_info(net)]
        else:
            point = find_cut(net, cut)
            self.cut = point
            self.entry = DctEntry(point.channels, point.reduction, entry_width, entry_depth, entry_kernel,
                                  entry_expand, entry_stride)
            self.input_batchnorms = (("y", "entry.bn_y"), ("cbcr", "entry.bn_cbcr"))
            self.remainder = remove_front(net, point)
            later = [d for d in _feature_info(net) if d["reduction"] > point.reduction]
            self.feature_info = [dict(module="entry", num_chs=point.channels, reduction=point.reduction)] + [
                dict(module=f"remainder.{d['module']}", num_chs=d["num_chs"], reduction=d["reduction"])
                for d in later]
        self.input_config = config
        self.remainder_frozen = False  # distillation's first phase: the remainder's BatchNorms keep eval mode

    @property
    def input_config(self) -> InputConfig:
        return self._input_config

    @input_config.setter
    def input_config(self, config: InputConfig) -> None:
        """A pixel entry follows its config: the DCT normalization it undoes is the one the data pipeline
        applies (e.g. a run's --dct-stats), the RGB one the teacher's."""
        self.__dict__["_input_config"] = config
        if isinstance(self.__dict__.get("_modules", {}).get("entry"), PixelEntry):
            self.entry.set_normalization(*normalization(config, "dct"), config.mean, config.std)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.remainder_frozen:
            self.remainder.eval()
        return self

    def forward_features(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        return self.remainder.forward_features(self.entry(y, cbcr))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.remainder.forward_head(x, pre_logits=pre_logits)

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor, return_features: bool = False,
                features_only: bool = False, return_late: bool = False):
        features = self.entry(y, cbcr)  # entry="pixels": the teacher's normalized pixels
        if features_only:
            return None, features
        late = self.remainder.forward_features(features)
        logits = self.forward_head(late)
        if return_late:
            return logits, features, late
        return (logits, features) if return_features else logits

    def reset_classifier(self, num_classes: int) -> None:
        self.remainder.reset_classifier(num_classes)
        self.num_classes = num_classes


@register_model
def converted(num_classes: int = 1000, teacher: str = "efficientnet_b0", cut: str | None = None,
              entry_width: float = 1.0, entry_depth: int = 4, entry_kernel: int = 3,
              entry: str = "learned", entry_expand: int = 1, entry_stride: int | None = None) -> ConvertedModel:
    """A pretrained pixel CNN (`teacher`: a jpegnet model name or timm:NAME) on JPEG coefficients; made by
    `jpegnet convert`. entry="learned": its front up to `cut` (default: its last stride-8 stage) replaced by a
    learned DCT entry; entry="pixels": an exact entry rebuilds its pixels and the whole teacher follows (no
    cut, no entry_* keywords)."""
    return ConvertedModel(teacher, cut, num_classes, entry_width, entry_depth, entry_kernel, entry, entry_expand,
                          entry_stride)


__all__ = ["ENTRIES", "ENTRY_STRIDES", "ConvertedModel", "DctEntry", "EntryBlock", "InvertedResidualEntryBlock",
           "PixelEntry", "converted"]
