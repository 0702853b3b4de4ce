"""Serving classifiers straight from JPEG bytes over HTTP.

    preprocess.py request bytes → model inputs through jpegnet.data's evaluation transform, typed upload errors
    batching.py   the bounded queue and the dynamic batcher (gather up to max_batch or max_wait_ms, one forward)
    metrics.py    counters and histograms in the Prometheus text format
    app.py        the ASGI application (Starlette): /v1/classify, /healthz, /metrics
    server.py     ServeConfig and running the app under uvicorn (`jpegnet serve`)

The server sits above the engine. ONNX export (jpegnet.engine.export, int8 in jpegnet.engine.quantize) and the
three inference backends, `torch`, `onnxruntime` and `openvino` (jpegnet.engine.backends), live in the engine
because `jpegnet predict / eval / bench` use them too; they are re-exported here, where a serving user looks for
them.
"""
from ..engine.backends import BACKENDS, OnnxRuntimeBackend, OpenVinoBackend, TorchBackend, load_backend
from ..engine.export import export_checkpoint, export_onnx, read_onnx_metadata

__all__ = ["BACKENDS", "OnnxRuntimeBackend", "OpenVinoBackend", "TorchBackend", "export_checkpoint", "export_onnx",
           "load_backend", "read_onnx_metadata"]
