"""Which ASGI stack for `jpegnet serve`: the server's own cost per request, without any model.

Each candidate serves one endpoint that reads a POSTed JPEG-sized body (110 kB) and answers a small JSON, in a
subprocess on 127.0.0.1; an aiohttp client keeps `--concurrency` requests open for `--seconds`. Reported:
requests/s and the server process's CPU milliseconds per request (what the stack adds to every image).

    python benchmarks/asgi_stacks.py [--seconds 3] [--concurrency 8]

Candidates: uvicorn + Starlette with uvloop and httptools, the same with asyncio and h11 (uvicorn's
pure-Python fallback), uvicorn + FastAPI (when installed). LitServe runs FastAPI under uvicorn with worker
processes of its own, so its per-request floor is FastAPI's.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import time

SERVER = r'''
import sys, uvicorn
kind, port, loop, http = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if kind == "starlette":
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    async def classify(request):
        body = await request.body()
        return JSONResponse({"bytes": len(body), "top": [{"label": "x", "index": 0, "probability": 1.0}]})
    app = Starlette(routes=[Route("/v1/classify", classify, methods=["POST"])])
else:
    from fastapi import FastAPI, Request
    app = FastAPI()
    @app.post("/v1/classify")
    async def classify(request: Request):
        body = await request.body()
        return {"bytes": len(body), "top": [{"label": "x", "index": 0, "probability": 1.0}]}
print("ready", flush=True)
uvicorn.run(app, host="127.0.0.1", port=port, loop=loop, http=http, log_level="warning", access_log=False)
'''

CANDIDATES = [("uvicorn + Starlette (uvloop, httptools)", "starlette", "uvloop", "httptools"),
              ("uvicorn + Starlette (asyncio, h11)", "starlette", "asyncio", "h11"),
              ("uvicorn + FastAPI (uvloop, httptools)", "fastapi", "uvloop", "httptools")]


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(url: str, body: bytes, seconds: float, concurrency: int) -> int:
    import aiohttp

    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker():
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(url, data=body) as r:
                    await r.read()
                    assert r.status == 200
                done += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    body = os.urandom(110_000)
    print("| stack | requests/s | server CPU ms/request |\n|---|---|---|")
    for port, (label, kind, loop, http) in enumerate(CANDIDATES, start=18431):
        if kind == "fastapi" and importlib.util.find_spec("fastapi") is None:
            print(f"| {label} | not installed | |")
            continue
        proc = subprocess.Popen([sys.executable, "-c", SERVER, kind, str(port), loop, http], stdout=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            url = f"http://127.0.0.1:{port}/v1/classify"
            for _ in range(100):  # until it listens
                try:
                    asyncio.run(drive(url, body, 0.2, 1))
                    break
                except Exception:
                    time.sleep(0.1)
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            n = asyncio.run(drive(url, body, args.seconds, args.concurrency))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
            print(f"| {label} | {n / wall:,.0f} | {1000 * cpu / n:.3f} |", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
