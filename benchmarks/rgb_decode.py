"""RGB preprocessing candidates side by side: JPEG bytes → the model's normalized (3, 224, 224) evaluation crop.

Every candidate produces the window of torchvision's Resize(floor(224 / 0.875) = 256) + CenterCrop(224) (the
`plain` path's geometry, `jpegnet.data.augment.center_crop_windows`), single-threaded, and is timed per image
(best of --rounds passes over the files, the candidates taking turns on each file; the mean over
files in ms/image) on two sets:

    originals  the ImageNet originals of ../shared/data/jpeg-corpus (~500x375, mostly 4:4:4 q96): the window
               spans 1.0-1.5x the output, so a scaled decode never applies; only the resample differs
    large      the same photos upscaled to 2592x1944 (or 1944x2592), Pillow q90 4:2:0 (--large N of them,
               written once to --large-dir, git-ignored), a phone camera's size: 1/4 decoding applies

Candidates (libjpeg-turbo decodes in all of them: Pillow's wheel, simplejpeg's and OpenCV's bundle their own):

    plain            jpegnet rgb_decode='plain': Pillow full decode, torchvision resize of the whole image, crop
    fast             jpegnet rgb_decode='fast': Pillow draft (scaled IDCT) + Pillow resize of the window only
    pillow-box       Pillow full decode + resize of the window only (what the window-only resample alone buys)
    simplejpeg       simplejpeg.decode_jpeg(min_height, min_width) scaled decode + Pillow resize of the window
    turbojpeg        PyTurboJPEG decode(scaling_factor) + Pillow resize of the window (needs libturbojpeg: the
                     Debian package libturbojpeg0, or --turbojpeg-lib PATH)
    opencv-area      cv2.imdecode(IMREAD_REDUCED_COLOR_s) + cv2.resize(INTER_AREA) of the window (one OpenCV thread)
    opencv-linear    the same with INTER_LINEAR (OpenCV's SIMD bilinear; no antialiasing: lower PSNR)

A candidate whose package is missing is left out (named in the output); `pip install -e '.[decode-bench]'`
installs them all. PSNR: against `plain`'s tensor, over
[0, 1] pixel values, min and median over the files. Run it alone on a quiet machine for figures:

    python benchmarks/rgb_decode.py                 # both sets, 3 rounds
    python benchmarks/rgb_decode.py --large 4 --rounds 1 --limit 16     # smoke
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from jpegnet.data import JpegFolder  # noqa: E402
from jpegnet.data.augment import center_crop_windows  # noqa: E402
from jpegnet.data.rgb import dct_scale, load_rgb  # noqa: E402
from jpegnet.input_config import IMAGENET_MEAN as MEAN, IMAGENET_STD as STD  # noqa: E402
from pipeline import corpus_originals  # noqa: E402

SIZE, CROP_PCT = 224, 0.875
MEAN_T = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1)
STD_T = torch.tensor(STD, dtype=torch.float32).view(3, 1, 1)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → normalized float32 (3, H, W), as every candidate ends."""
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().div_(255)
    return x.sub_(MEAN_T).div_(STD_T)


def window(width: int, height: int) -> tuple[float, float, float, float]:
    left, top, w, h = center_crop_windows([width], [height], (SIZE, SIZE), CROP_PCT)[0]
    return float(left), float(top), float(w), float(h)


def pillow_box_resize(img, width: int, height: int, scale: int) -> torch.Tensor:
    """The window of the (width x height) image out of `img`, decoded at 1/scale, by one Pillow resample."""
    from PIL import Image
    left, top, w, h = window(width, height)
    box = (left / scale, top / scale, (left + w) / scale, (top + h) / scale)
    return to_tensor(np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BILINEAR, box=box)))


def make_jpegnet(mode: str, bodies: list[bytes]):
    ds = JpegFolder.from_files(bodies, "rgb", train=False, input_size=(SIZE, SIZE), crop_pct=CROP_PCT,
                               rgb_decode=mode, exif_orientation=False)
    return lambda i, body: load_rgb((ds, i, body, 0, 0, MEAN, STD))


def make_pillow_box(bodies):
    from PIL import Image

    def run(i, body):
        img = Image.open(io.BytesIO(body)).convert("RGB")
        return pillow_box_resize(img, *img.size, 1)
    return run


def make_simplejpeg(bodies):
    import simplejpeg
    from PIL import Image

    def run(i, body):
        height, width, _, _ = simplejpeg.decode_jpeg_header(body)
        s = dct_scale(*window(width, height)[2:], SIZE, SIZE)
        arr = simplejpeg.decode_jpeg(body, colorspace="RGB", min_height=-(-height // s), min_width=-(-width // s))
        return pillow_box_resize(Image.fromarray(arr), width, height, s)
    return run


def make_turbojpeg(bodies, lib_path: str | None):
    from PIL import Image
    from turbojpeg import TJPF_RGB, TurboJPEG
    tj = TurboJPEG(lib_path)

    def run(i, body):
        width, height, _, _ = tj.decode_header(body)
        s = dct_scale(*window(width, height)[2:], SIZE, SIZE)
        arr = tj.decode(body, pixel_format=TJPF_RGB, scaling_factor=(1, s))
        return pillow_box_resize(Image.fromarray(arr), width, height, s)
    return run


def make_opencv(interpolation: str):
    import cv2
    cv2.setNumThreads(1)  # one image per thread, as the server's decode pool runs them
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}
    inter = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}[interpolation]

    def run(i, body):
        from PIL import Image
        width, height = Image.open(io.BytesIO(body)).size  # header only
        left, top, w, h = window(width, height)
        s = dct_scale(w, h, SIZE, SIZE)
        bgr = cv2.imdecode(np.frombuffer(body, np.uint8), flags[s])
        # the window in whole decoded pixels (OpenCV's resize takes no sub-pixel box)
        x0, y0 = int(round(left / s)), int(round(top / s))
        x1, y1 = int(round((left + w) / s)), int(round((top + h) / s))
        out = cv2.resize(bgr[y0:y1, x0:x1], (SIZE, SIZE), interpolation=inter)
        return to_tensor(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))
    return run


def candidates(bodies: list[bytes], turbojpeg_lib: str | None) -> tuple[dict, dict]:
    """({name: fn(index, body) → tensor}, {name: why it is missing})."""
    makers = {"plain": lambda: make_jpegnet("plain", bodies), "fast": lambda: make_jpegnet("fast", bodies),
              "pillow-box": lambda: make_pillow_box(bodies), "simplejpeg": lambda: make_simplejpeg(bodies),
              "turbojpeg": lambda: make_turbojpeg(bodies, turbojpeg_lib),
              "opencv-area": lambda: make_opencv("area"), "opencv-linear": lambda: make_opencv("linear")}
    found, missing = {}, {}
    for name, make in makers.items():
        try:
            found[name] = make()
        except Exception as e:  # an optional package or its library is not installed
            missing[name] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return found, missing


def make_large(originals: list[Path], folder: Path, count: int) -> list[Path]:
    """`count` phone-camera-sized JPEGs (2592x1944, or 1944x2592 for portrait photos; q90 4:2:0), made once."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in originals[:count]:
        path = folder / f"{src.stem}_2592.jpg"
        if not path.exists():
            img = Image.open(src).convert("RGB")
            size = (2592, 1944) if img.width >= img.height else (1944, 2592)
            tmp = path.with_suffix(".tmp")
            img.resize(size, Image.Resampling.BICUBIC).save(tmp, "JPEG", quality=90, subsampling=2)
            os.replace(tmp, path)
        out.append(path)
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((((a - b) * STD_T) ** 2).mean())  # back to [0, 1] pixel units
    return 99.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def measure(found: dict, bodies: list[bytes], rounds: int) -> dict:
    """{candidate: seconds per image, best of `rounds`, per file}. The candidates take turns on each file, so
    a change of machine load touches them all alike."""
    best = {name: [math.inf] * len(bodies) for name in found}
    for _ in range(rounds):
        for i, body in enumerate(bodies):
            for name, fn in found.items():
                t0 = time.perf_counter()
                out = fn(i, body)
                best[name][i] = min(best[name][i], time.perf_counter() - t0)
                if isinstance(out, Exception):
                    raise RuntimeError(f"{name} failed on file {i}: {out}")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="at most this many originals (0: all)")
    ap.add_argument("--large", type=int, default=16, help="large photos to make and time (0: none)")
    ap.add_argument("--large-dir", default=str(REPO / "out" / "rgb-decode-large"))
    ap.add_argument("--turbojpeg-lib", default=None, help="path of libturbojpeg.so (default: PyTurboJPEG's search)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rgb_decode.json"))
    args = ap.parse_args()

    originals = corpus_originals()
    sets = {"originals": originals[:args.limit] if args.limit else originals}
    if args.large:
        sets["large"] = make_large(originals, Path(args.large_dir), args.large)
    started, load_before = time.time(), os.getloadavg()
    rows, missing = [], {}
    for set_name, paths in sets.items():
        bodies = [p.read_bytes() for p in paths]
        found, missing = candidates(bodies, args.turbojpeg_lib)
        reference = [found["plain"](i, b) for i, b in enumerate(bodies)]
        for fn in found.values():
            fn(0, bodies[0])  # imports, first-call setup
        timings = measure(found, bodies, args.rounds)
        for name, fn in found.items():
            seconds = timings[name]
            quality = [psnr(fn(i, b), reference[i]) for i, b in enumerate(bodies)]
            row = {"set": set_name, "candidate": name, "files": len(bodies),
                   "ms_per_image": 1000 * statistics.fmean(seconds), "ms_median": 1000 * statistics.median(seconds),
                   "psnr_min_db": min(quality), "psnr_median_db": statistics.median(quality)}
            rows.append(row)
            print(f"{set_name:10s} {name:14s} {row['ms_per_image']:7.2f} ms/image  PSNR vs plain min "
                  f"{row['psnr_min_db']:5.1f} median {row['psnr_median_db']:5.1f} dB", flush=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "machine": platform.machine(),
            "cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "rounds": args.rounds, "missing": missing, "threads": 1}
    print(f"\n{meta['date']}, load average {load_before[0]:.1f} before / {meta['load_average_after'][0]:.1f} after, "
          f"one thread, best of {args.rounds}" + (f"; left out: {missing}" if missing else "") + "\n")
    print("| set | candidate | ms/image | vs plain | PSNR vs plain (min / median dB) |\n|---|---|---|---|---|")
    plain = {r["set"]: r["ms_per_image"] for r in rows if r["candidate"] == "plain"}
    for r in rows:
        print(f"| {r['set']} | {r['candidate']} | {r['ms_per_image']:.2f} | {plain[r['set']] / r['ms_per_image']:.2f}x"
              f" | {r['psnr_min_db']:.1f} / {r['psnr_median_db']:.1f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
