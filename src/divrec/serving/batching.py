"""Micro-batching: concurrent requests are scored together, in one call of a handler, on one worker thread.

A batch is whatever is queued when the worker gets to it (while it scores one batch, the next one fills up by
itself), plus what arrives within ``max_wait_ms`` (default 0: no waiting), and it holds at most ``max_size``
requests.
Requests only share a call when their ``key`` is equal (for ``/recommend``: the same kind, k, exclusion and
re-ranker), because one ``Recommender.recommend`` call takes one k for all its histories. Each request gets its own
result or its own error: when a batched call fails, its requests are retried one by one, so one bad request never
fails the others.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
P = TypeVar("P")
R = TypeVar("R")


@dataclass
class _Pending(Generic[K, P, R]):
    key: K
    payload: P
    future: Future[R] = field(default_factory=Future)


_STOP = object()


class BatcherClosed(RuntimeError):
    """Raised by ``submit`` after ``close``."""


class MicroBatcher(Generic[K, P, R]):
    """Collects ``submit(key, payload)`` calls into ``handler(key, payloads) -> results`` calls (same order, one
    result per payload) on a daemon worker thread, started at the first submit."""

    def __init__(
        self,
        handler: Callable[[K, list[P]], Sequence[R]],
        max_size: int = 64,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        name: str = "divrec-batcher",
    ) -> None:
        if max_size < 1 or max_wait_ms < 0:
            raise ValueError(f"batch.max_size={max_size} must be >= 1 and batch.max_wait_ms={max_wait_ms} >= 0")
        self.handler = handler
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1e3
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, key: K, payload: P) -> Future[R]:
        """Queue one request; its future holds the handler's result for it, or the error it raised."""
        if self._closed:
            raise BatcherClosed("the batcher is closed")
        if self._thread is None:
            self._start()
        pending: _Pending[K, P, R] = _Pending(key, payload)
        self._queue.put(pending)
        return pending.future

    async def run(self, key: K, payload: P) -> R:
        """``submit`` for asyncio code: await the result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(key, payload))

    def close(self, timeout: float = 10.0) -> None:
        """Score what is queued, then stop the worker; later submits raise ``BatcherClosed``."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stopping = self._collect(first)
            groups: dict[K, list[_Pending[K, P, R]]] = {}
            for pending in batch:
                if pending.future.set_running_or_notify_cancel():  # False: the caller gave up; skip it
                    groups.setdefault(pending.key, []).append(pending)
            for key, members in groups.items():
                self._score(key, members)

    def _collect(self, first: _Pending[K, P, R]) -> tuple[list[_Pending[K, P, R]], bool]:
        """``first`` plus whatever is queued, waiting up to ``max_wait`` for more; and whether STOP was seen."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _score(self, key: K, members: list[_Pending[K, P, R]]) -> None:
        try:
            results = list(self.handler(key, [m.payload for m in members]))
            if len(results) != len(members):
                raise RuntimeError(f"batch handler returned {len(results)} results for {len(members)} requests")
        except Exception as err:
            if len(members) == 1:
                members[0].future.set_exception(err)
                return
            for member in members:  # isolate the failure: each request gets its own result or error
                self._score(key, [member])
            return
        if self.on_batch is not None:
            self.on_batch(len(members))
        for member, result in zip(members, results, strict=True):
            member.future.set_result(result)
