"""What a model eats, said once: the `InputConfig` type, the ImageNet RGB statistics, the DCT channel layout
(64 luma + 128 chroma coefficients) and the checks on DCT statistics. Neutral ground: `jpegnet.data` and
`jpegnet.models` both import it, and it imports neither (as timm keeps these in timm/data/constants.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: DCT input layout: y is (N, 64, H/8, W/8), one channel per coefficient 8·u + v of the luma blocks; cbcr is
#: (N, 128, H/16, W/16), Cb's 64 coefficients then Cr's 64, on the 4:2:0 chroma grid.
DCT_Y_CHANNELS = 64
DCT_CBCR_CHANNELS = 128
DCT_CHANNELS = DCT_Y_CHANNELS + DCT_CBCR_CHANNELS

#: Without dataset statistics, dequantized coefficients are divided by this (mean 0). The DC coefficient of
#: an 8×8 block is 8× its mean level-shifted sample (range ±1024), so /128 maps pixel means to about ±8 and
#: typical low-frequency AC terms to about ±1: a usable scale for a first run; `compute_dct_stats` is better.
DEFAULT_DCT_SCALE = 128.0

REPRESENTATIONS = ("rgb", "dct")

#: The evaluation resize's filter (and the training crop's): Pillow's antialiased bilinear or bicubic.
INTERPOLATIONS = ("bilinear", "bicubic")


def check_dct_stats(mean, std) -> None:
    """Raise ValueError unless mean / std are both None or both DCT_CHANNELS values (finite; std > 0)."""
    if (mean is None) != (std is None):
        raise ValueError("dct_mean without dct_std (or the reverse): give both or neither")
    if mean is None:
        return
    if len(mean) != DCT_CHANNELS or len(std) != DCT_CHANNELS:
        raise ValueError(f"dct_mean / dct_std need {DCT_CHANNELS} values ({DCT_Y_CHANNELS} Y, {DCT_CBCR_CHANNELS} "
                         f"CbCr), got {len(mean)} / {len(std)}")
    if not all(math.isfinite(float(m)) for m in mean):
        raise ValueError("every dct_mean must be a finite number")
    if not all(math.isfinite(float(s)) and float(s) > 0 for s in std):
        raise ValueError("every dct_std must be a positive finite number: inputs are divided by it")


def check_input_size(value, representation: str = "dct") -> tuple[int, int]:
    """(height, width) of an input size given as an int or a pair; TypeError / ValueError unless positive, and
    for DCT input whole 16×16 MCUs."""
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"input_size must be an int or (height, width), got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"input_size must be positive, got {value!r}")
    if representation == "dct" and (h % 16 or w % 16):
        # RGB input takes any size; DCT input is whole 16x16 MCUs (8x8 luma blocks, 4:2:0 chroma)
        raise ValueError(f"DCT input_size must be positive multiples of 16 (the 4:2:0 chroma grid), got {value!r}")
    return h, w


@dataclass(frozen=True)
class InputConfig:
    """What a model eats.

    representation: 'rgb' (model(x), x of shape (N, 3, H, W)) or 'dct' (model(y, cbcr), y of shape
    (N, 64, H/8, W/8), cbcr of shape (N, 128, H/16, W/16)).
    input_size: default (H, W) in pixels; DCT models accept any multiple of 16.
    mean / std: RGB normalization (ignored by DCT models).
    crop_pct: the evaluation transform's centre crop (resize the shorter side to max(input_size) / crop_pct).
    interpolation: the resize filter, 'bilinear' or 'bicubic' (what the model's weights were trained and
    evaluated with: timm's TensorFlow-ported models expect bicubic).
    dct_mean / dct_std: per-channel statistics of the dequantized DCT input, 64 Y values then 128 CbCr
    values, set from a dataset (`jpegnet stats`); None means "not computed yet" (DEFAULT_DCT_SCALE is used).
    """

    representation: str = "rgb"
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    dct_mean: tuple[float, ...] | None = None
    dct_std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be 'rgb' or 'dct', got {self.representation!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {self.interpolation!r}")
        check_dct_stats(self.dct_mean, self.dct_std)

    def with_size(self, size: int | tuple[int, int]) -> "InputConfig":
        if isinstance(size, int):
            size = (size, size)
        return replace(self, input_size=tuple(size))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "InputConfig":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def normalization(config, representation: str | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) a batch is normalized with, in the units it has before normalization (raw dequantized
    coefficients, [0, 1] pixels): DCT_CHANNELS values (default mean 0, std DEFAULT_DCT_SCALE) or 3 RGB ones
    (default ImageNet's). config: an InputConfig, any object with some of its attributes (e.g. only
    dct_mean / dct_std), or None for the defaults; representation: default config.representation."""
    representation = representation or getattr(config, "representation", None)
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be 'rgb' or 'dct', got {representation!r}")
    if representation == "dct":
        mean, std = getattr(config, "dct_mean", None), getattr(config, "dct_std", None)
        check_dct_stats(mean, std)
        if mean is None:
            return (0.0,) * DCT_CHANNELS, (DEFAULT_DCT_SCALE,) * DCT_CHANNELS
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return tuple(getattr(config, "mean", IMAGENET_MEAN)), tuple(getattr(config, "std", IMAGENET_STD))


__all__ = ["DCT_CBCR_CHANNELS", "DCT_CHANNELS", "DCT_Y_CHANNELS", "DEFAULT_DCT_SCALE", "IMAGENET_MEAN",
           "IMAGENET_STD", "INTERPOLATIONS", "InputConfig", "REPRESENTATIONS", "check_dct_stats", "check_input_size",
           "normalization"]
