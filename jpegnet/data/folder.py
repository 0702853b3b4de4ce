"""JpegFolder: an ImageFolder-layout directory (one subfolder per class) as a torch dataset, in the DCT or the
RGB representation, with its augmentation settings.

Indexing one item works with a plain `torch.utils.data.DataLoader` (use `collate_fn=JpegFolder.collate`
so skipped files drop out); `create_loader` is the fast path that decodes whole batches on C threads.
"""
from __future__ import annotations

import logging
import os
import threading

import numpy as np
import torch

from ..codec import DEFAULT_MAX_PIXELS
from .augment import center_crop_windows, random_resized_crop_windows
from .scan import JPEG_EXTENSIONS, scan_image_folder

logger = logging.getLogger("jpegnet.data")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_logged_paths: set = set()
_logged_lock = threading.Lock()


def log_bad_file(path: str, reason: str) -> None:
    """Log a file that could not be used, once per path per process."""
    if isinstance(path, bytes):  # an in-memory JPEG: name it, do not print it
        path = f"<{len(path)} bytes, hash {hash(path) & 0xFFFFFF:06x}>"
    with _logged_lock:
        if path in _logged_paths:
            return
        _logged_paths.add(path)
    logger.warning("skipping %s: %s", path, reason)


def _size(value, representation: str = "dct") -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"input_size must be an int or (height, width), got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"input_size must be positive, got {value!r}")
    if representation == "dct" and (h % 16 or w % 16):
        # RGB input takes any size; DCT input is whole 16x16 MCUs (8x8 luma blocks, 4:2:0 chroma)
        raise ValueError(f"DCT input_size must be positive multiples of 16 (the 4:2:0 chroma grid), got {value!r}")
    return h, w


class JpegSource:
    """The transform settings every JPEG source shares (a folder, tar shards): representation, train or
    evaluation windows, input size, error policy, reader limits. `windows` draws each item's crop and flip
    from (seed, epoch, key), the key being an integer fixed per sample (a folder's index)."""

    def _configure(self, representation, train, input_size, on_error, scale, ratio, hflip, crop_pct, input_config,
                   seed, strict, max_pixels, exif_orientation=True) -> None:
        if representation not in ("dct", "rgb"):
            raise ValueError(f"representation must be 'dct' or 'rgb', got {representation!r}")
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {hflip!r}")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (min, max) area fractions with 0 < min <= max, got {scale!r}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (min, max) aspect ratios with 0 < min <= max, got {ratio!r}")
        self.representation = representation
        self.train = bool(train)
        self.input_size = _size(input_size, representation)
        self.on_error = on_error
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.hflip = float(hflip)
        self.crop_pct = float(crop_pct)
        self.input_config = input_config
        self.seed = int(seed)
        self.epoch = 0
        self.strict = bool(strict)
        self.max_pixels = max_pixels
        # EXIF orientation: images are turned upright before cropping (RGB: transposed after decode; DCT: exact
        # block transposes and sign flips, see jpegnet.dct.orient), so both pipelines see the displayed image.
        self.exif_orientation = bool(exif_orientation)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- augmentation windows ---------------------------------------------------------------------

    def windows(self, indices, widths, heights, seed: int, epoch: int):
        """(windows (N, 4) float pixels, flips (N,) bool) for these samples and image sizes."""
        if self.train:
            return random_resized_crop_windows(seed, epoch, indices, widths, heights, self.scale, self.ratio,
                                               self.hflip)
        return (center_crop_windows(widths, heights, self.input_size, self.crop_pct),
                np.zeros(len(widths), dtype=bool))


class JpegFolder(JpegSource, torch.utils.data.Dataset):
    """Images in root/<class>/<file>.jpg as a dataset.

    representation: 'dct' (items ((y, cbcr), target)) or 'rgb' (items ((x,), target)).
    train: random-resized-crop (scale, ratio as torchvision) and horizontal flip with probability hflip;
        otherwise resize-shorter-side to floor(max(input_size) / crop_pct) and centre crop.
    on_error: 'skip' (bad files are logged once and dropped: an item is None) or 'raise' (JpegError / the
        decoder's error at the first bad file).
    input_config: an object with dct_mean / dct_std (192 values, or None) and mean / std (RGB), like
        jpegnet.models.InputConfig; used by item access and as the default of create_loader.
    seed: augmentation seed for item access (create_loader has its own); randomness is a pure function of
        (seed, epoch, index): call set_epoch(epoch) between epochs.
    strict: the reader's strict mode (corrupt-data warnings are errors, as Pillow refuses truncated files).
    """

    def __init__(self, root, representation: str = "dct", *, train: bool, input_size=(224, 224),
                 on_error: str = "skip", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                 crop_pct: float = 0.875, input_config=None, seed: int = 0, strict: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, extensions=JPEG_EXTENSIONS,
                 exif_orientation: bool = True):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        self._configure(representation, train, input_size, on_error, scale, ratio, hflip, crop_pct, input_config,
                        seed, strict, max_pixels, exif_orientation)
        exts = tuple(e.lower() for e in extensions)
        # Hidden entries skipped, each real directory visited once: the same scan as the engine's folder check.
        self.classes, self.samples = scan_image_folder(self.root, exts)
        if not self.classes:
            raise FileNotFoundError(f"no class subfolders in {self.root} (expected root/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        if not self.samples:
            raise FileNotFoundError(f"no JPEG files ({', '.join(exts)}) under {self.root}")
        self.targets = [t for _, t in self.samples]

    @classmethod
    def from_files(cls, files, representation: str = "dct", *, train: bool = False, input_size=(224, 224),
                   on_error: str = "skip", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                   crop_pct: float = 0.875, input_config=None, seed: int = 0, strict: bool = True,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, exif_orientation: bool = True) -> "JpegFolder":
        """A dataset of explicit files (no class folders; every target is -1), e.g. for prediction: the
        files go through exactly the transforms of a folder dataset with the same arguments. An item may also
        be the bytes of a JPEG file (e.g. from a request or an archive)."""
        self = cls.__new__(cls)
        self._configure(representation, train, input_size, on_error, scale, ratio, hflip, crop_pct, input_config,
                        seed, strict, max_pixels, exif_orientation)
        self.root = None
        self.classes = []
        self.class_to_idx = {}
        self.samples = [(bytes(f) if isinstance(f, (bytes, bytearray, memoryview)) else os.fspath(f), -1)
                        for f in files]
        self.targets = [-1] * len(self.samples)
        return self

    def __len__(self) -> int:
        return len(self.samples)

    # -- item access ------------------------------------------------------------------------------

    def __getitem__(self, index: int):
        from .loader import build_batch
        path, target = self.samples[index]
        batch, bad = build_batch(self, [index], seed=self.seed, epoch=self.epoch, device="cpu",
                                 input_config=self.input_config, num_threads=1)
        if bad:
            path, reason, error = bad[0]
            if self.on_error == "raise":
                raise error
            log_bad_file(path, reason)
            return None
        inputs, _ = batch
        return tuple(t[0] for t in inputs), target

    @staticmethod
    def collate(items):
        """collate_fn for DataLoader: drops skipped (None) items, stacks the rest as create_loader does."""
        items = [it for it in items if it is not None]
        if not items:
            return None
        inputs = tuple(torch.stack([it[0][j] for it in items]) for j in range(len(items[0][0])))
        if len(inputs) == 2:  # (y, cbcr): keep the DCT path's channels_last layout
            inputs = tuple(t.contiguous(memory_format=torch.channels_last) for t in inputs)
        targets = torch.tensor([it[1] for it in items], dtype=torch.int64)
        return inputs, targets

    def __repr__(self) -> str:
        return (f"JpegFolder({self.root!r}, {self.representation!r}, train={self.train}, "
                f"input_size={self.input_size}, {len(self.samples)} images, {len(self.classes)} classes)")


__all__ = ["JpegFolder", "JpegSource", "JPEG_EXTENSIONS", "log_bad_file"]
