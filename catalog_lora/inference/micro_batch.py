"""Requests from concurrent users, answered in batches: throughput grows with load instead of
queueing one product at a time behind the engine's lock.

Each caller of :meth:`MicroBatcher.predict` hands in one product and waits for its answer. One
worker thread takes the first waiting request and everything already queued behind it (up to
``max_batch``), and runs every group of requests for the same adapter and options as one call of
``predict(name, texts, attributes, **options)`` (``Engine.predict``, or the Space's model call). An
answer goes back to the caller that asked for it, and a batch never holds two adapters or two sets
of options.

A lone request runs at once: waiting for company would only add latency. After a batch of ``n``
requests (``n`` users active), the worker waits up to ``max_wait_s`` for ``n`` requests again: on
one core the answers and the users' next requests take a while to pass through the web server, and
without the wait they would trickle in as small batches that each cost almost a full one. Whatever
is queued beyond that joins the batch too.

Why not Gradio's own batching (``batch=True``, ``max_batch_size`` on an event): it batches one event's
requests, as lists of every input and output, and the Space needs more than that. The Tag tab, its API
and the Classify tab each pick an adapter per request (the adapter dropdown), so one Gradio batch would
still hold several adapters and need this grouping; a request's notices, references and errors are its
own, and a batch function fails or succeeds as a whole; Gradio takes only what is queued at that
instant, without the wait for the last batch's users above, which is what makes batches fill on two
cores; and on ZeroGPU each request must stay its own GPU call, billed to its own user (``Models``
switches the batcher off there). The engine below is the same either way: one ``predict`` per batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from catalog_lora.inference.prediction import Prediction


@dataclass
class _Request:
    name: str
    text: str
    attributes: dict | None
    options: tuple
    answer: Future = field(default_factory=Future)


class MicroBatcher:
    """Batches concurrent single-product requests to one ``predict(name, texts, attributes, **options)``."""

    def __init__(self, predict: Callable[..., list[Prediction]], max_batch: int = 32, max_wait_s: float = 0.25):
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch} must be at least 1")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s={max_wait_s} must be 0 or more")
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches = 0  # model calls made: fewer than requests once requests overlap
        self._last_size = 0
        self._queue: queue.Queue[_Request] = queue.Queue()
        threading.Thread(target=self._work, name="micro-batcher", daemon=True).start()

    def predict(self, name: str, text: str, attributes: dict | None = None, **options) -> Prediction:
        """The answer for one product, as ``predict(name, [text], [attributes], **options)[0]``; its
        error, if the call fails."""
        request = _Request(name, text, attributes, tuple(sorted(options.items())))
        self._queue.put(request)
        return request.answer.result()

    def _gather(self) -> list[_Request]:
        pending = [self._queue.get()]
        expected = min(max(self._last_size, 1), self.max_batch)
        deadline = time.monotonic() + self.max_wait_s
        while len(pending) < expected:  # the users of the last batch, coming back
            try:
                pending.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        while len(pending) < self.max_batch and not self._queue.empty():  # and anyone else already waiting
            pending.append(self._queue.get_nowait())
        self._last_size = len(pending)
        return pending

    def _work(self) -> None:
        while True:
            groups: dict[tuple, list[_Request]] = {}
            for request in self._gather():  # arrival order within each group; groups in order of first arrival
                groups.setdefault((request.name, request.options), []).append(request)
            for (name, options), requests in groups.items():
                self._run(name, dict(options), requests)

    def _run(self, name: str, options: dict, requests: list[_Request]) -> None:
        self.batches += 1
        try:
            answers = self._predict(
                name, [r.text for r in requests], [r.attributes for r in requests], batch_size=len(requests), **options
            )
        except Exception as error:  # every caller of the batch gets the error, the worker goes on
            for request in requests:
                request.answer.set_exception(error)
            return
        for request, answer in zip(requests, answers, strict=True):
            request.answer.set_result(answer)
