"""The DCT statistics file: `dataset_dct_stats` (the `jpegnet stats` command) computes a dataset's statistics
with `jpegnet.data.compute_dct_stats` and writes them as JSON; `load_dct_stats_file` reads and checks one
(`jpegnet train --dct-stats`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..input_config import check_dct_stats
from .checkpoint import atomic_write
from .errors import DataFolderError
from .folders import scan_checked_folder


def dataset_dct_stats(root: str | Path, out_json: str | Path, max_images: int | None = None,
                      input_size: int = 224) -> dict:
    """Compute per-channel mean/std of the dequantized DCT input (64 Y + 128 CbCr) and write them as JSON.

    `root` is a folder of class folders, a dataset folder with train/ (then train/ is used: statistics
    must never come from validation images), or training tar shards (a .tar pattern or pipe: command).
    input_size: the size the model will be trained at (resizing changes the coefficients' statistics); the
    evaluation transform (resize, centre crop) is used.
    """
    from ..data import JpegFolder, JpegShards, compute_dct_stats, is_shard_spec

    if is_shard_spec(root):  # training shards (never the validation ones)
        folder = root
        dataset = JpegShards(root, "dct", train=False, input_size=input_size, on_error="skip")
    else:
        root = Path(root)
        folder = root / "train" if (root / "train").is_dir() else root
        dataset = JpegFolder(scan_checked_folder(folder, "data"), "dct", train=False, input_size=input_size,
                             on_error="skip")
    mean, std = compute_dct_stats(dataset, max_images=max_images)
    images = len(dataset) if max_images is None else min(max_images, len(dataset))
    result = {"folder": str(folder), "images": images, "input_size": input_size, "dct_mean": [float(v) for v in mean],
              "dct_std": [float(v) for v in std],
              "layout": "64 Y coefficients, then Cb's 64 and Cr's 64 (natural order)"}
    text = json.dumps(result, indent=1).encode()
    atomic_write(out_json, lambda f: f.write(text))
    return {**result, "path": str(out_json)}


def load_dct_stats_file(path: str | os.PathLike) -> dict:
    """{'mean', 'std' (DCT_CHANNELS values each), 'input_size' (int or None)} of a `jpegnet stats` file."""
    path = Path(path)
    if not path.is_file():
        raise DataFolderError(f"DCT statistics file not found: {path}")
    try:
        stats = json.loads(path.read_text())
        mean, std = tuple(float(v) for v in stats["dct_mean"]), tuple(float(v) for v in stats["dct_std"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataFolderError(f"{path} is not a `jpegnet stats` file ({type(exc).__name__}: {exc})") from None
    try:
        check_dct_stats(mean, std)
    except ValueError as exc:
        raise DataFolderError(f"{path}: {exc}") from None
    size = stats.get("input_size") if isinstance(stats, dict) else None
    return {"mean": mean, "std": std, "input_size": int(size) if isinstance(size, (int, float)) else None}


__all__ = ["dataset_dct_stats", "load_dct_stats_file"]
