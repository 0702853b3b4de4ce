"""Figures for issue 14's README section: `jpegnet models` wall time (catalog, no torch) against building every
model on the meta device, and the data pipeline's cost of honouring EXIF orientation.

    python benchmarks/issue14.py --data ../shared/data/imagenette-224/val --images 512 --rounds 3
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall(code: str, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def loader_rate(data: str, images: int, exif: bool, rounds: int, representation: str) -> float:
    from jpegnet.engine.inputs import build_data
    from jpegnet.models import InputConfig

    config = InputConfig(representation=representation, input_size=(224, 224))
    dataset, loader = build_data(data, config, train=True, batch_size=32, num_threads=2, prefetch=0,
                                 exif_orientation=exif)
    dataset.samples = dataset.samples[:images]
    best = float("inf")
    for r in range(rounds):
        loader.set_epoch(r)
        start = time.perf_counter()
        n = sum(t.shape[0] for _, t in loader)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/imagenette-224/val"))
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    catalog = wall("from jpegnet.cli import main; main(['models'])", args.rounds)
    built = wall("from jpegnet.engine.zoo import model_table; model_table('*')", 1)
    print(f"jpegnet models: {catalog:.2f} s (catalog) vs {built:.1f} s building all models on the meta device")
    from jpegnet.codec.exif import read_orientation
    files = sorted(Path(args.data).glob("*/*"))[: args.images]
    start = time.perf_counter()
    tags = [read_orientation(f) for f in files]
    per_file = (time.perf_counter() - start) / len(files) * 1e6
    print(f"read_orientation: {per_file:.1f} us/file ({sum(t != 1 for t in tags)} of {len(files)} tagged)")
    for rep in ("dct", "rgb"):
        on = loader_rate(args.data, args.images, True, args.rounds, rep)
        off = loader_rate(args.data, args.images, False, args.rounds, rep)
        print(f"{rep} train loader, 224 px, batch 32, 2 threads: {on:.0f} img/s with EXIF orientation, "
              f"{off:.0f} without ({100 * (off - on) / off:+.1f}% cost)")


if __name__ == "__main__":
    main()
