"""The DCT batch's two implementations, the fused C kernel of the CPU path (jpegnet.dct._resample) and the torch
path an accelerator runs (here on the CPU), against one dense float64 reference (tests/dct_reference.py): the
same batches (every chroma sampling, greyscale, odd sizes, progressive files; random resized crops that upscale
and downscale, fractional evaluation windows, non-square outputs, flips, normalization, all-frequency mode) to
within 1e-4 of the values' scale, in the same layout, with either filter (antialiased bilinear and bicubic);
the same bits on any thread count, strided planes, and argument checking."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jpegnet import read_coefficients
from jpegnet.data import build_dct_batch, center_crop_windows, image_planes, random_resized_crop_windows
from jpegnet.data.dct_resample import _Plane

from .conftest import CORPUS, corpus_manifest, requires_shared
from .dct_reference import assert_matches_reference, reference_batch

_resample = pytest.importorskip("jpegnet.dct._resample")

RAW = dict(mean=torch.zeros(192), std=torch.ones(192))


def corpus_images() -> list:
    """One file of every chroma sampling and greyscale (baseline and progressive), plus the odd-size crops."""
    picked, seen = [], set()
    for row in corpus_manifest():
        if row["sampling"] == "cmyk":
            continue
        key = (row["sampling"], row["scan"])
        odd = row["note"].startswith("odd-size")
        if key in seen and not odd:
            continue
        seen.add(key)
        picked.append(row["file"])
    return [image_planes(read_coefficients(CORPUS / f)) for f in picked]


@pytest.fixture(scope="module")
def images():
    return corpus_images()


def sizes(images):
    return np.array([p[0].width for p in images]), np.array([p[0].height for p in images])


def assert_both_match_reference(images, windows, flips, out_size, **options):
    """The fused kernel and the torch path each within 1e-4 of the reference's scale, in the same layout."""
    stats = {k: options[k] for k in ("mean", "std") if k in options}
    ref = reference_batch(images, windows, flips, out_size, k_margin=options.get("k_margin", 1.0),
                          interpolation=options.get("interpolation", "bilinear"),
                          **{k: v.numpy() for k, v in stats.items()})
    fused = build_dct_batch(images, windows, flips, out_size, cpu_kernel="fused", **options)
    torch_path = build_dct_batch(images, windows, flips, out_size, cpu_kernel="torch", **options)
    assert_matches_reference(fused, ref)
    assert_matches_reference(torch_path, ref)
    for a, b in zip(fused, torch_path):
        assert a.stride() == b.stride()  # both channels_last


@requires_shared
def test_corpus_samplings_are_covered(images):
    samplings = {tuple((p.fx, p.fy) for p in planes) if len(planes) == 3 else "gray" for planes in images}
    # 4:4:4 / 4:2:0 / 4:2:2 / 4:4:0 chroma scales relative to luma, and greyscale
    assert {((1.0, 1.0),) * 3, ((1.0, 1.0), (0.5, 0.5), (0.5, 0.5)), ((1.0, 1.0), (0.5, 1.0), (0.5, 1.0)),
            ((1.0, 1.0), (1.0, 0.5), (1.0, 0.5)), "gray"} <= samplings


@requires_shared
@pytest.mark.parametrize("out_size", [(224, 224), (48, 80), (96, 32)])
@pytest.mark.parametrize("k_margin", [1.0, None])
def test_fused_and_torch_match_the_reference_on_random_resized_crops(images, out_size, k_margin):
    w, h = sizes(images)
    n = len(images)
    for epoch in range(2):
        windows, flips = random_resized_crop_windows(7, epoch, np.arange(n), w, h)
        flips[: n // 2] = ~flips[: n // 2]  # both mirror states for every file over the two epochs
        assert_both_match_reference(images, windows, flips, out_size, k_margin=k_margin, **RAW)


@requires_shared
def test_fused_and_torch_match_the_reference_on_edge_windows_with_normalization(images):
    """Fractional evaluation windows, tiny windows (large upscales, k = 8), whole images shrunk a lot (k = 1),
    windows touching the right / bottom edges of odd sizes, non-square; normalized with dataset-like stats."""
    w, h = sizes(images)
    n = len(images)
    groups = [
        center_crop_windows(w, h, (64, 96)),
        np.stack([np.zeros(n), np.zeros(n), np.minimum(w, 3), np.minimum(h, 5)], axis=1),
        np.stack([np.zeros(n), np.zeros(n), w, h], axis=1).astype(np.float64),
        np.stack([np.maximum(w - 37, 0), np.maximum(h - 11, 0), np.minimum(w, 37), np.minimum(h, 11)], axis=1),
        np.stack([w * 0.25, h * 0.1, w * 0.5, h * 0.9], axis=1),
    ]
    rng = np.random.default_rng(0)
    mean = torch.from_numpy(rng.normal(0, 20, 192).astype(np.float32))
    std = torch.from_numpy(rng.uniform(1, 50, 192).astype(np.float32))
    for g, windows in enumerate(groups):
        flips = (np.arange(n) + g) % 2 == 1
        for out_size in [(64, 96), (16, 16)]:
            assert_both_match_reference(images, windows, flips, out_size, mean=mean, std=std)
    # the default scale (no statistics) too
    assert_both_match_reference(images, groups[0], np.zeros(n, bool), (32, 32))


@requires_shared
@pytest.mark.parametrize("out_size,k_margin", [((48, 80), 1.0), ((96, 32), None), ((224, 224), 1.0)])
def test_bicubic_fused_and_torch_match_the_reference_on_random_resized_crops(images, out_size, k_margin):
    """The bicubic filter (Keys a = -0.5, support 2 px stretched by the downscale) through both paths."""
    w, h = sizes(images)
    n = len(images)
    windows, flips = random_resized_crop_windows(5, 0, np.arange(n), w, h)
    flips[: n // 2] = ~flips[: n // 2]
    assert_both_match_reference(images, windows, flips, out_size, k_margin=k_margin, interpolation="bicubic",
                                **RAW)


@requires_shared
def test_bicubic_fused_and_torch_match_the_reference_on_edge_windows(images):
    """Windows narrower than the cubic's 4-tap reach (1..5 px: every output sample's taps clipped on both
    sides), whole images shrunk a lot, windows on the right / bottom edges of odd sizes, fractional ones."""
    w, h = sizes(images)
    n = len(images)
    groups = [
        center_crop_windows(w, h, (64, 96)),
        np.stack([np.zeros(n), np.zeros(n), np.minimum(w, 1 + np.arange(n) % 3), np.minimum(h, 5)], axis=1),
        np.stack([np.zeros(n), np.zeros(n), w, h], axis=1).astype(np.float64),
        np.stack([np.maximum(w - 37, 0), np.maximum(h - 11, 0), np.minimum(w, 37), np.minimum(h, 11)], axis=1),
    ]
    rng = np.random.default_rng(1)
    mean = torch.from_numpy(rng.normal(0, 20, 192).astype(np.float32))
    std = torch.from_numpy(rng.uniform(1, 50, 192).astype(np.float32))
    for g, windows in enumerate(groups):
        flips = (np.arange(n) + g) % 2 == 1
        assert_both_match_reference(images, windows, flips, (32, 48), mean=mean, std=std, interpolation="bicubic")


@requires_shared
def test_the_filters_differ_and_threads_give_the_same_bits_with_bicubic(images):
    w, h = sizes(images)
    n = len(images)
    windows, flips = random_resized_crop_windows(2, 0, np.arange(n), w, h)
    tri = build_dct_batch(images, windows, flips, (48, 48))
    cub = build_dct_batch(images, windows, flips, (48, 48), interpolation="bicubic")
    cub3 = build_dct_batch(images, windows, flips, (48, 48), interpolation="bicubic", threads=3)
    assert all(torch.equal(a, b) for a, b in zip(cub, cub3))
    # the filter is really switched: the cubic is the sharper one, it keeps more AC energy than the triangle
    assert cub[0][:, 1:].pow(2).mean() > 1.05 * tri[0][:, 1:].pow(2).mean()


@requires_shared
def test_threads_give_the_same_bits_and_strided_planes_are_read_in_place(images):
    w, h = sizes(images)
    n = len(images)
    windows, flips = random_resized_crop_windows(1, 2, np.arange(n), w, h)
    one = build_dct_batch(images, windows, flips, (48, 48), threads=1)
    three = build_dct_batch(images, windows, flips, (48, 48), threads=3)
    assert all(torch.equal(a, b) for a, b in zip(one, three))
    # a plane that is a strided view (rows and columns of a larger array) reads the same as its copy
    big = images[0]
    padded = []
    for p in big:
        store = np.zeros((p.coefs.shape[0] * 2, p.coefs.shape[1] + 3, 64), dtype=np.int16)
        store[::2, 1:-2] = p.coefs
        view = store[::2, 1:-2]
        assert not view.flags.c_contiguous
        padded.append(_Plane(view, p.quant, p.fx, p.fy, p.width, p.height))
    a = build_dct_batch([big], windows[:1], flips[:1], (48, 48))
    b = build_dct_batch([padded], windows[:1], flips[:1], (48, 48))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_kernel_argument_checks():
    coefs = np.zeros((4, 4, 64), dtype=np.int16)
    quant = np.ones(64, dtype=np.uint16)
    y = np.zeros((1, 2, 2, 64), dtype=np.float32)
    cbcr = np.zeros((1, 1, 1, 128), dtype=np.float32)
    scale, bias = np.ones(192, dtype=np.float32), np.zeros(192, dtype=np.float32)
    win, flips = np.array([[0.0, 0.0, 32.0, 32.0]]), np.array([False])
    ok = (coefs, quant, 0, 0, 1.0, 1.0, 32, 32)
    _resample.resample_planes([ok], win, flips, y, cbcr, scale, bias, 1.0)
    with pytest.raises(ValueError, match="int16"):
        _resample.resample_planes([(coefs.astype(np.int32),) + ok[1:]], win, flips, y, cbcr, scale, bias, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        _resample.resample_planes([ok[:2] + (1,) + ok[3:]], win, flips, y, cbcr, scale, bias, 1.0)
    with pytest.raises(TypeError, match="tuple"):
        _resample.resample_planes([ok[:3]], win, flips, y, cbcr, scale, bias, 1.0)
    with pytest.raises(ValueError, match="float32"):
        _resample.resample_planes([ok], win, flips, y.astype(np.float64), cbcr, scale, bias, 1.0)
    with pytest.raises(ValueError, match="cbcr"):
        _resample.resample_planes([ok], win, flips, y, np.zeros((1, 2, 2, 128), np.float32), scale, bias, 1.0)
    with pytest.raises(ValueError, match="192"):
        _resample.resample_planes([ok], win, flips, y, cbcr, scale[:64], bias, 1.0)
    with pytest.raises(ValueError, match="threads"):
        _resample.resample_planes([ok], win, flips, y, cbcr, scale, bias, 1.0, 0)
    with pytest.raises(ValueError, match="interpolation"):
        _resample.resample_planes([ok], win, flips, y, cbcr, scale, bias, 1.0, 1, "lanczos")
    with pytest.raises(ValueError, match="empty window"):
        _resample.resample_planes([ok], np.array([[0.0, 0.0, 0.0, 32.0]]), flips, y, cbcr, scale, bias, 1.0)
    # a uniform grey block plane (DC only) resizes to the same uniform grey: DC = 8 · level everywhere
    flat = np.zeros((4, 4, 64), dtype=np.int16)
    flat[..., 0] = 10
    _resample.resample_planes([(flat, quant * 2, 0, 0, 1.0, 1.0, 32, 32)], np.array([[3.0, 5.0, 20.0, 17.0]]),
                              np.array([True]), y, cbcr, scale, bias, 1.0)
    assert np.allclose(y[..., 0], 20.0, atol=1e-4) and np.allclose(y[..., 1:], 0.0, atol=1e-4)


def test_build_dct_batch_checks_its_kernel_arguments():
    with pytest.raises(ValueError, match="cpu_kernel"):
        build_dct_batch([], np.zeros((0, 4)), np.zeros(0, bool), (16, 16), cpu_kernel="c")
    with pytest.raises(ValueError, match="threads"):
        build_dct_batch([], np.zeros((0, 4)), np.zeros(0, bool), (16, 16), threads=0)
    with pytest.raises(ValueError, match="interpolation"):
        build_dct_batch([], np.zeros((0, 4)), np.zeros(0, bool), (16, 16), interpolation="nearest")
