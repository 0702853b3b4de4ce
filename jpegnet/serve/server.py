"""Running the app under uvicorn: `jpegnet serve`, and a server on a thread for tests and benchmarks.

uvicorn with Starlette (see README "Serving" for the measurement behind the choice): uvloop's event loop and
httptools' parser when installed (the `serve` extra installs both), asyncio and h11 otherwise. SIGTERM or
SIGINT: uvicorn stops accepting connections, answers every request already received (the batcher keeps
running until then; at most timeout_s + 5 s), then the app shuts its batcher and threads down and the process
exits 0. The server keeps no state between requests, so replicas scale out behind any HTTP load balancer.
"""
from __future__ import annotations

import contextlib
import signal
import socket
import threading
from dataclasses import dataclass, field

from ..codec.reader import default_threads
from ..data.rgb import RGB_DECODES
from ..engine.errors import ConfigError


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32                 # images per forward pass at most
    max_wait_ms: float = 5.0            # how long the first image of a batch waits for company
    max_queue: int = 256                # images in the server at most (decoding, waiting, running); then 503
    timeout_s: float = 30.0             # per request, from its body read to its answer; then 504
    max_body_bytes: int = 16 * 2**20    # per image; then 413
    max_pixels: int | None = 24_000_000  # per image, read from the header before decoding; then 413
    decode_threads: int = field(default_factory=default_threads)
    rgb_decode: str = "fast"            # RGB models: 'fast' (scaled IDCT + window resample) or 'plain' (torchvision)
    log_level: str = "warning"

    def __post_init__(self):
        for name in ("max_batch", "max_queue", "max_body_bytes", "decode_threads"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise ConfigError("max_wait_ms must be >= 0 and timeout_s > 0")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be >= 1 or None, got {self.max_pixels!r}")
        if self.rgb_decode not in RGB_DECODES:
            raise ConfigError(f"rgb_decode must be one of {', '.join(RGB_DECODES)}, got {self.rgb_decode!r}")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: an ephemeral one; read it from getsockname())."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def make_server(backend, config: ServeConfig, on_ready=None):
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            """uvicorn's drain on SIGTERM / SIGINT, then a normal exit (uvicorn re-raises the signal after
            shutting down, so a drained server would still die of it with status 143)."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    from .app import create_app

    app = create_app(backend, config, on_ready=on_ready)
    uv_config = uvicorn.Config(app, log_level=config.log_level, access_log=False, lifespan="on",
                               timeout_graceful_shutdown=int(config.timeout_s) + 5, timeout_keep_alive=30)
    return Server(uv_config)


def run_server(backend, config: ServeConfig, on_ready=None) -> None:
    """Serve until SIGTERM / SIGINT (blocking; the main thread's signal handlers are uvicorn's)."""
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    server = make_server(backend, config, on_ready=lambda: on_ready(host, port) if on_ready else None)
    server.run(sockets=[sock])


class ServerThread:
    """The server on a background thread, on an ephemeral loopback port: `with ServerThread(b, cfg) as url:`."""

    def __init__(self, backend, config: ServeConfig | None = None):
        config = config or ServeConfig(port=0)
        self._sock = bind(config.host, config.port)
        host, port = self._sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._ready = threading.Event()
        self.server = make_server(backend, config, on_ready=self._ready.set)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout: float = 60.0) -> str:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the server did not start")
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self._sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
