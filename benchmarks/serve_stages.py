"""Where a served image's time goes: the per-image cost of each stage of `jpegnet serve`, without HTTP.

    python benchmarks/serve_stages.py --onnx rgb=LITE0-int8.onnx --onnx dct=CONVERTED-int8.onnx \
        --images /work/imagenet-sample --limit 200 --backend openvino --out benchmarks/results/serve-stages.json

For each model (an exported ONNX file, whose metadata carries the input config) and the same JPEG originals:
  decode_ms      the server's own per-upload preprocessing (jpegnet.serve.preprocess.decode_upload): the DCT
                 reader's coefficients of the crop window, or the RGB twin's decode + resize + crop (its
                 `fast` decode by default: libjpeg-turbo's scaled IDCT), one image at a time, one thread
  stack_ms       stacking batch-1 inputs into one batch (per image)
  forward_ms     the backend's forward per image at each --batch (one inference thread)
and the sum at each batch, i.e. the CPU time one image costs a server that spends nothing on HTTP. The ratio of
those sums (RGB / DCT) is the best speed-up a server on one core could show; README, "Serving", compares it
with what the HTTP server measures (benchmarks/serving.py) to say how much of the gap is the server's own
overhead. Time only on a quiet machine.
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


def originals(folder: Path, limit: int) -> list[bytes]:
    """The bytes of up to `limit` JPEG files of folder (any depth), spread evenly over its sorted listing."""
    from jpegnet.data.scan import list_class_files

    files = list_class_files(folder)
    if not files:
        raise SystemExit(f"{folder}: no JPEG files")
    files = files[:: max(1, len(files) // limit)][:limit]
    return [Path(f).read_bytes() for f in files]


def per_image_ms(fn, items, repeats: int) -> float:
    """Median over `repeats` passes of (seconds for fn over all items) / len(items), in ms."""
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for it in items:
            fn(it)
        passes.append((time.perf_counter() - start) / len(items) * 1e3)
    return statistics.median(passes)


def measure(name: str, onnx: str, backend_name: str, bodies: list[bytes], batches: list[int], repeats: int,
            rgb_decode: str) -> dict:
    from jpegnet.engine.backends import load_backend
    from jpegnet.serve.preprocess import decode_upload, stack_inputs

    backend = load_backend(backend_name, onnx=onnx, threads=1)
    config = backend.input_config

    def decode(body):
        return decode_upload(body, config, max_pixels=None, rgb_decode=rgb_decode)[0]

    inputs = [decode(b) for b in bodies]  # warm-up pass, and the inputs the forward passes use
    decode_ms = per_image_ms(decode, bodies, repeats)
    row = {"model": name, "onnx": str(onnx), "backend": backend_name, "representation": config.representation,
           "input_size": list(config.input_size), "images": len(bodies), "decode_ms": round(decode_ms, 3),
           "stack_ms": {}, "forward_ms": {}, "total_ms": {}}
    for b in batches:
        groups = [inputs[i:i + b] for i in range(0, len(inputs) - b + 1, b)]
        if not groups:
            continue
        stacked = [stack_inputs(g) for g in groups]
        backend(*stacked[0])  # warm-up at this batch size
        stack_ms = per_image_ms(stack_inputs, groups, repeats) / b
        forward_ms = per_image_ms(lambda x: backend(*x), stacked, repeats) / b
        row["stack_ms"][b] = round(stack_ms, 3)
        row["forward_ms"][b] = round(forward_ms, 3)
        row["total_ms"][b] = round(decode_ms + stack_ms + forward_ms, 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", action="append", required=True, metavar="NAME=FILE",
                        help="a model to measure (repeat); the first is the baseline of the ratios")
    parser.add_argument("--images", type=Path, required=True, help="a folder of JPEG originals")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="openvino", choices=["onnxruntime", "openvino"])
    parser.add_argument("--rgb-decode", default="fast", choices=["fast", "plain"])
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    bodies = originals(args.images, args.limit)
    rows = []
    for spec in args.onnx:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--onnx takes NAME=FILE, got {spec!r}")
        rows.append(measure(name, path, args.backend, bodies, args.batch, args.repeats, args.rgb_decode))
    base = rows[0]
    print(f"{'model':<16}{'decode ms':>10}" + "".join(f"{'fwd@' + str(b):>9}{'tot@' + str(b):>9}{'x':>6}"
                                                     for b in args.batch))
    for r in rows:
        cells = "".join(f"{r['forward_ms'].get(b, float('nan')):>9.2f}{r['total_ms'].get(b, float('nan')):>9.2f}"
                        f"{base['total_ms'].get(b, float('nan')) / r['total_ms'].get(b, float('nan')):>6.2f}"
                        for b in args.batch)
        print(f"{r['model']:<16}{r['decode_ms']:>10.2f}{cells}")
    if args.out:
        result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"),
                  "machine": f"{platform.machine()} {os.cpu_count()} cores", "load": os.getloadavg(),
                  "note": args.note, "rgb_decode": args.rgb_decode, "rows": rows}
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
