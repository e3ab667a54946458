"""Bounded worker pool: synthesis runs in threads, never on the event loop.

Why a pool of our own around a ThreadPoolExecutor:

* Backpressure.  At most ``workers`` jobs run and at most ``queue_size`` wait; beyond that a
  request is refused at once (429) instead of piling up until every client times out.
* Cancellation.  A queued job belongs to its request: when the client goes away (aiohttp
  cancels the handler) the job leaves the queue without ever running.
* Liveness.  The watchdog must stop pinging when synthesis hangs.  The pool knows when each
  running job started, so ``stuck()`` can tell a slow request from a wedged worker.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """Every worker is busy and the queue is full: come back later (HTTP 429)."""


class JobTimeout(Exception):
    """The job did not finish within its deadline (HTTP 503/504)."""


@dataclass
class PoolStats:
    running: int = 0
    queued: int = 0
    completed: int = 0
    failed: int = 0
    rejected: int = 0
    cancelled: int = 0
    started: dict[int, float] = field(default_factory=dict)


class WorkerPool:
    """``workers`` threads behind a bounded queue of ``queue_size`` waiting jobs."""

    def __init__(self, workers: int, queue_size: int) -> None:
        if workers < 1 or queue_size < 0:
            raise ValueError("need at least one worker and a non-negative queue size")
        self.workers = workers
        self.queue_size = queue_size
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="synth")
        self._slots = asyncio.Semaphore(workers)
        self._ids = itertools.count()
        self.stats = PoolStats()

    @property
    def depth(self) -> int:
        """Jobs waiting for a worker."""
        return self.stats.queued

    @property
    def in_flight(self) -> int:
        return self.stats.running

    def stuck(self, threshold: float, now: float | None = None) -> bool:
        """True when some job has been running for longer than ``threshold`` seconds."""
        now = time.monotonic() if now is None else now
        return any(now - t > threshold for t in list(self.stats.started.values()))

    def idle(self) -> bool:
        return self.stats.running == 0 and self.stats.queued == 0

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` in a worker; raise :class:`QueueFull` when saturated.

        Cancelling the awaiting task while queued removes the job; once running, the thread
        finishes its sentence (threads cannot be interrupted) but its result is dropped and
        its worker slot stays taken until it really is free, so capacity is never overstated.
        """
        if self._slots.locked() and self.stats.queued >= self.queue_size:
            self.stats.rejected += 1
            raise QueueFull
        deadline = None if timeout is None else time.monotonic() + timeout
        self.stats.queued += 1
        try:
            async with asyncio.timeout(timeout):  # cancellation-safe: never leaks a slot
                await self._slots.acquire()
        except TimeoutError:
            raise JobTimeout from None
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self.stats.queued -= 1
        return await self._start(fn, args, deadline)

    async def _start(
        self, fn: Callable[..., T], args: tuple[Any, ...], deadline: float | None
    ) -> T:
        job = next(self._ids)
        self.stats.running += 1
        self.stats.started[job] = time.monotonic()
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        future = loop.run_in_executor(self._executor, ctx.run, fn, *args)
        future.add_done_callback(lambda f: self._finished(job, f))
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(future), remaining)
        except TimeoutError:
            raise JobTimeout from None

    def _finished(self, job: int, future: asyncio.Future[Any]) -> None:
        self.stats.running -= 1
        self.stats.started.pop(job, None)
        if future.cancelled() or future.exception() is not None:
            self.stats.failed += 1
        else:
            self.stats.completed += 1
        self._slots.release()

    async def probe(self, timeout: float) -> bool:
        """Prove a worker thread can still run code (used by the watchdog when idle)."""
        try:
            return await self.run(lambda: True, timeout=timeout)
        except (QueueFull, JobTimeout):
            return False

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
