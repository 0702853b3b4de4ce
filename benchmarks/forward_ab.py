"""The network alone, several exports side by side: each model's forward per image, interleaved round by round.

    python benchmarks/forward_ab.py --onnx rgb=LITE0-int8.onnx --onnx s8=S8-int8.onnx --onnx free8=FREE8-int8.onnx \
        --batch 8 --rounds 12 --backend openvino --out benchmarks/results/forward-ab.json

serve_stages.py times one model after the other; on a shared VM whose speed drifts by tens of percent over
minutes, that order alone can rank two close models wrongly. Here every round runs each model in turn (a few
forwards at --batch on fixed random inputs of its own input shapes: the cost of a convolution does not depend on
the values), and each model's figure is the median over rounds, so drift hits every model alike. Inputs come
from the file's metadata (representation, input size): y (N, 64, H/8, W/8) and cbcr (N, 128, H/16, W/16) for
DCT models, x (N, 3, H, W) for RGB ones. One inference thread. Time only on a quiet machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from jpegnet.engine.backends import load_backend
    from jpegnet.models.registry import example_inputs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", action="append", required=True, metavar="NAME=FILE")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--per-round", type=int, default=3, help="forwards per model per round")
    p.add_argument("--backend", default="openvino", choices=["onnxruntime", "openvino"])
    p.add_argument("--note", default="")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.manual_seed(0)
    models = {}
    for spec in args.onnx:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--onnx takes NAME=FILE, got {spec!r}")
        backend = load_backend(args.backend, onnx=path, threads=1)
        models[name] = (path, backend, example_inputs(backend.input_config, args.batch))
    load_before = os.getloadavg()
    times = {name: [] for name in models}
    for _, backend, inputs in models.values():
        backend(*inputs)  # warm-up: first-call allocations and kernel selection
    for _ in range(args.rounds):
        for name, (_, backend, inputs) in models.items():
            start = time.perf_counter()
            for _ in range(args.per_round):
                backend(*inputs)
            times[name].append((time.perf_counter() - start) / args.per_round / args.batch * 1e3)
    rows = [{"model": name, "onnx": path, "forward_ms_median": round(statistics.median(times[name]), 3),
             "forward_ms_min": round(min(times[name]), 3), "rounds_ms": [round(t, 3) for t in times[name]]}
            for name, (path, _, _) in models.items()]
    print(f"{'model':16s} {'median ms':>10s} {'min ms':>8s}  (per image, batch {args.batch}, {args.backend}, 1 thread)")
    for r in rows:
        print(f"{r['model']:16s} {r['forward_ms_median']:10.2f} {r['forward_ms_min']:8.2f}")
    if args.out:
        meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"),
                "machine": f"{platform.machine()} {os.cpu_count()} cores", "backend": args.backend,
                "batch": args.batch, "rounds": args.rounds, "per_round": args.per_round,
                "load_before": list(load_before), "load_after": list(os.getloadavg()), "note": args.note}
        args.out.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
