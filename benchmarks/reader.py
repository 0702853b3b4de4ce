"""Reader benchmark: JPEG bytes → coefficients, against the bare libjpeg call and Pillow's RGB decode.

Batches hold 256 files (a training batch); their results stay alive until the batch is done, as in a data
loader, which costs cache locality against a loop that drops each result at once.

All files are held in memory; each row is the best of --passes passes. One-thread rows run on the calling
thread; "all threads" rows use read_coefficients_batch (C threads) and, for Pillow, a thread pool (Pillow
releases the GIL while decoding), so both sides get every core. Prints a markdown table for the README.

    python benchmarks/reader.py [--passes 5] [--data DIR ...] [--threads N]
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from PIL import Image

import jpegnet
from jpegnet.codec import _reader
from jpegnet.codec.reader import default_threads

BATCH = 256
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def corpus_originals(root: Path) -> list[Path]:
    """The untouched ImageNet originals of the corpus (MANIFEST note 'original file')."""
    with open(root / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [root / r["file"] for r in rows if r["note"] == "original file"]


def best_of(passes: int, fn) -> float:
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def pillow_rgb(data: bytes) -> None:
    Image.open(io.BytesIO(data)).convert("RGB")


def measure(name: str, blobs: list[bytes], passes: int, threads: int) -> dict:
    n = len(blobs)
    # Warm caches once.
    for b in blobs:
        jpegnet.read_coefficients(b, strict=False)
    # Results are dropped as they come (as a data loader consumes them), batches are training-sized.
    chunks = [blobs[i:i + BATCH] for i in range(0, n, BATCH)]

    def one_thread():
        for b in blobs:
            jpegnet.read_coefficients(b, strict=False)

    def pillow_one_thread():
        for b in blobs:
            pillow_rgb(b)

    def batched(n_threads):
        def run():
            for chunk in chunks:
                jpegnet.read_coefficients_batch(chunk, threads=n_threads, strict=False)
        return run

    timings = {
        "bare libjpeg (C)": min(_reader.bare_read_coefficients_seconds(blobs) for _ in range(passes)),
        "read_coefficients": best_of(passes, one_thread),
        "Pillow RGB": best_of(passes, pillow_one_thread),
        "read_coefficients_batch (1 thread)": best_of(passes, batched(1)),
        f"read_coefficients_batch ({threads} threads)": best_of(passes, batched(threads)),
    }
    with ThreadPoolExecutor(threads) as pool:
        def pillow_pool():
            for chunk in chunks:
                for _ in pool.map(pillow_rgb, chunk):
                    pass
        timings[f"Pillow RGB ({threads} threads)"] = best_of(passes, pillow_pool)
    return {"name": name, "n": n, "timings": timings}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--corpus", type=Path, default=SHARED / "jpeg-corpus")
    ap.add_argument("--imagenette", type=Path, default=SHARED / "imagenette-224" / "val")
    args = ap.parse_args(argv)

    sets = []
    if args.corpus.exists():
        sets.append(("jpeg-corpus originals", corpus_originals(args.corpus)))
    if args.imagenette.exists():
        sets.append(("imagenette-224 val", sorted(args.imagenette.glob("*/*.JPEG")) + sorted(args.imagenette.glob("*/*.jpg"))))
    if not sets:
        print("no data found: pass --corpus / --imagenette", file=sys.stderr)
        return 2

    print(f"# reader benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.platform()}, best of {args.passes}")
    for name, paths in sets:
        blobs = [p.read_bytes() for p in paths]
        r = measure(name, blobs, args.passes, args.threads)
        t = r["timings"]
        base = t["read_coefficients"]
        print(f"\n## {name} ({r['n']} files)\n")
        print("| method | ms/image | images/s | read_coefficients speed-up |")
        print("|---|---|---|---|")
        for k, v in t.items():
            print(f"| {k} | {1000 * v / r['n']:.3f} | {r['n'] / v:,.0f} | {v / base:.2f}× |")
        print()
        print(f"- read_coefficients / bare libjpeg: {base / t['bare libjpeg (C)']:.3f}× the time (target ≤ 1.1×)")
        print(f"- Pillow RGB / read_coefficients: {t['Pillow RGB'] / base:.2f}× (target ≥ 1.7× originals, ≥ 2.5× 224 px)")
        batch = t[f"read_coefficients_batch ({args.threads} threads)"]
        batch1 = t["read_coefficients_batch (1 thread)"]
        print(f"- batch call, {args.threads} threads vs 1 thread: {batch1 / batch:.2f}× (target ≥ 1.8× on 2 cores); "
              f"vs the read_coefficients loop: {base / batch:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
