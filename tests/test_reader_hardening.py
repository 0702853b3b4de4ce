"""Issue 15, items 1, 2 and 7: crops that wrapped 64-bit arithmetic, files that are not regular or are huge, and
arguments that were coerced or escaped as untyped errors. Every case must end in a typed error, never data."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from jpegnet import JpegError, read_coefficients, read_coefficients_batch, read_header, read_headers_batch
from jpegnet.codec import DEFAULT_MAX_BYTES
from jpegnet.samples import sample_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def jpeg_420() -> bytes:
    """A 400 px wide 4:2:0 sample: its Y plane is 50 blocks wide, as in the issue's reproduction."""
    data = sample_files()[0].read_bytes()
    header = read_header(data)
    assert header.subsampling == "4:2:0" and header.width == 400
    return data


@pytest.fixture(scope="module")
def jpeg_444() -> bytes:
    """504 px wide 4:4:4: a row of 63 blocks, as in the issue's reproduction."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 504, 3), dtype=np.uint8)).save(buf, "JPEG", subsampling=0)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------
# Item 1: the crop check wrapped in a signed long: a heap read past the plane, or SIGSEGV.

WRAPPING_420 = [
    (2**63 - 16 * 1000, 0, 16 * 1000 + 16, 16),      # returned 2,002 blocks of a 50-block-wide plane
    (2**63 - 16 * 100000, 0, 16 * 100000 + 16, 16),  # SIGSEGV
    (INT64_MAX - 15, 0, 16, 16),
    (0, INT64_MAX - 15, 16, 16),
    (16, 0, INT64_MAX, 16),
    (0, 16, 16, INT64_MAX),
    (INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX),
    (400, 0, 16, 16),                                # origin just past the right edge
]


@pytest.mark.parametrize("crop", WRAPPING_420)
def test_crop_past_the_image_is_bad_crop_not_data(jpeg_420, crop):
    with pytest.raises(JpegError) as info:
        read_coefficients(jpeg_420, crop=crop)
    assert info.value.kind == "bad_crop"
    assert "outside" in str(info.value)


def test_crop_near_int64_max_on_444_is_bad_crop(jpeg_444):
    with pytest.raises(JpegError) as info:
        read_coefficients(jpeg_444, crop=(2**63 - 8, 0, 16, 8))
    assert info.value.kind == "bad_crop"


def test_batch_per_item_wrapping_crops_are_bad_crop(jpeg_420, jpeg_444):
    crops = [(2**63 - 16 * 1000, 0, 16 * 1000 + 16, 16), None, (2**63 - 8, 0, 16, 8), (0, 0, 16, 16)]
    out = read_coefficients_batch([jpeg_420, jpeg_420, jpeg_444, jpeg_420], crop=crops, on_error="return",
                                  threads=2)
    assert isinstance(out[0], JpegError) and out[0].kind == "bad_crop"
    assert out[1].planes[0].shape[1] == 50 and out[1].width == 400
    assert isinstance(out[2], JpegError) and out[2].kind == "bad_crop"
    assert out[3].planes[0].shape == (2, 2, 64)
    with pytest.raises(JpegError) as info:
        read_coefficients_batch([jpeg_420], crop=[crops[0]])
    assert info.value.kind == "bad_crop"


def test_crop_at_the_right_edge_still_reads(jpeg_420):
    c = read_coefficients(jpeg_420, crop=(400 - 16, 0, 16, 16))
    assert c.planes[0].shape == (2, 2, 64) and c.planes[1].shape == (1, 1, 64)
    full = read_coefficients(jpeg_420)
    np.testing.assert_array_equal(c.planes[0], full.planes[0][:2, 48:50])


def test_crop_overflow_does_not_crash_the_process(tmp_path, jpeg_420):
    """The SIGSEGV reproduction in a child process: a regression fails here instead of killing the run."""
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_420)
    code = textwrap.dedent(f"""
        from jpegnet import JpegError, read_coefficients
        try:
            read_coefficients({str(path)!r}, crop=(2**63 - 16 * 100000, 0, 16 * 100000 + 16, 16))
        except JpegError as e:
            print(e.kind)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "bad_crop"


# ------------------------------------------------------------------------------------------------
# Item 2: FIFOs, devices, huge files.

def _run_with_timeout(code: str, timeout: float = 60) -> str:
    """Run in a child process so that a call that blocks fails the test instead of hanging the suite."""
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "PYTHONPATH": REPO})
    except subprocess.TimeoutExpired:
        pytest.fail(f"blocked for {timeout} s")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "upload.jpg"
    os.mkfifo(fifo)
    out = _run_with_timeout(f"""
        from jpegnet import JpegError, read_coefficients, read_coefficients_batch, read_header, read_headers_batch
        path = {str(fifo)!r}
        calls = [lambda: read_coefficients(path), lambda: read_header(path),
                 lambda: read_coefficients_batch([path, path], threads=2),
                 lambda: read_headers_batch([path, path], threads=2)]
        for call in calls:
            try:
                call()
                print("read")
            except JpegError as e:
                print(e.kind, "|", e)
    """)
    lines = out.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        assert line.startswith("io |"), line
        assert str(fifo) in line and "not a regular file" in line and "FIFO" in line


def test_symlink_to_dev_zero_is_refused(tmp_path):
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    for call in (lambda: read_coefficients(link), lambda: read_header(link),
                 lambda: read_coefficients_batch([link]), lambda: read_headers_batch([link])):
        with pytest.raises(JpegError, match="not a regular file") as info:
            call()
        assert info.value.kind == "io" and info.value.source == str(link)


def test_directory_is_refused(tmp_path):
    with pytest.raises(JpegError, match="not a regular file: a directory") as info:
        read_coefficients(tmp_path)
    assert info.value.kind == "io"


def _bytes_read() -> int:
    """Bytes this process has read through read() so far (Linux /proc/self/io)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.fixture()
def sparse_2gb(tmp_path, jpeg_420):
    """2 GiB of (sparse) zeros after a real JPEG's bytes: costs no disk."""
    path = tmp_path / "sparse.jpg"
    with open(path, "wb") as f:
        f.write(jpeg_420)
        f.truncate(2 * 1024**3)
    return path


def test_sparse_file_header_reads_only_a_prefix(sparse_2gb, tmp_path):
    before = _bytes_read()
    assert read_header(sparse_2gb).width == 400
    assert read_headers_batch([sparse_2gb, sparse_2gb], threads=2)[1].width == 400
    not_jpeg = tmp_path / "zeros.jpg"
    with open(not_jpeg, "wb") as f:
        f.truncate(2 * 1024**3)
    with pytest.raises(JpegError, match="Not a JPEG file") as info:
        read_header(not_jpeg)
    assert info.value.kind == "jpeg"
    out = read_headers_batch([not_jpeg], on_error="return")
    assert isinstance(out[0], JpegError) and "Not a JPEG file" in str(out[0])
    assert _bytes_read() - before < 4 * 1024**2  # 64 KiB prefixes, not 2 GiB files


def test_sparse_file_above_max_bytes_is_refused_before_reading(sparse_2gb):
    assert DEFAULT_MAX_BYTES < 2 * 1024**3
    before = _bytes_read()
    with pytest.raises(JpegError, match="above max_bytes") as info:
        read_coefficients(sparse_2gb)
    assert info.value.kind == "too_large"
    out = read_coefficients_batch([sparse_2gb], on_error="return")
    assert isinstance(out[0], JpegError) and out[0].kind == "too_large"
    assert _bytes_read() - before < 1024**2


def test_max_bytes_option(tmp_path, jpeg_420):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_420)
    with pytest.raises(JpegError, match=f"file is {len(jpeg_420)} bytes, above max_bytes=1000") as info:
        read_coefficients(path, max_bytes=1000)
    assert info.value.kind == "too_large"
    assert read_coefficients(path, max_bytes=len(jpeg_420)).width == 400
    assert read_coefficients(path, max_bytes=None).width == 400
    with pytest.raises(ValueError):
        read_coefficients(path, max_bytes=0)


def test_header_past_the_prefix_is_read_on(tmp_path, jpeg_420):
    """Two 60 KB comment segments before the frame header: the 64 KiB prefix runs out, the rest is read."""
    comment = b"\xff\xfe" + (60002).to_bytes(2, "big") + b"x" * 60000
    data = jpeg_420[:2] + comment + comment + jpeg_420[2:]
    path = tmp_path / "long_header.jpg"
    path.write_bytes(data)
    assert read_header(path).width == 400
    assert read_headers_batch([path])[0].width == 400
    with pytest.raises(JpegError) as info:
        read_header(path, max_bytes=100_000)
    assert info.value.kind == "too_large"


# ------------------------------------------------------------------------------------------------
# Item 7: typed errors instead of coercion, truncation or OverflowError / BufferError.

def test_path_with_nul_is_an_error_in_single_and_batch_calls(tmp_path, jpeg_420):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_420)
    bad = str(path) + "\0ignored"
    with pytest.raises(JpegError, match="NUL") as info:
        read_coefficients(bad)
    assert info.value.kind == "io"
    out = read_coefficients_batch([bad, path], on_error="return")
    assert isinstance(out[0], JpegError) and out[0].kind == "io" and "NUL" in str(out[0])
    assert out[1].width == 400
    assert isinstance(read_headers_batch([bad], on_error="return")[0], JpegError)


@pytest.mark.parametrize("crop", [(0.9, 0, 16, 16), (0, 0, 16.0, 16), ("0", 0, 16, 16), (0, 0, 16), "0016"])
def test_non_integer_crop_is_a_type_error(jpeg_420, crop):
    with pytest.raises(TypeError, match="crop"):
        read_coefficients(jpeg_420, crop=crop)


def test_four_floats_as_a_batch_crop_are_refused_not_read_as_per_item_crops(jpeg_420):
    with pytest.raises(TypeError, match="crop"):
        read_coefficients_batch([jpeg_420] * 4, crop=(0.0, 0.0, 16.0, 16.0))
    # numpy integers stay a shared crop; rows of an array are per-item crops
    out = read_coefficients_batch([jpeg_420] * 2, crop=np.array([0, 0, 16, 16]))
    assert all(c.planes[0].shape == (2, 2, 64) for c in out)
    out = read_coefficients_batch([jpeg_420] * 2, crop=np.array([[0, 0, 16, 16], [0, 0, 32, 16]]))
    assert [c.planes[0].shape for c in out] == [(2, 2, 64), (2, 4, 64)]


def test_crop_beyond_64_bits_is_bad_crop(jpeg_420):
    with pytest.raises(JpegError) as info:
        read_coefficients(jpeg_420, crop=(2**63, 0, 16, 16))
    assert info.value.kind == "bad_crop"
    out = read_coefficients_batch([jpeg_420, jpeg_420], crop=[(0, 0, 2**64, 16), None], on_error="return")
    assert isinstance(out[0], JpegError) and out[0].kind == "bad_crop"
    assert out[1].width == 400


@pytest.mark.parametrize("value", [1.5, float("inf"), float("nan"), "100"])
def test_max_pixels_must_be_an_integer(jpeg_420, value):
    with pytest.raises(TypeError, match="max_pixels"):
        read_coefficients(jpeg_420, max_pixels=value)


def test_huge_limits_mean_no_limit(jpeg_420):
    assert read_coefficients(jpeg_420, max_pixels=2**63).width == 400
    assert read_coefficients_batch([jpeg_420], max_pixels=2**70, threads=2**63)[0].width == 400


@pytest.mark.parametrize("threads", [float("inf"), 2.5])
def test_threads_must_be_an_integer(jpeg_420, threads):
    with pytest.raises(TypeError, match="threads"):
        read_coefficients_batch([jpeg_420], threads=threads)


def test_non_contiguous_memoryview_is_a_value_error(jpeg_420):
    view = memoryview(jpeg_420)[::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        read_coefficients(view)
    with pytest.raises(ValueError, match="C-contiguous"):
        read_header(view)
    with pytest.raises(ValueError, match="C-contiguous"):
        read_coefficients_batch([view])
    assert read_coefficients(memoryview(jpeg_420)).width == 400


# ------------------------------------------------------------------------------------------------
# The C entry points take their options by keyword: no run of positional flags to pass in the wrong order, the
# limits have no default, and a batch's per-item sequences must match its items.

def test_c_entry_points_take_options_by_keyword_only(jpeg_420):
    from jpegnet.codec import _reader
    with pytest.raises(TypeError):
        _reader.decode(jpeg_420, 0, True, None, False, "x")  # flags by position
    with pytest.raises(TypeError, match="max_pixels"):
        _reader.decode(jpeg_420)
    with pytest.raises(TypeError):
        _reader.decode_batch([jpeg_420], b"\0", 0, 0, 1, True, None, False, False, ["x"])  # flags by position
    with pytest.raises(TypeError, match="max_bytes"):
        _reader.decode_batch([jpeg_420], path_flags=b"\0", max_pixels=0)
    width, height = _reader.decode(jpeg_420, max_pixels=0, hflip=True)[:2]
    assert (width, height) == _reader.decode(jpeg_420, max_pixels=0, header_only=True)[:2]
    with pytest.raises(JpegError, match="max_pixels=100") as info:
        _reader.decode(jpeg_420, max_pixels=100, where="here")
    assert info.value.kind == "too_large" and info.value.source == "here"


def test_c_batch_per_item_sequences_must_match_the_items(jpeg_420):
    from jpegnet.codec import _reader
    items = [jpeg_420, b"not a jpeg"]
    limits = dict(max_pixels=0, max_bytes=0)
    with pytest.raises(TypeError, match="path_flags"):
        _reader.decode_batch(items, path_flags=b"\0", **limits)
    with pytest.raises(TypeError):
        _reader.decode_batch(items, path_flags="\0\0", **limits)  # str, not bytes
    with pytest.raises(TypeError, match="crops"):
        _reader.decode_batch(items, path_flags=b"\0\0", crops=[None], **limits)
    with pytest.raises(TypeError, match="wheres"):
        _reader.decode_batch(items, path_flags=b"\0\0", wheres=["a"], **limits)
    good, bad = _reader.decode_batch(items, path_flags=b"\0\0", wheres=["a", "b"], threads=2, **limits)
    assert good[0] == 400 and isinstance(bad, JpegError) and bad.source == "b" and bad.kind == "jpeg"
