"""Tar shards in the engine: `jpegnet shards` (a split folder → shards) and the shard side of train / eval.

A --data value names shards when it is a .tar path or brace pattern, or a `pipe:` command
(`jpegnet.data.is_shard_spec`); anything else is a folder, as before.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DataFolderError
from .folders import scan_checked_folder


def write_split_shards(data: str | Path, out: str, *, split: str | None = "train", max_size="1GB",
                       shuffle_seed: int = 0, max_count: int | None = None, verify: str = "full",
                       threads: int | None = None, log=None) -> dict:
    """`jpegnet shards`: DATA/SPLIT/<class>/*.jpg (DATA's own class folders when split is None or '.')
    written as shards named by the printf pattern `out` (e.g. OUT/train-%06d.tar); verify: 'full' (every
    image decoded in strict mode first) or 'header' (see jpegnet.data.write_shards)."""
    from ..data import write_shards

    folder = Path(data) / split if split not in (None, "", ".") else Path(data)
    scan = scan_checked_folder(folder, f"{split} split" if split not in (None, "", ".") else "data")
    return write_shards(scan, out, max_size=max_size, max_count=max_count, shuffle_seed=shuffle_seed,
                        verify=verify, threads=threads, log=log)


def check_shards_exist(spec) -> list[str]:
    """The URLs of a shard spec; a missing local shard is a ShardNotFoundError naming it, before any work."""
    from ..data.shard_format import PIPE, ShardNotFoundError, expand_urls

    urls = expand_urls(spec)
    missing = [u for u in urls if not u.startswith(PIPE) and not os.path.isfile(u)]
    if missing:
        more = f" (and {len(missing) - 1} more of {len(urls)})" if len(missing) > 1 else ""
        raise ShardNotFoundError(f"shard not found: {missing[0]}{more}")
    return urls


def shard_classes(spec, default: list[str] | None = None) -> list[str]:
    """The class names of shards: their classes.json; without one (shards from another tool), `default` when
    given (the training shards' or a checkpoint's classes), else '0' .. max label over every sample's label
    (jpegnet.data.shard_labels). A missing local shard is named first, before any work."""
    from ..data.shard_format import load_classes, load_index
    from ..data.shard_labels import has_classes_file, infer_classes

    urls = check_shards_exist(spec)
    if has_classes_file(urls[0]):
        return load_classes(urls[0])
    if default is not None:
        return list(default)
    return infer_classes(urls, [load_index(u) for u in urls])


class TrainValShards:
    """Training and validation shards for the trainer: classes checked up front, datasets and loaders once the
    model's input config is known."""

    def __init__(self, train_spec: str, val_spec: str | None):
        if not val_spec:
            raise DataFolderError(f"--data {train_spec} names shards: give the validation shards with "
                                  f"--val-data (e.g. 'shards/val-{{000000..000009}}.tar')")
        self.train_spec, self.val_spec = train_spec, val_spec
        self.classes = shard_classes(train_spec)
        val_classes = shard_classes(val_spec, default=self.classes)  # no classes.json: the training ones
        if val_classes != self.classes:
            raise DataFolderError(f"the training and validation shards have different classes "
                                  f"({len(self.classes)} vs {len(val_classes)} classes)")

    def loaders(self, input_config, rank: int, world_size: int, per_rank_batch: int, *, seed: int, device,
                num_threads: int | None, prefetch: int):
        """(train_ds, val_ds, train_loader, val_loader): training reads a shuffled near-equal part of the
        shards per process with equal step counts (drop_last); validation each process's part once."""
        from ..data import JpegShards, ShardLoader

        train_ds = JpegShards.for_model(self.train_spec, input_config, train=True, on_error="skip",
                                        classes=self.classes)
        val_ds = JpegShards.for_model(self.val_spec, input_config, train=False, on_error="skip",
                                      classes=self.classes)
        options = dict(rank=rank, world_size=world_size, device=device, num_threads=num_threads,
                       input_config=input_config, seed=seed, prefetch=prefetch)
        train_loader = ShardLoader(train_ds, per_rank_batch, shuffle=True, drop_last=True, **options)
        val_loader = ShardLoader(val_ds, per_rank_batch, shuffle=False, drop_last=False, **options)
        return train_ds, val_ds, train_loader, val_loader


def eval_shards(spec: str, input_config, classes: list[str] | None = None):
    """The dataset `jpegnet eval` reads from shards (evaluation transform, in the order written); classes:
    the checkpoint's, for shards without classes.json."""
    from ..data import JpegShards

    return JpegShards.for_model(spec, input_config, train=False, on_error="skip", classes=classes)

