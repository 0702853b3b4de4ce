"""Serving under load: `jpegnet serve` with RGB models against their DCT twins, on both backends, over HTTP.

For each model of each pair and each backend, a `jpegnet serve` subprocess listens on 127.0.0.1 (random-init
weights, 1000 classes: speed does not depend on the weights; torch: the checkpoint, onnxruntime: the file
`jpegnet export` wrote from it) and an aiohttp client drives it as a bounded load generator: `concurrency`
requests open at all times, each POSTing one real JPEG (round robin over the files), for `--seconds` or
`--max-requests`, whichever ends first, after a short warm-up at the same concurrency. Reported per run:
images/s, client-side latency p50 / p95 / p99, the server process's CPU milliseconds per request (all its
threads: HTTP, decode, model), and the mean batch the dynamic batcher formed. Server and client share the
machine, as they would on a 2-core box serving its own traffic.

    python benchmarks/serving.py              # the README table: 3 pairs x 2 backends x concurrency 1, 8, 32
    python benchmarks/serving.py --quick      # vgnetg pair only, concurrency 1 and 8, short runs

Files: the ImageNet originals of ../shared/data/jpeg-corpus (96 files, ~500x375, mostly 4:4:4 q96) and, at
concurrency 8, imagenette-224 val (224x224, 4:2:0 q75). Results also go to --out as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIRS = [("efficientnet_b0", "dct_efficientnet_b0"), ("vgnetg_1_0mp", "dct_vgnetg_1_0mp"),
         ("resnet50", "dct_late_concat_rfa_thinner")]
BACKENDS = ("torch", "onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import corpus_originals, cpu_seconds, imagenette_val  # noqa: E402  (the files and CPU clock it uses)


def prepare(models: list[str], folder: Path) -> dict:
    """A random-init checkpoint and its exported ONNX file per model."""
    import torch

    from jpegnet import create_model
    from jpegnet.engine import save_checkpoint
    from jpegnet.serve import export_checkpoint

    paths = {}
    for name in models:
        torch.manual_seed(0)
        model = create_model(name, num_classes=1000)
        ckpt = folder / f"{name}.pt"
        save_checkpoint({"model_name": name, "num_classes": 1000, "class_names": [f"class {i}" for i in range(1000)],
                         "input_config": model.input_config.to_dict(), "model": model.state_dict()}, ckpt)
        onnx = folder / f"{name}.onnx"
        export_checkpoint(ckpt, onnx)
        paths[name] = {"torch": ["--checkpoint", str(ckpt), "--backend", "torch"],
                       "onnxruntime": ["--onnx", str(onnx)]}
    return paths


class Server:
    def __init__(self, args: list[str], extra: list[str]):
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen([sys.executable, "-m", "jpegnet", "serve", "--port", "0", *args, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            raise RuntimeError(f"server did not start: {line}{self.proc.stderr.read()}")
        self.url = match.group(0)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def load(url: str, bodies: list[bytes], concurrency: int, seconds: float, max_requests: int):
    """(latencies in s, errors, wall seconds): `concurrency` clients POST round-robin bodies until the time or
    the request budget is spent."""
    import aiohttp

    latencies, errors = [], 0
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        async def client():
            nonlocal issued, errors
            while time.perf_counter() < deadline and issued < max_requests:
                body = bodies[issued % len(bodies)]
                issued += 1
                t0 = time.perf_counter()
                async with session.post(url + "/v1/classify?topk=1", data=body,
                                        headers={"Content-Type": "image/jpeg"}) as r:
                    await r.read()
                    if r.status == 200:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1
        await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


def batch_stats(url: str) -> tuple[float, float]:
    import urllib.request
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    value = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # noqa: E731
    return value("jpegnet_batch_size_sum"), value("jpegnet_batch_size_count")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def measure(server: Server, bodies, concurrency: int, seconds: float, max_requests: int) -> dict:
    asyncio.run(load(server.url, bodies, concurrency, min(0.5, seconds / 3), max_requests))  # warm-up
    images0, batches0 = batch_stats(server.url)
    cpu0 = cpu_seconds([server.proc.pid])
    latencies, errors, wall = asyncio.run(load(server.url, bodies, concurrency, seconds, max_requests))
    cpu = cpu_seconds([server.proc.pid]) - cpu0
    images1, batches1 = batch_stats(server.url)
    n = len(latencies)
    return {"requests": n, "errors": errors, "seconds": wall, "images_per_s": n / wall,
            "p50_ms": 1000 * percentile(latencies, 50), "p95_ms": 1000 * percentile(latencies, 95),
            "p99_ms": 1000 * percentile(latencies, 99), "cpu_ms_per_request": 1000 * cpu / max(n, 1),
            "mean_batch": (images1 - images0) / max(batches1 - batches0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="vgnetg pair, concurrency 1 and 8, 1.5 s runs")
    ap.add_argument("--seconds", type=float, default=2.5, help="per measurement (default 2.5)")
    ap.add_argument("--max-requests", type=int, default=3000, help="per measurement (default 3000)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--imagenette", type=int, default=256, help="imagenette-224 files for the extra runs (0: none)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serving.json"))
    args = ap.parse_args()
    pairs = PAIRS
    if args.quick:
        pairs, args.concurrency, args.seconds, args.imagenette = [PAIRS[1]], [1, 8], 1.5, 0
    originals = [p.read_bytes() for p in corpus_originals()]
    datasets = {"originals": (originals, args.concurrency)}
    if args.imagenette:
        datasets["imagenette-224"] = ([p.read_bytes() for p in imagenette_val(args.imagenette)], [8])
    extra = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--timeout", "60"]
    started = time.time()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        servers = prepare([m for pair in pairs for m in pair], Path(tmp))
        for pair in pairs:
            for name in pair:
                for backend in args.backends:
                    server = Server(servers[name][backend], extra)
                    try:
                        for files, (bodies, levels) in datasets.items():
                            for c in levels:
                                r = measure(server, bodies, c, args.seconds, args.max_requests)
                                r.update(model=name, input="dct" if name.startswith("dct_") else "rgb",
                                         backend=backend, files=files, concurrency=c)
                                rows.append(r)
                                print(f"{name:30s} {backend:11s} {files:14s} c={c:<3d} {r['images_per_s']:7.1f} img/s "
                                      f"p50 {r['p50_ms']:7.1f} p95 {r['p95_ms']:7.1f} p99 {r['p99_ms']:7.1f} ms, "
                                      f"CPU {r['cpu_ms_per_request']:6.2f} ms/req, batch {r['mean_batch']:.1f}, "
                                      f"errors {r['errors']}", flush=True)
                    finally:
                        server.stop()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "machine": platform.machine(),
            "cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "seconds_total": time.time() - started, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
            "weights": "random init (speed only)"}
    print_tables(rows, pairs, meta)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {args.out}")


def print_tables(rows: list[dict], pairs, meta: dict) -> None:
    find = {(r["model"], r["backend"], r["files"], r["concurrency"]): r for r in rows}
    print(f"\n{meta['date']}, {meta['cores']} cores, load average {meta['load_average_before'][0]:.1f} before / "
          f"{meta['load_average_after'][0]:.1f} after, {meta['seconds_total']:.0f} s in all\n")
    print("| model | input | backend | files | conc. | images/s | p50 ms | p95 ms | p99 ms | CPU ms/req | mean batch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['backend']} | {r['files']} | {r['concurrency']} | "
              f"{r['images_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['cpu_ms_per_request']:.2f} | {r['mean_batch']:.1f} |")
    print("\n| ratio | backend | files | conc. | value |\n|---|---|---|---|---|")
    for rgb, dct in pairs:
        for (m, backend, files, c), r in find.items():
            if m == rgb and (dct, backend, files, c) in find:
                ratio = find[(dct, backend, files, c)]["images_per_s"] / r["images_per_s"]
                print(f"| {dct} / {rgb} images/s | {backend} | {files} | {c} | {ratio:.2f}x |")
    for (m, backend, files, c), r in find.items():
        if backend == "onnxruntime" and (m, "torch", files, c) in find:
            ratio = r["images_per_s"] / find[(m, "torch", files, c)]["images_per_s"]
            print(f"| onnxruntime / torch images/s, {m} | | {files} | {c} | {ratio:.2f}x |")
    for r in rows:
        if r["concurrency"] == 8:
            print(f"| p99 / p50, {r['model']} | {r['backend']} | {r['files']} | 8 | {r['p99_ms'] / r['p50_ms']:.2f} |")


if __name__ == "__main__":
    main()
