"""Photos an evaluation set shares with a training set, so "never seen in training" is checked, not assumed.

    python benchmarks/overlap.py --train ../shared/data/imagenette-224/train --eval imagenet-sample/

Two files count as the same photo when their 32x32 grey thumbnails, each normalized to zero mean and unit
variance, correlate at --threshold or more (default 0.99). Measured (README, "Results" of the conversion): the
resized copies imagenette-224 holds of ImageNet sample photos scored 0.9996-1.0; the closest different photos,
with flat, sky-like layouts, 0.967.
Prints JSON: file counts, the pairs over the threshold (train file and eval file relative to their folders,
correlation) and the closest correlations below it, for a look by eye. Files Pillow cannot open are counted and
skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

JPEG_SUFFIXES = {".jpg", ".jpeg"}
THUMB = 32


def jpeg_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())


def fingerprints(files: list[Path]) -> tuple[list[Path], np.ndarray, list[str], int]:
    """(readable files, their normalized thumbnails as rows, their SHA-1s, how many could not be read)."""
    kept, rows, digests, unreadable = [], [], [], 0
    for path in files:
        data = path.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as image:  # the bytes already read: hashed and decoded from one read
                image.draft("L", (4 * THUMB, 4 * THUMB))  # libjpeg's scaled decode: no full decode for a thumbnail
                grey = np.asarray(image.convert("L").resize((THUMB, THUMB), Image.BILINEAR), np.float32).ravel()
        except (OSError, ValueError, Image.DecompressionBombError):
            unreadable += 1
            continue
        kept.append(path)
        rows.append((grey - grey.mean()) / (grey.std() + 1e-6))
        digests.append(hashlib.sha1(data).hexdigest())
    return kept, np.stack(rows) if rows else np.zeros((0, THUMB * THUMB), np.float32), digests, unreadable


def best_matches(train_rows: np.ndarray, eval_rows: np.ndarray):
    """(train index, its most correlated eval index, the correlation) for every train row."""
    for start in range(0, len(train_rows) if len(eval_rows) else 0, 4096):  # blocks keep the matrix small
        block = train_rows[start:start + 4096] @ eval_rows.T / (THUMB * THUMB)
        for i, j in enumerate(block.argmax(1)):
            yield start + i, int(j), float(block[i, j])


def shared_eval_files(train_files: list[Path], eval_files: list[Path], threshold: float) -> set[Path]:
    """The eval files whose photo is among train_files (each file read once)."""
    _, train_rows, _, _ = fingerprints(train_files)
    evals, eval_rows, _, _ = fingerprints(eval_files)
    return {evals[j] for _, j, score in best_matches(train_rows, eval_rows) if score >= threshold}


def overlap(train_dir: Path, eval_dir: Path, threshold: float, closest: int = 5) -> dict:
    train, train_rows, train_sha, train_bad = fingerprints(jpeg_files(train_dir))
    evals, eval_rows, eval_sha, eval_bad = fingerprints(jpeg_files(eval_dir))
    same_bytes = set(train_sha) & set(eval_sha)
    pairs, near_misses = [], []
    for i, j, score in best_matches(train_rows, eval_rows):
        row = {"train": str(train[i].relative_to(train_dir)), "eval": str(evals[j].relative_to(eval_dir)),
               "correlation": round(score, 4)}
        (pairs if row["correlation"] >= threshold else near_misses).append(row)
    near_misses.sort(key=lambda r: -r["correlation"])
    return {"train": str(train_dir), "eval": str(eval_dir), "train_files": len(train), "eval_files": len(evals),
            "unreadable": {"train": train_bad, "eval": eval_bad},
            "threshold": threshold, "identical_bytes": len(same_bytes), "shared_photos": len(pairs),
            "pairs": pairs, "closest_below_threshold": near_misses[:closest]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, type=Path, help="training photos (a folder, any depth)")
    parser.add_argument("--eval", required=True, type=Path, help="evaluation photos (a folder, any depth)")
    parser.add_argument("--threshold", type=float, default=0.99, help="thumbnail correlation that counts as shared")
    args = parser.parse_args(argv)
    for folder in (args.train, args.eval):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    json.dump(overlap(args.train, args.eval, args.threshold), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
