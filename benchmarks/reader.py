"""Reader benchmark: JPEG bytes → coefficients, against the bare libjpeg call and Pillow's RGB decode.

Batches hold 256 files (a training batch); their results stay alive until the batch is done, as in a data
loader, which costs cache locality against a loop that drops each result at once.

All files are held in memory; each row is the best of --passes passes. One-thread rows run on the calling
thread; "all threads" rows use read_coefficients_batch (C threads) and, for Pillow, a thread pool (Pillow
releases the GIL while decoding), so both sides get every core. Prints a markdown table for the README.

    python benchmarks/reader.py [--passes 5] [--corpus DIR] [--imagenette DIR] [--threads N]

--builds OLD NEW compares two builds of the reader (directories that each hold a built `jpegnet` package, e.g.
a copy taken before a change) on the batch call, with 1 and --threads threads, and on a read_coefficients loop:
every round runs each build once, in a child process importing jpegnet from that directory, alternating which
goes first, so both see the same machine load; the medians over --rounds rounds and their ratio are printed.

    python benchmarks/reader.py --builds /tmp/old . [--rounds 7] [--passes 3] [--limit 1024]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import subprocess
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
SHARED = Path(os.environ.get("JPEGNET_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


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


def build_seconds(blobs: list[bytes], passes: int, thread_counts: list[int]) -> dict:
    """Best-of-passes seconds of read_coefficients_batch over training-sized chunks, per thread count, and of a
    read_coefficients loop (key 'loop': one call per image)."""
    chunks = [blobs[i:i + BATCH] for i in range(0, len(blobs), BATCH)]
    jpegnet.read_coefficients_batch(chunks[0], threads=1, strict=False)  # warm caches and the allocator
    out = {t: best_of(passes, lambda: [jpegnet.read_coefficients_batch(c, threads=t, strict=False) for c in chunks])
           for t in thread_counts}
    out["loop"] = best_of(passes, lambda: [jpegnet.read_coefficients(b, strict=False) for b in blobs])
    return out


def compare_builds(builds: list[Path], sets: list, args) -> None:
    """Interleaved rounds of `batch_seconds` in child processes, one per build and round (see the docstring)."""
    threads = ["loop"] + [str(t) for t in sorted({1, args.threads})]
    names = ["old", "new"]
    seconds = {(name, set_name, t): [] for name in names for set_name, _ in sets for t in threads}
    for r in range(args.rounds):
        for build in (builds if r % 2 == 0 else builds[::-1]):
            name = names[builds.index(build)]
            env = dict(os.environ, PYTHONPATH=str(build.resolve()))
            cmd = [sys.executable, __file__, "--child", "--passes", str(args.passes), "--threads", str(args.threads),
                   "--corpus", str(args.corpus), "--imagenette", str(args.imagenette), "--limit", str(args.limit)]
            out = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
            assert out["jpegnet"].startswith(str(build.resolve())), out["jpegnet"]  # the build asked for
            for set_name, per_thread in out["sets"].items():
                for t, s in per_thread.items():
                    seconds[(name, set_name, t)].append(s)
    print(f"# reader builds compared, {date.today()}, {os.cpu_count()} cores, {args.rounds} interleaved rounds, "
          f"best of {args.passes} per round, medians over rounds; batches of {BATCH}")
    print(f"old: {builds[0].resolve()}, new: {builds[1].resolve()}")
    print("\n| data | call (threads) | " + " | ".join(f"{n} ms/image" for n in names) + f" | {names[1]} / {names[0]} |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for set_name, paths in sets:
        for t in threads:
            med = [statistics.median(seconds[(n, set_name, t)]) / len(paths) for n in names]
            paired = statistics.median(b / a for a, b in zip(seconds[(names[0], set_name, t)],
                                                               seconds[(names[1], set_name, t)]))
            call = "read_coefficients loop" if t == "loop" else f"batch ({t})"
            print(f"| {set_name} ({len(paths)} files) | {call} | " + " | ".join(f"{1000 * m:.4f}" for m in med)
                  + f" | {paired:.3f} |")
    print(f"\n(ratio: median over rounds of the paired {names[1]}/{names[0]} time; below 1: {names[1]} is faster)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--corpus", type=Path, default=SHARED / "jpeg-corpus")
    ap.add_argument("--imagenette", type=Path, default=SHARED / "imagenette-224" / "val")
    ap.add_argument("--builds", type=Path, nargs=2, metavar=("OLD", "NEW"),
                    help="compare the batch call of two builds (directories holding a built jpegnet package)")
    ap.add_argument("--rounds", type=int, default=7, help="--builds: interleaved rounds")
    ap.add_argument("--limit", type=int, default=0, help="use at most this many files per data set (0: all)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one --builds measurement, as JSON
    args = ap.parse_args(argv)

    sets = []
    if args.corpus.exists():
        sets.append(("jpeg-corpus originals", corpus_originals(args.corpus)))
    if args.imagenette.exists():
        sets.append(("imagenette-224 val", sorted(args.imagenette.glob("*/*.JPEG")) + sorted(args.imagenette.glob("*/*.jpg"))))
    if not sets:
        print("no data found: pass --corpus / --imagenette", file=sys.stderr)
        return 2
    if args.limit > 0:
        sets = [(name, paths[:args.limit]) for name, paths in sets]
    if args.child:
        timings = {name: build_seconds([p.read_bytes() for p in paths], args.passes, sorted({1, args.threads}))
                   for name, paths in sets}
        print(json.dumps({"jpegnet": str(Path(jpegnet.__file__).resolve()), "sets": timings}))
        return 0
    if args.builds:
        compare_builds(args.builds, sets, args)
        return 0

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
