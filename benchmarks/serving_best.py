"""Best against best: reads result files of benchmarks/serving.py (e.g. one fp32 run and one int8 run on the same
quiet machine) and, for each (RGB, DCT) pair, compares each model on its own fastest backend and precision.

    python benchmarks/serving_best.py benchmarks/results/serving-fp32.json benchmarks/results/serving-int8.json

Printed (markdown):
- best vs best: for each pair, files, client and concurrency, the DCT model's highest images/s over every backend
  and precision against the RGB model's, the ratio, and which configuration won on each side;
- latency of those winners: p50 at concurrency 1 and p99 / p50 at concurrency 8;
- backend choice: openvino / onnxruntime images/s per model, precision, client and concurrency (how `serve`'s
  default backend is chosen);
- precision: int8 / fp32 images/s per model and backend.
A configuration counts only if every request it sent was answered 200 (a run that shed load or failed is not a
model's best).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def load(paths: list[str]) -> tuple[list[dict], list[tuple[str, str]], list[dict]]:
    rows, pairs, metas = [], [], []
    for path in paths:
        data = json.loads(Path(path).read_text())
        metas.append(data["meta"])
        for pair in data["meta"].get("pairs", []):
            if tuple(pair) not in pairs:
                pairs.append(tuple(pair))
        rows.extend({**r, "precision": r.get("precision", "fp32"), "source": Path(path).name} for r in data["rows"])
    return rows, pairs, metas


def clean(row: dict) -> bool:
    return row["errors"] == 0 and row["requests"] > 0


def best_rows(rows: list[dict]) -> dict[tuple, dict]:
    """(model, files, client, concurrency) → the row with the most images/s over backends and precisions."""
    best: dict[tuple, dict] = {}
    for r in filter(clean, rows):
        key = (r["model"], r["files"], r["client"], r["concurrency"])
        if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
            best[key] = r
    return best


def label(r: dict) -> str:
    return f"{r['backend']} {r['precision']}"


def summarize(rows: list[dict], pairs: list[tuple[str, str]], metas: list[dict]) -> str:
    out = []
    for m in metas:
        out.append(f"- {m['date']}, {m['cores']} cores, load average {m['load_average_before'][0]:.2f} before / "
                   f"{m['load_average_after'][0]:.2f} after, {m['seconds_total']:.0f} s, RGB decode {m['rgb_decode']}")
    best = best_rows(rows)
    out += ["", "| pair (RGB → DCT) | files | client | conc. | RGB best images/s | DCT best images/s | DCT / RGB |",
            "|---|---|---|---|---|---|---|"]
    for rgb, dct in pairs:
        for (model, files, client, c), r in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3])):
            d = best.get((dct, files, client, c))
            if model != rgb or d is None:
                continue
            out.append(f"| {rgb} → {dct} | {files} | {client} | {c} | {r['images_per_s']:.1f} ({label(r)}) | "
                       f"{d['images_per_s']:.1f} ({label(d)}) | {d['images_per_s'] / r['images_per_s']:.2f}x |")
    out += ["", "| model | files | client | best at conc. 1: p50 ms | best at conc. 8: p50 / p99 ms | p99 / p50 |",
            "|---|---|---|---|---|---|"]
    models = list(dict.fromkeys(m for pair in pairs for m in pair))
    for model in models:
        for files, client in sorted({(r["files"], r["client"]) for r in rows if r["model"] == model}):
            one, eight = best.get((model, files, client, 1)), best.get((model, files, client, 8))
            if eight is None:
                continue
            p50_one = f"{one['p50_ms']:.1f} ({label(one)})" if one else "—"
            out.append(f"| {model} | {files} | {client} | {p50_one} | {eight['p50_ms']:.1f} / {eight['p99_ms']:.1f} "
                       f"({label(eight)}) | {eight['p99_ms'] / eight['p50_ms']:.2f} |")
    by_config = defaultdict(dict)
    for r in filter(clean, rows):
        by_config[(r["model"], r["precision"], r["files"], r["client"], r["concurrency"])][r["backend"]] = r
    out += ["", ("| model | precision | files | client | conc. | onnxruntime images/s | openvino images/s | "
                 "openvino / onnxruntime |"), "|---|---|---|---|---|---|---|---|"]
    for (model, precision, files, client, c), backends in by_config.items():
        if {"onnxruntime", "openvino"} <= backends.keys():
            ort, ov = backends["onnxruntime"]["images_per_s"], backends["openvino"]["images_per_s"]
            out.append(f"| {model} | {precision} | {files} | {client} | {c} | {ort:.1f} | {ov:.1f} | {ov / ort:.2f}x |")
    by_precision = defaultdict(dict)
    for r in filter(clean, rows):
        by_precision[(r["model"], r["backend"], r["files"], r["client"], r["concurrency"])][r["precision"]] = r
    out += ["", "| model | backend | files | client | conc. | fp32 images/s | int8 images/s | int8 / fp32 |",
            "|---|---|---|---|---|---|---|---|"]
    for (model, backend, files, client, c), precisions in by_precision.items():
        if {"fp32", "int8"} <= precisions.keys():
            fp32, int8 = precisions["fp32"]["images_per_s"], precisions["int8"]["images_per_s"]
            out.append(f"| {model} | {backend} | {files} | {client} | {c} | {fp32:.1f} | {int8:.1f} | "
                       f"{int8 / fp32:.2f}x |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", help="JSON files written by benchmarks/serving.py --out")
    args = ap.parse_args()
    rows, pairs, metas = load(args.results)
    print(summarize(rows, pairs, metas))


if __name__ == "__main__":
    main()
