"""JpegFolder: an ImageFolder-layout directory (one subfolder per class) as a torch dataset, in the DCT or the
RGB representation, with its augmentation settings.

Indexing one item works with a plain `torch.utils.data.DataLoader` (use `collate_fn=JpegFolder.collate`
so skipped files drop out); `create_loader` is the fast path that decodes whole batches on C threads.
"""
from __future__ import annotations

import os

import torch

from ..codec import DEFAULT_MAX_PIXELS
from ..input_config import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (their old import path)
from .batch import build_batch
from .loader import JpegLoader
from .scan import JPEG_EXTENSIONS, FolderScan
from .source import JpegSource, log_bad_file, logger  # noqa: F401  (JpegSource, logger: their old import path)


class JpegFolder(JpegSource, torch.utils.data.Dataset):
    """Images in root/<class>/<file>.jpg as a dataset.

    representation: 'dct' (items ((y, cbcr), target)) or 'rgb' (items ((x,), target)).
    train: random-resized-crop (scale, ratio as torchvision) and horizontal flip with probability hflip;
        otherwise resize-shorter-side to floor(max(input_size) / crop_pct) and centre crop.
    rgb_decode: RGB representation only: 'plain' (torchvision on a full-size Pillow decode) or 'fast'
        (libjpeg-turbo's scaled decode + one resample of the window: the same windows, what `jpegnet serve`
        uses; see jpegnet.data.rgb).
    on_error: 'skip' (bad files are logged once and dropped: an item is None) or 'raise' (JpegError / the
        decoder's error at the first bad file).
    input_config: the model's InputConfig (or an object with its dct_mean / dct_std, mean / std); its
        normalization is used by item access and is the default of create_loader. `JpegFolder.for_model(root,
        model.input_config, train=...)` takes representation, input_size and crop_pct from it as well.
    root: a folder, or the FolderScan of one (jpegnet.data.scan: the engine's folder check made it; the folder
        is then not listed again).
    seed: augmentation seed for item access (create_loader has its own); randomness is a pure function of
        (seed, epoch, index): call set_epoch(epoch) between epochs.
    strict: the reader's strict mode (corrupt-data warnings are errors, as Pillow refuses truncated files).
    """

    def __init__(self, root, representation: str = "dct", *, train: bool, input_size=(224, 224),
                 on_error: str = "skip", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                 crop_pct: float = 0.875, input_config=None, seed: int = 0, strict: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, extensions=JPEG_EXTENSIONS,
                 exif_orientation: bool = True, rgb_decode: str = "plain"):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        self._configure(representation, train, input_size, on_error, scale, ratio, hflip, crop_pct, input_config,
                        seed, strict, max_pixels, exif_orientation, rgb_decode)
        exts = tuple(e.lower() for e in extensions)
        # Hidden entries skipped, each real directory visited once (jpegnet.data.scan); a scan made by the
        # engine's folder check is used as it is.
        scan = root if isinstance(root, FolderScan) and root.extensions == exts else FolderScan.of(self.root, exts)
        self.classes, self.samples = list(scan.classes), list(scan.samples)
        if not self.classes:
            raise FileNotFoundError(f"no class subfolders in {self.root} (expected root/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        if not self.samples:
            raise FileNotFoundError(f"no JPEG files ({', '.join(exts)}) under {self.root}")
        self.targets = [t for _, t in self.samples]

    @classmethod
    def for_model(cls, source, input_config, *, train: bool, **options) -> "JpegFolder":
        """The dataset a model with this InputConfig reads: source is a folder (or its FolderScan), or a list
        of files / JPEG bytes (`from_files`); representation, input size, crop_pct and normalization come from
        the config. options: the other keywords (on_error, seed, exif_orientation, rgb_decode, max_pixels...)."""
        if isinstance(source, (list, tuple)):
            return cls.from_files(list(source), train=train, **cls.model_options(input_config), **options)
        return super().for_model(source, input_config, train=train, **options)

    @classmethod
    def from_files(cls, files, representation: str = "dct", *, train: bool = False, input_size=(224, 224),
                   on_error: str = "skip", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                   crop_pct: float = 0.875, input_config=None, seed: int = 0, strict: bool = True,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, exif_orientation: bool = True,
                   rgb_decode: str = "plain") -> "JpegFolder":
        """A dataset of explicit files (no class folders; every target is -1), e.g. for prediction: the
        files go through exactly the transforms of a folder dataset with the same arguments. An item may also
        be the bytes of a JPEG file (e.g. from a request or an archive)."""
        self = cls.__new__(cls)
        self._configure(representation, train, input_size, on_error, scale, ratio, hflip, crop_pct, input_config,
                        seed, strict, max_pixels, exif_orientation, rgb_decode)
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

    def make_loader(self, batch_size: int, **options) -> JpegLoader:
        return JpegLoader(self, batch_size, **options)

    def __getitem__(self, index: int):
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
