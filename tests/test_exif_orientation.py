"""EXIF orientation in both pipelines: files carrying each of the 8 orientation tags (made with Pillow from one
sample, so every file stores the same coefficients) give the upright image, compared with the pixel-domain
turn of the untagged file."""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jpegnet.codec import read_coefficients
from jpegnet.codec.exif import read_orientation
from jpegnet.data import JpegFolder, build_batch
from jpegnet.dct.orient import hflip_blocks, transpose_blocks, vflip_blocks
from jpegnet.dct.pixels import dct_basis

SAMPLE = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "jpegnet/samples/**/*.jpg"), recursive=True))[0]
# numpy's view of the displayed image for each tag (Pillow's exif_transpose, as array operations)
UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
           8: lambda a: np.rot90(a, 1)}


def tagged_files(tmp_path: Path, width: int, height: int) -> dict[int, Path]:
    """The same stored pixels (a width x height crop of a sample) saved with each orientation tag."""
    img = Image.open(SAMPLE).convert("RGB").crop((0, 0, width, height))
    files = {}
    for o in range(1, 9):
        exif = Image.Exif()
        if o != 1:
            exif[0x0112] = o
        files[o] = tmp_path / f"o{o}.jpg"
        img.save(files[o], quality=90, subsampling=2, exif=exif.tobytes())
    return files


def luma_pixels(y: torch.Tensor) -> np.ndarray:
    """Blockwise inverse DCT of a raw luma map (64, h, w) → pixels (8h, 8w)."""
    basis = dct_basis()
    blocks = y.double().numpy().reshape(8, 8, *y.shape[1:]).transpose(2, 3, 0, 1)  # (h, w, u, v)
    pixels = np.einsum("ux,hwuv,vy->hwxy", basis, blocks, basis)
    return pixels.transpose(0, 2, 1, 3).reshape(8 * y.shape[1], 8 * y.shape[2])


def test_orientation_tag_is_read(tmp_path):
    files = tagged_files(tmp_path, 64, 48)
    assert [read_orientation(files[o]) for o in range(1, 9)] == list(range(1, 9))
    assert read_orientation(files[6].read_bytes()) == 6
    assert read_orientation(b"not a jpeg") == 1


def test_block_operations_are_pixel_turns():
    y = torch.randn(1, 64, 3, 5, dtype=torch.float64)
    px = luma_pixels(y[0])
    assert np.allclose(luma_pixels(hflip_blocks(y)[0]), px[:, ::-1], atol=1e-9)
    assert np.allclose(luma_pixels(vflip_blocks(y)[0]), px[::-1], atol=1e-9)
    assert np.allclose(luma_pixels(transpose_blocks(y)[0]), px.T, atol=1e-9)


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_dct_pipeline_turns_images_upright(tmp_path, size):
    width, height = size
    files = tagged_files(tmp_path, width, height)
    # the untagged file's full luma plane, turned in the pixel domain, is the reference
    coefs = read_coefficients(str(files[1]))
    stored = luma_pixels(torch.from_numpy(coefs.dequantized(0)[: height // 8, : width // 8]
                                          .reshape(height // 8, width // 8, 64).transpose(2, 0, 1).copy()))
    ds = JpegFolder.from_files([str(files[o]) for o in range(1, 9)], "dct", input_size=64, crop_pct=1.0)
    (y, _), _ = build_batch(ds, range(8), seed=0, epoch=0, normalize=False, k_margin=None)[0]
    for o in range(1, 9):
        shown = UPRIGHT[o](stored)
        top, left = (shown.shape[0] - 64) // 2, (shown.shape[1] - 64) // 2  # the centre crop of the upright image
        got = luma_pixels(y[o - 1].contiguous())
        assert np.abs(got - shown[top:top + 64, left:left + 64]).max() < 1e-3, o


def test_dct_pipeline_can_ignore_the_tag(tmp_path):
    files = tagged_files(tmp_path, 64, 64)
    on = JpegFolder.from_files([str(files[6])], "dct", input_size=64, crop_pct=1.0)
    off = JpegFolder.from_files([str(files[6])], "dct", input_size=64, crop_pct=1.0, exif_orientation=False)
    plain = JpegFolder.from_files([str(files[1])], "dct", input_size=64, crop_pct=1.0)
    batch = lambda ds: build_batch(ds, [0], seed=0, epoch=0)[0][0][0]  # noqa: E731
    assert torch.equal(batch(off), batch(plain)) and not torch.allclose(batch(on), batch(plain))


def test_rgb_pipeline_turns_images_upright(tmp_path):
    files = tagged_files(tmp_path, 96, 64)
    reference = np.asarray(Image.open(files[1]).convert("RGB"), dtype=np.float32) / 255.0
    ds = JpegFolder.from_files([str(files[o]) for o in range(1, 9)], "rgb", input_size=64, crop_pct=1.0,
                               input_config=None)
    (x,), _ = build_batch(ds, range(8), seed=0, epoch=0, normalize=False)[0]
    mean, std = np.array((0.485, 0.456, 0.406)), np.array((0.229, 0.224, 0.225))
    for o in range(1, 9):
        shown = UPRIGHT[o](reference)
        top, left = (shown.shape[0] - 64) // 2, (shown.shape[1] - 64) // 2
        got = x[o - 1].permute(1, 2, 0).double().numpy() * std + mean
        assert np.abs(got - shown[top:top + 64, left:left + 64]).max() < 1e-5, o
