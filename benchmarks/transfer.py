"""Transfer: fine-tune an RGB model and its converted DCT twin from the same pretrained weights on a labelled
data set of other classes, with one recipe, and compare top-1 and training images/s side by side.

    python benchmarks/transfer.py --data /work/clothing --test-data /work/clothing/test \\
        --rgb efficientnet_lite0=RGB.pt --dct converted=CONVERTED.pt --epochs 4

--data holds train/<class>/*.jpg and val/<class>/*.jpg (what `jpegnet train` takes). --rgb / --dct are
MODEL=CHECKPOINT: the registered model and the checkpoint its run starts from (`jpegnet train --init-from`: every
layer that fits is loaded, the classifier is new); for `converted` the checkpoint's own model kwargs (teacher, entry)
are passed along so the same architecture is built. Both runs get the same recipe (--epochs, --batch-size, --opt,
--lr, --seed, --threads) and run one after the other, so their images/s compare (on a quiet machine: report the
load average). Each run is a plain `jpegnet train` subprocess writing OUT/<model>/log.csv; --test-data is then
scored with `jpegnet eval` on each run's best.pt.

Reported per model: val top-1 after the last epoch and the best epoch's, test top-1 (--test-data), training
images/s (the mean of the epochs' `train_images_per_s` after the first, which also pays for warm-up; all epochs
if there is one), wall seconds. Then DCT - RGB top-1 and DCT / RGB images/s. JSON to --json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def model_spec(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not Path(path).is_file():
        raise SystemExit(f"expected MODEL=CHECKPOINT of an existing file, got {spec!r}")
    return name, Path(path)


def checkpoint_kwargs(path: Path) -> dict:
    """The builder kwargs a checkpoint was made with (a converted model's teacher and entry)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    return dict(state.get("model_kwargs") or {})


def run(cmd: list[str], log: Path) -> float:
    started = time.time()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return time.time() - started


def train(name: str, init: Path, args, out: Path) -> dict:
    run_dir = out / name  # `jpegnet train` refuses a folder that holds anything: the logs go beside it
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "jpegnet", "train", "--data", args.data, "--model", name, "--init-from", str(init),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--opt", args.opt,
           "--seed", str(args.seed), "--out", str(run_dir), "--no-tensorboard", "--no-progress"]
    kwargs = checkpoint_kwargs(init)
    if kwargs:
        cmd += ["--model-kwargs", ",".join(f"{k}={v}" for k, v in kwargs.items())]
    if args.lr is not None:
        cmd += ["--lr", str(args.lr)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    seconds = run(cmd, out / f"{name}.train.out")
    with open(run_dir / "log.csv", newline="") as fh:
        epochs = list(csv.DictReader(fh))
    rates = [float(e["train_images_per_s"]) for e in epochs]
    timed = rates[1:] or rates
    result = {"model": name, "init_from": str(init), "model_kwargs": kwargs, "wall_s": seconds,
              "epochs": len(epochs), "val_top1_last": float(epochs[-1]["val_top1"]),
              "val_top1_best": max(float(e["val_top1"]) for e in epochs),
              "train_images_per_s": sum(timed) / len(timed), "train_images_per_s_by_epoch": rates}
    if args.test_data:
        log = out / f"{name}.test.out"
        run([sys.executable, "-m", "jpegnet", "eval", "--checkpoint", str(run_dir / "best.pt"),
             "--data", args.test_data], log)
        match = re.search(r"(\d+) images, top-1 ([\d.]+)%", log.read_text())
        result.update(test_images=int(match.group(1)), test_top1=float(match.group(2)))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="train/<class>/ and val/<class>/ JPEGs")
    ap.add_argument("--test-data", help="class folders scored with `jpegnet eval` after training")
    ap.add_argument("--rgb", required=True, type=model_spec, metavar="MODEL=CHECKPOINT")
    ap.add_argument("--dct", required=True, type=model_spec, metavar="MODEL=CHECKPOINT")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--opt", default="sgd", choices=["sgd", "adamw"])
    ap.add_argument("--lr", type=float, default=None, help="default: jpegnet train's for --opt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "out" / "transfer"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "transfer.json"))
    args = ap.parse_args()
    out = Path(args.out)
    load_before = os.getloadavg()
    started = time.time()
    rows = [train(*args.rgb, args, out), train(*args.dct, args, out)]
    rgb, dct = rows
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "machine": platform.machine(),
            "cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "data": args.data, "test_data": args.test_data, "epochs": args.epochs, "batch_size": args.batch_size,
            "opt": args.opt, "lr": args.lr, "seed": args.seed, "threads": args.threads}
    print(f"{meta['date']}, {meta['cores']} cores, load average {load_before[0]:.2f} before / "
          f"{meta['load_average_after'][0]:.2f} after; {args.epochs} epochs, batch {args.batch_size}, {args.opt}\n")
    print("| model | val top-1 (last / best) | test top-1 | train images/s | wall s |\n|---|---|---|---|---|")
    for r in rows:
        test = f"{r['test_top1']:.2f}% of {r['test_images']}" if "test_top1" in r else "—"
        print(f"| {r['model']} | {r['val_top1_last']:.2f}% / {r['val_top1_best']:.2f}% | {test} | "
              f"{r['train_images_per_s']:.1f} | {r['wall_s']:.0f} |")
    print(f"\nDCT - RGB val top-1 (last): {dct['val_top1_last'] - rgb['val_top1_last']:+.2f} points; "
          f"DCT / RGB training images/s: {dct['train_images_per_s'] / rgb['train_images_per_s']:.2f}x")
    if "test_top1" in rgb:
        print(f"DCT - RGB test top-1: {dct['test_top1'] - rgb['test_top1']:+.2f} points")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
