"""Width and depth rounding shared by every family that scales them (ResNets, EfficientNet, compound scaling)."""
from __future__ import annotations

import math
import numbers


def check_multiplier(name: str, value) -> float:
    """A width / depth multiplier: a positive finite number (TypeError for a non-number, ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def scale_depth(num_blocks: int, multiplier: float) -> int:
    """Blocks of a stage scaled by `multiplier`, rounded up (the EfficientNet reference's rule), at least 1.

    The 1e-9 keeps a product that float arithmetic puts just above a whole number (10 × 1.1) on it.
    """
    return max(1, math.ceil(num_blocks * multiplier - 1e-9))


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """`value` rounded to the nearest multiple of `divisor` (at least `min_value`, default `divisor`), bumped up
    by one `divisor` when rounding lost more than 1 - `round_limit` (10 %) of it.

    This is the rule of the EfficientNet / MobileNet reference code: multiples of 8 keep tensor-core friendly
    shapes, and the 10 % guard keeps small widths (SE squeezes, thin variants) from collapsing.
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded
