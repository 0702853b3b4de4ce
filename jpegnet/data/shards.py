"""JpegShards: WebDataset tar shards (local paths, brace patterns, `pipe:` commands) as a JPEG source, and
ShardLoader, its loader: the batches of `create_loader`, built from the members' bytes by the very code that
builds them from a folder's files (`build_batch_from`: headers first, crops decoded on C threads).

Order, a pure function of (seed, epoch, position):
1. the shards are permuted by (seed, epoch) (train) or kept as listed (evaluation);
2. their samples, concatenated in that order, are split into `world_size` contiguous ranges of near-equal
   length (lengths differ by at most one): rank r reads only its range, i.e. whole shards plus at most a
   part of one shard at each end, so every sample is read by exactly one rank each epoch;
3. each rank's stream goes through a shuffle buffer of `shuffle_buffer` samples seeded by (seed, epoch, rank);
4. batches are consecutive runs of that order; with drop_last every rank stops after
   (len(dataset) // world_size) // batch_size batches (DDP needs equal step counts), leaving out at most a
   batch plus one sample per rank, the last of its shuffled order (different samples each epoch).
Augmentation draws from (seed, epoch, sample number), the sample number being its position in the listed
shards: the same sample gets the same crop in any rank, any reader thread, any resume.

Because the order is known before a byte is read, a resumed epoch (`set_epoch(epoch, start_batch)`) reads
only the samples not yet used (local shards seek straight to them), and the reader threads (`readers`, each
with its own shards of the rank's range, reading ahead into a bounded queue) change speed, never order.

Bad members (a JPEG that does not decode, a sample without a .jpg or a label, a label outside the classes, a
tar cut short) are skipped and listed in `loader.skipped` like bad files of a folder; a missing shard is a
ShardNotFoundError when the dataset is opened; a `pipe:` command that fails is a PipeCommandError naming it.
"""
from __future__ import annotations

import math
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..codec import DEFAULT_MAX_PIXELS
from .batch import build_batch_from
from .loader import JpegLoader
from .shard_format import PIPE, ShardError, TruncatedShard, expand_urls, iter_samples, iter_tar, load_index, open_url
from .shard_labels import (ShardLabelError, image_extension, label_extension, missing_label, parse_label,
                           shard_set_classes)
from .source import JpegSource


@dataclass
class ShardSample:
    number: int      # position in the listed shards: the key augmentation is drawn from
    name: str        # shard:KEY, for reports
    data: bytes      # the .jpg member, untouched
    label: int


@dataclass
class BadSample:
    name: str
    reason: str
    error: Exception


def _display(url: str) -> str:
    """A shard's short name for reports: the path, or the .tar word of a pipe: command."""
    if url.startswith(PIPE):
        words = [w for w in url[len(PIPE):].split() if ".tar" in w]
        return words[0] if words else url
    return url


class JpegShards(JpegSource):
    """Tar shards (WebDataset layout: KEY.jpg + KEY.cls, written by `jpegnet shards` or by another tool; see
    jpegnet.data.shard_labels for the members and labels read) as a JPEG source.

    urls: a brace pattern ('shards/train-{000000..000146}.tar'), a list of paths / patterns, or `pipe:`
    commands that write a shard to stdout ('pipe:aws s3 cp s3://bucket/train-000000.tar -'). Each shard's
    index (NAME.idx.json) and classes.json are found beside it (through the same command for pipe:, with the
    .tar name replaced); a local shard without an index is scanned. classes: override classes.json; without
    either, local shards' classes are named by label index, '0' .. max label (every label is read once).
    The transform settings are JpegFolder's. len() is the number of samples.
    """

    def __init__(self, urls, representation: str = "dct", *, train: bool, input_size=(224, 224),
                 on_error: str = "skip", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                 crop_pct: float = 0.875, input_config=None, seed: int = 0, strict: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, classes=None, rgb_decode: str = "plain"):
        self._configure(representation, train, input_size, on_error, scale, ratio, hflip, crop_pct, input_config,
                        seed, strict, max_pixels, rgb_decode=rgb_decode)
        self.urls = expand_urls(urls)
        with ThreadPoolExecutor(min(16, len(self.urls))) as pool:  # pipe: indexes are fetched concurrently
            self.indexes = list(pool.map(load_index, self.urls))
        self.offsets = np.concatenate([[0], np.cumsum([len(ix) for ix in self.indexes])]).astype(np.int64)
        if self.offsets[-1] == 0:
            raise ShardError(f"no samples in {len(self.urls)} shard(s) starting with {self.urls[0]}")
        self.classes = list(classes) if classes is not None else shard_set_classes(self.urls, self.indexes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def make_loader(self, batch_size: int, *, sampler=None, **options) -> "ShardLoader":
        if sampler is not None:
            raise ValueError("shards take no sampler: the loader splits them between processes itself")
        return ShardLoader(self, batch_size, **options)

    # -- order ------------------------------------------------------------------------------------------

    def rank_runs(self, seed: int, epoch: int, shuffle: bool, rank: int, world_size: int) -> list:
        """This rank's samples for the epoch as runs (shard, first, stop) in reading order."""
        order = np.arange(len(self.urls))
        if shuffle:
            order = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch]))).permutation(order)
        n = len(self)
        lo, hi = rank * n // world_size, (rank + 1) * n // world_size
        runs, pos = [], 0
        for shard in order:
            count = len(self.indexes[shard])
            a, b = max(lo, pos), min(hi, pos + count)
            if a < b:
                runs.append((int(shard), a - pos, b - pos))
            pos += count
        return runs

    # -- reading ----------------------------------------------------------------------------------------

    def read_samples(self, shard: int, wanted, stop: threading.Event | None = None):
        """Yield (sample id, ShardSample or BadSample) for the sorted sample ids `wanted` of one shard. A
        local shard is read from the first wanted sample on (seek); a pipe: stream from its start."""
        url, index = self.urls[shard], self.indexes[shard]
        wanted = list(wanted)
        if not wanted:
            return
        local = not url.startswith(PIPE)
        want = set(wanted)
        last = wanted[-1]
        expect = wanted[0] if local else 0
        cut, eof = None, False
        stream = open_url(url)
        try:
            if local:
                stream.seek(index.starts[expect])
            try:
                for key, _, group in iter_samples(iter_tar(stream, start=index.starts[expect] if local else 0)):
                    if stop is not None and stop.is_set():
                        return
                    if expect >= len(index) or key != index.keys[expect]:
                        found = index.keys[expect] if expect < len(index) else "the end"
                        raise ShardError(f"{_display(url)} does not match its index (sample {expect} is {key!r}, "
                                         f"the index says {found}); rewrite the shard and its index together")
                    if expect in want:
                        yield expect, self._sample(shard, expect, key, group)
                    expect += 1
                    if expect > last:
                        break
                else:
                    eof = True
                    raise TruncatedShard("the tar ends before its last sample")
            except TruncatedShard as e:
                cut = e
                eof = eof or not stream.peek(1)
        finally:
            if not local and not eof:
                stream.raw.abort()  # the rest of its output is not needed: its exit status says nothing
            stream.close()  # a pipe: command read to its end that failed raises PipeCommandError here
        if cut is not None:
            for sid in wanted:
                if sid >= expect:
                    name = f"{_display(url)}:{index.keys[sid]}"
                    yield sid, BadSample(name, f"truncated shard: {cut}", cut)

    def _sample(self, shard: int, sid: int, key: str, group: dict):
        name = f"{_display(self.urls[shard])}:{key}"
        image = image_extension(group)
        if image is None:
            reason = f"no .jpg member ({', '.join('.' + e for e in group)})"
            return BadSample(name, reason, ShardError(f"{name}: {reason}"))
        label_ext = label_extension(group)
        try:
            if label_ext is None:
                raise missing_label(group)
            label = parse_label(label_ext, group[label_ext].data)
            if not 0 <= label < len(self.classes):
                raise ShardLabelError(f"label {label} is not a class index below {len(self.classes)}")
        except ShardLabelError as e:
            return BadSample(name, str(e), ShardLabelError(f"{name}: {e}"))
        return ShardSample(int(self.offsets[shard]) + sid, f"{name}.{image}", group[image].data, label)

    def __repr__(self) -> str:
        return (f"JpegShards({self.urls[0]!r}... {len(self.urls)} shards, {self.representation!r}, "
                f"train={self.train}, input_size={self.input_size}, {len(self)} images, "
                f"{len(self.classes)} classes)")


def shuffle_buffer_order(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which a shuffle buffer of `size` emits a stream of n items: fill it, then for each new
    item emit a random slot's item and put the new one there; at the end emit the rest in random order."""
    if n == 0:  # a rank with nothing to read (more ranks than samples)
        return np.empty(0, dtype=np.int64)
    size = max(1, min(size, n))
    buf = list(range(size))
    out = np.empty(n, dtype=np.int64)
    picks = rng.integers(0, size, n - size)
    for t, j in enumerate(picks.tolist()):
        out[t] = buf[j]
        buf[j] = size + t
    out[n - size:] = np.asarray(buf, dtype=np.int64)[rng.permutation(size)]
    return out


class _Stopped(Exception):
    pass


class _Readers:
    """`count` threads reading a rank's runs ahead: thread k reads runs k, k + count, ... into its own
    bounded queue; iterating yields (stream position, item) in stream order whatever the threads' speed."""

    _END = object()

    def __init__(self, dataset: JpegShards, runs: list, needed: np.ndarray, count: int, depth: int = 64):
        self.dataset, self.runs, self.needed = dataset, runs, needed
        self.base = np.concatenate([[0], np.cumsum([b - a for _, a, b in runs])]).astype(np.int64)
        self.count = max(1, min(count, len(runs)))
        self.stop = threading.Event()
        self.queues = [queue.Queue(depth) for _ in range(self.count)]
        self.threads = [threading.Thread(target=self._work, args=(k,), daemon=True, name=f"jpegnet-shards-{k}")
                        for k in range(self.count)]
        for t in self.threads:
            t.start()

    def _put(self, q: queue.Queue, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _work(self, k: int) -> None:
        q = self.queues[k]
        try:
            for i in range(k, len(self.runs), self.count):
                shard, a, b = self.runs[i]
                base = int(self.base[i])
                ids = [a + t for t in np.flatnonzero(self.needed[base:base + b - a]).tolist()]
                for sid, item in self.dataset.read_samples(shard, ids, self.stop):
                    self._put(q, (base + sid - a, item))
                self._put(q, self._END)
        except _Stopped:
            return
        except BaseException as e:  # handed to the consumer, which raises it
            try:
                self._put(q, e)
            except _Stopped:
                return

    def __iter__(self):
        for i in range(len(self.runs)):
            q = self.queues[i % self.count]
            while True:
                item = q.get()
                if item is self._END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


class ShardLoader(JpegLoader):
    """The loader of a JpegShards: batches of (inputs, targets) as `create_loader` gives for a folder, with
    `len()`, `set_epoch(epoch, start_batch)`, `position` and `skipped`.

    shuffle: shard order permuted per epoch and a shuffle buffer of shuffle_buffer samples (training).
    rank, world_size: this process's share (default: torch.distributed's, or the whole dataset).
    readers: threads reading shards ahead (more help when each shard has a high first-byte latency).
    """

    def __init__(self, dataset: JpegShards, batch_size: int, *, shuffle: bool = False, shuffle_buffer: int = 2000,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False, device="cpu",
                 num_threads: int | None = None, input_config=None, seed: int = 0, prefetch: int = 2,
                 readers: int = 2):
        if not isinstance(dataset, JpegShards):
            raise TypeError(f"ShardLoader needs a JpegShards, got {type(dataset).__name__}")
        super().__init__(dataset, batch_size, drop_last=drop_last, device=device, num_threads=num_threads,
                         input_config=input_config, seed=seed, prefetch=prefetch)
        if rank is None or world_size is None:
            import torch.distributed as dist
            on = dist.is_available() and dist.is_initialized()
            rank, world_size = (dist.get_rank(), dist.get_world_size()) if on else (0, 1)
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if int(shuffle_buffer) < 1 or int(readers) < 1:
            raise ValueError("shuffle_buffer and readers must be >= 1")
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer)
        self.rank, self.world_size = int(rank), int(world_size)
        self.readers = int(readers)

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.drop_last:  # the same on every rank
            return (n // self.world_size) // self.batch_size
        mine = (self.rank + 1) * n // self.world_size - self.rank * n // self.world_size
        return math.ceil(mine / self.batch_size)

    def order(self) -> np.ndarray:
        """This epoch's order: positions in this rank's stream (its runs of shards, concatenated)."""
        runs = self.dataset.rank_runs(self.seed, self.epoch, self.shuffle, self.rank, self.world_size)
        n = sum(b - a for _, a, b in runs)
        if not self.shuffle:
            return np.arange(n)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch, self.rank])))
        return shuffle_buffer_order(n, self.shuffle_buffer, rng)

    def sample_order(self) -> list[tuple[str, str]]:
        """(shard URL, key) of this rank's samples in this epoch's order, from the indexes alone (nothing
        read): what the epoch's batches hold from set_epoch's start_batch on, bad members included."""
        runs = self.dataset.rank_runs(self.seed, self.epoch, self.shuffle, self.rank, self.world_size)
        stream = [(self.dataset.urls[shard], self.dataset.indexes[shard].keys[i]) for shard, a, b in runs
                  for i in range(a, b)]
        order = self.order()[self.start_batch * self.batch_size:len(self) * self.batch_size]
        return [stream[p] for p in order.tolist()]

    def _batch_specs(self):
        runs = self.dataset.rank_runs(self.seed, self.epoch, self.shuffle, self.rank, self.world_size)
        order = self.order()
        bs, stop = self.batch_size, len(self) * self.batch_size
        needed = np.zeros(len(order), dtype=bool)
        needed[order[self.start_batch * bs:stop]] = True
        readers = _Readers(self.dataset, runs, needed, self.readers)
        stream = iter(readers)
        pending: dict = {}
        try:
            for k in range(self.start_batch, len(self)):
                want = order[k * bs:min((k + 1) * bs, stop)].tolist()
                for p in want:
                    while p not in pending:
                        pos, item = next(stream)
                        pending[pos] = item
                yield [pending.pop(p) for p in want]
        finally:
            readers.close()

    def _build(self, spec, threads: int):
        good = [s for s in spec if isinstance(s, ShardSample)]
        bad = [(s.name, s.reason, s.error) for s in spec if isinstance(s, BadSample)]
        if not good:
            return None, bad
        batch, decode_bad = build_batch_from(self.dataset, [s.data for s in good], [s.number for s in good],
                                             [s.label for s in good], names=[s.name for s in good], seed=self.seed,
                                             epoch=self.epoch, device=self.device, input_config=self.input_config,
                                             num_threads=threads, pool=self._pool)
        return batch, bad + decode_bad


__all__ = ["BadSample", "JpegShards", "ShardLoader", "ShardSample", "shuffle_buffer_order"]
