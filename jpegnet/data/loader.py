"""create_loader: batches of a JPEG source decoded on threads, augmented and normalized on the target device.
Each batch comes from `build_batch` (jpegnet.data.batch), the one batch builder, so the loader, item access,
statistics and prediction all apply the same transform.

`prefetch` background threads build the next batches while the caller trains on the current one. Which
images form which batch and every augmentation draw depend only on (seed, epoch, index), never on timing or
threads.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..codec.reader import default_threads
from ..input_config import normalization
from .batch import build_batch, build_batch_from  # noqa: F401  (build_batch_from: its old import path)
from .source import JpegSource, log_bad_file, logger


class JpegLoader:
    """Iterable of (inputs, targets) batches; see create_loader."""

    def __init__(self, dataset: JpegSource, batch_size: int, *, shuffle: bool = False, sampler=None,
                 drop_last: bool = False, device="cpu", num_threads: int | None = None, input_config=None,
                 seed: int = 0, prefetch: int = 2):
        if not isinstance(dataset, JpegSource):
            raise TypeError(f"create_loader needs a JpegFolder or JpegShards, got {type(dataset).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads!r}")
        if sampler is not None and shuffle:
            raise ValueError("shuffle and sampler are exclusive (the sampler decides the order)")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.drop_last = bool(drop_last)
        self.device = torch.device(device)
        self.num_threads = int(num_threads) if num_threads else default_threads()
        # the normalization, resolved once: the one asked for, else the dataset's own
        self.input_config = dataset.input_config if input_config is None else input_config
        self.seed = int(seed)
        self.prefetch = int(prefetch)
        self.epoch = 0
        self.start_batch = 0
        # Batches of this epoch's order done once the batch just yielded is consumed, counting batches left
        # out because every file in them was unreadable: what a checkpoint must store to resume exactly.
        self.position = 0
        self.skipped: list[tuple[str, str]] = []
        normalization(self.input_config, dataset.representation)  # bad statistics fail here, not in a batch
        self._pool = ThreadPoolExecutor(self.num_threads) if dataset.representation == "rgb" else None

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (order and augmentation) and skip its first start_batch batches (resume)."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        if int(start_batch) < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch!r}")
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)
        self.position = self.start_batch
        self.skipped = []
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def order(self) -> list[int]:
        """This epoch's sample order."""
        if self.sampler is not None:
            return [int(i) for i in self.sampler]
        if self.shuffle:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch])))
            return rng.permutation(len(self.dataset)).tolist()
        return list(range(len(self.dataset)))

    def batch_indices(self) -> list[list[int]]:
        order = self.order()
        bs = self.batch_size
        batches = [order[i:i + bs] for i in range(0, len(order), bs)]
        if self.drop_last and batches and len(batches[-1]) < bs:
            batches.pop()
        return batches[self.start_batch:]

    def _batch_specs(self):
        """What `_build` turns into each batch of the epoch from start_batch on (here: index lists)."""
        return self.batch_indices()

    def _build(self, spec, threads: int):
        """(batch or None, bad) for one element of `_batch_specs()`."""
        return build_batch(self.dataset, spec, seed=self.seed, epoch=self.epoch, device=self.device,
                           input_config=self.input_config, num_threads=threads, pool=self._pool)

    def __iter__(self):
        batches = self._batch_specs()
        skipped_before = len(self.skipped)
        if self.prefetch <= 0:
            for k, b in enumerate(batches, start=self.start_batch):
                out = self._produce(b, self.num_threads)
                if out is not None:
                    self.position = k + 1
                    yield out
        else:
            yield from self._prefetched(batches)
        if len(self.skipped) > skipped_before:  # epochs counted from 1 here, as every console line does
            logger.warning("epoch %d: skipped %d unreadable files", self.epoch + 1,
                           len(self.skipped) - skipped_before)

    def _prefetched(self, batches):
        """Batches built by `prefetch` worker threads at once, yielded in order. Each worker decodes with
        num_threads / prefetch C threads and then runs its batch transforms, so the cores stay busy while
        one batch is being transformed (decode and the numpy / torch batch ops release the GIL)."""
        workers = max(1, min(self.prefetch, len(self) - self.start_batch))
        decode_threads = max(1, self.num_threads // workers)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="jpegnet-loader")
        pending: list = []
        it = iter(batches)
        try:
            for b in it:
                pending.append((b, pool.submit(self._build, b, decode_threads)))
                if len(pending) >= workers:
                    break
            k = self.start_batch - 1
            while pending:
                b, fut = pending.pop(0)
                k += 1
                batch, bad = fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self._build, nxt, decode_threads)))
                self._record(bad)
                if batch is not None:
                    self.position = k + 1
                    yield batch
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)
            if hasattr(it, "close"):  # a generator of batch specs (shards) stops its reader threads
                it.close()

    def _record(self, bad) -> None:
        for path, reason, error in bad:
            if self.dataset.on_error == "raise":
                raise error
            self.skipped.append((path, reason))
            log_bad_file(path, reason)

    def _produce(self, spec, threads):
        batch, bad = self._build(spec, threads)
        self._record(bad)
        return batch


def create_loader(dataset: JpegSource, batch_size: int, *, shuffle: bool = False, sampler=None,
                  drop_last: bool = False, device="cpu", num_threads: int | None = None, input_config=None,
                  seed: int = 0, prefetch: int = 2) -> JpegLoader:
    """A loader over a JpegFolder (a JpegLoader) or JpegShards (a ShardLoader): batches of (inputs, targets)
    on `device`, augmented and normalized.

    inputs: (y (N,64,H/8,W/8), cbcr (N,128,H/16,W/16)) channels_last for 'dct'; (x (N,3,H,W),) for 'rgb'.
    shuffle: a fresh permutation per epoch from (seed, epoch); sampler: e.g. DistributedSampler (its
    set_epoch is called by ours). num_threads: decode threads (default: the cores available). input_config:
    normalization (default: the dataset's; DCT without dct_mean / dct_std: coefficients are divided by
    DEFAULT_DCT_SCALE). Unreadable files are skipped (listed in `loader.skipped`, logged once) unless the
    dataset says on_error='raise'; a batch whose files all fail is left out (so a skip makes a batch smaller,
    never reshuffles). prefetch: batches built ahead, each on its own background thread with num_threads /
    prefetch decode threads (0: build in the caller's thread).
    Shards take no sampler: each process reads its own part of the shards; shuffle permutes the shards and
    runs a shuffle buffer (see jpegnet.data.shards).
    """
    if not isinstance(dataset, JpegSource):
        raise TypeError(f"create_loader needs a JpegFolder or JpegShards, got {type(dataset).__name__}")
    return dataset.make_loader(batch_size, shuffle=shuffle, sampler=sampler, drop_last=drop_last, device=device,
                               num_threads=num_threads, input_config=input_config, seed=seed, prefetch=prefetch)


__all__ = ["JpegLoader", "build_batch", "build_batch_from", "create_loader"]
