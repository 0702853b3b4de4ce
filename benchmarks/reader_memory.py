"""Long leak check of the reader: resident memory over many decodes (default 100,000), good and bad files,
single and batch calls, crop and flip. Prints RSS every 10% of the run; the test suite runs a short version.

    python benchmarks/reader_memory.py [--decodes 100000]
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from pathlib import Path

import jpegnet
from jpegnet import JpegError
from jpegnet.samples import sample_files

BAD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jpeg-corpus" / "bad"


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--decodes", type=int, default=100_000)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # the truncated bad file warns on every non-strict read
    blobs = [p.read_bytes() for p in sample_files()]
    if BAD.exists():
        blobs += [p.read_bytes() for p in sorted(BAD.iterdir())]
    step = max(1, args.decodes // 10)
    done = 0
    errors = 0
    print("| decodes | RSS (MB) |\n|---|---|")
    while done < args.decodes:
        for i in range(step):
            b = blobs[(done + i) % len(blobs)]
            try:
                jpegnet.read_coefficients(b, hflip=bool(i & 1), crop=(0, 0, 16, 16) if i % 3 == 0 else None)
            except JpegError:
                errors += 1
        out = jpegnet.read_coefficients_batch(blobs, on_error="return", strict=False)
        errors += sum(isinstance(r, JpegError) for r in out)
        done += step + len(blobs)
        gc.collect()
        print(f"| {done:,} | {rss_mb():.1f} |", flush=True)
    print(f"\n{done:,} decodes, {errors:,} JpegErrors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
