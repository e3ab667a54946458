"""Bounded worker pool: synthesis runs in threads, never on the event loop.

Why a pool of our own around a ThreadPoolExecutor:

* Backpressure.  At most ``workers`` jobs run and at most ``queue_size`` wait; beyond that a
  request is refused at once (429) instead of piling up until every client times out.
* Cancellation that reaches the worker.  A queued job belongs to its request: when the client
  goes away or the deadline passes, the job leaves the queue without ever running.  A running
  job cannot be interrupted (it is a thread), so it is *stopped*: the next time the work calls
  :func:`checkpoint` (between sentences) it raises :class:`JobStopped` and the worker is free.
* Liveness.  The watchdog must stop pinging when synthesis hangs, but a long text is not a
  hang.  Every :func:`checkpoint` is also a heartbeat, so ``stuck()`` means "no progress for
  that long", not "started that long ago".
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """Every worker is busy and the queue is full: come back later (HTTP 429)."""


class JobTimeout(Exception):
    """The deadline passed, while the job waited for a worker (``queued``) or ran."""

    def __init__(self, queued: bool) -> None:
        super().__init__("timed out waiting for a worker" if queued else "timed out running")
        self.queued = queued


class JobStopped(Exception):
    """Raised inside a worker at a checkpoint: nobody waits for this job's result any more."""


@dataclass
class Job:
    """One running job: when it last made progress, and whether it should stop."""

    id: int
    beat: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)

    def checkpoint(self) -> None:
        if self.stop.is_set():
            raise JobStopped(f"job {self.id} stopped: its request timed out or went away")
        self.beat = time.monotonic()


_CURRENT: contextvars.ContextVar[Job | None] = contextvars.ContextVar("job", default=None)


def checkpoint() -> None:
    """Call between units of blocking work: a heartbeat, and where a stopped job ends.
    Outside a pool job (the CLI) it does nothing."""
    job = _CURRENT.get()
    if job is not None:
        job.checkpoint()


def _run_job(job: Job, fn: Callable[..., T], *args: Any) -> T:
    _CURRENT.set(job)  # runs inside a copied context: visible to this job only
    return fn(*args)


@dataclass
class PoolStats:
    running: int = 0
    queued: int = 0
    completed: int = 0
    failed: int = 0
    rejected: int = 0
    cancelled: int = 0  # left the queue without running
    stopped: int = 0  # told to stop while running


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
        self._jobs: dict[int, Job] = {}
        self.stats = PoolStats()

    @property
    def depth(self) -> int:
        """Jobs waiting for a worker."""
        return self.stats.queued

    @property
    def in_flight(self) -> int:
        return self.stats.running

    def stuck(self, threshold: float, now: float | None = None) -> bool:
        """True when some running job has made no progress for ``threshold`` seconds."""
        now = time.monotonic() if now is None else now
        return any(now - job.beat > threshold for job in list(self._jobs.values()))

    def idle(self) -> bool:
        return self.stats.running == 0 and self.stats.queued == 0

    async def run(self, fn: Callable[..., T], *args: Any, deadline: float | None = None) -> T:
        """Run ``fn(*args)`` in a worker by ``deadline`` (``time.monotonic()`` seconds).

        Raises :class:`QueueFull` at once when saturated and :class:`JobTimeout` when the
        deadline passes.  Cancelling the awaiting task, or the deadline passing, removes a
        queued job and stops a running one at its next :func:`checkpoint`; its worker slot
        stays taken until the thread really is free, so capacity is never overstated.
        """
        if self._slots.locked() and self.stats.queued >= self.queue_size:
            self.stats.rejected += 1
            raise QueueFull
        self.stats.queued += 1
        try:
            async with asyncio.timeout(_remaining(deadline)):  # never leaks a slot
                await self._slots.acquire()
        except TimeoutError:
            raise JobTimeout(queued=True) from None
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self.stats.queued -= 1
        return await self._start(fn, args, deadline)

    async def _start(
        self, fn: Callable[..., T], args: tuple[Any, ...], deadline: float | None
    ) -> T:
        job = Job(next(self._ids))
        self._jobs[job.id] = job
        self.stats.running += 1
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        future = loop.run_in_executor(self._executor, ctx.run, _run_job, job, fn, *args)
        future.add_done_callback(lambda f: self._finished(job, f))
        try:
            return await asyncio.wait_for(asyncio.shield(future), _remaining(deadline))
        except TimeoutError:
            self._stop(job)
            raise JobTimeout(queued=False) from None
        except asyncio.CancelledError:
            self._stop(job)
            raise

    def _stop(self, job: Job) -> None:
        if job.id in self._jobs and not job.stop.is_set():
            job.stop.set()
            self.stats.stopped += 1

    def _finished(self, job: Job, future: asyncio.Future[Any]) -> None:
        self.stats.running -= 1
        self._jobs.pop(job.id, None)
        if future.cancelled() or future.exception() is not None:
            self.stats.failed += 1
        else:
            self.stats.completed += 1
        self._slots.release()

    async def probe(self, timeout: float) -> bool:
        """Prove a worker thread can still run code (used by the watchdog when idle)."""
        try:
            return await self.run(lambda: True, deadline=time.monotonic() + timeout)
        except (QueueFull, JobTimeout):
            return False

    def shutdown(self) -> None:
        """Stop every job at its next checkpoint and let the threads go."""
        for job in list(self._jobs.values()):
            self._stop(job)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
