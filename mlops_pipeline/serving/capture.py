"""Group commit: one writer thread turns many requests' captures into one durable transaction.

A request hands its rows to the writer and waits on a future; the writer takes everything queued
(up to a bound), inserts it in one transaction, commits (fsync), and only then resolves every
waiting future. So a response is sent only after its predictions are durable, yet under load the
cost of a commit is shared by all requests that arrived while the previous commit ran: the batch
grows by itself with concurrency, with no timer to tune. Feedback labels go through the same
thread, so a process has one writer (several worker processes take turns on SQLite's write lock).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore

log = logging.getLogger(__name__)

Callback = Callable[[Any, BaseException | None], None]


@dataclass
class _Op:
    rows: Sequence[PredictionBatch] = ()
    label: tuple[str, float] | None = None
    callback: Callback | None = None

    def size(self) -> int:
        return sum(len(r) for r in self.rows)


class CaptureWriter:
    """The one thread that writes a process's captures and labels to the prediction store, each
    caller resolved only after its commit (`max_rows` bounds one transaction)."""

    def __init__(self, store: PredictionStore, max_rows: int = 2000,
                 on_commit: Callable[[int, float], None] | None = None):
        self.store = store
        self.max_rows = max_rows
        self.on_commit = on_commit
        self._queue: queue.Queue[_Op | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._closed = False

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Drain what is queued (every accepted capture is committed), then stop."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=timeout)

    # ---- submit ------------------------------------------------------------------------------
    def submit(self, rows: Sequence[PredictionBatch], callback: Callback | None = None) -> None:
        """Queue `rows` from any thread; `callback(None, error)` runs in the writer after the commit."""
        if self._closed:
            raise RuntimeError("capture writer is closed")
        self._queue.put(_Op(rows=rows, callback=callback))

    def submit_label(self, request_id: str, label: float, callback: Callback) -> None:
        """Queue a label; `callback((rows matched, changed), error)` runs after the commit."""
        if self._closed:
            raise RuntimeError("capture writer is closed")
        self._queue.put(_Op(label=(request_id, label), callback=callback))

    async def write(self, rows: Sequence[PredictionBatch]) -> None:
        """Resolve once `rows` are committed; raise if the commit failed."""
        await self._await(lambda cb: self.submit(rows, cb))

    async def label(self, request_id: str, label: float) -> tuple[int, bool]:
        """Label `request_id`'s rows; (rows matched, whether the label changed), once committed."""
        return await self._await(lambda cb: self.submit_label(request_id, label, cb))

    @staticmethod
    async def _await(submit: Callable[[Callback], None]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()

        def done(result: Any, exc: BaseException | None) -> None:
            loop.call_soon_threadsafe(_resolve, fut, result, exc)

        submit(done)
        return await fut

    # ---- the writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        import time

        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            ops = [first]
            rows = first.size()
            while rows < self.max_rows:
                try:
                    op = self._queue.get_nowait()
                except queue.Empty:
                    break
                if op is None:
                    stop = True
                    break
                ops.append(op)
                rows += op.size()
            started = time.perf_counter()
            results: list[Any] = [None] * len(ops)
            error: BaseException | None = None
            try:
                with self.store.transaction() as conn:
                    items = [r for op in ops for r in op.rows]
                    if items:
                        self.store.insert(conn, items)
                    for i, op in enumerate(ops):
                        if op.label is not None:
                            results[i] = self.store.set_label(*op.label, conn=conn)
            except Exception as exc:
                log.exception("capture commit failed (%d rows)", rows)
                error = exc
            if self.on_commit and error is None:
                self.on_commit(rows, time.perf_counter() - started)
            for i, op in enumerate(ops):
                if op.callback is not None:
                    try:
                        op.callback(results[i], error)
                    except Exception:  # a closed event loop must not kill the writer
                        log.exception("capture callback failed")


def _resolve(fut: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
