"""Request bytes → model inputs, the same tensors as `jpegnet predict` and `jpegnet eval` make.

An upload gets the model's evaluation transform (resize the shorter side to max(input size) / crop_pct with its
interpolation filter, centre crop, normalize) from `jpegnet.data.single.SingleImage`, the one-image path that
gives exactly `build_batch`'s tensors without its per-batch machinery, over a `JpegFolder.for_model` made once
per input config: DCT models get the reader's coefficients of the crop window (C code, GIL released), RGB models
the Pillow decode + resize + centre crop of the RGB twin (jpegnet.data.rgb; by default its `fast` decode:
libjpeg-turbo's scaled IDCT and one resample of the window, the same windows as torchvision's). A file that
cannot be used raises `UploadError`, whose `kind` names the problem for the client:

    empty        no bytes at all                                   400
    too_large    body above max_body_bytes, or pixels above max_pixels   413
    not_jpeg     does not start with a JPEG SOI marker (PNG, GIF, text...)  415
    unsupported  a JPEG the model cannot take (CMYK / YCCK on the DCT path)  415
    truncated    the data ends before the image does               400
    corrupt      any other decoding error                          400
"""
from __future__ import annotations

import functools
import time

import torch

from ..errors import JpegnetError

JPEG_SOI = b"\xff\xd8\xff"

STATUS = {"empty": 400, "too_large": 413, "not_jpeg": 415, "unsupported": 415, "truncated": 400, "corrupt": 400}


class UploadError(JpegnetError, ValueError):
    """An upload that cannot be classified; `kind` (see the module docstring) and `status` (HTTP)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.status = STATUS[kind]

    def to_json(self) -> dict:
        return {"error": {"kind": self.kind, "message": str(self)}}


def check_upload(body: bytes, max_body_bytes: int | None = None) -> None:
    """The checks that need no decoding: empty, too large, not a JPEG."""
    if not body:
        raise UploadError("empty", "empty upload: the body holds no bytes (send the JPEG file as the body)")
    if max_body_bytes is not None and len(body) > max_body_bytes:
        raise UploadError("too_large", f"upload of {len(body)} bytes is above the limit of {max_body_bytes} bytes")
    if not body.startswith(JPEG_SOI):
        raise UploadError("not_jpeg", f"not a JPEG file: starts with {body[:4]!r}, a JPEG starts with FF D8 FF")


def classify_error(error: BaseException, reason: str) -> UploadError:
    """The UploadError for a file jpegnet.data could not use (its exception and the loader's reason)."""
    from ..codec import JpegError
    from ..data import UnsupportedImage

    message = reason.splitlines()[0] if reason else type(error).__name__
    for prefix in ("item 0: ", "<bytes>: "):  # the reader names in-memory inputs; the client knows which
        message = message.replace(prefix, "", 1)
    lowered = message.lower()
    if isinstance(error, UnsupportedImage):
        return UploadError("unsupported", message)
    if (isinstance(error, JpegError) and error.kind == "too_large") or "max_pixels" in lowered \
            or "decompression bomb" in lowered:
        return UploadError("too_large", message)
    if "premature end" in lowered or "truncated" in lowered:
        return UploadError("truncated", message)
    if "not a jpeg" in lowered or "cannot identify image" in lowered:
        return UploadError("not_jpeg", message)
    return UploadError("corrupt", message)


def decode_upload(body: bytes, input_config, *, max_pixels: int | None, max_body_bytes: int | None = None,
                  rgb_decode: str = "fast"):
    """(inputs, decode seconds) for one uploaded JPEG: inputs as the model takes them, batch of 1, on the CPU
    (DCT: channels_last, as the model runs them; `stack_inputs` makes the contiguous batch backends take).
    Runs the decode on the calling thread (one C thread for the DCT reader); raises UploadError. rgb_decode:
    RGB models' decode, 'fast' or 'plain' (jpegnet.data.rgb)."""
    start = time.perf_counter()
    check_upload(body, max_body_bytes)
    inputs, failure = upload_preprocessor(input_config, max_pixels, rgb_decode)(bytes(body))
    if failure is not None:
        reason, error = failure
        raise classify_error(error, reason)
    return inputs, time.perf_counter() - start


@functools.lru_cache(maxsize=16)
def upload_preprocessor(input_config, max_pixels: int | None, rgb_decode: str):
    """The SingleImage of a model's evaluation transform (made once per config: a server has one)."""
    from ..data import JpegFolder
    from ..data.single import SingleImage

    return SingleImage(JpegFolder.for_model([], input_config, train=False, on_error="skip", max_pixels=max_pixels,
                                            rgb_decode=rgb_decode))


def stack_inputs(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """One contiguous (NCHW) batch from per-request inputs (each of batch 1, in any memory layout: the DCT
    inputs come channels_last), one copy per item (none for a lone item already contiguous)."""
    if len(items) == 1:
        return tuple(x.contiguous() for x in items[0])
    batch = []
    for j in range(len(items[0])):
        out = torch.empty((len(items), *items[0][j].shape[1:]), dtype=items[0][j].dtype)
        for i, it in enumerate(items):
            out[i].copy_(it[j][0])
        batch.append(out)
    return tuple(batch)
