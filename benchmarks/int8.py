"""fp32 against int8, ONNX Runtime against OpenVINO: top-1 and images/s of one model, side by side in one run.

    python benchmarks/int8.py --model efficientnet_lite0 --weights LITE0.pth --data /work/imagenet-sample \\
        --imagenet-flat --calibration ../shared/data/imagenette-224/train
    python benchmarks/int8.py --checkpoint runs/x/best.pt --data DATA/val --calibration DATA/train
    python benchmarks/int8.py --model dct_vgnetg_1_0mp --data ../shared/data/jpeg-corpus --imagenet-flat \\
        --calibration ../shared/data/imagenette-224/val --calibration-images 16 --max-images 16   # smoke run

The model comes from a jpegnet checkpoint (or a plain state dict with --model), or from a registered name and a
weights file loaded strictly (`create_model(NAME, checkpoint_path=FILE)`), or a registered name alone (random
weights: speed only). It is exported to ONNX once (fp32), and quantized to int8 once per calibration method
(`jpegnet.engine.quantize`, what `jpegnet export --int8` does) on --calibration images, which should not be the
labelled ones. Every (runtime, file) pair then classifies the same labelled images, decoded once beforehand by the
model's own evaluation preprocessing, so the images/s here are the model's alone (decoding is the same for every
row: benchmarks/serving.py measures the whole server):

- top-1 / top-5 against the labels, and agreement: the share of images whose top-1 class is the fp32 torch
  model's (`torch` row: eager PyTorch, the reference);
- images/s at --batch-size (best of --repeat passes over all images after one warm-up batch) and the median
  latency of one image at batch 1 over the first --latency-images images.

Labels: class folders (DATA/<class>/*.jpg, classes in sorted order, as `jpegnet eval`), or with --imagenet-flat a
flat folder of ImageNet images named WNID_anything.JPEG (github.com/EliSchwartz/imagenet-sample-images, the
corpus's originals), each labelled with its WNID's index among the 1,000 ImageNet-1k WNIDs in sorted order (the
usual class index of ImageNet models): timm's list where timm is installed, else the folder's own WNIDs when
it holds all 1,000.

Writes JSON to --out (default benchmarks/results/int8-MODEL.json) with the machine, versions, load average
before and after, and every row. Not a test; timings compare only within one run on one quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jpegnet.data.scan import JPEG_EXTENSIONS, FolderScan  # noqa: E402
from jpegnet.engine.backends import OnnxRuntimeBackend, OpenVinoBackend, TorchBackend  # noqa: E402
from jpegnet.engine.export import export_onnx, model_for_export  # noqa: E402
from jpegnet.engine.inference import input_batches  # noqa: E402
from jpegnet.engine.quantize import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES  # noqa: E402
from jpegnet.engine.quantize import calibration_batches, quantize_onnx, reduced_range_needed  # noqa: E402

RUNTIMES = ("onnxruntime", "openvino")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="jpegnet checkpoint (or a plain state dict with --model)")
    p.add_argument("--model", help="registered model name (with --weights, or alone for random weights)")
    p.add_argument("--weights", help="weights file for --model, loaded strictly (a jpegnet checkpoint, "
                                     "best.safetensors, a torchvision / timm state dict)")
    p.add_argument("--num-classes", type=int, default=1000, help="outputs of --model without --checkpoint")
    p.add_argument("--data", required=True, help="labelled JPEGs: class folders, or flat with --imagenet-flat")
    p.add_argument("--imagenet-flat", action="store_true",
                   help="--data is a flat folder of WNID_name.JPEG files, labelled by their WNID's ImageNet-1k index")
    p.add_argument("--max-images", type=int, default=None, help="the first N labelled images only")
    p.add_argument("--calibration", required=True, help="calibration JPEGs (folder or tar shards), not --data")
    p.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    p.add_argument("--methods", nargs="+", choices=CALIBRATION_METHODS, default=list(CALIBRATION_METHODS),
                   help="calibration methods, one int8 file each (default: all)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit weights (default: decided from this CPU: 7 bits on x86 without VNNI)")
    p.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    p.add_argument("--openvino-hints", nargs="+", choices=["LATENCY", "THROUGHPUT"], default=["LATENCY"],
                   help="OpenVINO performance hints to time (the backend uses LATENCY: see its docstring)")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip the eager PyTorch row")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="model threads (default: the runtimes' own)")
    p.add_argument("--repeat", type=int, default=3, help="timed passes per row, best kept")
    p.add_argument("--latency-images", type=int, default=32, help="images timed one by one (0: none)")
    p.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/int8-MODEL.json)")
    args = p.parse_args(argv)
    if args.checkpoint is None and args.model is None:
        p.error("give --checkpoint, or --model [--weights]")
    if args.checkpoint is not None and args.weights is not None:
        p.error("--weights goes with --model, not --checkpoint")
    return args


# --- the model and the labelled images ------------------------------------------------------------------------

def load_model(args):
    """(model, class_names or None, name)."""
    if args.checkpoint is not None:
        return model_for_export(args.checkpoint, args.model)
    from jpegnet.models import create_model

    model = create_model(args.model, num_classes=args.num_classes, checkpoint_path=args.weights)
    return model.eval(), None, args.model


def imagenet_wnids(folder_wnids: list[str]) -> list[str]:
    """The 1,000 ImageNet-1k WNIDs in sorted order (index = class)."""
    try:
        from timm.data import ImageNetInfo
        wnids = sorted(ImageNetInfo().label_names())
        if len(wnids) == 1000:
            return wnids
    except Exception:  # noqa: BLE001  (timm absent or without that table: fall back on the folder)
        pass
    distinct = sorted(set(folder_wnids))
    if len(distinct) != 1000:
        sys.exit(f"--imagenet-flat: timm's ImageNet class list is not available and the folder has {len(distinct)} "
                 f"WNIDs, not 1000: cannot tell the class indices")
    return distinct


def labelled_files(args, class_names) -> tuple[list[str], list[int]]:
    folder = Path(args.data)
    if args.imagenet_flat:
        files = sorted(str(f) for f in folder.iterdir()
                       if f.suffix.lower() in JPEG_EXTENSIONS and f.name[:1] == "n" and "_" in f.name)
        wnids = [Path(f).name.split("_")[0] for f in files]
        index = {w: i for i, w in enumerate(imagenet_wnids(wnids))}
        keep = [k for k, w in enumerate(wnids) if w in index]
        files, labels = [files[k] for k in keep], [index[wnids[k]] for k in keep]
    else:
        scan = FolderScan.of(folder)
        if class_names is not None and list(class_names) != scan.classes:
            sys.exit(f"the model's classes {list(class_names)[:3]}... are not {folder}'s {scan.classes[:3]}...")
        files, labels = [p for p, _ in scan.samples], [t for _, t in scan.samples]
    if args.max_images:
        files, labels = files[:args.max_images], labels[:args.max_images]
    if not files:
        sys.exit(f"no labelled JPEG files in {folder}")
    return files, labels


def decode(files, labels, input_config, batch_size) -> tuple[list[tuple], torch.Tensor, int]:
    """(input batches, their labels, unreadable count): every file through the model's evaluation transform."""
    batches, kept, bad, start = [], [], 0, 0
    for _, inputs, errors in input_batches(files, input_config, batch_size=batch_size):
        chunk = labels[start:start + len(errors)]
        start += len(errors)
        kept += [label for label, error in zip(chunk, errors) if error is None]
        bad += sum(error is not None for error in errors)
        if inputs is not None:
            batches.append(tuple(x.contiguous() for x in inputs))
    return batches, torch.tensor(kept), bad


# --- measuring ------------------------------------------------------------------------------------------------

def measure(runner, batches, labels, reference, repeat: int,
            latency_images: int) -> tuple[dict, torch.Tensor]:
    runner(*batches[0])  # warm-up: allocation, kernel choice, page faults
    best, logits = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        outs = [runner(*inputs) for inputs in batches]
        best = min(best, time.perf_counter() - start)
        logits = torch.cat(outs)
    row = {"images": int(labels.numel()), "images_per_s": labels.numel() / best,
           "top1": 100.0 * (logits.argmax(1) == labels).float().mean().item(),
           "top5": 100.0 * (logits.topk(min(5, logits.shape[1]), 1).indices == labels[:, None]).any(1)
           .float().mean().item()}
    if reference is not None:
        row["agreement"] = 100.0 * (logits.argmax(1) == reference.argmax(1)).float().mean().item()
    if latency_images:
        singles = [tuple(x[i:i + 1] for x in inputs) for inputs in batches for i in range(inputs[0].shape[0])]
        times = []
        for inputs in singles[:latency_images]:
            start = time.perf_counter()
            runner(*inputs)
            times.append(1000 * (time.perf_counter() - start))
        row["latency_b1_ms_p50"] = statistics.median(times)
    return row, logits


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        info["vnni"] = any(f in flags for f in ("avx512_vnni", "avx_vnni"))
    except (OSError, StopIteration):
        pass
    for package in ("onnxruntime", "openvino"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    return info


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model, class_names, name = load_model(args)
    cfg = model.input_config
    files, labels = labelled_files(args, class_names)
    print(f"{name}: {cfg.representation} {cfg.input_size[0]}x{cfg.input_size[1]}, {len(files)} labelled images "
          f"from {args.data}", flush=True)
    batches, labels, bad = decode(files, labels, cfg, args.batch_size)
    if not batches:
        sys.exit("none of the labelled images could be read")

    fp32 = export_onnx(model, class_names=class_names, model_name=name)
    calibration, report = calibration_batches(args.calibration, cfg, args.calibration_images)
    reduce_range = reduced_range_needed() if args.reduce_range is None else args.reduce_range
    files_by_precision = {"fp32": fp32}
    quantize_seconds = {}
    for method in args.methods:
        start = time.perf_counter()
        files_by_precision[f"int8-{method}"] = quantize_onnx(fp32, calibration, method=method,
                                                             reduce_range=reduce_range, calibration=report)
        quantize_seconds[method] = time.perf_counter() - start
        print(f"quantized ({method}) in {quantize_seconds[method]:.1f} s", flush=True)

    rows, reference = [], None
    if args.torch:
        row, reference = measure(TorchBackend(model, device="cpu", precision="fp32"), batches, labels, None,
                                 args.repeat, args.latency_images)
        rows.append({"runtime": "torch", "precision": "fp32", **row, "agreement": 100.0})
        print(rows[-1], flush=True)
    for runtime in args.runtimes:
        hints = args.openvino_hints if runtime == "openvino" else [None]
        for precision, data in files_by_precision.items():
            for hint in hints:
                if runtime == "onnxruntime":
                    runner = OnnxRuntimeBackend(data, threads=args.threads, device="cpu")
                else:
                    runner = OpenVinoBackend(data, threads=args.threads, performance_hint=hint)
                row, logits = measure(runner, batches, labels, reference, args.repeat, args.latency_images)
                if reference is None:
                    reference = logits  # without torch: agreement with the first row
                rows.append({"runtime": runtime + (f" ({hint})" if hint and len(hints) > 1 else ""),
                             "precision": precision, **row})
                print(rows[-1], flush=True)
                del runner

    base = {r["runtime"]: r for r in rows if r["precision"] == "fp32"}
    for row in rows:
        fp = base.get(row["runtime"])
        if fp is not None:
            row["speedup_vs_fp32"] = row["images_per_s"] / fp["images_per_s"]
            row["top1_delta_vs_fp32"] = row["top1"] - fp["top1"]

    result = {"model": name, "representation": cfg.representation, "input_size": list(cfg.input_size),
              "data": str(args.data), "imagenet_flat": args.imagenet_flat, "labelled_images": int(labels.numel()),
              "unreadable": bad, "calibration": {**report, "methods": args.methods, "seconds": quantize_seconds,
                                                 "reduce_range": reduce_range},
              "batch_size": args.batch_size, "threads": args.threads, "repeat": args.repeat,
              "machine": machine(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "rows": rows}
    out = args.out or REPO / "benchmarks" / "results" / f"int8-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")

    header = ["runtime", "precision", "top-1", "top-5", "agree", "images/s", "vs fp32", "b1 p50 ms"]
    table = [[r["runtime"], r["precision"], f"{r['top1']:.2f}", f"{r['top5']:.2f}", f"{r.get('agreement', 0):.1f}",
              f"{r['images_per_s']:.1f}", f"{r.get('speedup_vs_fp32', 1):.2f}x",
              f"{r.get('latency_b1_ms_p50', float('nan')):.2f}"] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table)]
    for line in [header, ["-" * w for w in widths], *table]:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(line, widths))))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
