"""One image's evaluation inputs without the batch machinery: what `jpegnet serve` runs per upload.

`build_batch` is built for batches: it reads the batch's headers on C threads, draws every window with numpy
over the batch, maps them through the EXIF orientations, decodes on C threads and resamples with per-batch
bookkeeping. For one image at a time that machinery is dozens of small numpy / torch calls, about a third of
a served ImageNet original's DCT preprocessing (2-core AVX2 VM: ~1 ms of ~3). `SingleImage` keeps what the
dataset's settings fix once (input size, normalization, resize filter, limits) and what depends only on an
image's size (its centre-crop window and the MCU-aligned area to decode, cached per size: a collection has few
sizes), and per image runs the header read, the entropy decode of that area and the fused resample.

The tensors are exactly build_batch's (tests compare them on every file of the corpus): the same functions
make the window, the decoded area and the resample (`build_dct_batch`, fused C kernel or its torch fallback alike).
DCT images with an EXIF orientation other than 1 are passed to build_batch as they are (their block transposes
are the batch path's). RGB images go straight to the twin's one-image decode (jpegnet.data.rgb).
"""
from __future__ import annotations

import functools

import numpy as np

from ..codec import JpegError, read_coefficients, read_header
from ..codec.exif import read_orientation
from ..input_config import normalization
from .batch import build_batch_from, rgb_failure
from .dct_resample import UnsupportedImage, build_dct_batch, decode_crops, image_planes
from .rgb import load_rgb

#: how many image sizes keep their window and decoded area (each entry ~200 bytes)
GEOMETRY_CACHE_SIZE = 4096

_NO_FLIP = np.zeros(1, dtype=bool)


class SingleImage:
    """Evaluation inputs of one image at a time, by the settings of `ds` (a JpegFolder / JpegShards made with
    train=False, e.g. `JpegFolder.from_files([], ...)` or `for_model([], config, train=False)`: its files are
    not used). Thread-safe: a server calls it from several decode threads.

        inputs, failure = SingleImage(ds)(jpeg_bytes)

    inputs: the model's input tensors, batch of 1, on the CPU ((y, cbcr) channels_last, or (x,)); failure:
    None, or (reason, exception) as build_batch reports a bad file (inputs None)."""

    def __init__(self, ds):
        if ds.train:
            raise ValueError("SingleImage makes evaluation inputs: give it a dataset made with train=False")
        self.ds = ds
        self.mean, self.std = normalization(ds.input_config, ds.representation)
        self._geometry = functools.lru_cache(maxsize=GEOMETRY_CACHE_SIZE)(self._window_and_area)

    def __call__(self, source):
        if self.ds.representation == "rgb":
            return self._rgb(source)
        return self._dct(source)

    # -- DCT ----------------------------------------------------------------------------------------

    def _dct(self, source):
        ds = self.ds
        if ds.exif_orientation and read_orientation(source) != 1:
            return self._through_batch(source)
        try:
            header = read_header(source)
            window, area = self._geometry(header.width, header.height, header.mcu_size)
            coefficients = read_coefficients(source, strict=ds.strict, max_pixels=ds.max_pixels, crop=area)
            planes = image_planes(coefficients)
        except JpegError as error:
            return None, (error.message, error)
        except UnsupportedImage as error:
            return None, (str(error), error)
        inputs = build_dct_batch([planes], window, _NO_FLIP, ds.input_size, mean=self.mean, std=self.std,
                                 interpolation=ds.interpolation)
        return inputs, None

    def _window_and_area(self, width: int, height: int, mcu_size: tuple[int, int]):
        """(the centre-crop window relative to the decoded area (1, 4), the area (x, y, w, h) to decode) for an
        upright image of this size: build_batch's windows and decode_crops, for one image."""
        widths, heights = np.array([width]), np.array([height])
        windows, _ = self.ds.windows([0], widths, heights, 0, 0)
        areas = decode_crops(windows, widths, heights, [mcu_size])
        relative = windows - np.concatenate([areas[:, :2], np.zeros((1, 2))], axis=1)
        relative.setflags(write=False)  # shared by every image of this size
        return relative, tuple(int(v) for v in areas[0])

    def _through_batch(self, source):
        batch, bad = build_batch_from(self.ds, [source], [0], [-1], names=["<bytes>"], seed=0, epoch=0,
                                      num_threads=1)
        if bad:
            _, reason, error = bad[0]
            return None, (reason, error)
        return batch[0], None

    # -- RGB ----------------------------------------------------------------------------------------

    def _rgb(self, source):
        x = load_rgb((self.ds, 0, source, 0, 0, self.mean, self.std))
        if isinstance(x, Exception):
            return None, rgb_failure(x)
        return (x.unsqueeze(0),), None


__all__ = ["GEOMETRY_CACHE_SIZE", "SingleImage"]
