"""Coverage-guided fuzzing (atheris / libFuzzer) of the two C extensions, built with ASan and UBSan, and of the
tar-shard reader.

    make fuzz-cov                   (FUZZ_RUNS inputs per target, default 1,000,000; see the Makefile)
    python -m tests.fuzz_cov --target=tar CORPUS...    the tar-shard reader's target (tests/fuzz_tar.py)

One input drives one of the targets, chosen by its last byte:
  * the reader on the input as JPEG bytes: read_coefficients with strict / hflip / crops (small aligned crops,
    crops near the image edge and extreme 64-bit coordinates), read_header, and both batch calls (the input
    split into up to four items, per-item crops);
  * the fused resample kernel's argument checks: planes, windows, scale factors, output sizes and k_margin
    taken from the input (NaN, inf, huge and negative values among them).
The control values are read from the input's last bytes, so a JPEG seed keeps its structure at the front
(libjpeg ignores bytes after the EOI marker).

Each target checks what must hold whatever the input: a read either returns coefficients consistent with
the crop asked for, or raises JpegError; the kernel either fills the batch or raises TypeError / ValueError.
A crash, a sanitizer report or a failed check is a finding: libFuzzer saves the input as crash-*, which goes
to tests/fuzz_regressions/ and is replayed by tests/test_fuzz_regressions.py in `make test`.

`one_input` needs no atheris, so the regression test runs it in the normal build. The tar target (`--target=tar`,
`one_tar_input` in tests/fuzz_tar.py) has its own seeds, corpus and regression folder (tests/fuzz_regressions/tar).
"""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np

from jpegnet.codec import reader as _reader_py
from jpegnet.codec.errors import JpegError
from jpegnet.dct import _resample

CONTROL_BYTES = 64
INT64_MAX = 2**63 - 1

# Coordinates that broke or may break 64-bit crop arithmetic, mixed with aligned ones.
_EXTREMES = (0, 8, 16, -1, -16, 2**31 - 1, 2**31, 2**32, 2**62, INT64_MAX, -INT64_MAX - 1, INT64_MAX - 15,
             INT64_MAX - 16 * 1000 + 1, 65535, 65536)


class _Control:
    """Little-endian values taken from the end of the input (zeros once it runs out)."""

    def __init__(self, data: bytes):
        self.buf = data[-CONTROL_BYTES:] if len(data) >= CONTROL_BYTES else data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            return 0
        self.pos += 1
        return self.buf[self.pos - 1]

    def u16(self) -> int:
        return self.byte() | (self.byte() << 8)

    def pick(self, seq):
        return seq[self.byte() % len(seq)]


def _coordinate(ctl: _Control) -> int:
    kind = ctl.byte() % 4
    if kind == 0:
        return ctl.pick(_EXTREMES)
    if kind == 1:
        return ctl.pick(_EXTREMES) - (ctl.byte() % 64)
    return 8 * (ctl.byte() % 16)


def _crop(ctl: _Control):
    if ctl.byte() % 3 == 0:
        return None
    x, y = _coordinate(ctl), _coordinate(ctl)
    w, h = _coordinate(ctl), _coordinate(ctl)
    if ctl.byte() % 2:  # sizes that reach just to, or just past, the image edge from a huge origin
        w = ctl.pick((16, 17, 16 * 1000 + 16, 16 * 100000, 8, 1))
    return (x, y, w, h)


def _check_coefficients(coefs, crop) -> None:
    """What a successful read must satisfy: the returned area lies inside the image, the planes hold the blocks
    of that area and no more."""
    image_w, image_h = coefs.image_size
    assert 0 < coefs.width <= image_w and 0 < coefs.height <= image_h, (coefs, crop)
    if crop is not None:
        x, y, w, h = crop
        assert 0 <= x and 0 <= y and x + w <= image_w and y + h <= image_h, (crop, coefs.image_size)
    max_h = max(h for h, _ in coefs.sampling)
    max_v = max(v for _, v in coefs.sampling)
    for plane, (hs, vs) in zip(coefs.planes, coefs.sampling):
        bh, bw, n = plane.shape
        assert n == 64
        assert bw <= -(-(-(-coefs.width * hs // max_h)) // 8), (plane.shape, coefs)
        assert bh <= -(-(-(-coefs.height * vs // max_v)) // 8), (plane.shape, coefs)
        plane.sum()  # touch every value: a plane over freed or foreign memory shows under ASan


def _reader_target(data: bytes, ctl: _Control) -> None:
    mode = ctl.byte() % 5
    strict = bool(ctl.byte() & 1)
    hflip = bool(ctl.byte() & 1)
    if mode == 0 or mode == 1:
        crop = _crop(ctl) if mode == 1 else None
        try:
            coefs = _reader_py.read_coefficients(data, strict=strict, hflip=hflip, crop=crop)
        except JpegError:
            return
        _check_coefficients(coefs, crop)
    elif mode == 2:
        try:
            header = _reader_py.read_header(data)
        except JpegError:
            return
        assert header.width > 0 and header.height > 0
    else:
        cuts = sorted(ctl.u16() % (len(data) + 1) for _ in range(ctl.byte() % 4))
        items = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        if mode == 3:
            crops = [_crop(ctl) for _ in items]
            out = _reader_py.read_coefficients_batch(items, threads=1 + ctl.byte() % 2, on_error="return",
                                                     strict=strict, hflip=hflip, crop=crops)
            assert len(out) == len(items)
            for r, crop in zip(out, crops):
                if not isinstance(r, JpegError):
                    _check_coefficients(r, crop)
        else:
            out = _reader_py.read_headers_batch(items, threads=1 + ctl.byte() % 2, on_error="return")
            assert len(out) == len(items)


_FLOATS = (0.0, -0.0, 1.0, 0.5, 2.0, 1e-300, -1.0, 1e300, math.inf, -math.inf, math.nan, 7.5, 224.0, 65535.0,
           2.0**20, 2.0**31, -(2.0**31), 1e-3)


def _number(ctl: _Control, scale: float = 1.0) -> float:
    kind = ctl.byte() % 3
    if kind == 0:
        return ctl.pick(_FLOATS)
    return scale * (ctl.u16() / 256.0 - (16.0 if kind == 2 else 0.0))


def _resample_target(data: bytes, ctl: _Control) -> None:
    n_images = 1 + ctl.byte() % 2
    oh, ow = 1 + ctl.byte() % 3, 1 + ctl.byte() % 3
    y = np.zeros((n_images, 2 * oh, 2 * ow, 64), np.float32)
    cbcr = np.zeros((n_images, oh, ow, 128), np.float32)
    if ctl.byte() % 4:  # a window on the plane, as the data pipeline picks them
        windows = np.array([[ctl.byte() % 64, ctl.byte() % 64, 1 + ctl.byte() % 96, 1 + ctl.byte() % 96]
                            for _ in range(n_images)], np.float64)
    else:
        windows = np.array([[_number(ctl, 4.0) for _ in range(4)] for _ in range(n_images)], np.float64)
    flips = np.array([ctl.byte() & 1 for _ in range(n_images)], np.uint8)
    scale = np.ones(192, np.float32)
    bias = np.zeros(192, np.float32)
    planes = []
    body = data[:-CONTROL_BYTES] if len(data) > CONTROL_BYTES else b""
    for _ in range(1 + ctl.byte() % 3):
        bh, bw = ctl.byte() % 6, ctl.byte() % 6
        need = bh * bw * 64 * 2
        raw = (body * (need // max(len(body), 1) + 1))[:need] if body else bytes(need)
        coefs = np.frombuffer(raw, np.int16).reshape(bh, bw, 64) if need else np.zeros((bh, bw, 64), np.int16)
        if ctl.byte() % 4 == 0 and bw > 1:
            coefs = coefs[:, ::-1]  # negative column stride
        quant = np.full(64, 1 + ctl.byte() % 8, np.float32)
        # Mostly valid arguments, so that the kernel runs; now and then one out of range, which must be refused.
        odd = ctl.byte()
        comp = ctl.byte() % 3 if odd % 8 else ctl.pick((3, -1, 2**31 - 1))
        image = ctl.byte() % n_images if odd % 7 else ctl.pick((n_images, -1, 2**62))
        sizes = (1, 8, 16, 40, 100) if odd % 5 else (0, -5, 2**16, 2**16 + 1, 2**31 - 1)
        fx, fy = (ctl.pick((1.0, 0.5, 0.25)), ctl.pick((1.0, 0.5))) if odd % 3 else (_number(ctl, 0.1),
                                                                                     _number(ctl, 0.1))
        planes.append((coefs, quant, image, comp, fx, fy, ctl.pick(sizes), ctl.pick(sizes)))
    margin = ctl.pick((-1.0, 0.0, 0.5, 1.0, math.inf, math.nan, 1e-300))
    try:
        _resample.resample_planes(planes, windows, flips, y, cbcr, scale, bias, margin, threads=1 + ctl.byte() % 2)
    except (TypeError, ValueError, MemoryError):
        return


def one_input(data: bytes) -> None:
    """One fuzz input; raises AssertionError (or crashes) on a finding."""
    ctl = _Control(data)
    target = data[-1] % 4 if data else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if target == 3:
            _resample_target(data, ctl)
        else:
            _reader_target(data, ctl)


def write_seeds(folder: Path) -> int:
    """Small JPEGs of every layout the reader handles, made with Pillow, plus the small corpus files."""
    import io

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    count = 0
    for w, h in ((16, 16), (33, 17), (64, 48), (8, 8), (120, 24)):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for mode in ("RGB", "L", "CMYK"):
            image = Image.fromarray(pixels).convert(mode)
            for options in ({"subsampling": 2}, {"subsampling": 0}, {"subsampling": 1},
                            {"progressive": True}, {"optimize": True, "quality": 30}):
                buf = io.BytesIO()
                image.save(buf, "JPEG", **options)
                data = buf.getvalue()
                for tail in (0, 1, 2, 3):  # one seed per target (the last byte selects it)
                    (folder / f"seed_{count:04d}").write_bytes(data + bytes(CONTROL_BYTES - 1) + bytes([tail]))
                    count += 1
    from .conftest import CORPUS
    if CORPUS.exists():
        for p in sorted(CORPUS.glob("*")) + sorted((CORPUS / "bad").glob("*")):
            if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg") and p.stat().st_size <= 8192:
                (folder / f"corpus_{p.name}").write_bytes(p.read_bytes())
                count += 1
    return count


def _instrument(modules, atheris) -> None:
    """Python coverage: every function and method defined in `modules`, wherever it is referenced from them
    (a name one module imported from another gets the instrumented function too)."""
    import inspect

    done = {}
    for module in modules:
        for name, obj in list(vars(module).items()):
            if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith(("main",
                                                                                                        "write_")):
                done[obj] = atheris.instrument_func(obj)
            elif inspect.isclass(obj) and obj.__module__ == module.__name__:
                for attr, member in list(vars(obj).items()):
                    fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                    if inspect.isfunction(fn):
                        new = atheris.instrument_func(fn)
                        setattr(obj, attr, type(member)(new) if fn is not member else new)
    for module in modules:
        for name, obj in list(vars(module).items()):
            if inspect.isfunction(obj) and obj in done:
                setattr(module, name, done[obj])


def main(argv: list[str]) -> None:
    import atheris

    if "--target=tar" in argv:
        import logging

        from jpegnet.data import shard_format, shards

        from . import fuzz_tar
        # a cut tar is logged as a warning: the fuzzer's output would be nothing else
        logging.getLogger("jpegnet.data").disabled = True
        _instrument((shard_format, shards, fuzz_tar), atheris)
        target = fuzz_tar.one_tar_input
    else:
        # Python coverage too: the argument checks in front of the C code, and this module's own branches.
        _instrument((_reader_py, sys.modules[__name__]), atheris)
        target = one_input
    atheris.Setup([a for a in argv if a != "--target=tar"], target)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--write-seeds":
        print(write_seeds(Path(sys.argv[2])), "seeds")
    elif len(sys.argv) > 2 and sys.argv[1] == "--write-tar-seeds":
        from .fuzz_tar import write_tar_seeds
        print(write_tar_seeds(Path(sys.argv[2])), "tar seeds")
    else:
        main(sys.argv)
