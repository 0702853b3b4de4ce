"""JpegSource: the transform settings every JPEG source shares (a folder, tar shards), with their checks, and
the once-per-path log of files that could not be used."""
from __future__ import annotations

import logging
import threading

import numpy as np

from ..input_config import REPRESENTATIONS, InputConfig, check_input_size
from .augment import center_crop_windows, random_resized_crop_windows
from .rgb import check_rgb_decode

logger = logging.getLogger("jpegnet.data")

_logged_paths: set = set()
_logged_lock = threading.Lock()


def log_bad_file(path: str, reason: str) -> None:
    """Log a file that could not be used, once per path per process: `skipping PATH: REASON`, the path once
    (a reason that starts with it, as a JpegError's text does, is cut)."""
    if isinstance(path, bytes):  # an in-memory JPEG: name it, do not print it
        path = f"<{len(path)} bytes, hash {hash(path) & 0xFFFFFF:06x}>"
    reason = str(reason)
    if reason.startswith(f"{path}: "):
        reason = reason[len(f"{path}: "):]
    with _logged_lock:
        if path in _logged_paths:
            return
        _logged_paths.add(path)
    logger.warning("skipping %s: %s", path, reason)


class JpegSource:
    """The transform settings every JPEG source shares (a folder, tar shards): representation, train or
    evaluation windows, input size, error policy, reader limits. `windows` draws each item's crop and flip
    from (seed, epoch, key), the key being an integer fixed per sample (a folder's index)."""

    def _configure(self, representation, train, input_size, on_error, scale, ratio, hflip, crop_pct, input_config,
                   seed, strict, max_pixels, exif_orientation=True, rgb_decode="plain") -> None:
        if representation not in REPRESENTATIONS:
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
        self.input_size = check_input_size(input_size, representation)
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
        # RGB models: 'plain' (torchvision on a full-size Pillow decode) or 'fast' (scaled IDCT + a window-only
        # resample, the same windows; see jpegnet.data.rgb)
        self.rgb_decode = check_rgb_decode(rgb_decode)

    @staticmethod
    def model_options(input_config: InputConfig) -> dict:
        """The constructor keywords an InputConfig decides: representation, input size, evaluation crop_pct
        and the config itself (its normalization)."""
        if not isinstance(input_config, InputConfig):
            raise TypeError(f"for_model needs a jpegnet InputConfig (e.g. model.input_config), got "
                            f"{type(input_config).__name__}")
        return dict(representation=input_config.representation, input_size=input_config.input_size,
                    crop_pct=input_config.crop_pct, input_config=input_config)

    @classmethod
    def for_model(cls, source, input_config: InputConfig, *, train: bool, **options):
        """The dataset a model with this InputConfig reads from `source`: representation, input size,
        evaluation crop_pct and normalization all come from the config (nothing is given twice). options:
        the constructor's other keywords (on_error, seed, exif_orientation, rgb_decode, max_pixels, scale, hflip...)."""
        return cls(source, train=train, **cls.model_options(input_config), **options)

    def make_loader(self, batch_size: int, **options):
        """The loader of this kind of source (see `jpegnet.data.create_loader`)."""
        raise NotImplementedError

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


__all__ = ["JpegSource", "log_bad_file", "logger"]
