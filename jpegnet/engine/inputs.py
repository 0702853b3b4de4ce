"""From a model's `input_config` to its data: one place that decides the input size, the normalization and
builds the dataset and loader, so a size is never given twice (train, eval, predict and stats use it).

`resolve_input_config` applies the run's overrides (an --input-size, a --dct-stats file) to the model's own
config and warns, naming both values, when they disagree: statistics computed at another size than the one
trained at (DCT statistics depend on the scale: a downscale keeps fewer frequencies), or an input size other
than the model's default. `build_data` then builds the JpegFolder and its loader from that config alone.
"""
from __future__ import annotations

import json
import math
import logging
import os
from dataclasses import replace
from pathlib import Path

from .errors import ConfigError, DataFolderError

logger = logging.getLogger("jpegnet.train")


def load_dct_stats_file(path: str | os.PathLike) -> dict:
    """{'mean', 'std' (192 values each), 'input_size' (int or None)} of a `jpegnet stats` JSON file."""
    path = Path(path)
    if not path.is_file():
        raise DataFolderError(f"DCT statistics file not found: {path}")
    try:
        stats = json.loads(path.read_text())
        mean, std = tuple(float(v) for v in stats["dct_mean"]), tuple(float(v) for v in stats["dct_std"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataFolderError(f"{path} is not a `jpegnet stats` file ({type(exc).__name__}: {exc})") from None
    if len(mean) != 192 or len(std) != 192:
        raise DataFolderError(f"{path} must hold 192 DCT means and stds (64 Y + 128 CbCr), got "
                              f"{len(mean)} and {len(std)}")
    if not all(math.isfinite(m) for m in mean):
        raise DataFolderError(f"{path}: every dct_mean must be a finite number")
    bad_std = [i for i, s in enumerate(std) if not (math.isfinite(s) and s > 0)]
    if bad_std:
        raise DataFolderError(f"{path}: every dct_std must be a positive finite number (entry {bad_std[0]} is "
                              f"{std[bad_std[0]]}): inputs are divided by it")
    size = stats.get("input_size") if isinstance(stats, dict) else None
    return {"mean": mean, "std": std, "input_size": int(size) if isinstance(size, (int, float)) else None}


def resolve_input_config(model_config, input_size: int | None = None, dct_stats: str | None = None):
    """The model's InputConfig with the run's overrides applied (warnings for disagreements, see module)."""
    config = model_config
    default = tuple(model_config.input_size)
    if input_size is not None:
        asked = (int(input_size), int(input_size))
        if asked != default:
            logger.warning("input size %dx%d differs from %s model's default %dx%d (the size it was designed "
                           "and pretrained at)", asked[0], asked[1], model_config.representation, *default)
        config = config.with_size(asked)
    h, w = config.input_size
    if config.representation == "dct" and (h % 16 or w % 16):
        raise ConfigError(f"DCT models take input sizes in multiples of 16 (whole 16x16 MCUs of 4:2:0 JPEG); "
                         f"got {h}x{w}: use --input-size {16 * round(h / 16) or 16}")
    if dct_stats is not None:
        stats = load_dct_stats_file(dct_stats)
        if config.representation != "dct":
            logger.warning("--dct-stats %s is ignored: the model takes RGB input", dct_stats)
        elif stats["input_size"] is not None and stats["input_size"] != max(h, w):
            logger.warning("DCT statistics %s were computed at input size %d but this run uses %dx%d; "
                           "recompute them with `jpegnet stats --size %d`", dct_stats, stats["input_size"],
                           h, w, max(h, w))
        config = replace(config, dct_mean=stats["mean"], dct_std=stats["std"])
    return config


def build_data(source, input_config, *, train: bool, batch_size: int, device="cpu", num_threads=None, seed=0,
               sampler=None, shuffle: bool = False, drop_last: bool = False, prefetch: int = 2,
               on_error: str = "skip", exif_orientation: bool = True):
    """(dataset, loader) for `source` (a folder of class folders, or a list of files) as `input_config` says:
    representation, input size, crop_pct and normalization all come from the config. `sampler` may be a
    function of the dataset (e.g. a DistributedSampler over it)."""
    from ..data import JpegFolder, create_loader

    common = dict(representation=input_config.representation, train=train, input_size=input_config.input_size,
                  crop_pct=input_config.crop_pct, on_error=on_error, exif_orientation=exif_orientation)
    if isinstance(source, (list, tuple)):
        dataset = JpegFolder.from_files(list(source), **common)
    else:
        dataset = JpegFolder(source, **common)
    if callable(sampler) and not hasattr(sampler, "__iter__"):
        sampler = sampler(dataset)
    loader = create_loader(dataset, batch_size, sampler=sampler, shuffle=shuffle, drop_last=drop_last,
                           device=device, num_threads=num_threads, input_config=input_config, seed=seed,
                           prefetch=prefetch)
    return dataset, loader


__all__ = ["build_data", "load_dct_stats_file", "resolve_input_config"]
