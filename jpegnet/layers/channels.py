"""Channel-count rounding shared by every family that scales widths."""
from __future__ import annotations


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
