"""The ASGI application: POST /v1/classify, GET /healthz, GET /metrics (Starlette).

POST /v1/classify[?topk=5]
    body: one JPEG file (any Content-Type but multipart), or multipart/form-data with one JPEG per part.
    200: {"model", "backend", "top": [{"label", "index", "probability"}, ...], "decode_ms", "model_ms",
         "queue_ms", "batch_size"}; multipart: {"model", "backend", "results": [one such object, or
         {"error": {...}}, per part, with its "name"]} (200 when at least one part was classified).
    4xx / 5xx: {"error": {"kind", "message"}}: the upload kinds of preprocess.UploadError, and
         overloaded (503, with Retry-After), timeout (504), bad_request (400: bad topk, bad multipart).
GET /healthz    {"status": "ok", "model", "backend", "precision", "representation", "input_size", "classes"}
                (precision: "fp32" / "int8" for an exported file, torch's autocast precision otherwise)
GET /metrics    Prometheus text (metrics.Metrics.render)
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from email.parser import BytesHeaderParser
from email.message import Message

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import JpegnetError
from .batching import DynamicBatcher, Overloaded
from .metrics import Metrics
from .preprocess import UploadError


class RequestError(JpegnetError):
    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, headers

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"kind": self.kind, "message": str(self)}}, self.status, self.headers)


def create_app(backend, config, on_ready=None) -> Starlette:
    """The app serving `backend` under `config` (server.ServeConfig); on_ready() is called once the model is
    warm and the batcher runs."""
    metrics = Metrics()
    batcher = DynamicBatcher(backend, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms,
                             max_queue=config.max_queue, decode_threads=config.decode_threads,
                             max_pixels=config.max_pixels, max_body_bytes=config.max_body_bytes, metrics=metrics,
                             rgb_decode=config.rgb_decode)
    metrics.gauge("jpegnet_in_flight", "Requests' images admitted and not yet answered.", lambda: batcher.in_flight)
    metrics.gauge("jpegnet_queue_depth", "Decoded images waiting for a batch.", lambda: batcher.queue_depth)
    names = backend.class_names
    about = {"model": backend.model_name, "backend": backend.name}

    def top(probabilities, k):
        values, indices = probabilities.topk(k)
        return [{"label": names[i], "index": int(i), "probability": float(p)}
                for p, i in zip(values.tolist(), indices.tolist())]

    async def one_image(body: bytes, k: int) -> dict:
        try:
            inputs, decode_s = await batcher.decode(body)
        except UploadError as error:
            metrics.error(error.kind)
            raise
        metrics.decoded(decode_s)
        p = await batcher.predict(inputs, decode_s)
        return {"top": top(p.probabilities, k), "decode_ms": 1000 * p.decode_s, "model_ms": 1000 * p.model_s,
                "queue_ms": 1000 * p.queue_s, "batch_size": p.batch_size}

    async def classify_parts(parts, k):
        async def guarded(name, data):
            try:
                return {"name": name, **await one_image(data, k)}
            except UploadError as error:
                return {"name": name, **error.to_json(), "status": error.status}
        results = await asyncio.gather(*(guarded(n, d) for n, d in parts))
        if all("error" in r for r in results):
            first = results[0]
            return JSONResponse({**about, "error": first["error"], "results": results}, first["status"])
        return JSONResponse({**about, "results": results})

    async def classify(request: Request) -> Response:
        start = time.perf_counter()
        admitted = 0
        try:
            try:
                batcher.admit()
            except Overloaded as error:
                raise RequestError(503, "overloaded", str(error), {"Retry-After": "1"}) from None
            admitted = 1
            k = _topk(request, len(names))
            body = await _read_body(request, config.max_body_bytes * (config.max_batch
                                                                      if _is_multipart(request) else 1))
            if _is_multipart(request):
                parts = split_multipart(body, request.headers["content-type"], config.max_batch)
                try:
                    batcher.admit(len(parts) - 1)
                except Overloaded as error:
                    raise RequestError(503, "overloaded", str(error), {"Retry-After": "1"}) from None
                admitted = len(parts)
                response = await asyncio.wait_for(classify_parts(parts, k), config.timeout_s)
            else:
                response = JSONResponse({**about, **await asyncio.wait_for(one_image(body, k), config.timeout_s)})
        except UploadError as error:
            response = JSONResponse(error.to_json(), error.status)
        except RequestError as error:
            metrics.error(error.kind)
            response = error.response()
        except asyncio.TimeoutError:
            metrics.error("timeout")
            response = RequestError(504, "timeout", f"no answer within {config.timeout_s:g} s").response()
        finally:
            batcher.release(admitted)
        metrics.request(response.status_code, time.perf_counter() - start)
        return response

    async def healthz(_request: Request) -> Response:
        cfg = backend.input_config
        return JSONResponse({"status": "ok", **about, "precision": getattr(backend, "precision", "fp32"),
                             "representation": cfg.representation,
                             "input_size": list(cfg.input_size), "classes": len(names)})

    async def metrics_text(_request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await batcher.stop()

    app = Starlette(routes=[Route("/v1/classify", classify, methods=["POST"]),
                            Route("/healthz", healthz, methods=["GET"]),
                            Route("/metrics", metrics_text, methods=["GET"])], lifespan=lifespan)
    app.state.batcher, app.state.metrics = batcher, metrics
    return app


def _topk(request: Request, classes: int) -> int:
    text = request.query_params.get("topk", "5")
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise RequestError(400, "bad_request", f"topk must be a positive integer, got {text!r}")
    return min(k, classes)


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass `limit` bytes: from Content-Length before
    reading anything, else while streaming."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, "too_large", f"upload of {length} bytes is above the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "too_large", f"upload above the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def split_multipart(body: bytes, content_type: str, max_parts: int) -> list[tuple[str, bytes]]:
    """[(part name, bytes)] of a multipart/form-data body, exactly as sent (no re-encoding)."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not boundary:
        raise RequestError(400, "bad_request", "multipart body without a boundary parameter")
    pieces = body.split(b"--" + str(boundary).encode("latin-1"))
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the closing delimiter
            break
        head, sep, data = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise RequestError(400, "bad_request", "malformed multipart body (a part without headers)")
        headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = (headers.get_param("filename", header="content-disposition")
                or headers.get_param("name", header="content-disposition") or str(len(parts)))
        parts.append((str(name), data.removesuffix(b"\r\n")))
    if not parts:
        raise RequestError(400, "bad_request", "multipart body with no parts")
    if len(parts) > max_parts:
        raise RequestError(413, "too_large", f"{len(parts)} images in one request; at most {max_parts}")
    return parts
