"""Micro-batching: concurrent requests share one contract validation and one model call.

A model call costs mostly per call, not per row (docs/serving.md). So requests are queued and
one task takes everything queued (up to `max_rows` rows), waits at most `max_wait` for
stragglers, and hands the whole batch to ONE dedicated thread.
Under light load a batch is one request and adds at most `max_wait`; under heavy load batches
grow by themselves while the previous batch is being scored. A single scoring thread also means
the model is never called concurrently (no GIL thrashing, no oversubscribed OpenMP threads).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    """Queues items from the event loop and hands them, in bounded batches, to one thread."""

    def __init__(
        self,
        process: Callable[[list[T]], Sequence[Any]],
        size: Callable[[T], int],
        max_rows: int = 256,
        max_wait: float = 0.002,
        name: str = "predict",
    ):
        """`process(items)` runs in the dedicated thread and returns one result (or exception)
        per item, in order."""
        self.process = process
        self.size = size
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queue: asyncio.Queue[tuple[T, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._pending: tuple[T, asyncio.Future] | None = None

    def start(self) -> None:
        """Start the batching task (in the running event loop)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop taking batches and wait for the one being processed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, item: T) -> Any:
        """`item`'s result once its batch is processed (raised if it is an exception)."""
        assert self._queue is not None, "batcher not started"
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        return await fut

    def _drain(self, batch: list[tuple[T, asyncio.Future]], rows: int) -> int:
        assert self._queue is not None
        while rows < self.max_rows and not self._queue.empty():
            entry = self._queue.get_nowait()
            n = self.size(entry[0])
            if rows + n > self.max_rows and batch:
                self._pending = entry  # starts the next batch; a batch never exceeds the bound
                break
            batch.append(entry)
            rows += n
        return rows

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            if self._pending is not None:
                first, self._pending = self._pending, None
            else:
                first = await self._queue.get()
            batch = [first]
            rows = self._drain(batch, self.size(first[0]))
            if rows < self.max_rows and self.max_wait > 0 and self._pending is None:
                await asyncio.sleep(self.max_wait)
                rows = self._drain(batch, rows)
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.process, [i for i, _ in live])
            except Exception as exc:  # process() itself failed: every request in it fails
                results = [exc] * len(live)
            for (_, fut), result in zip(live, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
