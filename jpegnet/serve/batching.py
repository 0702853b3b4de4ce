"""Dynamic batching with backpressure.

A request is admitted only while fewer than `max_queue` requests are in the server (being decoded, waiting for a
batch, or in a forward pass); past that it is refused at once with `Overloaded` (HTTP 503), so memory stays
bounded however many clients push. Admitted requests are decoded on a thread pool as they arrive (the DCT
reader and resampler run in C with the GIL released, so decodes of several requests overlap each other and
the forward pass), then put on an asyncio queue. One batcher task takes the first waiting item, gathers more
until it has `max_batch`, or `max_wait_ms` have passed since that first item, or no other admitted request is
still being decoded (then nobody would come: a lone request does not wait), and runs the batch in one forward
pass on a dedicated thread; while that runs, the next batch gathers. A request whose client gave up (timeout)
is dropped from the batch it would have joined.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from ..errors import JpegnetError
from .preprocess import decode_upload, stack_inputs


class Overloaded(JpegnetError, RuntimeError):
    """The server holds max_queue requests already: HTTP 503, try again later."""


@dataclass
class _Item:
    inputs: tuple
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class Prediction:
    probabilities: torch.Tensor     # (classes,) float32
    decode_s: float
    model_s: float                  # the whole batch's forward pass
    queue_s: float
    batch_size: int


class DynamicBatcher:
    def __init__(self, backend, *, max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 256,
                 decode_threads: int = 2, max_pixels: int | None = None, max_body_bytes: int | None = None,
                 metrics=None, rgb_decode: str = "fast"):
        if max_batch < 1 or max_queue < 1 or decode_threads < 1 or max_wait_ms < 0:
            raise ValueError("max_batch, max_queue and decode_threads must be >= 1, max_wait_ms >= 0")
        self.backend = backend
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.max_pixels = max_pixels
        self.max_body_bytes = max_body_bytes
        self.rgb_decode = rgb_decode
        self.metrics = metrics
        self.in_flight = 0
        self.decoding = 0
        self._queue: asyncio.Queue | None = None
        self._decode_pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="jpegnet-decode")
        self._forward_pool = ThreadPoolExecutor(1, thread_name_prefix="jpegnet-forward")
        self._task: asyncio.Task | None = None

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        await asyncio.get_running_loop().run_in_executor(self._forward_pool, self._warm_up)
        self._task = asyncio.create_task(self._run(), name="jpegnet-batcher")

    def _warm_up(self) -> None:
        """One decode of a built-in sample and one forward pass: the first ones import, allocate and pick
        kernels, which the first client should not pay for."""
        from ..samples import sample_files

        inputs, _ = decode_upload(sample_files()[0].read_bytes(), self.backend.input_config, max_pixels=None,
                                  rgb_decode=self.rgb_decode)
        self._forward(inputs)

    async def stop(self) -> None:
        """After the last request is answered (the server drains connections first): stop the batcher."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._decode_pool.shutdown(wait=True)
        self._forward_pool.shutdown(wait=True)

    def admit(self, images: int = 1) -> None:
        """Take places for a request's images, or raise Overloaded; pair with release(images)."""
        if self.in_flight + images > self.max_queue:
            raise Overloaded(f"server busy: {self.in_flight} images in flight (max_queue {self.max_queue}); "
                             "retry later")
        self.in_flight += images

    def release(self, images: int = 1) -> None:
        self.in_flight -= images

    async def decode(self, body: bytes):
        """(inputs, seconds) for one upload, on the decode pool; raises preprocess.UploadError."""
        loop = asyncio.get_running_loop()
        self.decoding += 1
        try:
            return await loop.run_in_executor(self._decode_pool, lambda: decode_upload(
                body, self.backend.input_config, max_pixels=self.max_pixels, max_body_bytes=self.max_body_bytes,
                rgb_decode=self.rgb_decode))
        finally:
            self.decoding -= 1

    async def predict(self, inputs, decode_s: float = 0.0) -> Prediction:
        """Wait for the batch this input joins; its softmax probabilities and timings."""
        future = asyncio.get_running_loop().create_future()
        item = _Item(inputs, future)
        self._queue.put_nowait(item)  # admission keeps the queue below its bound
        probabilities, model_s, batch_size, started = await future
        return Prediction(probabilities, decode_s, model_s, started - item.enqueued, batch_size)

    async def _gather(self) -> list[_Item]:
        first = await self._queue.get()
        items = [first]
        deadline = time.perf_counter() + self.max_wait_s
        while len(items) < self.max_batch:
            try:
                items.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            if self.decoding == 0:  # nobody else is on the way: waiting would only add latency
                break
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return [it for it in items if not it.future.done()]  # clients that timed out are gone

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            if not items:
                continue
            started = time.perf_counter()
            try:
                batch = stack_inputs([it.inputs for it in items])
                probabilities, seconds = await loop.run_in_executor(self._forward_pool, self._forward, batch)
            except Exception as error:  # a failing forward pass fails its batch, not the server
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(error)
                continue
            if self.metrics is not None:
                self.metrics.batch(len(items), seconds)
            for row, it in enumerate(items):
                if not it.future.done():
                    it.future.set_result((probabilities[row], seconds, len(items), started))

    def _forward(self, batch):
        start = time.perf_counter()
        logits = self.backend(*batch)
        probabilities = logits.float().softmax(1).cpu()
        return probabilities, time.perf_counter() - start
