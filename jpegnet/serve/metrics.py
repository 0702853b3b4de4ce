"""The server's counters and histograms, written in the Prometheus text exposition format (version 0.0.4).

Small on purpose: labelled counters, gauges read at scrape time and fixed-bucket histograms are all /metrics
needs, and writing the format by hand keeps the client library out of the dependencies. Updated from the
event loop and the worker threads; one lock guards the numbers.
"""
from __future__ import annotations

import bisect
import os
import threading
import time

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts):
            running += n
            out.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {_number(self.sum)}")
        out.append(f"{name}_count {self.count}")
        return out


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """What /metrics reports; see `render` for the names."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: dict[str, int] = {}        # by HTTP status
        self.errors: dict[str, int] = {}          # by kind
        self.images = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.decode = Histogram(LATENCY_BUCKETS)
        self.model = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.gauges: dict[str, tuple[str, callable]] = {}

    def request(self, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[str(status)] = self.requests.get(str(status), 0) + 1
            self.latency.observe(seconds)

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def decoded(self, seconds: float) -> None:
        with self._lock:
            self.decode.observe(seconds)

    def batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self.images += size
            self.batch_size.observe(size)
            self.model.observe(seconds)

    def gauge(self, name: str, help_text: str, read) -> None:
        """A value read when /metrics is scraped (queue depth, requests in flight)."""
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        times = os.times()
        with self._lock:
            lines = ["# HELP jpegnet_requests_total Classification requests answered, by HTTP status.",
                     "# TYPE jpegnet_requests_total counter"]
            lines += [f'jpegnet_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.requests.items())]
            lines += ["# HELP jpegnet_errors_total Rejected requests and uploads, by kind.",
                      "# TYPE jpegnet_errors_total counter"]
            lines += [f'jpegnet_errors_total{{kind="{k}"}} {n}' for k, n in sorted(self.errors.items())]
            lines += ["# HELP jpegnet_images_total Images classified.", "# TYPE jpegnet_images_total counter",
                      f"jpegnet_images_total {self.images}"]
            for name, hist, help_text in (
                    ("jpegnet_request_latency_seconds", self.latency,
                     "Time from the request's body read to its answer."),
                    ("jpegnet_decode_seconds", self.decode, "JPEG bytes to model input, per image."),
                    ("jpegnet_model_seconds", self.model, "Forward pass, per batch."),
                    ("jpegnet_batch_size", self.batch_size, "Images per forward pass.")):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"] + hist.lines(name)
            for name, (help_text, read) in self.gauges.items():
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_number(read())}"]
        lines += ["# HELP process_cpu_seconds_total User and system CPU time of the server process.",
                  "# TYPE process_cpu_seconds_total counter",
                  f"process_cpu_seconds_total {_number(times.user + times.system)}",
                  "# HELP process_start_time_seconds Start time of the server, seconds since the epoch.",
                  "# TYPE process_start_time_seconds gauge",
                  f"process_start_time_seconds {_number(self.started)}"]
        return "\n".join(lines) + "\n"
