"""Serving under load: `jpegnet serve` with RGB models against their DCT twins, on each backend, over HTTP.

For each model of each pair and each backend, a `jpegnet serve` subprocess listens on 127.0.0.1 (random-init
weights, 1000 classes: speed does not depend on the weights; torch: the checkpoint, any other backend: the ONNX
file `jpegnet export` wrote from it, or the file --onnx MODEL=PATH names, e.g. an int8 export) and a load
generator drives it closed-loop: `concurrency` requests open at all times, each POSTing a real JPEG, for
`--seconds`, after a short warm-up at the same concurrency. `--client` picks the generator (several may be
given; each row names its own; see load_clients.py): our aiohttp client (round robin over the files, also
stops at `--max-requests`), hey (one file posted over and over: hey takes a single body) or wrk (round robin
through a Lua script). Reported per run: images/s, latency p50 / p95 / p99, the status codes, the server
process's CPU milliseconds per request (all its threads: HTTP, decode, model), and the mean batch the dynamic
batcher formed. Server and client share the machine, as they would on a 2-core box serving its own traffic.

RGB servers decode with `--rgb-decode fast` (libjpeg-turbo's scaled IDCT + one resample of the window: the
strongest RGB baseline, see benchmarks/rgb_decode.py) unless `--rgb-decode plain` is given.

    python benchmarks/serving.py              # the README table: 3 pairs x 2 backends x concurrency 1, 8, 32
    python benchmarks/serving.py --quick      # vgnetg pair only, concurrency 1 and 8, short runs
    python benchmarks/serving.py --client aiohttp hey wrk --pair vgnetg_1_0mp dct_vgnetg_1_0mp
    python benchmarks/serving.py --backends onnxruntime openvino --onnx dct_vgnetg_1_0mp=int8.onnx

Files: the ImageNet originals of ../shared/data/jpeg-corpus (96 files, ~500x375, mostly 4:4:4 q96; hey posts
--hey-file, by default the first 500x375 4:4:4 one) and, at concurrency 8, imagenette-224 val (224x224, 4:2:0
q75). Results also go to --out as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIRS = [("efficientnet_b0", "dct_efficientnet_b0"), ("vgnetg_1_0mp", "dct_vgnetg_1_0mp"),
         ("resnet50", "dct_late_concat_rfa_thinner")]
BACKENDS = ("torch", "onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_clients import CLIENTS, check_client, run_client  # noqa: E402
from pipeline import corpus_originals, cpu_seconds, imagenette_val  # noqa: E402  (the files and CPU clock it uses)


def prepare(models: list[str], folder: Path, backends: list[str], onnx_files: dict[str, str],
            checkpoints: dict[str, str]) -> dict:
    """The `jpegnet serve` arguments per (model, backend): the checkpoint --checkpoint named for the model, else a
    random-init one, for torch; for any other backend the ONNX file --onnx named for the model or the one exported
    from that checkpoint."""
    import torch

    from jpegnet import create_model
    from jpegnet.engine import save_checkpoint
    from jpegnet.serve import export_checkpoint

    paths = {}
    for name in models:
        ckpt = Path(checkpoints[name]) if name in checkpoints else folder / f"{name}.pt"
        if name not in checkpoints:
            torch.manual_seed(0)
            model = create_model(name, num_classes=1000)
            save_checkpoint({"model_name": name, "num_classes": 1000,
                             "class_names": [f"class {i}" for i in range(1000)],
                             "input_config": model.input_config.to_dict(), "model": model.state_dict()}, ckpt)
        onnx = onnx_files.get(name)
        if onnx is None and any(b != "torch" for b in backends):
            onnx = folder / f"{name}.onnx"
            export_checkpoint(ckpt, onnx)
        paths[name] = {b: ["--checkpoint", str(ckpt), "--backend", "torch"] if b == "torch"
                       else ["--onnx", str(onnx), "--backend", b] for b in backends}
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
        self.health = json.loads(urllib.request.urlopen(self.url + "/healthz", timeout=30).read())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def batch_stats(url: str) -> tuple[float, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    value = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # noqa: E731
    return value("jpegnet_batch_size_sum"), value("jpegnet_batch_size_count")


def measure(server: Server, client: str, files: list[Path], concurrency: int, seconds: float,
            max_requests: int) -> dict:
    run_client("aiohttp", server.url, files, concurrency, min(0.5, seconds / 3), max_requests)  # warm-up
    images0, batches0 = batch_stats(server.url)
    cpu0 = cpu_seconds([server.proc.pid])
    r = run_client(client, server.url, files, concurrency, seconds, max_requests)
    cpu = cpu_seconds([server.proc.pid]) - cpu0
    images1, batches1 = batch_stats(server.url)
    r.update(cpu_ms_per_request=1000 * cpu / max(r["requests"], 1),
             mean_batch=(images1 - images0) / max(batches1 - batches0, 1))
    return r


def model_files(spec: str, option: str = "--onnx") -> dict[str, str]:
    """'NAME=PATH' → {NAME: PATH}"""
    name, sep, path = spec.partition("=")
    if not sep or not Path(path).is_file():
        raise SystemExit(f"{option} takes MODEL=PATH of an existing file, got {spec!r}")
    return {name: path}


def hey_default(originals: list[Path]) -> Path:
    """The first 500x375 4:4:4 original (the issue's hey figures posted such a file)."""
    import csv
    with open(originals[0].parent / "MANIFEST.tsv", newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if r["note"] == "original file" and (r["width"], r["height"], r["sampling"]) == ("500", "375", "4:4:4"):
                return originals[0].parent / r["file"]
    return originals[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="vgnetg pair, concurrency 1 and 8, 1.5 s runs")
    ap.add_argument("--seconds", type=float, default=2.5, help="per measurement (default 2.5; wrk: whole seconds)")
    ap.add_argument("--max-requests", type=int, default=3000, help="per measurement, aiohttp only (default 3000)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--client", nargs="+", choices=CLIENTS, default=["aiohttp"],
                    help="load generator(s): aiohttp (ours), hey, wrk (default aiohttp)")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS),
                    help="`jpegnet serve --backend` names: torch serves the checkpoint, any other the ONNX file "
                         "(default: torch onnxruntime)")
    ap.add_argument("--onnx", action="append", default=[], metavar="MODEL=PATH",
                    help="serve this ONNX file for MODEL on the non-torch backends instead of exporting one "
                         "(e.g. an int8 export); repeatable")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                    help="serve this jpegnet checkpoint for MODEL (any label, e.g. a `jpegnet convert` result) "
                         "instead of a random-init one; repeatable")
    ap.add_argument("--pair", nargs=2, action="append", metavar=("RGB", "DCT"),
                    help="an (RGB model, DCT twin) pair to compare; repeatable (default: the three README pairs)")
    ap.add_argument("--rgb-decode", choices=["fast", "plain"], default="fast",
                    help="RGB servers' decode (default fast: the strongest RGB baseline)")
    ap.add_argument("--server-args", default="", help="more `jpegnet serve` arguments, one shell-quoted string")
    ap.add_argument("--hey-file", default=None, help="the one file hey posts (default: a 500x375 4:4:4 original)")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--imagenette", type=int, default=256, help="imagenette-224 files for the extra runs (0: none)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serving.json"))
    args = ap.parse_args()
    for client in args.client:
        check_client(client)
    pairs = [tuple(p) for p in args.pair] if args.pair else PAIRS
    if args.quick:
        pairs, args.concurrency, args.seconds, args.imagenette = pairs if args.pair else [PAIRS[1]], [1, 8], 1.5, 0
    onnx_files = {k: v for spec in args.onnx for k, v in model_files(spec).items()}
    checkpoints = {k: v for spec in args.checkpoint for k, v in model_files(spec, "--checkpoint").items()}
    originals = corpus_originals()
    hey_file = Path(args.hey_file) if args.hey_file else hey_default(originals)
    datasets = {"originals": ([hey_file] + [f for f in originals if f != hey_file], args.concurrency)}
    if args.imagenette:
        datasets["imagenette-224"] = (imagenette_val(args.imagenette), [8])
    extra = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--timeout", "60",
             *shlex.split(args.server_args)]
    started = time.time()
    load_before = os.getloadavg()
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        servers = prepare(list(dict.fromkeys(m for pair in pairs for m in pair)), Path(tmp), args.backends, onnx_files, checkpoints)
        # each model is served once, even when it is in several pairs (the tables pair the rows up afterwards)
        models = dict.fromkeys((name, rgb) for pair in pairs for rgb, name in zip((True, False), pair))
        for name, rgb in models:
            for backend in args.backends:
                try:
                    server = Server(servers[name][backend], extra + (["--rgb-decode", args.rgb_decode] if rgb else []))
                except RuntimeError as error:  # one server that cannot start does not lose the others' rows
                    failed.append({"model": name, "backend": backend, "error": str(error)[-2000:]})
                    print(f"{name} on {backend}: {error}", file=sys.stderr, flush=True)
                    continue
                try:
                    if server.health["representation"] != ("rgb" if rgb else "dct"):
                        raise SystemExit(f"{name} takes {server.health['representation']} input: a pair is "
                                         "(RGB model, DCT model)")
                    for files, (paths, levels) in datasets.items():
                        for c in levels:
                            for client in args.client:
                                r = measure(server, client, paths, c, args.seconds, args.max_requests)
                                r.update(model=name, input="rgb" if rgb else "dct", backend=backend, files=files,
                                         precision=server.health["precision"],
                                         concurrency=c, rgb_decode=args.rgb_decode if rgb else None,
                                         onnx=onnx_files.get(name) if backend != "torch" else None)
                                rows.append(r)
                                print(f"{name:30s} {backend:11s} {files:14s} {client:7s} c={c:<3d} "
                                      f"{r['images_per_s']:7.1f} img/s p50 {r['p50_ms']:7.1f} p95 "
                                      f"{r['p95_ms']:7.1f} p99 {r['p99_ms']:7.1f} ms, CPU "
                                      f"{r['cpu_ms_per_request']:6.2f} ms/req, batch {r['mean_batch']:.1f}, "
                                      f"statuses {r['statuses']}", flush=True)
                finally:
                    server.stop()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "machine": platform.machine(),
            "cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "seconds_total": time.time() - started, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
            "weights": "random init (speed only) except --checkpoint models", "checkpoints": checkpoints,
            "pairs": pairs, "clients": args.client, "rgb_decode": args.rgb_decode,
            "hey_file": hey_file.name, "server_args": args.server_args, "failed_to_start": failed}
    print_tables(rows, pairs, meta)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {args.out}")


def print_tables(rows: list[dict], pairs, meta: dict) -> None:
    key = lambda r: (r["model"], r["backend"], r["files"], r["client"], r["concurrency"])  # noqa: E731
    find = {key(r): r for r in rows}
    print(f"\n{meta['date']}, {meta['cores']} cores, load average {meta['load_average_before'][0]:.1f} before / "
          f"{meta['load_average_after'][0]:.1f} after, {meta['seconds_total']:.0f} s in all, RGB decode "
          f"{meta['rgb_decode']}, hey posts {meta['hey_file']}\n")
    print("| model | input | backend | precision | files | client | conc. | images/s | p50 ms | p95 ms | p99 ms "
          "| CPU ms/req | mean batch | non-200 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['backend']} | {r.get('precision', 'fp32')} | {r['files']} | "
              f"{r['client']} | {r['concurrency']} | "
              f"{r['images_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['cpu_ms_per_request']:.2f} | {r['mean_batch']:.1f} | {r['errors']} |")
    print("\n| ratio | backend | files | client | conc. | value |\n|---|---|---|---|---|---|")
    for rgb, dct in pairs:
        for (m, backend, files, client, c), r in find.items():
            if m == rgb and (dct, backend, files, client, c) in find:
                ratio = find[(dct, backend, files, client, c)]["images_per_s"] / r["images_per_s"]
                print(f"| {dct} / {rgb} images/s | {backend} | {files} | {client} | {c} | {ratio:.2f}x |")
    for (m, backend, files, client, c), r in find.items():
        if backend != "torch" and (m, "torch", files, client, c) in find:
            ratio = r["images_per_s"] / find[(m, "torch", files, client, c)]["images_per_s"]
            print(f"| {backend} / torch images/s, {m} | | {files} | {client} | {c} | {ratio:.2f}x |")
    for r in rows:
        if r["concurrency"] == 8:
            print(f"| p99 / p50, {r['model']} | {r['backend']} | {r['files']} | {r['client']} | 8 | "
                  f"{r['p99_ms'] / r['p50_ms']:.2f} |")


if __name__ == "__main__":
    main()
