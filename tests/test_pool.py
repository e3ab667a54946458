"""The worker pool with real threads: limits, cancellation, timeouts, hang detection."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sambertd.pool import JobStopped, JobTimeout, QueueFull, WorkerPool, checkpoint


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
        with pytest.raises(QueueFull):
            await pool.run(lambda: "third")
        # Refused without waiting for a slot: the running job (10 s, or until the gate
        # opens) has not ended, nor has the queued one started.
        assert not running.done() and not queued.done()
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
            await pool.run(gate.wait, 10, deadline=time.monotonic() + 0.1)
        # The thread still runs: capacity must not be overstated.
        assert pool.in_flight == 1
        with pytest.raises(QueueFull):
            await pool.run(lambda: None)
        gate.set()
        await until(pool.idle)

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
        assert await pool.probe(timeout=10) is True

    run(go())


def steps(done: list[int], count: int = 2000, pause: float = 0.005) -> str:
    """Blocking work in small steps with a checkpoint between them, as synthesis has
    between sentences."""
    for i in range(count):
        checkpoint()
        time.sleep(pause)
        done.append(i)
    return "finished"


async def until(predicate, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_job_past_its_deadline_stops_at_its_next_checkpoint() -> None:
    async def go() -> None:
        pool = WorkerPool(1, 0)
        done: list[int] = []
        with pytest.raises(JobTimeout) as timeout:
            await pool.run(steps, done, deadline=time.monotonic() + 1)
        assert timeout.value.queued is False
        await until(pool.idle)  # the worker is free long before 2000 steps (10 s)
        assert 0 < len(done) < 2000
        assert (pool.stats.stopped, pool.stats.failed) == (1, 1)

    run(go())


def test_a_cancelled_request_stops_its_running_job() -> None:
    async def go() -> None:
        pool = WorkerPool(1, 0)
        done: list[int] = []
        job = asyncio.ensure_future(pool.run(steps, done))
        await until(lambda: len(done) > 3)
        job.cancel()  # the client went away
        await until(pool.idle)
        assert len(done) < 2000 and pool.stats.stopped == 1

    run(go())


def test_waiting_past_the_deadline_is_a_queued_timeout() -> None:
    async def go() -> None:
        pool = WorkerPool(1, 1)
        gate = threading.Event()
        busy = asyncio.ensure_future(pool.run(gate.wait, 10))
        await until(lambda: pool.in_flight == 1)
        with pytest.raises(JobTimeout) as timeout:
            await pool.run(lambda: None, deadline=time.monotonic() + 0.1)
        assert timeout.value.queued is True
        gate.set()
        await busy

    run(go())


def test_a_long_job_that_makes_progress_is_not_stuck() -> None:
    """Hang detection is "no progress for that long", not "started that long ago": a long
    text must not make /ready say "worker hung" (and move the VIP)."""

    async def go() -> None:
        pool = WorkerPool(1, 0)
        done: list[int] = []
        # 1 s, not less: a busy machine can keep a thread off the CPU for a good part of a
        # second, which is no hang.  The job (200 steps of 10 ms) runs twice that at least.
        threshold = 1.0
        started = time.monotonic()
        job = asyncio.ensure_future(pool.run(steps, done, 200, 0.01))
        await until(lambda: len(done) > 1)
        seen_stuck = False
        while not job.done():
            seen_stuck |= pool.stuck(threshold)
            await asyncio.sleep(0.02)
        assert await job == "finished" and not seen_stuck
        assert time.monotonic() - started >= 2 * threshold  # it did run that long

    run(go())


def test_checkpoint_outside_a_pool_job_does_nothing() -> None:
    checkpoint()  # the CLI renders without a pool
    with pytest.raises(JobStopped):
        from sambertd.pool import Job

        job = Job(1)
        job.stop.set()
        job.checkpoint()
