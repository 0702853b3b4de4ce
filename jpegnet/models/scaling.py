"""Compound model scaling (Tan & Le, "EfficientNet", ICML 2019, eq. 3), for any family with width and depth
multipliers and a default input size.

One coefficient φ scales the three dimensions together:

    depth d = α^φ,  width w = β^φ,  resolution r = γ^φ,   with α · β² · γ² ≈ 2 and α, β, γ ≥ 1.

A convolution's FLOPs grow as d · w² · r², so the constraint makes every step of φ roughly double them
(2^φ; only roughly, because blocks, channels and pixels are rounded to whole numbers). α = 1.2, β = 1.1,
γ = 1.15 are the paper's grid-search result on EfficientNet-B0 (1.2 · 1.21 · 1.3225 = 1.92).

`scale_model(name, φ)` builds a registered model with `width_multiplier` × w and `depth_multiplier` × d (each
family rounds channels and blocks by its own rule: ResNets and EfficientNets round channels to multiples of
8 and blocks up) and sets its default input size to r × the model's own, rounded to a multiple of 16. DCT
input needs a multiple of 16 (one 4:2:0 MCU); RGB models get the same rounding so that an RGB model and its
DCT counterpart scaled with the same φ see images of the same size.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from torch import nn

from .registry import FeatureExtractor, model_builder

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # EfficientNet's depth, width and resolution bases (§4, step 1)
RESOLUTION_MULTIPLE = 16


class CompoundScale(NamedTuple):
    """Multipliers for depth (blocks), width (channels) and resolution (input pixels per side)."""
    depth: float
    width: float
    resolution: float


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def compound_scale(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> CompoundScale:
    """(depth, width, resolution) = (α^φ, β^φ, γ^φ), the EfficientNet paper's eq. 3.

    φ may be negative (a smaller model) or fractional. α, β, γ must be >= 1, as eq. 3 requires; their product
    α·β²·γ² is the factor by which FLOPs grow per unit of φ (≈ 2 for the defaults) and is not forced here,
    so other bases can be tried.
    """
    phi = _check_real("phi", phi)
    bases = {"alpha": _check_real("alpha", alpha), "beta": _check_real("beta", beta),
             "gamma": _check_real("gamma", gamma)}
    low = {k: v for k, v in bases.items() if v < 1}
    if low:
        raise ValueError(f"compound scaling needs alpha, beta, gamma >= 1, got {low}")
    return CompoundScale(bases["alpha"] ** phi, bases["beta"] ** phi, bases["gamma"] ** phi)


def scaled_size(size: int, resolution: float, multiple: int = RESOLUTION_MULTIPLE) -> int:
    """`size × resolution` rounded to the nearest multiple of `multiple` (at least one multiple)."""
    return max(multiple, round(size * resolution / multiple) * multiple)


def set_input_resolution(model: nn.Module, resolution: float) -> nn.Module:
    """Multiply the model's default input size by `resolution` (each side, see `scaled_size`); returns it."""
    h, w = model.input_config.input_size
    model.input_config = model.input_config.with_size((scaled_size(h, resolution), scaled_size(w, resolution)))
    return model


def scale_model(name: str, phi: float, num_classes: int = 1000, *, alpha: float = ALPHA, beta: float = BETA,
                gamma: float = GAMMA, features_only: bool = False, out_indices: tuple[int, ...] | None = None,
                **kwargs) -> nn.Module:
    """The registered model `name`, compound-scaled by φ (see the module docstring).

    The builder must take `width_multiplier` and `depth_multiplier` (ResNet-50 and its named points, the DCT
    ResNets, `dct_resnet50`, EfficientNet B0–B7 and `dct_efficientnet_b0`); multipliers passed in kwargs are
    the starting point and get multiplied. Other kwargs go to the builder unchanged.
    """
    depth, width, resolution = compound_scale(phi, alpha, beta, gamma)
    kwargs["width_multiplier"] = width * kwargs.get("width_multiplier", 1.0)
    kwargs["depth_multiplier"] = depth * kwargs.get("depth_multiplier", 1.0)
    # the builder, not create_model: the families register scaled models through this module, and
    # create_model's weight loading needs the families (models/factory.py)
    model = set_input_resolution(model_builder(name)(num_classes=num_classes, **kwargs), resolution)
    return FeatureExtractor(model, out_indices) if features_only else model


__all__ = ["ALPHA", "BETA", "GAMMA", "CompoundScale", "compound_scale", "scale_model", "scaled_size",
           "set_input_resolution"]
