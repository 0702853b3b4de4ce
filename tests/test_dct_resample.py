"""jpegnet.data.dct_resample: decoded coefficients → one DCT batch, checked against pixel references (the
reconstruction of a transformed batch vs the same transform on libjpeg's own decode), exact block crops and
flips, greyscale / CMYK / RGB colour spaces and the decode areas of windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jpegnet import read_coefficients
from jpegnet.codec import decode_pixels
from jpegnet.data import (DEFAULT_DCT_SCALE, JpegFolder, UnsupportedImage, build_dct_batch, center_crop_windows,
                          decode_crops, image_planes, random_resized_crop_windows)
from jpegnet.dct.pixels import psnr

from .conftest import CORPUS, requires_shared
from .data_helpers import RAW, folder, rgb_of, torch_resized_crop  # noqa: F401  (folder: a fixture)
from .dct_reference import assert_matches_reference, reference_batch


@requires_shared
@pytest.mark.parametrize("name", ["n02123159_tiger_cat.JPEG",                 # 4:4:4
                                  "n01740131_night_snake_progressive.jpg",     # 4:2:0 progressive
                                  "n04501370_turnstile_optimized.jpg",         # 4:2:2
                                  "n04562935_water_tower.JPEG"])
def test_transformed_batch_reconstructs_like_transformed_pixels(name):
    c = read_coefficients(CORPUS / name)
    ref_img = decode_pixels((CORPUS / name).read_bytes()).astype(np.float64)
    if ref_img.shape[2] == 1:
        ref_img = np.repeat(ref_img, 3, axis=2)
    windows = np.array([[0, 0, c.width, c.height], [37, 21, 301, 213], [101, 64, 57, 75]], dtype=np.float64)
    flips = np.array([False, True, False])
    y, cbcr = build_dct_batch([c] * 3, windows, flips, (64, 96), **RAW)
    assert y.shape == (3, 64, 8, 12) and cbcr.shape == (3, 128, 4, 6)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert cbcr.is_contiguous(memory_format=torch.channels_last)
    for i in range(3):
        ref = torch_resized_crop(ref_img, windows[i].astype(int), (64, 96), flips[i])
        assert psnr(np.clip(rgb_of(y[i], cbcr[i]), 0, 255), ref) >= 30, (name, i)


@requires_shared
def test_block_aligned_unscaled_crop_and_flip_are_exact():
    c = read_coefficients(CORPUS / "n01740131_night_snake_progressive.jpg")  # 4:2:0: MCU 16 px
    crop = (32, 16, 96, 64)
    windows = np.array([crop, crop], dtype=np.float64)
    y, cbcr = build_dct_batch([c, c], windows, [False, True], (64, 96), **RAW)
    ref = read_coefficients(CORPUS / "n01740131_night_snake_progressive.jpg", crop=crop)
    flipped = read_coefficients(CORPUS / "n01740131_night_snake_progressive.jpg", crop=crop, hflip=True)
    for out, r in ((0, ref), (1, flipped)):
        assert np.abs(y[out].permute(1, 2, 0).numpy() - r.dequantized(0)).max() < 2e-3
        for comp in range(2):
            got = cbcr[out, comp * 64:(comp + 1) * 64].permute(1, 2, 0).numpy()
            assert np.abs(got - r.dequantized(comp + 1)).max() < 2e-3


@requires_shared
def test_grey_gets_neutral_chroma_and_cmyk_is_refused():
    grey = next(p for p in sorted(CORPUS.glob("*.JPEG")) if read_coefficients(p).colorspace == "gray")
    c = read_coefficients(grey)
    y, cbcr = build_dct_batch([c], [[0, 0, c.width, c.height]], [False], (32, 32))
    assert torch.all(cbcr == 0)  # zero chroma, default normalization has mean 0
    img = np.repeat(decode_pixels(grey.read_bytes()).astype(np.float64), 3, axis=2)
    raw = build_dct_batch([c], [[0, 0, c.width, c.height]], [False], (32, 32), **RAW)
    ref = torch_resized_crop(img, (0, 0, c.width, c.height), (32, 32))
    assert psnr(np.clip(rgb_of(raw[0][0], raw[1][0]), 0, 255), ref) >= 30
    with pytest.raises(UnsupportedImage, match="CMYK"):
        build_dct_batch([read_coefficients(CORPUS / "n02442845_mink_cmyk.jpg")], [[0, 0, 16, 16]], [False],
                        (16, 16))


def test_bad_output_size_is_rejected(folder):
    c = read_coefficients(next(folder.glob("*/*")))
    with pytest.raises(ValueError, match="multiples of 16"):
        build_dct_batch([c], [[0, 0, 16, 16]], [False], (24, 32))
    with pytest.raises(ValueError, match="multiples of 16"):
        JpegFolder(folder, "dct", train=True, input_size=100)


@requires_shared
def test_every_readable_corpus_file_goes_through_train_and_eval():
    files = [p for p in sorted(CORPUS.glob("*")) if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg")]
    images = []
    for p in files:
        c = read_coefficients(p)
        if c.colorspace not in ("cmyk", "ycck"):
            images.append(c)
    widths = np.array([c.width for c in images])
    heights = np.array([c.height for c in images])
    train, flips = random_resized_crop_windows(0, 0, np.arange(len(images)), widths, heights)
    evalw = center_crop_windows(widths, heights, (32, 48))
    for windows, fl in ((train, flips), (evalw, np.zeros(len(images), bool))):
        y, cbcr = build_dct_batch(images, windows, fl, (32, 48))
        assert torch.isfinite(y).all() and torch.isfinite(cbcr).all()
        # DC = 8 × the block's mean level-shifted sample: within the pixel range (±1024 / DEFAULT_DCT_SCALE),
        # give or take the overshoot of decoded samples past 0..255
        assert y[:, 0].abs().max() <= 1.05 * 1024 / DEFAULT_DCT_SCALE


def test_decode_crops_cover_what_the_resampling_reads():
    """decode_crops: MCU-aligned, inside the image, whole MCUs except at the right / bottom edges, and
    covering [floor(x), ceil(x + w)) × [floor(y), ceil(y + h)) of every window."""
    rng = np.random.default_rng(0)
    widths = rng.integers(16, 900, 400)
    heights = rng.integers(16, 900, 400)
    mcu = rng.choice([8, 16], size=(400, 2))
    windows, _ = random_resized_crop_windows(3, 1, np.arange(400), widths, heights)
    windows[:50] = center_crop_windows(widths[:50], heights[:50], (224, 224))  # fractional windows
    crops = decode_crops(windows, widths, heights, mcu)
    x, y, w, h = crops.T
    assert (x % mcu[:, 0] == 0).all() and (y % mcu[:, 1] == 0).all()
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= widths).all() and (y + h <= heights).all()
    assert ((w % mcu[:, 0] == 0) | (x + w == widths)).all() and ((h % mcu[:, 1] == 0) | (y + h == heights)).all()
    assert (x <= np.floor(windows[:, 0])).all() and (y <= np.floor(windows[:, 1])).all()
    assert (x + w >= np.minimum(np.ceil(windows[:, 0] + windows[:, 2]), widths)).all()
    assert (y + h >= np.minimum(np.ceil(windows[:, 1] + windows[:, 3]), heights)).all()
    # not more than one MCU of margin on each side
    assert (np.floor(windows[:, 0]) - x < mcu[:, 0]).all()
    assert (x + w - np.ceil(windows[:, 0] + windows[:, 2]) < mcu[:, 0]).all()


@requires_shared
def test_rgb_colorspace_jpeg_is_mixed_to_ycbcr():
    """An Adobe-RGB-transform-0 JPEG (components R, G, B) gives the batch of the same picture stored as YCbCr:
    built here from a 4:4:4 YCbCr file by the inverse JFIF matrix on its coefficients (unit quantization)."""
    from jpegnet import JpegCoefficients
    c = read_coefficients(CORPUS / "n02123159_tiger_cat.JPEG")
    ycc = np.stack([c.dequantized(i) for i in range(3)]).astype(np.float64)
    to_rgb = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136286, -0.714136286], [1.0, 1.772, 0.0]])
    rgb = np.einsum("oc,chwk->ohwk", to_rgb, ycc)
    planes = [np.rint(p).astype(np.int16) for p in rgb]
    ones = [np.ones(64, dtype=np.uint16)] * 3
    as_rgb = JpegCoefficients(c.width, c.height, "rgb", c.sampling, planes, ones, False, False, c.image_size)
    windows = np.array([[40, 30, 300, 250]] * 2, dtype=np.float64)
    y, cbcr = build_dct_batch([c, as_rgb], windows, [False, True], (32, 48), **RAW)
    ref = build_dct_batch([c], windows[:1], [True], (32, 48), **RAW)
    # rounding the mixed coefficients to integers moves each by at most 0.5 (twice): tiny against their range
    assert (y[1] - ref[0][0]).abs().max() < 2.0
    assert (cbcr[1] - ref[1][0]).abs().max() < 2.0
    assert (ref[0][0] - y[0]).abs().max() > 10  # the mirror does change the batch


@requires_shared
def test_fused_and_torch_paths_match_the_reference_with_grey_and_mixed_frequency_groups():
    """The CPU's fused kernel and the torch path an accelerator runs (here on the CPU) give the reference's batch
    (tests/dct_reference.py) for a batch mixing 4:4:4, progressive 4:2:0, 4:2:2 and greyscale images, whose
    windows need different kept-frequency counts."""
    names = ["n02123159_tiger_cat.JPEG", "n01740131_night_snake_progressive.jpg", "n04501370_turnstile_optimized.jpg"]
    grey = next(p for p in sorted(CORPUS.glob("*.JPEG")) if read_coefficients(p).colorspace == "gray")
    images = [image_planes(read_coefficients(p)) for p in [CORPUS / n for n in names] + [grey]]
    widths = np.array([p[0].width for p in images])
    heights = np.array([p[0].height for p in images])
    windows, flips = random_resized_crop_windows(1, 0, np.arange(4), widths, heights)
    flips[:] = [True, False, True, False]
    ref = reference_batch(images, windows, flips, (48, 64))
    for kernel in ("fused", "torch"):
        assert_matches_reference(build_dct_batch(images, windows, flips, (48, 64), cpu_kernel=kernel), ref)


def _bicubic_references(luma: np.ndarray, window, out_hw):
    """The window of a float64 luma plane resized by torchvision's antialiased bicubic (torch interpolate, what
    `resize(..., InterpolationMode.BICUBIC, antialias=True)` runs on tensors) and by Pillow's BICUBIC (mode 'F',
    float32): crop first, then resize, as resized_crop does."""
    import torch.nn.functional as F
    from PIL import Image
    x, y, w, h = window
    crop = np.ascontiguousarray(luma[y:y + h, x:x + w])
    tv = F.interpolate(torch.from_numpy(crop)[None, None], size=out_hw, mode="bicubic", antialias=True)[0, 0]
    pil = Image.fromarray(crop.astype(np.float32), "F").resize(out_hw[::-1], Image.BICUBIC)
    return tv.numpy(), np.asarray(pil, dtype=np.float64)


@requires_shared
@pytest.mark.parametrize("name", ["n02123159_tiger_cat.JPEG",                 # 4:4:4
                                  "n01740131_night_snake_progressive.jpg",     # 4:2:0 progressive
                                  "n04501370_turnstile_optimized.jpg"])        # 4:2:2
def test_bicubic_batch_equals_pillow_and_torchvision_bicubic_through_the_same_windows(name):
    """interpolation='bicubic': the luma of the batch, rebuilt to pixels, is Pillow's BICUBIC and torchvision's
    antialiased BICUBIC of the same window of the pixels rebuilt from the same coefficients — to 1e-3 grey
    levels when every frequency is read (k_margin=None), above 38 dB with the default frequency truncation —
    for a downscale, an upscale and the whole image shrunk; the colour image, chroma resampled on the 4:2:0
    grid and box-upsampled, is within 29 dB of Pillow's RGB BICUBIC (uint8); on a downscale the triangle
    filter's luma is 3 dB further from Pillow's bicubic."""
    from PIL import Image
    from jpegnet.dct import block_idct
    from jpegnet.dct.pixels import blocks_to_plane, reconstruct

    c = read_coefficients(CORPUS / name)
    luma = blocks_to_plane(c.dequantized(0))[:c.height, :c.width]
    rgb8 = Image.fromarray(reconstruct(c))
    cases = [((37, 21, 301, 213), (64, 96), False), ((101, 64, 57, 75), (112, 96), True),
             ((0, 0, c.width, c.height), (224, 224), False)]
    for window, out, flip in cases:
        windows = np.array([window], dtype=np.float64)
        tv, pil = _bicubic_references(luma, window, out)
        if flip:
            tv, pil = tv[:, ::-1], pil[:, ::-1]
        for k_margin in (None, 1.0):
            y, cbcr = build_dct_batch([c], windows, [flip], out, interpolation="bicubic", k_margin=k_margin, **RAW)
            got = block_idct(y[0].permute(1, 2, 0).double()).numpy() + 128
            if k_margin is None:
                assert np.abs(got - tv).max() < 1e-3 and np.abs(got - pil).max() < 1e-3, (name, window)
            else:
                assert psnr(got, tv) >= 38 and psnr(got, pil) >= 38, (name, window)
        x, y0, w, h = window
        pil_rgb = rgb8.crop((x, y0, x + w, y0 + h)).resize(out[::-1], Image.BICUBIC)
        pil_rgb = np.asarray(pil_rgb.transpose(Image.FLIP_LEFT_RIGHT) if flip else pil_rgb, dtype=np.float64)
        cubic = psnr(np.clip(rgb_of(y[0], cbcr[0]), 0, 255), pil_rgb)
        assert cubic >= 29, (name, window, cubic)
        if out[0] < h:  # a downscale, where the filters differ most: the triangle is far from Pillow's bicubic
            tri = build_dct_batch([c], windows, [flip], out, **RAW)[0]
            tri = block_idct(tri[0].permute(1, 2, 0).double()).numpy() + 128
            assert psnr(got, pil) > psnr(tri, pil) + 3, (name, window)


@requires_shared
def test_normalization_given_as_tuples_is_cached_per_value_and_normalizes_like_tensors():
    """Tuples (what `normalization` gives, the served path's case) take a cache keyed by their values: the
    batch equals the one normalized from tensors, a second normalization is not served the first one's
    cached values, and the cached values are not written by building a batch (greyscale fills chroma from them)."""
    grey = next(p for p in sorted(CORPUS.glob("*.JPEG")) if read_coefficients(p).colorspace == "gray")
    images = [read_coefficients(CORPUS / "n02123159_tiger_cat.JPEG"), read_coefficients(grey)]
    windows = [[8, 8, 96, 64], [0, 0, images[1].width, images[1].height]]
    g = torch.Generator().manual_seed(0)
    stats = [(torch.randn(192, generator=g) * 5, torch.rand(192, generator=g) * 20 + 1) for _ in range(2)]
    for kernel in ("fused", "torch"):
        for mean, std in stats + stats:  # each twice: the second time from the cache
            as_tuples = build_dct_batch(images, windows, [False, True], (32, 48), cpu_kernel=kernel,
                                        mean=tuple(mean.tolist()), std=tuple(std.tolist()))
            as_tensors = build_dct_batch(images, windows, [False, True], (32, 48), cpu_kernel=kernel,
                                         mean=mean, std=std)
            for a, b in zip(as_tuples, as_tensors):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-5)
            # the grey image's chroma is the normalized zero: -mean / std, from the (shared) cached values
            torch.testing.assert_close(as_tuples[1][1, :, 0, 0], -mean[64:] / std[64:], rtol=1e-6, atol=1e-6)
