"""DCT-domain operators against pixel-domain references: block IDCT/DCT, exact crop and mirror, chroma
halving to 4:2:0, libjpeg-style scaled IDCT, and the banded crop + resize + mirror operators (checked against
PyTorch's antialiased bilinear interpolate on the reconstructed samples)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jpegnet import read_coefficients
from jpegnet.dct import (apply_resample, block_dct, block_idct, chroma_to_420, crop_blocks, dct_matrix,
                         dequantize, frequencies_kept, halve_blocks, hflip_blocks, resample_operator,
                         scaled_block_idct, vflip_blocks)
from jpegnet.dct.pixels import blocks_to_plane, psnr

from .conftest import CORPUS, requires_shared

FILE_444 = CORPUS / "n02123159_tiger_cat.JPEG"            # 500x375, 4:4:4
FILE_422 = CORPUS / "n04501370_turnstile_optimized.jpg"   # 600x450, 4:2:2


def luma(path) -> torch.Tensor:
    c = read_coefficients(path)
    return dequantize(torch.from_numpy(c.planes[0]), torch.from_numpy(c.quant_tables[0].astype(np.int32)))


def test_dct_matrix_is_orthonormal_and_jpegs_basis():
    d = dct_matrix(dtype=torch.float64)
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    # JPEG's FDCT: F(0,0) of a constant block of value a is 8a
    block = torch.full((1, 1, 8, 8), 3.0, dtype=torch.float64)
    coefs = block_dct(block.reshape(8, 8))
    assert coefs[0, 0, 0].item() == pytest.approx(24.0) and coefs[0, 0, 1:].abs().max() < 1e-12


@requires_shared
def test_block_idct_matches_numpy_reference_and_inverts():
    y = luma(FILE_444)
    pixels = block_idct(y.double())
    ref = blocks_to_plane(y.numpy()) - 128.0
    assert np.abs(pixels.numpy() - ref).max() < 1e-9
    assert torch.allclose(block_dct(pixels), y.double(), atol=1e-9)


@requires_shared
def test_block_crop_and_flips_are_exact():
    y = luma(FILE_444).double()
    pixels = block_idct(y)
    crop = crop_blocks(y, 3, 5, 10, 12)
    assert torch.equal(crop, y[3:13, 5:17])
    assert torch.allclose(block_idct(crop), pixels[24:104, 40:136], atol=1e-9)
    assert torch.allclose(block_idct(hflip_blocks(y)), pixels.flip(-1), atol=1e-9)
    assert torch.allclose(block_idct(vflip_blocks(y)), pixels.flip(-2), atol=1e-9)
    # on integer coefficients the mirror stays integer and exact
    q = torch.from_numpy(read_coefficients(FILE_444).planes[0])
    flipped = hflip_blocks(q)
    assert flipped.dtype == q.dtype and torch.equal(hflip_blocks(flipped), q)
    with pytest.raises(ValueError, match="outside"):
        crop_blocks(y, 0, 0, 1000, 1)


@pytest.mark.parametrize("bh,bw", [(6, 8), (5, 7)])
@pytest.mark.parametrize("vertical,horizontal", [(True, True), (True, False), (False, True)])
def test_halve_blocks_is_box_average_of_samples(bh, bw, vertical, horizontal):
    torch.manual_seed(0)
    x = torch.randn(2, bh, bw, 64, dtype=torch.float64) * 30
    pixels = block_idct(x)
    # edge replication to whole pairs of blocks, then the 2:1 box average
    if vertical and bh % 2:
        pixels = torch.cat([pixels, pixels[:, -1:].expand(-1, 8, -1)], dim=1)
    if horizontal and bw % 2:
        pixels = torch.cat([pixels, pixels[:, :, -1:].expand(-1, -1, 8)], dim=2)
    ref = F.avg_pool2d(pixels[:, None], (2 if vertical else 1, 2 if horizontal else 1))[:, 0]
    got = halve_blocks(x.float(), vertical, horizontal)
    assert got.shape == (2, -(-bh // 2) if vertical else bh, -(-bw // 2) if horizontal else bw, 64)
    assert torch.allclose(block_idct(got.double()), ref, atol=1e-3)


@requires_shared
@pytest.mark.parametrize("path", [FILE_444, FILE_422], ids=["444", "422"])
def test_chroma_to_420_matches_pixel_box_downsampling(path):
    c = read_coefficients(path)
    hmax = max(h for h, _ in c.sampling)
    vmax = max(v for _, v in c.sampling)
    cb = dequantize(torch.from_numpy(c.planes[1]), torch.from_numpy(c.quant_tables[1].astype(np.int32)))
    out = chroma_to_420(cb, c.sampling[1], (hmax, vmax))
    y_blocks = c.planes[0].shape
    assert out.shape[:2] == (-(-y_blocks[0] // 2), -(-y_blocks[1] // 2))
    samples = block_idct(cb.double())
    fy, fx = vmax // c.sampling[1][1], hmax // c.sampling[1][0]
    ref = F.avg_pool2d(samples[None, None], (2 // fy, 2 // fx))[0, 0]
    got = block_idct(out.double())[: ref.shape[0], : ref.shape[1]]
    assert psnr(got.numpy(), ref.numpy()) > 60  # the same linear map up to float32 rounding
    with pytest.raises(ValueError, match="4:2:0"):
        chroma_to_420(cb, (1, 1), (3, 1))


def test_chroma_to_420_leaves_420_alone():
    x = torch.randn(3, 4, 64)
    assert torch.equal(chroma_to_420(x, (1, 1), (2, 2)), x)


@requires_shared
def test_scaled_idct_is_a_downscale():
    y = luma(FILE_444).double()
    assert torch.allclose(scaled_block_idct(y, 8), block_idct(y), atol=1e-9)
    half = scaled_block_idct(y, 4)
    ref = F.avg_pool2d(block_idct(y)[None, None], 2)[0, 0]
    assert half.shape == ref.shape
    assert psnr(half.numpy() + 128, ref.numpy() + 128) > 30
    with pytest.raises(ValueError):
        scaled_block_idct(y, 0)


def reference_resize(pixels, window, out_hw, flip):
    x, y, w, h = window
    ref = F.interpolate(pixels[:, None, y:y + h, x:x + w], size=out_hw, mode="bilinear", antialias=True,
                        align_corners=False)[:, 0]
    return ref.flip(-1) if flip else ref


@pytest.mark.parametrize("window,out_blocks,flip", [
    ((3, 5, 60, 70), (6, 5), False),      # downscale, unaligned window
    ((0, 0, 96, 80), (4, 3), True),       # strong downscale of everything, mirrored
    ((17, 13, 20, 30), (5, 6), True),     # upscale
    ((8, 16, 40, 48), (6, 5), False),     # block-aligned window, same size: identity
])
def test_resample_operator_equals_pixel_interpolate(window, out_blocks, flip):
    torch.manual_seed(1)
    planes = torch.randn(2, 10, 12, 64) * 20
    pixels = block_idct(planes.double()).float()
    x0, y0, w, h = window
    ov, oh = out_blocks
    vert = resample_operator(np.full(2, y0), np.full(2, h), ov, np.full(2, 80))
    horiz = resample_operator(np.full(2, x0), np.full(2, w), oh, np.full(2, 96), flip=np.full(2, flip))
    stored = planes[:, vert.first_block[0]:vert.stop_block[0], horiz.first_block[0]:horiz.stop_block[0]]
    x = stored.reshape(*stored.shape[:3], 8, 8).permute(0, 1, 3, 2, 4).contiguous()
    out = apply_resample(x, vert, horiz).reshape(2, ov, oh, 64)
    ref = reference_resize(pixels, window, (ov * 8, oh * 8), flip)
    assert (block_idct(out) - ref).abs().max() < 2e-3
    if window[2:] == (oh * 8, ov * 8) and not flip:  # block-aligned, unscaled: the blocks themselves
        assert torch.allclose(out, planes[:, 2:8, 1:6], atol=2e-3)


@requires_shared
def test_frequency_truncation_keeps_30db_on_a_photo():
    y = luma(FILE_444)[None]
    pixels = block_idct(y.double()).float()[:, :375, :500]
    window, out = (20, 10, 440, 330), (14, 14)
    ref = reference_resize(pixels, window, (112, 112), False)
    r = 112 / 330
    k = frequencies_kept(r)
    assert 1 < k < 8
    vert = resample_operator(np.array([10.0]), np.array([330.0]), 14, np.array([375]), k=k)
    horiz = resample_operator(np.array([20.0]), np.array([440.0]), 14, np.array([500]), k=k)
    stored = y[:, vert.first_block[0]:vert.stop_block[0], horiz.first_block[0]:horiz.stop_block[0]]
    x = stored.reshape(*stored.shape[:3], 8, 8)[..., :k, :k].permute(0, 1, 3, 2, 4).contiguous()
    got = block_idct(apply_resample(x, vert, horiz).reshape(1, *out, 64))
    assert psnr(got.numpy() + 128, ref.numpy() + 128) >= 30
