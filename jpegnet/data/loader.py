"""create_loader: batches of a JpegFolder decoded on threads, augmented and normalized on the target device.
`build_batch_from` is the one batch builder: it takes paths or the JPEG bytes themselves, so tar shards
(jpegnet.data.shards) go through exactly the code files go through.

DCT: the batch's headers are read first (`read_headers_batch`), each image's window is drawn from (seed,
epoch, index) and its size, and only the MCUs under the window are entropy-decoded (`read_coefficients_batch`
with per-item crops, C threads, GIL released; in single-scan files decoding stops after the window's last MCU
row, which saves about 40% of the decode on ImageNet-sized originals). A file is skipped when the part its
window needs cannot be decoded; damage below the window is never read, so whether a file with a damaged tail
is used depends on its window (a pure function of (seed, epoch, index): the same epoch skips the same files).
`build_dct_batch` then crops, resizes, mirrors and normalizes the whole batch (see there). RGB: the torchvision pipeline (Pillow decode, resized crop, flip,
ToTensor, Normalize) per image on a thread pool, stacked into a pinned batch.

`prefetch` background threads build the next batches while the caller trains on the current one. Which
images form which batch and every augmentation draw depend only on (seed, epoch, index), never on timing or
threads.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..codec import JpegError, read_coefficients_batch, read_headers_batch
from ..codec.reader import default_threads
from ..codec.exif import ORIENTATION_OPS, read_orientation
from ..dct.orient import hflip_blocks, orient_blocks
from .dct_batch import UnsupportedImage, build_dct_batch, decode_crops, image_planes
from .folder import IMAGENET_MEAN, IMAGENET_STD, JpegFolder, JpegSource, log_bad_file, logger


def _normalization(ds: JpegFolder, input_config):
    cfg = input_config if input_config is not None else ds.input_config
    if ds.representation == "dct":
        mean = getattr(cfg, "dct_mean", None) if cfg is not None else None
        std = getattr(cfg, "dct_std", None) if cfg is not None else None
        if (mean is None) != (std is None):
            raise ValueError("input_config has dct_mean without dct_std (or the reverse)")
        if mean is not None and (len(mean) != 192 or len(std) != 192):
            raise ValueError(f"dct_mean / dct_std need 192 values (64 Y, 128 CbCr), got {len(mean)} / {len(std)}")
        return mean, std
    mean = tuple(getattr(cfg, "mean", IMAGENET_MEAN)) if cfg is not None else IMAGENET_MEAN
    std = tuple(getattr(cfg, "std", IMAGENET_STD)) if cfg is not None else IMAGENET_STD
    return mean, std


def stored_windows(windows: np.ndarray, orientations: np.ndarray, shown_w, shown_h) -> np.ndarray:
    """Windows (x, y, w, h) on the displayed image → the same region of the stored image. Displayed =
    mirror(transpose(stored)) (ORIENTATION_OPS), so stored = transpose(mirror(displayed))."""
    out = np.array(windows, dtype=np.float64, copy=True)
    for k, o in enumerate(orientations):
        transpose, hflip, vflip = ORIENTATION_OPS[int(o)]
        x, y, w, h = out[k]
        if vflip:
            y = shown_h[k] - y - h
        if hflip:
            x = shown_w[k] - x - w
        out[k] = (y, x, h, w) if transpose else (x, y, w, h)
    return out


def _oriented_dct_batch(planes, windows, flips, orientations, out_size, *, device, mean, std, k_margin, pin,
                        threads):
    """build_dct_batch for images with EXIF orientations: each group of one orientation is resampled on its
    stored grid as raw coefficients, turned upright with exact block operations (jpegnet.dct.orient), then
    mirrored by the augmentation and normalized (normalization last: it does not commute with a transpose)."""
    from .dct_batch import DEFAULT_DCT_SCALE
    if mean is None:
        mean, std = torch.zeros(192), torch.full((192,), DEFAULT_DCT_SCALE)
    out_h, out_w = out_size
    n = len(planes)
    y = torch.empty((n, 64, out_h // 8, out_w // 8), dtype=torch.float32, device=device)
    y = y.contiguous(memory_format=torch.channels_last)
    cbcr = torch.empty((n, 128, out_h // 16, out_w // 16), dtype=torch.float32,
                       device=device).contiguous(memory_format=torch.channels_last)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 192, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 192, 1, 1)
    for o in np.unique(orientations):
        rows = np.flatnonzero(orientations == o)
        transpose, hflip, vflip = ORIENTATION_OPS[int(o)]
        size = (out_w, out_h) if transpose else (out_h, out_w)
        raw_y, raw_c = build_dct_batch([planes[r] for r in rows], windows[rows], np.zeros(len(rows), dtype=bool),
                                       size, device=device, mean=torch.zeros(192), std=torch.ones(192),
                                       k_margin=k_margin, pin_memory=False, threads=threads)
        raw_y = orient_blocks(raw_y, transpose, hflip, vflip)
        raw_c = orient_blocks(raw_c, transpose, hflip, vflip)
        mirror = torch.as_tensor(flips[rows], device=device)
        if mirror.any():
            raw_y = torch.where(mirror.view(-1, 1, 1, 1), hflip_blocks(raw_y), raw_y)
            raw_c = torch.where(mirror.view(-1, 1, 1, 1), hflip_blocks(raw_c), raw_c)
        index = torch.as_tensor(rows, device=device)
        y[index] = (raw_y - mean[:, :64]) / std[:, :64]
        cbcr[index] = (raw_c - mean[:, 64:]) / std[:, 64:]
    return y, cbcr


def _normalization_for(input_config):
    """(mean, std) an input config normalizes with: 192 DCT values (default: 0 and DEFAULT_DCT_SCALE) or the
    3 RGB ones, in the units the batch had before normalization (raw dequantized coefficients, [0, 1] pixels)."""
    from .dct_batch import DEFAULT_DCT_SCALE
    if input_config.representation == "dct":
        if input_config.dct_mean is not None:
            return tuple(input_config.dct_mean), tuple(input_config.dct_std)
        return (0.0,) * 192, (DEFAULT_DCT_SCALE,) * 192
    return tuple(input_config.mean), tuple(input_config.std)


def build_batch(ds: JpegFolder, indices, *, seed: int, epoch: int, device="cpu", input_config=None,
                num_threads: int | None = None, pool: ThreadPoolExecutor | None = None,
                normalize: bool = True, k_margin: float | None = 1.0):
    """Decode and transform the samples `indices` of ds. Returns (batch or None, bad) where batch is
    (inputs tuple, targets int64) on `device` and bad lists (path, reason, exception) of unusable files."""
    indices = list(indices)
    return build_batch_from(ds, [ds.samples[i][0] for i in indices], indices, [ds.samples[i][1] for i in indices],
                            seed=seed, epoch=epoch, device=device, input_config=input_config,
                            num_threads=num_threads, pool=pool, normalize=normalize, k_margin=k_margin)


def build_batch_from(ds, sources, keys, targets, *, names=None, seed: int, epoch: int, device="cpu",
                     input_config=None, num_threads: int | None = None, pool: ThreadPoolExecutor | None = None,
                     normalize: bool = True, k_margin: float | None = 1.0):
    """The batch of `sources` (file paths, or the JPEG bytes themselves, e.g. members of a tar shard) with
    their labels `targets`, transformed by ds's settings (`ds.windows`, input size, strictness...). keys: the
    integer each item's augmentation is drawn from with (seed, epoch) (a folder's sample index). names: how
    a bad item is reported (default: its path). Returns (batch or None, bad) as `build_batch`."""
    device = torch.device(device)
    pin = device.type == "cuda"
    sources, keys, targets = list(sources), list(keys), list(targets)
    names = [s if isinstance(s, (str, os.PathLike)) else f"item {j}" for j, s in enumerate(sources)] \
        if names is None else list(names)
    bad: list = []  # (position in the batch, name, reason, exception)

    def reject(j: int, error: Exception) -> None:
        # a bytes item's JpegError names "item N" of the reader's batch: report the caller's name instead
        reason = error.message if isinstance(error, JpegError) and not isinstance(sources[j], (str, os.PathLike)) \
            else str(error)
        bad.append((j, names[j], reason, error))

    def bad_in_order() -> list:
        return [b[1:] for b in sorted(bad, key=lambda b: b[0])]

    if ds.representation == "dct":
        threads = num_threads or default_threads()
        # Headers first: each window is drawn from its image's size, and only the MCUs under it are decoded
        # (in single-scan files entropy decoding stops after the window's last MCU row).
        headers = read_headers_batch(sources, threads=threads, on_error="return")
        readable = []
        for j, h in enumerate(headers):
            if isinstance(h, JpegError):
                reject(j, h)
            else:
                readable.append(j)
        if not readable:
            return None, bad_in_order()
        widths = np.array([headers[j].width for j in readable])
        heights = np.array([headers[j].height for j in readable])
        orientations = (np.array([read_orientation(sources[j]) for j in readable])
                        if getattr(ds, "exif_orientation", False) else np.ones(len(readable), dtype=np.int64))
        # Windows are drawn on the upright (displayed) image and mapped back onto the stored one.
        transposed = np.isin(orientations, (5, 6, 7, 8))
        shown_w, shown_h = np.where(transposed, heights, widths), np.where(transposed, widths, heights)
        windows, flips = ds.windows([keys[j] for j in readable], shown_w, shown_h, seed, epoch)
        windows = stored_windows(windows, orientations, shown_w, shown_h)
        crops = decode_crops(windows, widths, heights, [headers[j].mcu_size for j in readable])
        results = read_coefficients_batch([sources[j] for j in readable], threads=threads, on_error="return",
                                          strict=ds.strict, max_pixels=ds.max_pixels,
                                          crop=[tuple(int(v) for v in c) for c in crops])
        keep, images, rows = [], [], []
        for row, (j, r) in enumerate(zip(readable, results)):
            if isinstance(r, JpegError):
                reject(j, r)
                continue
            try:
                planes = image_planes(r)
            except UnsupportedImage as e:
                reject(j, e)
                continue
            keep.append(j)
            rows.append(row)
            images.append((r, planes))
        if not keep:
            return None, bad_in_order()
        # the windows relative to the decoded area (crop origins are whole MCUs: exact in float64)
        windows = windows[rows] - np.concatenate([crops[rows, :2], np.zeros((len(rows), 2))], axis=1)
        flips = flips[rows]
        orientations = orientations[rows]
        if normalize:
            mean, std = _normalization(ds, input_config)
        else:
            mean, std = torch.zeros(192), torch.ones(192)
        if (orientations == 1).all():
            inputs = build_dct_batch([p for _, p in images], windows, flips, ds.input_size, device=device,
                                     mean=mean, std=std, k_margin=k_margin, pin_memory=pin,
                                     threads=threads)
        else:
            inputs = _oriented_dct_batch([p for _, p in images], windows, flips, orientations, ds.input_size,
                                         device=device, mean=mean, std=std, k_margin=k_margin, pin=pin,
                                         threads=threads)
    else:
        from .rgb import load_rgb
        mean, std = _normalization(ds, input_config)
        jobs = [(ds, k, src, seed, epoch, mean, std) for k, src in zip(keys, sources)]
        outs = list(pool.map(load_rgb, jobs)) if pool is not None else [load_rgb(j) for j in jobs]
        keep = []
        for j, o in enumerate(outs):
            if isinstance(o, Exception):
                bad.append((j, names[j], f"{type(o).__name__}: {o}", o))
            else:
                keep.append(j)
        if not keep:
            return None, bad_in_order()
        x = torch.empty((len(keep), 3, *ds.input_size), dtype=torch.float32, pin_memory=pin)
        for row, j in enumerate(keep):
            x[row] = outs[j]
        inputs = (x.to(device, non_blocking=pin),)
    targets = torch.tensor([targets[j] for j in keep], dtype=torch.int64)
    if pin:
        targets = targets.pin_memory()
    return (inputs, targets.to(device, non_blocking=pin)), bad_in_order()


class JpegLoader:
    """Iterable of (inputs, targets) batches; see create_loader."""

    def __init__(self, dataset: JpegFolder, batch_size: int, *, shuffle: bool = False, sampler=None,
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
        self.input_config = input_config
        self.seed = int(seed)
        self.prefetch = int(prefetch)
        self.epoch = 0
        self.start_batch = 0
        # Batches of this epoch's order done once the batch just yielded is consumed, counting batches left
        # out because every file in them was unreadable: what a checkpoint must store to resume exactly.
        self.position = 0
        self.skipped: list[tuple[str, str]] = []
        _normalization(dataset, input_config)  # bad statistics fail here, not in the first batch
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
        if len(self.skipped) > skipped_before:
            logger.warning("epoch %d: skipped %d unreadable files", self.epoch, len(self.skipped) - skipped_before)

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


def create_loader(dataset: JpegFolder, batch_size: int, *, shuffle: bool = False, sampler=None,
                  drop_last: bool = False, device="cpu", num_threads: int | None = None, input_config=None,
                  seed: int = 0, prefetch: int = 2) -> JpegLoader:
    """A loader over a JpegFolder: batches of (inputs, targets) on `device`, augmented and normalized.

    inputs: (y (N,64,H/8,W/8), cbcr (N,128,H/16,W/16)) channels_last for 'dct'; (x (N,3,H,W),) for 'rgb'.
    shuffle: a fresh permutation per epoch from (seed, epoch); sampler: e.g. DistributedSampler (its
    set_epoch is called by ours). num_threads: decode threads (default: the cores available). input_config:
    normalization (dct_mean / dct_std; without them coefficients are divided by DEFAULT_DCT_SCALE).
    Unreadable files are skipped (listed in `loader.skipped`, logged once) unless the dataset says
    on_error='raise'; a batch whose files all fail is left out (so a skip makes a batch smaller, never
    reshuffles). prefetch: batches built ahead, each on its own background thread with num_threads /
    prefetch decode threads (0: build in the caller's thread).
    A JpegShards gets a ShardLoader (no sampler: each process reads its own part of the shards; shuffle
    permutes the shards and runs a shuffle buffer; see jpegnet.data.shards).
    """
    from .shards import JpegShards, ShardLoader
    if isinstance(dataset, JpegShards):
        if sampler is not None:
            raise ValueError("shards take no sampler: the loader splits them between processes itself")
        return ShardLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, device=device,
                           num_threads=num_threads, input_config=input_config, seed=seed, prefetch=prefetch)
    return JpegLoader(dataset, batch_size, shuffle=shuffle, sampler=sampler, drop_last=drop_last, device=device,
                      num_threads=num_threads, input_config=input_config, seed=seed, prefetch=prefetch)
