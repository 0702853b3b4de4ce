"""Soak run: one `jpegnet serve` held at ~80% of its measured capacity for minutes, with bad uploads mixed in.

    1. start the server (a random-init --model, exported for non-torch backends; or --checkpoint / --onnx FILE,
       e.g. an int8 export, with --backend NAME passed through);
    2. reference answers: each good file (the corpus's ImageNet originals) posted once, alone;
    3. capacity: our aiohttp client closed-loop at --capacity-concurrency for --capacity-seconds (images/s);
    4. the soak: open loop at --load x capacity requests/s, a fixed rate (request i leaves at i / rate whatever
       is still in flight) for --minutes; every 20th request (5%, --bad-every) is a bad upload, in turn
       truncated (the first 40% of a good file), not a JPEG (a PNG), empty, and oversized (a good file padded
       past --max-body-mb, which the server is started with);
    5. checks, each reported and all required for exit status 0:
       - no 5xx but 503 (load shedding), no connection errors;
       - every good request answered 200 (or 503) with the reference's top-1 label; an answer whose top-1 is
         another label counts as a tie, not a failure, when the reference label's probability in that answer is
         within --tie of the top (random-init weights put near-equal probabilities on many classes, and a batch
         of another size may round them differently); ties are counted apart;
       - every bad upload answered with its status and error kind (truncated 400, not_jpeg 415, empty 400,
         too_large 413) or 503;
       - the server's resident memory (VmRSS of /proc/PID/status) sampled after --warmup-seconds of the soak
         ("start"), every --rss-every seconds, and after the last answer ("end"): flat = end within
         --rss-tolerance % of start;
       - /metrics during the soak (the difference of two scrapes) equal to what the client saw:
         jpegnet_requests_total by status and jpegnet_errors_total by kind.

    python benchmarks/soak.py                       # 10 minutes, dct_vgnetg_1_0mp on onnxruntime
    python benchmarks/soak.py --minutes 1           # smoke
    python benchmarks/soak.py --model vgnetg_1_0mp --rgb-decode fast
    python benchmarks/soak.py --onnx int8.onnx --backend openvino

Writes JSON to --out (default benchmarks/results/soak.json).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_clients import run_aiohttp  # noqa: E402
from pipeline import corpus_originals  # noqa: E402
from serving import Server, prepare  # noqa: E402

BAD_KINDS = ("truncated", "not_jpeg", "empty", "too_large")
EXPECTED = {"truncated": 400, "not_jpeg": 415, "empty": 400, "too_large": 413}


def bad_bodies(good: bytes, max_body_bytes: int) -> dict[str, bytes]:
    from PIL import Image
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(png, "PNG")
    return {"truncated": good[:int(len(good) * 0.4)], "not_jpeg": png.getvalue(), "empty": b"",
            "too_large": good + b"\0" * (max_body_bytes + 1024 - len(good))}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def scrape(url: str) -> tuple[Counter, Counter]:
    import urllib.request
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    requests = Counter({s: int(float(n)) for s, n in re.findall(r'^jpegnet_requests_total\{status="(\d+)"\} (\S+)$',
                                                                text, re.M)})
    errors = Counter({k: int(float(n)) for k, n in re.findall(r'^jpegnet_errors_total\{kind="(\w+)"\} (\S+)$',
                                                              text, re.M)})
    return requests, errors


async def post(session, url: str, body: bytes, topk: int = 5) -> tuple[int | str, dict]:
    import aiohttp
    try:
        async with session.post(f"{url}/v1/classify?topk={topk}", data=body,
                                headers={"Content-Type": "image/jpeg"}) as r:
            data = await r.read()
            try:
                return r.status, json.loads(data)
            except ValueError:
                return r.status, {}
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        return "connection error", {"error": {"kind": type(e).__name__, "message": str(e)}}


async def references(url: str, bodies: list[bytes]) -> list[dict]:
    """Each good file's answer when it is alone in the server: {"top1": its top-1 label}."""
    import aiohttp
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for body in bodies:
            status, answer = await post(session, url, body)
            if status != 200:
                raise SystemExit(f"reference answer failed: {status} {answer}")
            out.append({"top1": answer["top"][0]["label"]})
    return out


class Tally:
    """What the client saw during the soak, and the checks on each answer."""

    def __init__(self, refs: list[dict], tie: float):
        self.refs, self.tie = refs, tie
        self.statuses, self.kinds = Counter(), Counter()
        self.good = Counter()       # exact, tie, wrong, shed (503), failed (anything else)
        self.bad = Counter()        # as_expected, shed, wrong
        self.problems: list[str] = []
        self.latencies: list[float] = []

    def record(self, item: tuple[str, int], status, answer: dict, seconds: float) -> None:
        kind, index = item
        self.statuses[str(status)] += 1
        err = answer.get("error", {}).get("kind") if isinstance(answer.get("error"), dict) else None
        if err is not None and status != "connection error":
            self.kinds[err] += 1
        if isinstance(status, int) and status >= 500 and status != 503 or status == "connection error":
            self._problem(f"{kind} #{index}: {status} {answer}")
        if kind == "good":
            if status == 503:
                self.good["shed"] += 1
            elif status != 200:
                self.good["failed"] += 1
                self._problem(f"good file #{index}: {status} {answer}")
            else:
                self.latencies.append(seconds)
                top = answer["top"]
                want = self.refs[index]["top1"]
                if top[0]["label"] == want:
                    self.good["exact"] += 1
                elif any(t["label"] == want and top[0]["probability"] - t["probability"] <= self.tie for t in top):
                    self.good["tie"] += 1
                else:
                    self.good["wrong"] += 1
                    self._problem(f"good file #{index}: top-1 {top[0]['label']}, reference {want}")
        elif status == 503:
            self.bad["shed"] += 1
        elif status == EXPECTED[kind] and err == kind:
            self.bad["as_expected"] += 1
        else:
            self.bad["wrong"] += 1
            self._problem(f"bad upload {kind}: {status} {answer}")

    def _problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


async def soak(url: str, pid: int, goods: list[bytes], bads: dict[str, bytes], tally: Tally, rate: float,
               seconds: float, bad_every: int, warmup_s: float, rss_every: float) -> tuple[list, float]:
    """Open loop at `rate` requests/s for `seconds`; returns (RSS samples [(t, label, MiB)], wall seconds)."""
    import aiohttp

    samples = []
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def sample_rss():
        await asyncio.sleep(warmup_s)
        samples.append((loop.time() - start, "start", rss_mb(pid)))
        while True:
            await asyncio.sleep(rss_every)
            samples.append((loop.time() - start, "periodic", rss_mb(pid)))

    async def one(session, item, body):
        t0 = time.perf_counter()
        status, answer = await post(session, url, body, topk=5)
        tally.record(item, status, answer, time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=0)  # open loop: no cap on connections in flight
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        sampler = asyncio.create_task(sample_rss())
        tasks = set()
        i = 0
        while i / rate < seconds:
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % bad_every == bad_every - 1:
                kind = BAD_KINDS[(i // bad_every) % len(BAD_KINDS)]
                item, body = (kind, i), bads[kind]
            else:
                item, body = ("good", i % len(goods)), goods[i % len(goods)]
            task = asyncio.create_task(one(session, item, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*list(tasks))
        sampler.cancel()
    wall = loop.time() - start
    samples.append((wall, "end", rss_mb(pid)))
    return samples, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the measured capacity (default 0.8)")
    ap.add_argument("--model", default="dct_vgnetg_1_0mp", help="random-init model to serve (without --checkpoint "
                                                                "or --onnx)")
    ap.add_argument("--backend", default="onnxruntime", help="`jpegnet serve --backend` (default onnxruntime)")
    ap.add_argument("--checkpoint", default=None, help="serve this checkpoint instead")
    ap.add_argument("--onnx", default=None, help="serve this ONNX file instead (e.g. an int8 export)")
    ap.add_argument("--rgb-decode", choices=["fast", "plain"], default="fast", help="RGB models' decode")
    ap.add_argument("--max-body-mb", type=float, default=1.0, help="the server's limit; oversized uploads pass it")
    ap.add_argument("--server-args", default="", help="more `jpegnet serve` arguments, one shell-quoted string")
    ap.add_argument("--capacity-seconds", type=float, default=10.0)
    ap.add_argument("--capacity-concurrency", type=int, default=16)
    ap.add_argument("--bad-every", type=int, default=20, help="every Nth request is a bad upload (default 20: 5%%)")
    ap.add_argument("--warmup-seconds", type=float, default=30.0, help="of the soak, before the start RSS sample")
    ap.add_argument("--rss-every", type=float, default=30.0)
    ap.add_argument("--rss-tolerance", type=float, default=10.0, help="end RSS within this %% of start (default 10)")
    ap.add_argument("--tie", type=float, default=1e-3,
                    help="probability gap under which another top-1 label is a tie, not an error (default 1e-3)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "soak.json"))
    args = ap.parse_args()
    seconds = 60 * args.minutes
    warmup_s = min(args.warmup_seconds, seconds / 4)
    max_body_bytes = int(args.max_body_mb * 2**20)
    paths = corpus_originals()
    goods = [p.read_bytes() for p in paths]
    bads = bad_bodies(goods[0], max_body_bytes)
    started, load_before = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if args.onnx:
            serve_args, model = ["--onnx", args.onnx, "--backend", args.backend], Path(args.onnx).stem
        elif args.checkpoint:
            serve_args, model = ["--checkpoint", args.checkpoint, "--backend", args.backend], args.checkpoint
        else:
            serve_args, model = prepare([args.model], Path(tmp), [args.backend], {})[args.model][args.backend], \
                args.model
        extra = ["--max-body-mb", str(args.max_body_mb), "--rgb-decode", args.rgb_decode, "--timeout", "60",
                 *shlex.split(args.server_args)]
        server = Server(serve_args, extra)
        try:
            pid = server.proc.pid
            rss_ready = rss_mb(pid)
            refs = asyncio.run(references(server.url, goods))
            cap = run_aiohttp(server.url, goods, args.capacity_concurrency, args.capacity_seconds, 10**9)
            rate = args.load * cap["images_per_s"]
            print(f"capacity {cap['images_per_s']:.1f} images/s at concurrency {args.capacity_concurrency} "
                  f"(p50 {cap['p50_ms']:.1f} ms); soaking at {rate:.1f} requests/s for {seconds:.0f} s, "
                  f"1 in {args.bad_every} bad", flush=True)
            before = scrape(server.url)
            tally = Tally(refs, args.tie)
            samples, wall = asyncio.run(soak(server.url, pid, goods, bads, tally, rate, seconds, args.bad_every,
                                             warmup_s, args.rss_every))
            after = scrape(server.url)
        finally:
            server.stop()
    metrics_requests = after[0] - before[0]
    metrics_errors = after[1] - before[1]
    client_statuses = Counter({s: n for s, n in tally.statuses.items() if s != "connection error"})
    rss_start = next(mb for _, label, mb in samples if label == "start")
    rss_end = samples[-1][2]
    growth = 100 * (rss_end - rss_start) / rss_start
    five_xx = {s: n for s, n in tally.statuses.items() if s.isdigit() and int(s) >= 500 and s != "503"}
    checks = {
        "no 5xx but 503, no connection errors": not five_xx and "connection error" not in tally.statuses,
        "every good request answered correctly (or shed)": tally.good["wrong"] == 0 and tally.good["failed"] == 0,
        "every bad upload got its status and kind (or shed)": tally.bad["wrong"] == 0,
        f"RSS flat (end within {args.rss_tolerance:g}% of start)": abs(growth) <= args.rss_tolerance,
        "metrics requests_total by status == client": dict(metrics_requests) == dict(client_statuses),
        "metrics errors_total by kind == client": dict(metrics_errors) == dict(tally.kinds),
    }
    sent = sum(tally.statuses.values())
    lat = sorted(tally.latencies)
    pct = lambda q: 1000 * lat[min(len(lat) - 1, int(round(q / 100 * (len(lat) - 1))))] if lat else None  # noqa
    result = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "machine": platform.machine(),
                 "cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
                 "model": model, "backend": args.backend, "serve_args": serve_args + extra, "minutes": args.minutes,
                 "load": args.load, "bad_every": args.bad_every, "tie": args.tie},
        "capacity": {"images_per_s": cap["images_per_s"], "concurrency": args.capacity_concurrency,
                     "p50_ms": cap["p50_ms"], "p99_ms": cap["p99_ms"]},
        "rate_per_s": rate, "wall_seconds": wall, "sent": sent, "achieved_per_s": sent / wall,
        "client_statuses": dict(tally.statuses), "client_error_kinds": dict(tally.kinds),
        "good": dict(tally.good), "bad": dict(tally.bad),
        "good_latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99)},
        "metrics_requests_by_status": dict(metrics_requests), "metrics_errors_by_kind": dict(metrics_errors),
        "rss_mb": {"after_start": rss_ready, "samples": [{"t_s": round(t, 1), "at": label, "mb": round(mb, 1)}
                                                         for t, label, mb in samples],
                   "start": rss_start, "end": rss_end, "growth_percent": growth},
        "checks": checks, "problems": tally.problems, "passed": all(checks.values()),
    }
    print(f"sent {sent} in {wall:.0f} s ({sent / wall:.1f}/s): statuses {dict(tally.statuses)}, good "
          f"{dict(tally.good)}, bad {dict(tally.bad)}; good p50 / p99 {pct(50) or 0:.1f} / {pct(99) or 0:.1f} ms")
    print(f"RSS: {rss_ready:.1f} MiB when ready, {rss_start:.1f} after warm-up, {rss_end:.1f} at the end "
          f"({growth:+.1f}%): " + ", ".join(f"{mb:.0f}" for _, _, mb in samples))
    print(f"metrics: requests {dict(metrics_requests)}, errors {dict(metrics_errors)}")
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    for p in tally.problems[:10]:
        print(f"  problem: {p}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
