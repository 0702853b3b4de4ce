"""The coefficient reader against independent references: the jpeglib wheel's coefficients, libjpeg-turbo's
own pixel decode, and the crop / mirror of the reconstructed image."""
from __future__ import annotations

import gc
import os
import struct
import warnings
from pathlib import Path

import jpeglib
import numpy as np
import pytest

import jpegnet
from jpegnet import (JpegCoefficients, JpegError, JpegHeader, read_coefficients, read_coefficients_batch,
                     read_header, read_headers_batch)
from jpegnet.codec import DEFAULT_MAX_PIXELS, JpegWarning, decode_pixels
from jpegnet.dct.pixels import reconstruct, psnr
from jpegnet.samples import sample_files

from .conftest import BAD, CORPUS, corpus_files, corpus_manifest, requires_shared

pytestmark = requires_shared

CORPUS_FILES = corpus_files() if CORPUS.exists() else []
IDS = [p.name for p in CORPUS_FILES]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------------------------------------
# Every corpus file reads, with libjpeg's geometry.

@pytest.mark.parametrize("path", CORPUS_FILES, ids=IDS)
def test_corpus_file_reads_with_libjpeg_geometry(path: Path):
    row = next(r for r in corpus_manifest() if r["file"] == path.name)
    c = read_coefficients(path)
    assert (c.width, c.height) == (int(row["width"]), int(row["height"]))
    assert c.image_size == (c.width, c.height)
    assert c.progressive == (row["scan"] == "progressive")
    expected_space = {"RGB": "ycbcr", "L": "gray", "CMYK": "cmyk"}[row["mode"]]
    assert c.colorspace == expected_space
    if row["sampling"] in ("4:4:4", "4:2:2", "4:2:0", "4:4:0"):
        assert c.subsampling == row["sampling"]
    max_h = max(h for h, _ in c.sampling)
    max_v = max(v for _, v in c.sampling)
    assert len(c.planes) == len(c.quant_tables) == len(c.sampling)
    for plane, (h, v), q in zip(c.planes, c.sampling, c.quant_tables):
        # libjpeg's width_in_blocks / height_in_blocks: no padding blocks.
        assert plane.shape == (ceil_div(ceil_div(c.height * v, max_v), 8), ceil_div(ceil_div(c.width * h, max_h), 8), 64)
        # Blocks contiguous within a row (full reads view libjpeg's arrays, whose rows may carry padding).
        assert plane.dtype == np.int16 and plane.strides[1:] == (128, 2)
        assert q.dtype == np.uint16 and q.shape == (64,) and q.min() >= 1


def jpeglib_reference(path: Path):
    """Coefficients and quantization tables from the jpeglib wheel (its own bundled libjpeg build)."""
    im = jpeglib.read_dct(str(path))
    planes = [im.Y]
    if im.has_chrominance:
        planes += [im.Cb, im.Cr]
    if im.has_black:
        planes.append(im.K)
    planes = [p.reshape(p.shape[0], p.shape[1], 64) for p in planes]
    tables = [im.qt[i].reshape(64) for i in im.quant_tbl_no[: len(planes)]]
    return planes, tables


@pytest.mark.parametrize("path", CORPUS_FILES, ids=IDS)
def test_coefficients_equal_jpeglib(path: Path):
    try:
        ref_planes, ref_tables = jpeglib_reference(path)
    except Exception as e:  # jpeglib cannot read every kind of file: those are covered by the pixel test
        pytest.skip(f"jpeglib cannot read it: {e}")
    c = read_coefficients(path)
    assert len(c.planes) == len(ref_planes)
    for ours, ref in zip(c.planes, ref_planes):
        np.testing.assert_array_equal(ours, ref)
    for ours, ref in zip(c.quant_tables, ref_tables):
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("path", CORPUS_FILES, ids=IDS)
def test_reconstruction_matches_libjpeg_decode(path: Path):
    """Dequantize + IDCT + upsample + colour convert from our coefficients ≈ libjpeg-turbo's own decode."""
    data = path.read_bytes()
    ref = decode_pixels(data)
    ours = reconstruct(read_coefficients(data))
    assert ours.shape == ref.shape
    assert psnr(ours, ref) >= 45.0


# ------------------------------------------------------------------------------------------------
# Sources and the batch call.

def test_every_source_type_gives_the_same_coefficients(tmp_path):
    path = sample_files()[0]
    data = path.read_bytes()
    results = [read_coefficients(s) for s in (data, bytearray(data), memoryview(data), str(path), path)]
    for r in results[1:]:
        for a, b in zip(results[0].planes, r.planes):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="bytes-like or a path"):
        read_coefficients(12345)


def test_missing_file_is_a_jpeg_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(JpegError, match="nope.jpg: cannot read file") as info:
        read_coefficients(missing)
    assert info.value.kind == "io"


def test_batch_equals_single_reads_in_input_order():
    paths = sorted(CORPUS.glob("*.JPEG"))[:12] + sorted(CORPUS.glob("*_s2.jpg"))
    items = [p if i % 2 else p.read_bytes() for i, p in enumerate(paths)]  # paths and bytes mixed
    for threads in (1, 2, 5):
        batch = read_coefficients_batch(items, threads=threads)
        assert len(batch) == len(items)
        for p, got in zip(paths, batch):
            single = read_coefficients(p)
            assert (got.width, got.height) == (single.width, single.height)
            for a, b in zip(got.planes, single.planes):
                np.testing.assert_array_equal(a, b)


def test_batch_errors_raise_or_come_back_in_place():
    good = sorted(CORPUS.glob("*.JPEG"))[:2]
    bad = BAD / "truncated_half.jpg"
    items = [good[0], bad, good[1], b"not a jpeg"]
    with pytest.raises(JpegError, match="truncated_half.jpg: Premature end"):
        read_coefficients_batch(items)
    out = read_coefficients_batch(items, on_error="return")
    assert isinstance(out[0], JpegCoefficients) and isinstance(out[2], JpegCoefficients)
    assert isinstance(out[1], JpegError) and "truncated_half" in str(out[1])
    assert isinstance(out[3], JpegError) and out[3].source == "item 3" and "Not a JPEG file" in str(out[3])
    with pytest.raises(ValueError, match="threads"):
        read_coefficients_batch(good, threads=0)
    with pytest.raises(ValueError, match="on_error"):
        read_coefficients_batch(good, on_error="ignore")
    assert read_coefficients_batch([]) == []


# ------------------------------------------------------------------------------------------------
# Bad input: typed errors that name the problem, never a crash.

BAD_EXPECTED = {
    "corrupt_entropy_data.jpg": "Corrupt JPEG data",
    "empty.jpg": "empty input",
    "not_a_jpeg.jpg": "Not a JPEG file",
    "png_named_jpg.jpg": "Not a JPEG file: starts with 0x89 0x50",
    "truncated_half.jpg": "Premature end of JPEG file",
    "truncated_header.jpg": "Premature end of JPEG file",
}


@pytest.mark.parametrize("name", sorted(BAD_EXPECTED))
def test_bad_files_raise_jpeg_error_naming_the_problem(name):
    with pytest.raises(JpegError, match=BAD_EXPECTED[name]) as info:
        read_coefficients(BAD / name)
    assert isinstance(info.value, ValueError)
    assert name in str(info.value)  # the message says where


def test_huge_dimensions_file_reads_its_real_main_image():
    """That file's 65500×65500 claim sits in the SOF of its EXIF thumbnail (inside APP1, which libjpeg never
    parses); its main frame is a valid 600×399 image, so it reads (the bomb check is tested below with a
    main-frame header that claims 65500×65500)."""
    data = (BAD / "huge_dimensions_65500x65500.jpg").read_bytes()
    assert b"\xff\xc0\x00\x11\x08\xff\xdc\xff\xdc" in data[:0x43D3]  # the patched thumbnail SOF
    c = read_coefficients(data, strict=False)
    assert (c.width, c.height) == (600, 399)


def with_main_frame_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the size in the main frame header (the last SOF0 before the first SOS)."""
    sos = data.index(b"\xff\xda")
    sof = data.rindex(b"\xff\xc0", 0, sos)
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def test_header_claiming_a_huge_image_is_refused_before_allocation():
    data = with_main_frame_size(sample_files()[0].read_bytes(), 65500, 65500)
    with pytest.raises(JpegError, match=r"65500x65500 = 4290250000 pixels, above max_pixels=89478485") as info:
        read_coefficients(data)
    assert info.value.kind == "too_large"
    # A limit below a real image's size refuses it too; None lifts the limit.
    with pytest.raises(JpegError, match="above max_pixels=100"):
        read_coefficients(sample_files()[0], max_pixels=100)
    assert read_coefficients(sample_files()[0], max_pixels=None).width > 0
    assert DEFAULT_MAX_PIXELS == 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS


def test_warnings_are_errors_when_strict_and_warnings_otherwise():
    path = BAD / "truncated_half.jpg"
    with pytest.raises(JpegError, match="Premature end"):
        read_coefficients(path)
    with pytest.warns(JpegWarning, match="truncated_half.jpg: Premature end of JPEG file"):
        c = read_coefficients(path, strict=False)
    # The first half of the image survives; libjpeg fills the rest with zero coefficients.
    full = c.planes[0]
    assert np.abs(full[: full.shape[0] // 4]).sum() > 0
    with pytest.warns(JpegWarning):
        out = read_coefficients_batch([path], strict=False)
    assert isinstance(out[0], JpegCoefficients)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 100, 400])
def test_every_prefix_of_a_file_raises_or_reads(size):
    data = sample_files()[0].read_bytes()[:size]
    with pytest.raises(JpegError):
        read_coefficients(data)


# ------------------------------------------------------------------------------------------------
# crop and hflip: exactly the crop / mirror of the reconstructed image.

def crop_cases():
    cases = []
    for name in ["n01518878_ostrich.JPEG",                      # 4:4:4, 375x500
                 "n03661043_library_progressive.jpg",           # 4:2:0 progressive
                 "n04501370_turnstile_optimized.jpg",           # 4:2:2
                 "n03461385_grocery_store.JPEG",                # 4:4:0
                 "n04554684_washer.JPEG",                       # grayscale
                 "n04356056_sunglasses_crop161x97_s2.jpg",      # odd size 4:2:0
                 "n03594945_jeep_restart2.jpg",                 # restart markers (early stop resyncs)
                 "n01728572_thunder_snake_arithmetic.jpg",      # arithmetic coding
                 "n02442845_mink_cmyk.jpg"]:                    # CMYK
        cases.append(CORPUS / name)
    return cases


@pytest.mark.parametrize("path", crop_cases(), ids=lambda p: p.name)
def test_crop_equals_crop_of_reconstruction(path):
    full = read_coefficients(path)
    mw, mh = full.mcu_size
    ref = reconstruct(full, as_float=True)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = int(rng.integers(0, full.width // mw)) * mw
        y = int(rng.integers(0, full.height // mh)) * mh
        w = int(rng.integers(1, (full.width - x) // mw + 1)) * mw
        h = int(rng.integers(1, (full.height - y) // mh + 1)) * mh
        c = read_coefficients(path, crop=(x, y, w, h))
        assert (c.width, c.height) == (w, h) and c.image_size == (full.width, full.height)
        np.testing.assert_allclose(reconstruct(c, as_float=True), ref[y:y + h, x:x + w], atol=1e-6)
    # A crop reaching the right and bottom edges may end off the MCU grid.
    x, y = (full.width - 1) // mw * mw, (full.height - 1) // mh * mh
    c = read_coefficients(path, crop=(x, y, full.width - x, full.height - y))
    np.testing.assert_allclose(reconstruct(c, as_float=True), ref[y:, x:], atol=1e-6)


@pytest.mark.parametrize("path", crop_cases(), ids=lambda p: p.name)
def test_hflip_equals_mirror_of_reconstruction(path):
    full = read_coefficients(path)
    mw, mh = full.mcu_size
    trimmed_w = full.width // mw * mw  # a partial right MCU column is trimmed, as jpegtran -flip -trim
    ref = reconstruct(full, as_float=True)[:, :trimmed_w][:, ::-1]
    c = read_coefficients(path, hflip=True)
    assert (c.width, c.height) == (trimmed_w, full.height)
    np.testing.assert_allclose(reconstruct(c, as_float=True), ref, atol=1e-6)
    # crop and hflip together: the mirror of the crop.
    x, w = mw, min(full.width - mw, 3 * mw) // mw * mw
    c = read_coefficients(path, crop=(x, 0, w, full.height), hflip=True)
    np.testing.assert_allclose(reconstruct(c, as_float=True),
                               reconstruct(full, as_float=True)[:, x:x + w][:, ::-1], atol=1e-6)


def test_bad_crops_are_refused_with_the_reason():
    path = CORPUS / "n03661043_library_progressive.jpg"  # 4:2:0, 500x375: 16x16 MCUs
    with pytest.raises(JpegError, match="not aligned to this image's 16x16 MCU grid") as info:
        read_coefficients(path, crop=(8, 0, 64, 64))
    assert info.value.kind == "bad_crop"
    with pytest.raises(JpegError, match="not aligned"):
        read_coefficients(path, crop=(0, 0, 40, 64))
    with pytest.raises(JpegError, match="outside the 500x375 image"):
        read_coefficients(path, crop=(480, 0, 32, 16))
    with pytest.raises(JpegError, match="outside"):
        read_coefficients(path, crop=(0, 0, 0, 16))
    with pytest.raises(TypeError, match="crop must be"):
        read_coefficients(path, crop=(0, 0, 16))
    with pytest.raises(JpegError, match="hflip needs at least one whole 8-pixel MCU column"):
        read_coefficients(CORPUS / "n03803284_muzzle_crop1x1_s0.jpg", hflip=True)


def test_one_pixel_image():
    c = read_coefficients(CORPUS / "n03803284_muzzle_crop1x1_s0.jpg")
    assert (c.width, c.height) == (1, 1)
    assert [p.shape for p in c.planes] == [(1, 1, 64)] * 3


def test_planes_are_writable_views_that_outlive_the_result():
    c = read_coefficients(sample_files()[0])
    y = c.planes[0]
    del c
    gc.collect()
    expected = read_coefficients(sample_files()[0]).planes[0]
    np.testing.assert_array_equal(y, expected)  # memory still owned by the array's base
    y[0, 0, 0] += 1  # writable: augmentation may work in place


# ------------------------------------------------------------------------------------------------
# No leaks.

def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_resident_memory_stays_flat_over_many_decodes():
    blobs = [p.read_bytes() for p in sample_files()[:8]] + [(BAD / "truncated_half.jpg").read_bytes(), b"\xff\xd8"]

    def run(n):
        for i in range(n):
            b = blobs[i % len(blobs)]
            try:
                read_coefficients(b, crop=None, hflip=bool(i % 2))
            except JpegError:
                pass
        read_coefficients_batch(blobs * 4, on_error="return")

    run(600)  # warm up allocator pools
    gc.collect()
    before = rss_bytes()
    run(3000)
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 8 * 1024 * 1024, f"resident memory grew by {grown / 1e6:.1f} MB over 3000 decodes"


def test_package_exports():
    assert jpegnet.read_coefficients is read_coefficients
    assert issubclass(jpegnet.JpegError, ValueError)


# ------------------------------------------------------------------------------------------------
# Headers alone, per-item crops, and the early stop below a crop.

def test_header_agrees_with_the_full_read_on_every_corpus_file():
    headers = read_headers_batch(CORPUS_FILES, threads=2)
    for path, h in zip(CORPUS_FILES, headers):
        c = read_coefficients(path)
        assert isinstance(h, JpegHeader)
        assert (h.width, h.height, h.colorspace, h.sampling, h.progressive, h.arithmetic) == (
            c.width, c.height, c.colorspace, c.sampling, c.progressive, c.arithmetic)
        assert h.mcu_size == c.mcu_size and h.subsampling == c.subsampling
    assert read_header(CORPUS_FILES[0].read_bytes()).width == headers[0].width


def test_header_of_a_truncated_file_reads_and_bad_headers_raise():
    assert read_header(BAD / "truncated_half.jpg").width > 0  # its header is intact
    with pytest.raises(JpegError, match="Not a JPEG file"):
        read_header(BAD / "not_a_jpeg.jpg")
    out = read_headers_batch([BAD / "empty.jpg", BAD / "png_named_jpg.jpg", CORPUS_FILES[0]], on_error="return")
    assert isinstance(out[0], JpegError) and isinstance(out[1], JpegError) and isinstance(out[2], JpegHeader)


def test_header_beyond_the_first_64k_is_still_found(tmp_path):
    """A path's header is parsed from a 64 KiB prefix first; big APP segments force the whole-file fallback."""
    data = sample_files()[0].read_bytes()
    app = b"\xff\xe2" + struct.pack(">H", 60_002) + bytes(60_000)
    padded = data[:2] + app * 3 + data[2:]
    path = tmp_path / "big_app_segments.jpg"
    path.write_bytes(padded)
    (h,) = read_headers_batch([path])
    assert (h.width, h.height) == (read_header(data).width, read_header(data).height)


def test_per_item_crops_equal_single_reads():
    paths = [CORPUS / "n01518878_ostrich.JPEG", CORPUS / "n03661043_library_progressive.jpg",
             CORPUS / "n04554684_washer.JPEG"]
    crops = [(8, 16, 64, 32), None, (0, 0, 16, 16)]
    for got, path, crop in zip(read_coefficients_batch(paths, crop=crops, threads=2), paths, crops):
        want = read_coefficients(path, crop=crop)
        assert (got.width, got.height) == (want.width, want.height)
        for a, b in zip(got.planes, want.planes):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="got 2 crops for 3 items"):
        read_coefficients_batch(paths, crop=[None, None])
    # One shared crop is still one tuple of ints.
    shared = read_coefficients_batch(paths[:1], crop=(8, 16, 64, 32))
    np.testing.assert_array_equal(shared[0].planes[0], read_coefficients(paths[0], crop=(8, 16, 64, 32)).planes[0])


def test_decoding_stops_after_the_last_row_of_a_crop():
    """truncated_half.jpg loses its second half: a crop in the top rows never reaches the damage, so even a
    strict read succeeds, and its blocks equal those of the (warned) full read."""
    path = BAD / "truncated_half.jpg"
    with pytest.warns(JpegWarning):
        full = read_coefficients(path, strict=False)
    top = read_coefficients(path, crop=(0, 0, full.width, 64))  # strict: no warning, no error
    for a, b, (h, v) in zip(top.planes, full.planes, top.sampling):
        np.testing.assert_array_equal(a, b[: a.shape[0]])
    with pytest.raises(JpegError, match="Premature end"):  # a crop reaching the damage still fails
        read_coefficients(path, crop=(0, 0, full.width, full.height - full.height % 16 or 16))


def test_extended_sequential_frame_reads_like_baseline():
    """SOF1 (extended sequential, Huffman, 8-bit) differs from baseline SOF0 only in what it allows: the same
    scan data under a SOF1 marker must give the same coefficients."""
    data = sample_files()[0].read_bytes()
    sos = data.index(b"\xff\xda")
    sof = data.rindex(b"\xff\xc0", 0, sos)
    extended = data[:sof + 1] + b"\xc1" + data[sof + 2:]
    a, b = read_coefficients(data), read_coefficients(extended)
    assert not b.progressive
    for x, y in zip(a.planes, b.planes):
        np.testing.assert_array_equal(x, y)
