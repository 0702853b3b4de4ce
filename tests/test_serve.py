"""`jpegnet serve`: a real uvicorn server on an ephemeral loopback port, driven over HTTP.

Concurrent clients get what `jpegnet predict` says about the same files; every kind of bad upload gets its 4xx
JSON error while the server keeps serving; a full server answers 503 and recovers; SIGTERM drains the requests
in flight (a subprocess). Tiny models (VGNet-G 1.0MP, ~1 M parameters), few images.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from jpegnet import create_model
from jpegnet.engine import save_checkpoint
from jpegnet.engine.inference import evaluate_checkpoint, predict_files
from jpegnet.samples import SAMPLES_DIR, sample_classes, sample_files
from jpegnet.serve import TorchBackend, load_backend
from jpegnet.serve.server import ServeConfig, ServerThread
from tests.conftest import BAD, CORPUS, IMAGENETTE, REPO, requires_shared

pytestmark = requires_shared


def checkpoint(path: Path, name: str, classes: list[str]) -> Path:
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(classes))
    save_checkpoint({"model_name": name, "num_classes": len(classes), "class_names": classes,
                     "input_config": model.input_config.to_dict(), "model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    classes = sample_classes()
    return {"dct": checkpoint(folder / "dct.pt", "dct_vgnetg_1_0mp", classes),
            "rgb": checkpoint(folder / "rgb.pt", "vgnetg_1_0mp", classes)}


def post(url: str, body: bytes, path: str = "/v1/classify", headers: dict | None = None, timeout: float = 60):
    """(status, JSON body, headers) of a POST; errors are answers too."""
    request = urllib.request.Request(url + path, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def get(url: str, path: str) -> str:
    with urllib.request.urlopen(url + path, timeout=30) as r:
        return r.read().decode()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def serving_files():
    files = sorted((IMAGENETTE / "val").glob("*/*.JPEG"))[::800][:4]  # 4:2:0, several classes
    originals = [CORPUS / "n03196217_digital_clock.JPEG", CORPUS / "n02493509_titi.JPEG"]  # 4:4:4 originals
    return files + originals + sample_files()[:2]


@pytest.mark.parametrize("kind,backend", [("dct", "onnxruntime"), ("rgb", "torch")])
def test_concurrent_clients_get_what_predict_says(checkpoints, kind, backend):
    files = serving_files()
    expected = predict_files(files, checkpoints[kind], topk=3)
    runner = load_backend(backend, checkpoint=checkpoints[kind])
    config = ServeConfig(port=0, max_batch=8, max_wait_ms=50)
    with ServerThread(runner, config) as url:
        with ThreadPoolExecutor(8) as pool:  # every file twice, 8 clients at once
            answers = list(pool.map(lambda f: post(url, f.read_bytes(), "/v1/classify?topk=3"), files + files))
        text = get(url, "/metrics")
    for (status, body, _), want in zip(answers, expected + expected):
        assert status == 200, body
        assert body["model"] == runner.model_name and body["backend"] == backend
        assert [t["label"] for t in body["top"]] == [name for name, _ in want["top"]]
        assert [t["probability"] for t in body["top"]] == pytest.approx([p for _, p in want["top"]], abs=1e-4)
        assert body["top"][0]["index"] == sample_classes().index(body["top"][0]["label"])
        assert body["decode_ms"] > 0 and body["model_ms"] > 0 and 1 <= body["batch_size"] <= 8
    images = 2 * len(files)
    assert metric(text, 'jpegnet_requests_total{status="200"}') == images
    assert metric(text, "jpegnet_images_total") == images
    batches = metric(text, "jpegnet_batch_size_count")
    assert batches < images  # dynamic batching put several requests into one forward pass
    assert metric(text, "jpegnet_batch_size_sum") == images


def large_jpeg(width: int, height: int) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def multipart(parts: list[tuple[str, bytes]], boundary: str = "jpegnet-test-boundary") -> tuple[bytes, dict]:
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                    f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for name, data in parts)
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_multipart(url: str, parts: list[tuple[str, bytes]]):
    body, headers = multipart(parts)
    return post(url, body, headers=headers)


def test_every_bad_upload_gets_its_4xx_and_the_others_are_served(checkpoints):
    good = serving_files()[0].read_bytes()
    bad = {
        "empty": (b"", 400, "empty"),
        "gif": ((BAD / "not_a_jpeg.jpg").read_bytes(), 415, "not_jpeg"),
        "png": ((BAD / "png_named_jpg.jpg").read_bytes(), 415, "not_jpeg"),
        "truncated": ((BAD / "truncated_half.jpg").read_bytes(), 400, "truncated"),
        "truncated_header": ((BAD / "truncated_header.jpg").read_bytes(), 400, "truncated"),
        "corrupt": ((BAD / "corrupt_entropy_data.jpg").read_bytes(), 400, "corrupt"),
        "cmyk": ((CORPUS / "n02442845_mink_cmyk.jpg").read_bytes(), 415, "unsupported"),
        "too_many_pixels": (large_jpeg(2000, 1000), 413, "too_large"),
        "too_many_bytes": (b"\xff\xd8\xff" + os.urandom(500_000), 413, "too_large"),
    }
    config = ServeConfig(port=0, max_pixels=1_000_000, max_body_bytes=400_000)
    with ServerThread(load_backend("torch", checkpoint=checkpoints["dct"]), config) as url:
        with ThreadPoolExecutor(4) as pool:  # bad and good uploads interleaved, concurrently
            jobs = [(k, pool.submit(post, url, body)) for k, (body, _, _) in bad.items()]
            goods = [pool.submit(post, url, good) for _ in range(4)]
        for name, job in jobs:
            status, body, _ = job.result()
            _, want_status, want_kind = bad[name]
            assert (status, body["error"]["kind"]) == (want_status, want_kind), (name, body)
            assert body["error"]["message"]
        assert all(g.result()[0] == 200 for g in goods)
        messages = {k: job.result()[1]["error"]["message"] for k, job in jobs}
        assert "CMYK" in messages["cmyk"] and "Premature end" in messages["truncated"]
        assert "2000x1000" in messages["too_many_pixels"] or "max_pixels" in messages["too_many_pixels"]

        # several images in one multipart request: each gets its own answer
        status, body, _ = post_multipart(url, ([("a.jpg", good), ("b.jpg", bad["truncated"][0]),
                                                ("c.jpg", good)]))
        assert status == 200
        assert [r["name"] for r in body["results"]] == ["a.jpg", "b.jpg", "c.jpg"]
        assert body["results"][1]["error"]["kind"] == "truncated" and "top" in body["results"][0]
        assert body["results"][0]["top"] == body["results"][2]["top"]
        status, body, _ = post_multipart(url, ([("x.jpg", b"")]))
        assert status == 400 and body["error"]["kind"] == "empty"
        status, body, _ = post(url, good, "/v1/classify?topk=zero")
        assert status == 400 and body["error"]["kind"] == "bad_request"
        text = get(url, "/metrics")
    assert metric(text, 'jpegnet_errors_total{kind="too_large"}') == 2
    assert metric(text, 'jpegnet_errors_total{kind="truncated"}') == 3
    assert metric(text, 'jpegnet_errors_total{kind="unsupported"}') == 1


def test_rgb_server_reports_bad_uploads_too(checkpoints):
    with ServerThread(load_backend("torch", checkpoint=checkpoints["rgb"]), ServeConfig(port=0)) as url:
        assert post(url, (BAD / "truncated_half.jpg").read_bytes())[1]["error"]["kind"] == "truncated"
        assert post(url, (BAD / "png_named_jpg.jpg").read_bytes())[1]["error"]["kind"] == "not_jpeg"
        assert post(url, b"\xff\xd8\xff\xe0 garbage")[0] == 400
        assert post(url, serving_files()[0].read_bytes())[0] == 200


class GatedBackend:
    """A backend whose forward pass waits for the test to open the gate: a server that is busy on demand."""

    def __init__(self, backend):
        self.inner = backend
        self.gate = threading.Event()
        self.gate.set()  # open for the warm-up

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *inputs):
        assert self.gate.wait(30)
        return self.inner(*inputs)


def wait_until(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_overload_answers_503_then_recovers(checkpoints):
    backend = GatedBackend(load_backend("torch", checkpoint=checkpoints["dct"]))
    good = serving_files()[0].read_bytes()
    config = ServeConfig(port=0, max_queue=3, max_batch=2, max_wait_ms=1)
    with ServerThread(backend, config) as url:
        backend.gate.clear()
        with ThreadPoolExecutor(3) as pool:
            held = [pool.submit(post, url, good) for _ in range(3)]
            wait_until(lambda: metric(get(url, "/metrics"), "jpegnet_in_flight") == 3)
            status, body, headers = post(url, good)
            assert status == 503 and body["error"]["kind"] == "overloaded" and headers["Retry-After"] == "1"
            assert "max_queue 3" in body["error"]["message"]
            status, body, _ = post_multipart(url, ([("a.jpg", good)]))
            assert status == 503
            backend.gate.set()
            assert [h.result()[0] for h in held] == [200, 200, 200]
        assert post(url, good)[0] == 200  # recovered
        text = get(url, "/metrics")
        assert metric(text, 'jpegnet_errors_total{kind="overloaded"}') == 2
        assert metric(text, "jpegnet_in_flight") == 0


def test_a_request_past_its_timeout_gets_504_and_leaves_the_batch(checkpoints):
    backend = GatedBackend(load_backend("torch", checkpoint=checkpoints["dct"]))
    good = serving_files()[0].read_bytes()
    with ServerThread(backend, ServeConfig(port=0, timeout_s=0.5)) as url:
        backend.gate.clear()
        status, body, _ = post(url, good)
        assert status == 504 and body["error"]["kind"] == "timeout"
        backend.gate.set()
        assert post(url, good)[0] == 200
        wait_until(lambda: metric(get(url, "/metrics"), "jpegnet_in_flight") == 0)


def test_healthz_and_metrics(checkpoints):
    with ServerThread(load_backend("torch", checkpoint=checkpoints["dct"]), ServeConfig(port=0)) as url:
        health = json.loads(get(url, "/healthz"))
        assert health == {"status": "ok", "model": "dct_vgnetg_1_0mp", "backend": "torch", "precision": "fp32",
                          "representation": "dct", "input_size": [224, 224], "classes": 10}
        post(url, serving_files()[0].read_bytes())
        text = get(url, "/metrics")
    for name in ("jpegnet_requests_total", "jpegnet_errors_total", "jpegnet_images_total",
                 "jpegnet_request_latency_seconds", "jpegnet_decode_seconds", "jpegnet_model_seconds",
                 "jpegnet_batch_size", "jpegnet_in_flight", "jpegnet_queue_depth", "process_cpu_seconds_total"):
        assert f"# TYPE {name} " in text
    # histogram buckets are cumulative and end at the count
    buckets = [float(v) for v in re.findall(r'^jpegnet_request_latency_seconds_bucket\{le="[^"]+"\} (\S+)$', text,
                                            re.M)]
    assert buckets == sorted(buckets) and buckets[-1] == metric(text, "jpegnet_request_latency_seconds_count") == 1
    assert metric(text, "process_cpu_seconds_total") > 0


def test_sigterm_drains_requests_in_flight(checkpoints):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # one image per forward pass on one thread: the requests queue up inside the server
    server = subprocess.Popen([sys.executable, "-m", "jpegnet", "serve", "--checkpoint", str(checkpoints["dct"]),
                               "--port", "0", "--max-batch", "1", "--threads", "1", "--decode-threads", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        images = [f.read_bytes() for f in serving_files()[:8]]
        with ThreadPoolExecutor(len(images)) as pool:
            answers = [pool.submit(post, url, body) for body in images]
            seen = {}

            def all_arrived():
                text = get(url, "/metrics")
                seen["in_flight"] = metric(text, "jpegnet_in_flight")
                return seen["in_flight"] + metric(text, 'jpegnet_requests_total{status="200"}') >= len(images)

            wait_until(all_arrived)
            server.send_signal(signal.SIGTERM)
            assert seen["in_flight"] >= 2  # requests were still being answered when the signal came
            results = [a.result() for a in answers]
        assert [status for status, _, _ in results] == [200] * len(images)
        assert server.wait(30) == 0
        out, err = server.communicate()
        assert "stopped" in out, err
        with pytest.raises(urllib.error.URLError):  # nobody listens any more
            get(url, "/healthz")
    finally:
        if server.poll() is None:
            server.kill()


# --- the backends in predict / eval / bench ---------------------------------------------------------------

def test_predict_and_eval_give_the_same_answers_on_both_backends(checkpoints, capsys):
    from jpegnet.cli import main

    files = sample_files()[:2]
    torch_out = predict_files(files, checkpoints["dct"], topk=2)
    ort_out = predict_files(files, checkpoints["dct"], topk=2, backend="onnxruntime")
    for a, b in zip(torch_out, ort_out):
        assert [n for n, _ in a["top"]] == [n for n, _ in b["top"]]
        assert [p for _, p in a["top"]] == pytest.approx([p for _, p in b["top"]], abs=1e-5)
    a = evaluate_checkpoint(SAMPLES_DIR, checkpoints["rgb"], batch_size=16)
    b = evaluate_checkpoint(SAMPLES_DIR, checkpoints["rgb"], batch_size=16, backend="onnxruntime")
    assert a["images"] == b["images"] == 40 and a["top1"] == b["top1"] and a["top5"] == b["top5"]
    assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
    assert torch.equal(a["confusion"], b["confusion"])
    assert main(["predict", str(files[0]), "--checkpoint", str(checkpoints["dct"]), "--backend", "onnxruntime",
                 "--topk", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{files[0]}: {ort_out[0]['top'][0][0]} ")


def test_bench_on_onnxruntime(capsys):
    from jpegnet.cli import main

    assert main(["bench", "--models", "vgnetg_1_0mp", "dct_vgnetg_1_0mp", "--size", "64", "--max-images", "4",
                 "--batch-size", "2", "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime backend" in out and "rgb 64x64" in out and "dct 64x64" in out


def test_bad_serve_arguments(checkpoints, tmp_path):
    with pytest.raises(ValueError, match="onnxruntime backend"):
        load_backend("torch", onnx=tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="exactly one"):
        load_backend("torch")
    with pytest.raises(ValueError, match="max_batch"):
        ServeConfig(max_batch=0)
    assert isinstance(load_backend("torch", checkpoint=checkpoints["dct"]), TorchBackend)
