"""build_batch: samples of a JPEG source (a folder's files, or the JPEG bytes themselves, e.g. members of a tar
shard) → one batch of model inputs, by the source's settings. It serves the loaders, item access, statistics,
prediction and serving alike, so that every path applies the very same transform.

DCT (`dct_inputs`): headers → windows → decode → resample → normalize. The batch's headers are read first
(`read_headers_batch`), each image's window is drawn from (seed, epoch, key) and its size (on the upright
image, then mapped onto the stored one for EXIF orientations), and only the MCUs under the window are
entropy-decoded (`read_coefficients_batch` with per-item crops, C threads, GIL released; in single-scan files
decoding stops after the window's last MCU row, which saves about 40% of the decode on ImageNet-sized
originals). A file is skipped when the part its window needs cannot be decoded; damage below the window is
never read, so whether a file with a damaged tail is used depends on its window (a pure function of (seed,
epoch, key): the same epoch skips the same files). `build_dct_batch` then crops, resizes (with the source's
`interpolation` filter), mirrors and normalizes the whole batch.

RGB (`rgb_inputs`): the torchvision twin (Pillow decode, resized crop, flip, ToTensor, Normalize; see
jpegnet.data.rgb) per image, on a thread pool when given one, stacked into a pinned batch.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..codec import JpegError, read_coefficients_batch, read_headers_batch
from ..codec.exif import ORIENTATION_OPS, read_orientation
from ..codec.reader import default_threads
from ..dct.orient import hflip_blocks, orient_blocks
from ..input_config import DCT_CHANNELS, DCT_Y_CHANNELS, normalization
from .dct_resample import UnsupportedImage, build_dct_batch, decode_crops, image_planes
from .rgb import load_rgb


def build_batch(ds, indices, *, seed: int, epoch: int, device="cpu", input_config=None,
                num_threads: int | None = None, pool: ThreadPoolExecutor | None = None,
                normalize: bool = True, k_margin: float | None = 1.0):
    """Decode and transform the samples `indices` of ds (a JpegFolder). Returns (batch or None, bad) where
    batch is (inputs tuple, targets int64) on `device` and bad lists (path, reason, exception) of unusable
    files."""
    indices = list(indices)
    return build_batch_from(ds, [ds.samples[i][0] for i in indices], indices, [ds.samples[i][1] for i in indices],
                            seed=seed, epoch=epoch, device=device, input_config=input_config,
                            num_threads=num_threads, pool=pool, normalize=normalize, k_margin=k_margin)


def build_batch_from(ds, sources, keys, targets, *, names=None, seed: int, epoch: int, device="cpu",
                     input_config=None, num_threads: int | None = None, pool: ThreadPoolExecutor | None = None,
                     normalize: bool = True, k_margin: float | None = 1.0):
    """The batch of `sources` (file paths, or the JPEG bytes themselves) with their labels `targets`,
    transformed by ds's settings (`ds.windows`, input size, strictness...). keys: the integer each item's
    augmentation is drawn from with (seed, epoch) (a folder's sample index). names: how a bad item is reported
    (default: its path). input_config: the normalization (None: the dataset's own input_config); normalize=False
    leaves DCT coefficients raw (dequantized). Returns (batch or None, bad) as `build_batch`."""
    device = torch.device(device)
    pin = device.type == "cuda"
    sources, keys, targets = list(sources), list(keys), list(targets)
    names = [s if isinstance(s, (str, os.PathLike)) else f"item {j}" for j, s in enumerate(sources)] \
        if names is None else list(names)
    mean, std = normalization(ds.input_config if input_config is None else input_config, ds.representation)
    if ds.representation == "dct":
        if not normalize:
            mean, std = (0.0,) * DCT_CHANNELS, (1.0,) * DCT_CHANNELS
        inputs, keep, failures = dct_inputs(ds, sources, keys, seed=seed, epoch=epoch, device=device, mean=mean,
                                            std=std, threads=num_threads or default_threads(), k_margin=k_margin)
    else:
        inputs, keep, failures = rgb_inputs(ds, sources, keys, seed=seed, epoch=epoch, device=device, mean=mean,
                                            std=std, pool=pool)
    bad = [(names[j], reason, error) for j, (reason, error) in sorted(failures.items())]
    if not keep:
        return None, bad
    targets = torch.tensor([targets[j] for j in keep], dtype=torch.int64)
    if pin:
        targets = targets.pin_memory()
    return (inputs, targets.to(device, non_blocking=pin)), bad


# -- DCT --------------------------------------------------------------------------------------------

def dct_inputs(ds, sources, keys, *, seed: int, epoch: int, device: torch.device, mean, std, threads: int,
               k_margin: float | None):
    """((y, cbcr) or None, positions kept, {position: (reason, exception)}) for the DCT representation."""
    failures: dict = {}

    def reject(j: int, error: Exception) -> None:
        # The reason without the source the JpegError names (a path, or "item N" of the reader's batch for
        # bytes): whoever reports the failure names the file once, as `NAME: reason`.
        failures[j] = (error.message if isinstance(error, JpegError) else str(error), error)

    # Headers first: each window is drawn from its image's size, and only the MCUs under it are decoded.
    headers = read_headers_batch(sources, threads=threads, on_error="return")
    readable = []
    for j, h in enumerate(headers):
        if isinstance(h, JpegError):
            reject(j, h)
        else:
            readable.append(j)
    if not readable:
        return None, [], failures
    widths = np.array([headers[j].width for j in readable])
    heights = np.array([headers[j].height for j in readable])
    orientations = (np.array([read_orientation(sources[j]) for j in readable])
                    if getattr(ds, "exif_orientation", False) else np.ones(len(readable), dtype=np.int64))
    # Windows are drawn on the upright (displayed) image and mapped back onto the stored one.
    transposed = orientations >= 5  # EXIF 5 … 8 swap the axes (read_orientation gives 1 … 8)
    shown_w, shown_h = np.where(transposed, heights, widths), np.where(transposed, widths, heights)
    windows, flips = ds.windows([keys[j] for j in readable], shown_w, shown_h, seed, epoch)
    windows = stored_windows(windows, orientations, shown_w, shown_h)
    crops = decode_crops(windows, widths, heights, [headers[j].mcu_size for j in readable])
    results = read_coefficients_batch([sources[j] for j in readable], threads=threads, on_error="return",
                                      strict=ds.strict, max_pixels=ds.max_pixels,
                                      crop=[tuple(int(v) for v in c) for c in crops])
    keep, planes, rows = [], [], []
    for row, (j, r) in enumerate(zip(readable, results)):
        if isinstance(r, JpegError):
            reject(j, r)
            continue
        try:
            planes.append(image_planes(r))
        except UnsupportedImage as e:
            reject(j, e)
            continue
        keep.append(j)
        rows.append(row)
    if not keep:
        return None, [], failures
    # the windows relative to the decoded area (crop origins are whole MCUs: exact in float64)
    windows = windows[rows] - np.concatenate([crops[rows, :2], np.zeros((len(rows), 2))], axis=1)
    flips, orientations = flips[rows], orientations[rows]
    pin = device.type == "cuda"
    interpolation = getattr(ds, "interpolation", "bilinear")  # the model's resize filter (InputConfig)
    if (orientations == 1).all():
        inputs = build_dct_batch(planes, windows, flips, ds.input_size, device=device, mean=mean, std=std,
                                 k_margin=k_margin, pin_memory=pin, threads=threads, interpolation=interpolation)
    else:
        inputs = _oriented_dct_batch(planes, windows, flips, orientations, ds.input_size, device=device,
                                     mean=mean, std=std, k_margin=k_margin, threads=threads,
                                     interpolation=interpolation)
    return inputs, keep, failures


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


def _oriented_dct_batch(planes, windows, flips, orientations, out_size, *, device, mean, std, k_margin, threads,
                        interpolation="bilinear"):
    """build_dct_batch for images with EXIF orientations: each group of one orientation is resampled on its
    stored grid as raw coefficients, turned upright with exact block operations (jpegnet.dct.orient), then
    mirrored by the augmentation and normalized (normalization last: it does not commute with a transpose)."""
    out_h, out_w = out_size
    n = len(planes)
    y = torch.empty((n, DCT_Y_CHANNELS, out_h // 8, out_w // 8), dtype=torch.float32, device=device)
    y = y.contiguous(memory_format=torch.channels_last)
    cbcr = torch.empty((n, DCT_CHANNELS - DCT_Y_CHANNELS, out_h // 16, out_w // 16), dtype=torch.float32,
                       device=device).contiguous(memory_format=torch.channels_last)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, DCT_CHANNELS, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, DCT_CHANNELS, 1, 1)
    luma = slice(0, DCT_Y_CHANNELS)
    chroma = slice(DCT_Y_CHANNELS, DCT_CHANNELS)
    for o in np.unique(orientations):
        rows = np.flatnonzero(orientations == o)
        transpose, hflip, vflip = ORIENTATION_OPS[int(o)]
        size = (out_w, out_h) if transpose else (out_h, out_w)
        raw_y, raw_c = build_dct_batch([planes[r] for r in rows], windows[rows], np.zeros(len(rows), dtype=bool),
                                       size, device=device, mean=torch.zeros(DCT_CHANNELS),
                                       std=torch.ones(DCT_CHANNELS), k_margin=k_margin, pin_memory=False,
                                       threads=threads, interpolation=interpolation)
        raw_y = orient_blocks(raw_y, transpose, hflip, vflip)
        raw_c = orient_blocks(raw_c, transpose, hflip, vflip)
        mirror = torch.as_tensor(flips[rows], device=device)
        if mirror.any():
            raw_y = torch.where(mirror.view(-1, 1, 1, 1), hflip_blocks(raw_y), raw_y)
            raw_c = torch.where(mirror.view(-1, 1, 1, 1), hflip_blocks(raw_c), raw_c)
        index = torch.as_tensor(rows, device=device)
        y[index] = (raw_y - mean[:, luma]) / std[:, luma]
        cbcr[index] = (raw_c - mean[:, chroma]) / std[:, chroma]
    return y, cbcr


# -- RGB --------------------------------------------------------------------------------------------

def rgb_inputs(ds, sources, keys, *, seed: int, epoch: int, device: torch.device, mean, std,
               pool: ThreadPoolExecutor | None):
    """((x,) or None, positions kept, {position: (reason, exception)}) for the RGB representation."""
    jobs = [(ds, k, src, seed, epoch, mean, std) for k, src in zip(keys, sources)]
    outs = list(pool.map(load_rgb, jobs)) if pool is not None else [load_rgb(j) for j in jobs]
    failures = {j: rgb_failure(o) for j, o in enumerate(outs) if isinstance(o, Exception)}
    keep = [j for j in range(len(outs)) if j not in failures]
    if not keep:
        return None, [], failures
    pin = device.type == "cuda"
    x = torch.empty((len(keep), 3, *ds.input_size), dtype=torch.float32, pin_memory=pin)
    for row, j in enumerate(keep):
        x[row] = outs[j]
    return (x.to(device, non_blocking=pin),), keep, failures


def rgb_failure(error: Exception) -> tuple[str, Exception]:
    """(reason, exception) for an image the RGB twin could not decode (what `load_rgb` returned)."""
    return f"{type(error).__name__}: {_without_file_object(str(error))}", error


def _without_file_object(text: str) -> str:
    """Pillow's "cannot identify image file <_io.BufferedReader name='a/b.jpg'>" without the file object (the
    reason follows the file's name already)."""
    return text.split(" <_io.", 1)[0]


__all__ = ["build_batch", "build_batch_from", "dct_inputs", "rgb_failure", "rgb_inputs", "stored_windows"]
