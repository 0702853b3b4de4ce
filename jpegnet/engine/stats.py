"""`jpegnet stats`: DCT input statistics of a dataset, as the JSON file `jpegnet train --dct-stats` reads."""
from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import atomic_write
from .folders import check_image_folder


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
        check_image_folder(folder, "data")
        dataset = JpegFolder(folder, representation="dct", train=False, input_size=input_size, on_error="skip")
    mean, std = compute_dct_stats(dataset, max_images=max_images)
    images = len(dataset) if max_images is None else min(max_images, len(dataset))
    result = {"folder": str(folder), "images": images, "input_size": input_size, "dct_mean": [float(v) for v in mean],
              "dct_std": [float(v) for v in std],
              "layout": "64 Y coefficients, then Cb's 64 and Cr's 64 (natural order)"}
    text = json.dumps(result, indent=1).encode()
    atomic_write(out_json, lambda f: f.write(text))
    return {**result, "path": str(out_json)}
