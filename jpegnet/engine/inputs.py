"""From a model's `input_config` to its data: one place that decides the input size, the normalization and
builds the dataset and loader, so a size is never given twice (train, eval, predict and stats use it).

`resolve_input_config` applies the run's overrides (an --input-size, a --dct-stats file) to the model's own
config and warns, naming both values, when they disagree: statistics computed at another size than the one
trained at (DCT statistics depend on the scale: a downscale keeps fewer frequencies), or an input size other
than the model's default. `build_data` then builds the JpegFolder and its loader from that config alone.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from .dct_stats_file import load_dct_stats_file
from .errors import ConfigError

logger = logging.getLogger("jpegnet.train")


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
               on_error: str = "skip", exif_orientation: bool = True, rgb_decode: str = "plain"):
    """(dataset, loader) for `source` (a folder of class folders or its FolderScan, or a list of files) as
    `input_config` says (`JpegFolder.for_model`): representation, input size, crop_pct and normalization all
    come from the config. `sampler` may be a function of the dataset (e.g. a DistributedSampler over it)."""
    from ..data import JpegFolder, create_loader

    dataset = JpegFolder.for_model(source, input_config, train=train, on_error=on_error,
                                   exif_orientation=exif_orientation, rgb_decode=rgb_decode)
    if callable(sampler) and not hasattr(sampler, "__iter__"):
        sampler = sampler(dataset)
    loader = create_loader(dataset, batch_size, sampler=sampler, shuffle=shuffle, drop_last=drop_last,
                           device=device, num_threads=num_threads, seed=seed, prefetch=prefetch)
    return dataset, loader


__all__ = ["build_data", "load_dct_stats_file", "resolve_input_config"]
