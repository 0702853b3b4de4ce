"""Serving classifiers straight from JPEG bytes: ONNX export, inference backends, the HTTP server.

    export.py     a model (or checkpoint) → ONNX with a dynamic batch and its preprocessing in the metadata
    backends.py   one inference interface, two backends: `torch` (CPU, CUDA) and `onnxruntime`
    preprocess.py request bytes → model inputs through jpegnet.data's evaluation transform, typed upload errors
    batching.py   the bounded queue and the dynamic batcher (gather up to max_batch or max_wait_ms, one forward)
    metrics.py    counters and histograms in the Prometheus text format
    app.py        the ASGI application (Starlette): /v1/classify, /healthz, /metrics
    server.py     ServeConfig and running the app under uvicorn (`jpegnet serve`)

export and backends sit beside the engine (they take models, not checkpoints, except `load_backend`, which
reads one through jpegnet.engine.checkpoint); the server sits above it.
"""
from .backends import BACKENDS, OnnxRuntimeBackend, TorchBackend, load_backend
from .export import export_checkpoint, export_onnx, read_onnx_metadata

__all__ = ["BACKENDS", "OnnxRuntimeBackend", "TorchBackend", "export_checkpoint", "export_onnx", "load_backend",
           "read_onnx_metadata"]
