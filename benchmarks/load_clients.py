"""Closed-loop HTTP load generators for benchmarks/serving.py: our aiohttp client, and two that are not ours,
hey and wrk (Debian packages `hey`, `wrk`), so the figures do not depend on our own client.

Each keeps `concurrency` requests open at all times for `seconds`, POSTing JPEG bodies to URL/v1/classify?topk=1,
and returns the same summary: requests answered, seconds, images/s (answered / seconds), latency p50 / p95 / p99
in ms (of the 200 answers for aiohttp; of all answers for hey and wrk, which do not split them), and the status
codes seen.

    aiohttp  round robin over all the files (the only one that also stops at a request budget)
    hey      one file posted over and over (hey takes a single body: -D FILE); the file is named in the row
    wrk      round robin over all the files (a Lua script builds one request per file; -t 1 thread)
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

CLIENTS = ("aiohttp", "hey", "wrk")
PATH = "/v1/classify?topk=1"


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def check_client(name: str) -> None:
    if name not in CLIENTS:
        raise SystemExit(f"client must be one of {', '.join(CLIENTS)}, got {name!r}")
    if name != "aiohttp" and shutil.which(name) is None:
        raise SystemExit(f"{name} is not installed (Debian: apt-get install {name})")


def run_client(name: str, url: str, files: list[Path], concurrency: int, seconds: float,
               max_requests: int = 10**9) -> dict:
    if name == "aiohttp":
        return run_aiohttp(url, [f.read_bytes() for f in files], concurrency, seconds, max_requests)
    if name == "hey":
        return run_hey(url, files[0], concurrency, seconds)
    if name == "wrk":
        return run_wrk(url, files, concurrency, seconds)
    raise ValueError(f"unknown client {name!r}")


def summary(requests: int, seconds: float, p50: float, p95: float, p99: float, statuses: dict, **extra) -> dict:
    ok = statuses.get("200", 0)
    return {"requests": requests, "ok": ok, "errors": requests - ok, "seconds": seconds,
            "images_per_s": ok / seconds if seconds else 0.0, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "statuses": dict(statuses), **extra}


def run_aiohttp(url: str, bodies: list[bytes], concurrency: int, seconds: float, max_requests: int) -> dict:
    return asyncio.run(_aiohttp(url, bodies, concurrency, seconds, max_requests))


async def _aiohttp(url, bodies, concurrency, seconds, max_requests) -> dict:
    import aiohttp

    latencies, statuses = [], Counter()
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        async def client():
            nonlocal issued
            while time.perf_counter() < deadline and issued < max_requests:
                body = bodies[issued % len(bodies)]
                issued += 1
                t0 = time.perf_counter()
                async with session.post(url + PATH, data=body, headers={"Content-Type": "image/jpeg"}) as r:
                    await r.read()
                    statuses[str(r.status)] += 1
                    if r.status == 200:
                        latencies.append(time.perf_counter() - t0)
        await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return summary(sum(statuses.values()), wall, *(1000 * percentile(latencies, q) for q in (50, 95, 99)), statuses,
                   client="aiohttp", files=len(bodies))


def run_hey(url: str, file: Path, concurrency: int, seconds: float) -> dict:
    cmd = ["hey", "-z", f"{seconds:g}s", "-c", str(concurrency), "-m", "POST", "-T", "image/jpeg", "-D", str(file),
           "-t", "60", url + PATH]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"hey failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    return {**parse_hey(out.stdout), "client": "hey", "files": 1, "file": file.name}


def parse_hey(text: str) -> dict:
    """hey's summary: Total secs, the latency distribution's 50/95/99% lines, the status code distribution,
    and the error distribution (connection errors count as requests answered with status 'error')."""
    total = float(re.search(r"Total:\s+([\d.]+) secs", text).group(1))
    lat = {int(q): 1000 * float(v) for q, v in re.findall(r"(\d+)%+ in ([\d.]+) secs", text)}
    # hey leaves out a percentile line it has no sample for (a short run): the slowest request stands in
    slowest = 1000 * float(re.search(r"Slowest:\s+([\d.]+) secs", text).group(1))
    lat = {q: lat.get(q, slowest) for q in (50, 95, 99)}
    statuses = Counter({code: int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)})
    errors = text.split("Error distribution:", 1)
    if len(errors) == 2:
        statuses["error"] += sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", errors[1], re.M))
    return summary(sum(statuses.values()), total, lat[50], lat[95], lat[99], statuses)


# One request per file, taken in turn; done() prints the summary as one JSON line (latencies in microseconds).
WRK_SCRIPT = r"""
local bodies = {}
for path in io.lines(os.getenv("JPEGNET_WRK_FILES")) do
  local f = assert(io.open(path, "rb"))
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "image/jpeg"}, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JPEGNET {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "status": %d, "p50": %d, "p95": %d, "p99": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def run_wrk(url: str, files: list[Path], concurrency: int, seconds: float) -> dict:
    import os

    with tempfile.TemporaryDirectory() as tmp:
        script, listing = Path(tmp) / "post.lua", Path(tmp) / "files.txt"
        script.write_text(WRK_SCRIPT)
        listing.write_text("".join(f"{Path(f).resolve()}\n" for f in files))
        cmd = ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s", "--timeout", "60s",
               "-s", str(script), url + PATH]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120,
                             env={**os.environ, "JPEGNET_WRK_FILES": str(listing)})
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    return {**parse_wrk(out.stdout), "client": "wrk", "files": len(files)}


def parse_wrk(text: str) -> dict:
    """The JSON line WRK_SCRIPT's done() prints: non-2xx answers and socket errors are not 200s."""
    r = json.loads(re.search(r"^JPEGNET (\{.*\})$", text, re.M).group(1))
    statuses = Counter({"200": r["requests"] - r["non2xx"]})
    if r["non2xx"]:
        statuses["non-2xx"] = r["non2xx"]
    failed = r["connect"] + r["read"] + r["write"] + r["timeout"]
    if failed:
        statuses["error"] = failed
    return summary(sum(statuses.values()), r["duration_us"] / 1e6, r["p50"] / 1000, r["p95"] / 1000,
                   r["p99"] / 1000, statuses)
