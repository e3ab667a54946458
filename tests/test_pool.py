"""The worker pool with real threads: limits, cancellation, timeouts, hang detection."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sambertd.pool import JobTimeout, QueueFull, WorkerPool


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_results_and_exceptions_come_back() -> None:
    async def go() -> None:
        pool = WorkerPool(2, 2)
        assert await pool.run(lambda x: x * 2, 21) == 42
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        assert (pool.stats.completed, pool.stats.failed) == (1, 1)
        assert pool.idle()

    run(go())


def test_full_queue_is_refused_at_once() -> None:
    async def go() -> None:
        pool = WorkerPool(1, 1)
        gate = threading.Event()
        running = asyncio.ensure_future(pool.run(gate.wait, 10))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(pool.run(lambda: "queued"))
        await asyncio.sleep(0.05)
        assert (pool.in_flight, pool.depth) == (1, 1)
        started = time.monotonic()
        with pytest.raises(QueueFull):
            await pool.run(lambda: "third")
        assert time.monotonic() - started < 0.1
        gate.set()
        assert await running is True and await queued == "queued"
        assert pool.stats.rejected == 1

    run(go())


def test_cancelled_while_queued_never_runs() -> None:
    async def go() -> None:
        pool = WorkerPool(1, 4)
        gate = threading.Event()
        ran: list[str] = []
        blocker = asyncio.ensure_future(pool.run(gate.wait, 10))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(pool.run(lambda: ran.append("queued")))
        await asyncio.sleep(0.05)
        queued.cancel()
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        assert await pool.run(lambda: "after") == "after"
        assert ran == [] and pool.stats.cancelled == 1 and pool.idle()

    run(go())


def test_timeout_keeps_the_slot_until_the_thread_is_free() -> None:
    async def go() -> None:
        pool = WorkerPool(1, 0)
        gate = threading.Event()
        with pytest.raises(JobTimeout):
            await pool.run(gate.wait, 10, timeout=0.1)
        # The thread still runs: capacity must not be overstated.
        assert pool.in_flight == 1
        with pytest.raises(QueueFull):
            await pool.run(lambda: None)
        gate.set()
        for _ in range(100):
            if pool.idle():
                break
            await asyncio.sleep(0.01)
        assert pool.idle()

    run(go())


def test_a_hung_job_is_detected_and_the_probe_fails() -> None:
    async def go() -> None:
        pool = WorkerPool(1, 0)
        gate = threading.Event()
        hung = asyncio.ensure_future(pool.run(gate.wait, 10))
        await asyncio.sleep(0.3)
        assert pool.stuck(threshold=0.2)
        assert not pool.stuck(threshold=5)
        assert await pool.probe(timeout=0.2) is False  # no worker can prove it is alive
        gate.set()
        await hung
        assert not pool.stuck(threshold=0.2)
        assert await pool.probe(timeout=1) is True

    run(go())
