"""Model benchmark: parameters, GFLOPs, images/s and latency for every registered model.

    python benchmarks/models.py --models 'resnet50' 'dct_*' --out models.csv
    python benchmarks/models.py --models resnet50 dct_late_concat_rfa_thinner --compile --train

For each model: CPU inference (float32, channels_last, `--cpu-batch` images, a few iterations); and, when CUDA
is available, GPU inference with bf16 autocast, channels_last and `--gpu-batch` images (256 by default, the
setting of the project's anchors). `--compile` adds torch.compile rows next to the eager ones, `--train` adds
a training step (forward, backward, SGD) row per device, `--fuse-bn` times inference with BatchNorm folded
into the convolutions. Models are taken from the registry, so families registered later are covered
without changes here; a model that fails to build or run gets a row with its error and the run goes on.

Throughput compares fairly only within one run on one machine: rerun the baseline (resnet50) next to the
model you compare. Not a test.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import fnmatch
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from jpegnet.layers import fuse_bn
from jpegnet.models import create_model, list_models
from jpegnet.profile import count_cio, count_flops, count_params

FIELDS = ["model", "representation", "input_size", "device", "device_name", "precision", "channels_last", "mode",
          "fused_bn", "batch", "params", "gflops", "cio_m", "images_per_s", "latency_ms", "latency_b1_ms", "error"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["*"], help="shell-style name patterns (default: every model)")
    p.add_argument("--size", type=int, default=None, help="square input size in pixels (default: the model's)")
    p.add_argument("--cpu-batch", type=int, default=8)
    p.add_argument("--gpu-batch", type=int, default=256)
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default: 5 on CPU, 30 on GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations (default: 1 on CPU, 10 on GPU)")
    p.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None,
                   help="default: cpu, plus cuda when available")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    p.add_argument("--train", action="store_true", help="also time a training step (fwd + bwd + SGD)")
    p.add_argument("--fuse-bn", action="store_true", help="fold BatchNorm into convs for inference rows")
    p.add_argument("--no-latency", action="store_true", help="skip the batch-1 latency measurement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="CSV file to write")
    args = p.parse_args(argv)
    for name in ("cpu_batch", "gpu_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def select_models(patterns: list[str]) -> list[str]:
    names = list_models()
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"no registered model matches {patterns}; see jpegnet.list_models()")
    return chosen


def model_size(name: str, size: int | None) -> tuple[int, int]:
    with torch.device("meta"):
        model = create_model(name)
    return (size, size) if size else tuple(model.input_config.input_size)


def params_gflops_cio(name: str, size: tuple[int, int]) -> tuple[int, float, float]:
    """Params, GFLOPs and CIO (millions of conv input+output activation elements, the CSPNet paper's memory
    traffic measure). Counted on the meta device (shapes only); falls back to a real CPU pass for ops without
    meta kernels."""
    try:
        with torch.device("meta"):
            model = create_model(name)
            inputs = model.example_inputs(1, size)
            return count_params(model), count_flops(model, inputs) / 1e9, count_cio(model, inputs) / 1e6
    except Exception:  # noqa: BLE001  (some op lacks a meta kernel: count for real)
        model = create_model(name)
        inputs = model.example_inputs(1, size)
        return count_params(model), count_flops(model, inputs) / 1e9, count_cio(model, inputs) / 1e6


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time_calls(fn, device: str, warmup: int, iters: int) -> float:
    """Median seconds per call after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _precision_context(device: str):
    # One autocast region around the whole timing loop, so the bf16 copies of the weights are cast once and
    # cached, as in a real inference loop, not once per iteration.
    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bench_one(name: str, size: tuple[int, int], device: str, mode: str, task: str, args) -> dict:
    batch = args.cpu_batch if device == "cpu" else args.gpu_batch
    iters = args.iters or (5 if device == "cpu" else 30)
    warmup = args.warmup if args.warmup is not None else (1 if device == "cpu" else 10)
    if mode == "compile":
        warmup = max(warmup, 3)  # the first calls compile
    row = dict(model=name, input_size=f"{size[0]}x{size[1]}", device=device,
               device_name=torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
               precision="bf16-autocast" if device == "cuda" else "fp32", channels_last=True,
               mode=f"{mode}-{task}" if task == "train" else mode, fused_bn=bool(args.fuse_bn and task == "infer"),
               batch=batch)
    model = create_model(name).to(device=device, memory_format=torch.channels_last)
    row["representation"] = model.input_config.representation
    inputs = [t.to(memory_format=torch.channels_last) for t in model.example_inputs(batch, size, device=device)]
    if task == "infer":
        model.eval()
        if args.fuse_bn:
            model = fuse_bn(model, inplace=True)
        runner = torch.compile(model) if mode == "compile" else model

        def step():
            with torch.inference_mode():
                runner(*inputs)
    else:
        model.train()
        runner = torch.compile(model) if mode == "compile" else model
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        targets = torch.randint(0, model.num_classes, (batch,), device=device)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(runner(*inputs), targets).backward()
            optimizer.step()

    with _precision_context(device):
        seconds = _time_calls(step, device, warmup, iters)
        row["latency_ms"] = round(seconds * 1e3, 3)
        row["images_per_s"] = float(f"{batch / seconds:.4g}")
        if task == "infer" and not args.no_latency and batch > 1:
            inputs = [t[:1] for t in inputs]
            row["latency_b1_ms"] = round(_time_calls(step, device, warmup, iters) * 1e3, 3)
        elif batch == 1:
            row["latency_b1_ms"] = row["latency_ms"]
    return row


def run(args) -> list[dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--devices cuda given but CUDA is not available")
    if "cuda" in devices:
        torch.backends.cudnn.benchmark = True
    modes = ["eager", "compile"] if args.compile else ["eager"]
    tasks = ["infer", "train"] if args.train else ["infer"]
    rows = []
    for name in select_models(args.models):
        try:
            size = model_size(name, args.size)
            params, gflops, cio = params_gflops_cio(name, size)
        except Exception as exc:  # noqa: BLE001  (report and go on with the other models)
            rows.append(dict(model=name, error=f"{type(exc).__name__}: {exc}"))
            print_row(rows[-1])
            continue
        for device in devices:
            for task in tasks:
                for mode in modes:
                    try:
                        row = bench_one(name, size, device, mode, task, args)
                    except Exception as exc:  # noqa: BLE001
                        row = dict(model=name, device=device, mode=mode, error=f"{type(exc).__name__}: {exc}")
                    row.update(params=params, gflops=round(gflops, 3), cio_m=round(cio, 2), input_size=f"{size[0]}x{size[1]}")
                    rows.append(row)
                    print_row(row)
                    if device == "cuda":
                        torch.cuda.empty_cache()
    return rows


_COLUMNS = [("model", 30), ("device", 6), ("mode", 13), ("batch", 5), ("input_size", 9), ("params", 11),
            ("gflops", 8), ("cio_m", 8), ("images_per_s", 11), ("latency_ms", 11), ("latency_b1_ms", 11)]
_header_printed = False


def print_row(row: dict) -> None:
    global _header_printed
    if not _header_printed:
        print("  ".join(f"{c:>{w}}" if c != "model" else f"{c:<{w}}" for c, w in _COLUMNS))
        _header_printed = True
    if row.get("error"):
        print(f"{row['model']:<30}  {row.get('device', '')}  {row.get('mode', '')}  ERROR {row['error'][:200]}")
        return
    cells = []
    for c, w in _COLUMNS:
        v = row.get(c, "")
        if c == "params" and isinstance(v, int):
            v = f"{v / 1e6:.2f}M"
        cells.append(f"{v:<{w}}" if c == "model" else f"{v!s:>{w}}")
    print("  ".join(cells), flush=True)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in FIELDS})


def print_ratios(rows: list[dict], baseline: str = "resnet50") -> None:
    """Throughput relative to the baseline measured in the same run, per device / mode / task."""
    base = {(r["device"], r["mode"]): r["images_per_s"] for r in rows
            if r.get("model") == baseline and not r.get("error")}
    if not base:
        return
    print(f"\nthroughput relative to {baseline} (same run):")
    for r in rows:
        key = (r.get("device"), r.get("mode"))
        if r.get("error") or key not in base or r["model"] == baseline:
            continue
        ratio = r["images_per_s"] / base[key]
        if math.isfinite(ratio):
            print(f"  {r['model']:<30} {key[0]:>5} {key[1]:>13}  {ratio:5.2f}x")


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"torch {torch.__version__}, {platform.machine()} {platform.processor() or ''}, "
          f"{torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""), file=sys.stderr)
    rows = run(args)
    print_ratios(rows)
    if args.out:
        write_csv(rows, args.out)
        print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
