"""Per-coefficient statistics of a dataset's DCT input (the normalization stored in a model's InputConfig)."""
from __future__ import annotations

import math
import os
from types import SimpleNamespace

import torch

from ..codec.reader import default_threads
from ..errors import JpegnetError
from ..input_config import DCT_CHANNELS, DCT_Y_CHANNELS
from .batch import build_batch
from .folder import JpegFolder
from .shards import JpegShards, ShardLoader
from .source import log_bad_file


class NoReadableImage(JpegnetError, ValueError):
    """Statistics were asked of images none of which could be read."""


def compute_dct_stats(dataset_or_root, max_images: int | None = None, *, input_size=(224, 224),
                      batch_size: int = 64, num_threads: int | None = None, seed: int = 0):
    """Mean and std of the 192 input channels (64 Y coefficients, then Cb's 64 and Cr's 64) over the
    dequantized, resized coefficients a model sees before normalization, per channel over images and block
    positions. dataset_or_root: a 'dct' JpegFolder or JpegShards (its own transform, epoch 0; shards in the
    order written) or a folder path (evaluation transform at input_size). max_images: the first max_images
    samples (None: all). Unreadable files are skipped. Returns (mean, std): two tuples of 192 floats.
    """
    if isinstance(dataset_or_root, (JpegFolder, JpegShards)):
        ds = dataset_or_root
        if ds.representation != "dct":
            raise ValueError(f"compute_dct_stats needs a 'dct' {type(ds).__name__}")
    elif isinstance(dataset_or_root, (str, os.PathLike)):
        ds = JpegFolder(dataset_or_root, "dct", train=False, input_size=input_size, on_error="skip")
    else:
        raise TypeError(f"dataset_or_root must be a JpegFolder, JpegShards or a folder path, got "
                        f"{type(dataset_or_root).__name__}")
    if max_images is not None and int(max_images) < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images!r}")
    n = len(ds) if max_images is None else min(len(ds), int(max_images))
    threads = num_threads or default_threads()
    sums = torch.zeros(DCT_CHANNELS, dtype=torch.float64)
    sums_sq = torch.zeros(DCT_CHANNELS, dtype=torch.float64)
    positions = {0: 0, DCT_Y_CHANNELS: 0}
    for y, cbcr in _raw_batches(ds, n, batch_size, threads, seed):
        for x, offset in ((y, 0), (cbcr, DCT_Y_CHANNELS)):
            flat = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).to(torch.float64)
            sums[offset:offset + x.shape[1]] += flat.sum(0)
            sums_sq[offset:offset + x.shape[1]] += (flat * flat).sum(0)
            positions[offset] += flat.shape[0]
    if positions[0] == 0:
        raise NoReadableImage(f"no readable image among the first {n} of {getattr(ds, 'root', None) or ds}")
    counts = torch.cat([torch.full((DCT_Y_CHANNELS,), float(positions[0])),
                        torch.full((DCT_CHANNELS - DCT_Y_CHANNELS,), float(positions[DCT_Y_CHANNELS]))])
    mean = sums / counts
    var = (sums_sq / counts - mean * mean).clamp_min(0.0)
    # a channel that never varies (e.g. chroma of an all-grey set) keeps std 1 so normalization stays finite
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
    return tuple(float(v) for v in mean), tuple(float(v) if math.isfinite(v) else 1.0 for v in std)


def _raw_batches(ds, n: int, batch_size: int, threads: int, seed: int):
    """(y, cbcr) of the first n samples, dequantized and resized but not normalized; bad files logged."""
    if isinstance(ds, JpegFolder):
        for start in range(0, n, batch_size):
            batch, bad = build_batch(ds, range(start, min(n, start + batch_size)), seed=seed, epoch=0,
                                     num_threads=threads, normalize=False)
            for path, reason, _ in bad:
                log_bad_file(path, reason)
            if batch is not None:
                yield batch[0]
        return
    # shards: in the order written; mean 0 / std 1 "statistics" leave the coefficients as they are
    raw = SimpleNamespace(dct_mean=(0.0,) * DCT_CHANNELS, dct_std=(1.0,) * DCT_CHANNELS)
    loader = ShardLoader(ds, batch_size, rank=0, world_size=1, num_threads=threads, input_config=raw, seed=seed,
                         prefetch=0)
    loader.set_epoch(0)
    seen = 0
    for (y, cbcr), _ in loader:  # bad members are logged by the loader
        take = min(len(y), n - seen)
        yield y[:take], cbcr[:take]
        seen += take
        if seen >= n:
            break
