"""Fold a DCT model's input BatchNorms into its input normalization: what an exported file normalizes with.

Most DCT models here begin with a BatchNorm on each raw input (`y`, `cbcr`): the coefficients' scales differ by
orders of magnitude (DC spans thousands, the highest frequencies a few units), and the BatchNorm evens them
out. At inference such a BatchNorm is a fixed per-channel affine, g · (x − μ) / √(σ² + ε) + b, and its
centring and scaling can move into the per-channel normalization the data pipeline applies anyway:

    x = (raw − mean) / std   →   (raw − mean') / std'   with   mean' = mean + std · μ,   std' = std · √(σ² + ε)

after which the BatchNorm keeps only its affine (μ = 0, σ² + ε = 1). In float the model computes the same
function (up to rounding). In an int8 file it is the difference between keeping the high frequencies and
losing them: ONNX Runtime quantizes a graph input with one scale for the whole tensor, and coefficients divided
by one number (the default DEFAULT_DCT_SCALE, or any per-channel statistics a run did not compute) share
8 bits between DC's range and AC terms a thousand times smaller. Measured on a converted EfficientNet-Lite0
(V10 in README's "Converting" results, 7-bit weights on an AVX2 CPU): 83.0 % top-1 int8 against 85.7 % fp32
before the fold, 84.4 % (ONNX Runtime) and 84.9 % (OpenVINO) after it, at the same speed.

A model names its foldable BatchNorms in `input_batchnorms` ((input, dotted path) pairs): a BatchNorm qualifies
only where it is the sole consumer of that raw input, so that renormalizing the input changes nothing else.
`model_for_export` (`jpegnet export`, `--int8` and the int8 benchmark) applies the fold, so the file's
`dct_mean` / `dct_std` metadata carries it and `jpegnet serve --onnx` normalizes accordingly.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from ..input_config import DCT_CBCR_CHANNELS, DCT_Y_CHANNELS, normalization

#: Where each input's channels sit in the 192 normalization values (64 Y, then 128 CbCr).
INPUT_CHANNELS = {"y": (0, DCT_Y_CHANNELS), "cbcr": (DCT_Y_CHANNELS, DCT_Y_CHANNELS + DCT_CBCR_CHANNELS)}


def _foldable(bn: nn.Module, channels: int) -> bool:
    """A BatchNorm with finite running statistics over exactly `channels` channels."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.num_features != channels:
        return False
    if bn.running_mean is None or bn.running_var is None:  # track_running_stats=False: batch statistics
        return False
    return bool(torch.isfinite(bn.running_mean).all() and torch.isfinite(bn.running_var).all()
                and (bn.running_var > -bn.eps).all())


@torch.no_grad()
def fold_input_batchnorms(model: nn.Module) -> list[str]:
    """Move the running statistics of `model.input_batchnorms` into `model.input_config`'s dct_mean / dct_std
    (see the module docstring); each folded BatchNorm is left with μ = 0, σ² = 1 − ε and its affine. In place;
    returns the dotted paths folded (empty for an RGB model, a model without input BatchNorms, or BatchNorms
    whose statistics are missing or not finite: those stay as they are). For inference: the model's function
    is unchanged only while its BatchNorms use running statistics (eval mode)."""
    config = getattr(model, "input_config", None)
    pairs = tuple(getattr(model, "input_batchnorms", ()))
    if config is None or config.representation != "dct" or not pairs:
        return []
    mean, std = (list(v) for v in normalization(config, "dct"))
    modules = dict(model.named_modules())
    folded = []
    for input_name, path in pairs:
        first, stop = INPUT_CHANNELS[input_name]
        bn = modules.get(path)
        if bn is None or not _foldable(bn, stop - first):
            continue
        mu = bn.running_mean.double().tolist()
        sigma = [math.sqrt(v + bn.eps) for v in bn.running_var.double().tolist()]
        new_mean = [mean[first + c] + std[first + c] * mu[c] for c in range(stop - first)]
        new_std = [std[first + c] * sigma[c] for c in range(stop - first)]
        if not all(math.isfinite(v) for v in new_mean) or not all(math.isfinite(s) and s > 0 for s in new_std):
            continue
        mean[first:stop], std[first:stop] = new_mean, new_std
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        folded.append(path)
    if folded:
        model.input_config = replace(config, dct_mean=tuple(mean), dct_std=tuple(std))
    return folded


__all__ = ["INPUT_CHANNELS", "fold_input_batchnorms"]
