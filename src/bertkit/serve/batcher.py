"""Dynamic batching: many requests, one model call.

Each request puts its rows (texts, or (text, pair) tuples) on an asyncio queue with a key
(the encode options, or whether pairs are given) and its token count. One worker task takes
the first waiting item, then keeps collecting items of the same key until the token budget
is reached or ``max_wait_ms`` has passed since the first (or every request the server is
handling is in the batch already), runs ONE call of ``run(key, rows)``
in a thread (the event loop never blocks) and hands every caller exactly its own rows of
the result. Items of another key wait for the next call, so options never mix. The next
batch is collected while a call runs (and takes what queued until it ended), so under load
the model goes from one call to the next without waiting ``max_wait_ms`` each time, while
the event loop answers and reads requests beside it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .limits import ApiError

_STOP = object()  # queued by stop(): finish what is queued, then end the worker


@dataclass
class _Item:
    key: object
    rows: list
    n_tokens: int
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Merge concurrent requests into single calls of ``run``.

    Parameters
    ----------
    run : callable (key, rows) -> sequence of len(rows)
        Runs in a worker thread; ``lock`` (a threading.Lock) is held around it, so the
        same model can also be used by other routes without two calls at once.
    name : str
        Label in the metrics (``batcher="embeddings"``).
    max_batch_tokens : int, default=8192
        Stop collecting once the merged rows hold this many tokens (a single request over
        it still runs, alone).
    max_wait_ms : float, default=5
        Longest wait for more requests after the first; 0 takes only what is already queued.
    max_queue : int, default=1024
        Requests waiting at most; one more gets a 503 with Retry-After.
    batching : bool, default=True
        False: one request per model call (the benchmark's batching-off row).
    in_flight : callable () -> int, or None
        How many HTTP requests the server is handling now. When every one of them is
        already in the batch, it goes to the model without waiting ``max_wait_ms``: a lone
        client pays no batching delay. None: always wait.
    """

    def __init__(self, run, *, name: str, lock: threading.Lock | None = None, metrics=None,
                 max_batch_tokens: int = 8192, max_wait_ms: float = 5, max_queue: int = 1024,
                 batching: bool = True, in_flight=None):
        self.run, self.name, self.metrics, self.in_flight = run, name, metrics, in_flight
        self.lock = lock or threading.Lock()
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000.0
        self.max_queue, self.batching = max_queue, batching
        self._queue: asyncio.Queue | None = None
        self._held: deque = deque()  # items taken from the queue, waiting for their key's turn
        self._next: list = []  # the batch being collected, or waiting for the model to be free
        self._task: asyncio.Task | None = None
        self._closing = self._stopping = False
        if metrics is not None:
            metrics.queue_depth[name] = self.depth

    def depth(self) -> int:
        return (self._queue.qsize() if self._queue is not None else 0) + len(self._held) + len(self._next)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._closing = self._stopping = False
        self._task = asyncio.create_task(self._worker(), name=f"bertkit-batcher-{self.name}")

    async def stop(self) -> None:
        """Finish every queued request, then stop the worker."""
        if self._task is None:
            return
        self._closing = True
        self._queue.put_nowait(_STOP)  # the worker drains the queue, then returns
        try:
            await self._task
        finally:
            self._task = None

    async def submit(self, key, rows: list, n_tokens: int):
        """Queue ``rows``; returns their part of the result (same length and order)."""
        return await self.put(key, rows, n_tokens)  # a cancelled caller leaves the item; its rows are dropped

    def put(self, key, rows: list, n_tokens: int) -> asyncio.Future:
        """Queue ``rows``; the future gets their part of the result. Cancel it to drop them."""
        if self._task is None or self._closing:
            raise ApiError(503, "The server is shutting down; retry on another instance.",
                           type="unavailable", headers={"Retry-After": "1"})
        if self.depth() >= self.max_queue:
            raise ApiError(503, f"The queue is full ({self.max_queue} requests waiting); retry shortly.",
                           type="overloaded", headers={"Retry-After": "1"})
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(key, list(rows), int(n_tokens), future))
        return future

    # ------------------------------------------------------------------ worker
    async def _get(self, timeout: float):
        """The next queued item, or None once ``timeout`` seconds passed (0: only if queued)."""
        if timeout <= 0 or self._stopping:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _collect(self, first: _Item, busy: asyncio.Future | None = None) -> list:
        """``first`` plus the waiting items of its key that fit the token budget and the wait.

        ``busy`` is the model call still in flight: once the wait is over, what queues until
        that call ends joins this batch too (it could not start any earlier), so a backlog
        never waits ``max_wait_ms`` again after the model frees up.
        """
        batch, tokens = [first], first.n_tokens
        self._next = batch  # still waiting: counted in the queue depth
        if not self.batching:
            return batch
        deadline = time.monotonic() + self.max_wait
        skipped, full = [], False  # skipped: other keys or over budget, kept in order

        def take(item: _Item) -> None:
            nonlocal tokens, full
            if full or item.key != first.key or tokens + item.n_tokens > self.max_batch_tokens:
                full = full or item.key == first.key
                skipped.append(item)
            else:
                batch.append(item)
                tokens += item.n_tokens

        held, self._held = list(self._held), deque()
        for item in held:
            take(item)
        while True:
            while not full and tokens < self.max_batch_tokens:
                if self.in_flight is not None and self.in_flight() <= len(batch) + len(skipped):
                    deadline = 0.0  # nobody else is being served: take what is queued, go
                item = await self._get(deadline - time.monotonic())
                if item is None:
                    break
                if item is _STOP:
                    self._stopping = True  # drain: take only what is queued already
                elif not item.future.done():  # else its caller went away
                    take(item)
            if busy is None or busy.done() or full or tokens >= self.max_batch_tokens:
                break
            await asyncio.wait({busy})
            deadline = 0.0  # then take only what queued meanwhile

        self._held.extend(skipped)
        return batch

    async def _worker(self) -> None:
        running = None  # the model call in flight; the next batch is collected meanwhile
        while True:
            if self._held:
                first = self._held.popleft()
            elif self._stopping and self._queue.empty():
                break
            else:
                first = await self._queue.get()
            if first is _STOP:
                self._stopping = True
                continue
            if first.future.done():
                continue
            batch = await self._collect(first, running)
            if running is not None:
                await running  # one model call at a time
            running = asyncio.ensure_future(self._run(batch))
            self._next = []
        if running is not None:
            await running

    async def _run(self, batch: list) -> None:
        live = [it for it in batch if not it.future.done()]
        if not live:
            return
        rows = [r for it in live for r in it.rows]

        def call():
            with self.lock:
                return self.run(live[0].key, rows)

        try:
            result = await asyncio.to_thread(call)
        except Exception as e:  # every caller of the batch gets the error
            for it in live:
                if not it.future.done():
                    it.future.set_exception(e)
            return
        if self.metrics is not None:
            self.metrics.observe_batch(self.name, len(live), len(rows))
        start = 0
        for it in live:
            part = result[start:start + len(it.rows)]
            start += len(it.rows)
            if not it.future.done():
                it.future.set_result(part)
