"""Mutation fuzzing of the reader: corpus files with bit flips, truncations, overwritten bytes and spliced
segments must either read or raise JpegError, never crash the interpreter.

    python -m tests.fuzz_reader --seconds 600      (make fuzz; make asan runs it under AddressSanitizer)

The test suite runs a bounded burst of the same loop (tests/test_fuzz.py).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

from jpegnet import JpegError, read_coefficients, read_coefficients_batch, read_header, read_headers_batch

from .conftest import CORPUS


def seed_files(max_bytes: int = 120_000) -> list[bytes]:
    """Small corpus files of every kind (baseline, progressive, arithmetic, restart, gray, CMYK, odd sizes)."""
    paths = sorted(p for p in CORPUS.glob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))
    blobs = [p.read_bytes() for p in paths]
    return [b for b in blobs if len(b) <= max_bytes]


def mutate(data: bytes, others: list[bytes], rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.35 and buf:  # bit flips
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
        elif kind < 0.5 and buf:  # truncation
            del buf[rng.randrange(len(buf)):]
        elif kind < 0.7 and buf:  # overwrite bytes, biased to the headers where lengths and sizes live
            i = rng.randrange(min(len(buf), 700))
            for j in range(rng.randint(1, 4)):
                if i + j < len(buf):
                    buf[i + j] = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif kind < 0.9:  # splice a segment of another file in
            other = rng.choice(others)
            a = rng.randrange(len(other))
            seg = other[a:a + rng.randint(1, 2000)]
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = seg
        elif buf:  # drop a segment
            a = rng.randrange(len(buf))
            del buf[a:a + rng.randint(1, 500)]
    return bytes(buf)


def fuzz(iterations: int | None = None, seconds: float | None = None, seed: int = 0) -> dict:
    """Run the mutation loop; returns counts. Any crash takes the process down (that is the failure)."""
    rng = random.Random(seed)
    seeds = seed_files()
    counts = {"ok": 0, "error": 0, "runs": 0}
    deadline = time.monotonic() + seconds if seconds else None
    batch: list[bytes] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while True:
            if iterations is not None and counts["runs"] >= iterations:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            data = mutate(rng.choice(seeds), seeds, rng)
            opts = {"strict": rng.random() < 0.5, "hflip": rng.random() < 0.3}
            if rng.random() < 0.3:
                opts["crop"] = (16 * rng.randrange(4), 16 * rng.randrange(4), 16 * rng.randrange(1, 6),
                                16 * rng.randrange(1, 6))
            try:
                read_coefficients(data, **opts)
                counts["ok"] += 1
            except JpegError:
                counts["error"] += 1
            batch.append(data)
            try:
                read_header(data)
            except JpegError:
                pass
            if len(batch) == 16:
                crops = [None if rng.random() < 0.5 else (0, 0, 16 * rng.randrange(1, 8), 16 * rng.randrange(1, 8))
                         for _ in batch]
                out = read_coefficients_batch(batch, threads=2, on_error="return", strict=rng.random() < 0.5,
                                              crop=crops)
                assert len(out) == 16
                assert len(read_headers_batch(batch, threads=2, on_error="return")) == 16
                batch = []
            counts["runs"] += 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args(argv)
    print(f"fuzzing the reader for {args.seconds:.0f} s, seed {args.seed}", flush=True)
    counts = fuzz(seconds=args.seconds, seed=args.seed)
    print(f"{counts['runs']} inputs: {counts['ok']} read, {counts['error']} JpegError, no crash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
