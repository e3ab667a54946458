"""The node's job runner: takes queued and orphaned jobs, renders them a unit at a time.

One runner per daemon, with a cap (``jobs.concurrency``) and a lease per job it runs.  Each
unit goes to the worker pool like a request's (so jobs share the node's capacity with live
traffic and never run on the event loop); a full queue makes the job wait, not fail, so live
requests keep priority.  After each unit its segment is stored, then the record's progress:
a node that dies loses at most the unit it was rendering.  Its lease then lapses and the
peer's runner takes the job and resumes after the last stored unit.  A draining node stops
its jobs after their current unit and releases their leases, so the peer resumes them at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from sambertd import audio, timeline
from sambertd import subtitles as subs
from sambertd.engines import EngineError
from sambertd.frontend import FrontendError
from sambertd.jobs import model, segments
from sambertd.jobs.board import Board, BoardError, FileBoard, RedisBoard
from sambertd.jobs.model import CANCELLED, DONE, FAILED, RUNNING, Job
from sambertd.jobs.store import ResultStore, StoreError, open_store
from sambertd.pool import JobTimeout, QueueFull
from sambertd.runtime import Runtime
from sambertd.state import State
from sambertd.synth import EngineUnavailable, Route, native_unit

log = logging.getLogger("sambertd.jobs")
UNIT_TRIES = 3  # an engine fault on one unit is retried this often before the job fails
SWEEP_INTERVAL_S = 30.0
MAX_BACKOFF_S = 60.0  # a paused job (store or Redis away, engine out) waits at most this here


class Paused(Exception):
    """The job cannot go on here now (its voice's engine is out): try again later."""


class JobFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Jobs:
    """Board, store and runner of one daemon (the routes use the first two)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.owner = f"{state.node}:{os.getpid()}:{secrets.token_hex(4)}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._swept = 0.0
        self._board: tuple[Any, Board] | None = None
        self._delays: dict[str, float] = {}  # paused jobs: the last wait, doubled each time
        self._not_before: dict[str, float] = {}
        self._store: tuple[Any, ResultStore] | None = None

    # -- the parts, rebuilt when a reload changes their settings ---------------------------------
    def board(self) -> Board:
        """Redis when the cache has it, else files.  Rebuilt only when where the records
        live changes (a file board's lock and leases must outlive other reloads)."""
        runtime = self.state.runtime
        l2, cfg = runtime.cache.l2, runtime.config
        ident = (id(l2), cfg.cache.namespace) if l2.enabled else cfg.jobs.directory
        if self._board is None or self._board[0] != ident:
            board: Board = (
                RedisBoard(l2.client, cfg.cache.namespace, cfg.jobs.retention_s)
                if l2.enabled
                else FileBoard(cfg.jobs.directory, cfg.jobs.retention_s)
            )
            self._board = (ident, board)
        self._board[1].retention_s = cfg.jobs.retention_s
        return self._board[1]

    def store(self) -> ResultStore:
        cfg = self.state.runtime.config.jobs
        if self._store is None or self._store[0] != cfg:
            self._store = (cfg, open_store(cfg))
        return self._store[1]

    @property
    def running(self) -> int:
        return len(self.tasks)

    def wake(self) -> None:
        """Look for work now (a job was just submitted here)."""
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------
    async def loop(self) -> None:
        """Scan for work every ``jobs.scan_interval_s`` (or when woken) until cancelled."""
        failing = False
        while True:
            try:
                await self.scan()
            except (BoardError, StoreError) as exc:
                if not failing:  # once, not every few seconds while Redis is away
                    log.warning("jobs: cannot look for work: %s", exc)
                failing = True
            except Exception:
                log.exception("job scan failed")
            else:
                if failing:
                    log.info("jobs: records reachable again")
                failing = False
            with contextlib.suppress(TimeoutError):
                interval = self.state.runtime.config.jobs.scan_interval_s
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()

    async def scan(self) -> None:
        cfg = self.state.runtime.config.jobs
        if not cfg.enabled or self._stopping or self.state.draining:
            return
        board = self.board()
        if time.monotonic() - self._swept > min(SWEEP_INTERVAL_S, cfg.retention_s / 2):
            await self.sweep(board)
        for job_id in await board.active():
            if len(self.tasks) >= cfg.concurrency:
                return
            if job_id in self.tasks or self._not_before.get(job_id, 0.0) > time.monotonic():
                continue
            if not await board.lease(job_id, self.owner, cfg.lease_s):
                continue
            task = asyncio.get_running_loop().create_task(self._hold(job_id, board))
            self.tasks[job_id] = task
            task.add_done_callback(functools.partial(self._forget, job_id))

    def _forget(self, job_id: str, _: asyncio.Task[None]) -> None:
        self.tasks.pop(job_id, None)

    def _back_off(self, job_id: str) -> float:
        """Wait longer each time a job pauses here (1, 2, 4 … 60 s): an S3 outage must not
        make this node re-assemble a long file every scan."""
        delay = min(MAX_BACKOFF_S, max(1.0, self._delays.get(job_id, 0.0) * 2))
        self._delays[job_id] = delay
        self._not_before[job_id] = time.monotonic() + delay
        return delay

    async def sweep(self, board: Board) -> None:
        """Delete finished jobs past their retention: audio first, then the record."""
        self._swept = time.monotonic()
        store = self.store()
        for job_id in await board.due(time.time()):
            await asyncio.to_thread(store.delete_prefix, model.prefix(job_id))
            await board.remove(job_id)
            log.info("job %s expired and was deleted", job_id)

    async def stop(self, timeout: float = 5.0) -> None:
        """Let running jobs finish their current unit and hand them back; past ``timeout``
        (a unit stuck in a hung engine) cancel them.  Either way their leases are released
        and the stored units stay, so the peer resumes them."""
        self._stopping = True
        if not self.tasks:
            return
        _, pending = await asyncio.wait(list(self.tasks.values()), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- one job -----------------------------------------------------------------------------
    async def _hold(self, job_id: str, board: Board) -> None:
        """Run the job while renewing its lease; release it whatever happens."""
        runtime = self.state.runtime  # pinned for the whole run, as a request pins its own
        runtime.users += 1
        work = asyncio.current_task()
        assert work is not None
        lost = asyncio.Event()
        renew = asyncio.get_running_loop().create_task(self._renew(job_id, board, work, lost))
        try:
            await self._run(job_id, board, runtime)
            self._delays.pop(job_id, None)
            self._not_before.pop(job_id, None)
        except asyncio.CancelledError:
            if not lost.is_set():
                raise
            work.uncancel()  # our own cancel: later awaits (the release) must not see it
            log.warning("job %s: lease lost, another node runs it now", job_id)
        except (BoardError, StoreError, Paused) as exc:
            wait = self._back_off(job_id)
            log.warning(
                "job %s paused (%s); it resumes from its last stored unit in %.0f s at the "
                "earliest",
                job_id,
                exc,
                wait,
            )
        except Exception as exc:  # a bug, or units lost from the store: fail, do not loop
            log.exception("job %s failed unexpectedly", job_id)
            with contextlib.suppress(BoardError, StoreError):
                job = await board.get(job_id)
                if job is not None and not job.finished_state:
                    error = ("internal_error", f"{type(exc).__name__}: {exc}")
                    await self._finish(job, board, self.store(), FAILED, error=error)
        finally:
            renew.cancel()
            runtime.users -= 1
            with contextlib.suppress(BoardError):
                await board.release(job_id, self.owner)

    async def _renew(
        self, job_id: str, board: Board, work: asyncio.Task[Any], lost: asyncio.Event
    ) -> None:
        """Renew the lease every third of its length; when it was lost (this node stalled
        past it and another took the job), stop the work."""
        lease = self.state.runtime.config.jobs.lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                held = await board.lease(job_id, self.owner, lease)
            except BoardError:
                continue  # Redis away for a moment: the next round tries again
            if not held:
                lost.set()
                work.cancel()
                return

    async def _run(self, job_id: str, board: Board, runtime: Runtime) -> None:
        job, text = await board.get(job_id), await board.text(job_id)
        store = self.store()
        if job is None:  # its record is gone: it must not hold a place in the queue
            await board.remove(job_id)
            return
        if job.finished_state:
            return
        if text is None:
            await self._finish(job, board, store, FAILED, error=("text_lost", "text is gone"))
            return
        try:
            route = await self._start(job, text, runtime, store)
        except JobFailed as exc:
            await self._finish(job, board, store, FAILED, error=(exc.code, str(exc)))
            return
        if not await self._save(job, board, store):
            return
        if await self._render(job, route, board, store, runtime):
            await self._complete(job, text, route, board, store)

    async def _save(self, job: Job, board: Board, store: ResultStore) -> bool:
        """Progress, as the lease holder.  Refused: the job was cancelled (its stored units
        are deleted here), finished elsewhere, or taken over by another node (left alone)."""
        if await board.save(job, self.owner):
            return True
        current = await board.get(job.id)
        if current is not None and current.state == CANCELLED:
            await asyncio.to_thread(store.delete_prefix, model.prefix(job.id))
            log.info("job %s: cancelled at unit %d", job.id, job.done)
        else:
            log.warning("job %s: no longer this node's (finished or taken over)", job.id)
        return False

    async def _start(self, job: Job, text: str, runtime: Runtime, store: ResultStore) -> Route:
        """Route the text (as at submission) and mark the job running here.  A route that
        differs from the stored units' (another lexicon, model or engine now) starts over."""
        synthesizer = runtime.synthesizer
        try:
            route = await asyncio.to_thread(
                synthesizer.route, job.request(text), False, None, bool(job.subtitles)
            )
        except EngineUnavailable as exc:
            raise Paused(f"engine unavailable: {exc}") from exc
        except (ValueError, LookupError, FrontendError, EngineError) as exc:
            raise JobFailed("invalid_request", str(exc)) from exc
        if route.degraded:  # one voice per file: wait for the voice asked for
            raise Paused(f"voice {job.voice or 'default'} is served degraded now")
        key = synthesizer.cache_key(route, runtime.config.cache.namespace)
        if job.done and job.key != key:
            log.warning("job %s: its audio would differ now; starting it over", job.id)
            await asyncio.to_thread(store.delete_prefix, model.prefix(job.id))
            job.done = job.samples = 0
        if job.done:
            self.state.metrics.jobs_resumed.inc()
            log.info("job %s: resuming at unit %d of %d", job.id, job.done, len(route.units))
        job.key, job.total, job.resolved = key, len(route.units), route.voice.id
        job.state, job.node, job.runs = RUNNING, self.state.node, job.runs + 1
        job.started = job.started or time.time()
        return route

    async def _render(
        self, job: Job, route: Route, board: Board, store: ResultStore, runtime: Runtime
    ) -> bool:
        """Render and store the units after ``job.done``, ``workers / jobs.concurrency`` at
        once; progress counts the units stored without a gap (where a resume starts).
        True when all are stored; False when handed back (drain) or cancelled."""
        width = max(1, runtime.pool.workers // runtime.config.jobs.concurrency)
        pending: dict[int, asyncio.Task[int]] = {}
        stored: dict[int, int] = {}  # unit → its samples, stored beyond the gapless prefix
        following = job.done
        try:
            while job.done < job.total:
                if self._stopping or self.state.draining:
                    log.info("job %s: handed back at unit %d of %d", job.id, job.done, job.total)
                    return False
                while len(pending) < width and following < job.total:
                    work = self._unit(route, job.id, following, runtime, store)
                    pending[following] = asyncio.get_running_loop().create_task(work)
                    following += 1
                finished, _ = await asyncio.wait(
                    pending.values(), return_when=asyncio.FIRST_COMPLETED
                )
                for index in [i for i, t in pending.items() if t in finished]:
                    stored[index] = pending.pop(index).result()  # a failure raises here
                before = job.done
                while job.done in stored:
                    job.samples += stored.pop(job.done)
                    job.done += 1
                self.state.metrics.job_units.inc(job.done - before)
                if not await self._save(job, board, store):
                    return False
            return True
        except JobFailed as exc:
            await self._finish(job, board, store, FAILED, error=(exc.code, str(exc)))
            return False
        finally:
            for task in pending.values():
                task.cancel()
            await asyncio.gather(*pending.values(), return_exceptions=True)

    async def _unit(
        self, route: Route, job_id: str, index: int, runtime: Runtime, store: ResultStore
    ) -> int:
        """Unit ``index`` rendered in the pool (waiting while it is full: live requests
        first) and stored; its length in samples."""
        frontend, pause = runtime.synthesizer.frontend, runtime.config.frontend.sentence_pause_ms
        on_unit = runtime.synthesizer.on_unit

        def render() -> segments.Segment:
            sentence = frontend.read([route.units[index]], whole=False)[0]
            pcm, timing = native_unit(route, index, sentence, 0, pause, on_unit)
            return segments.Segment(audio.to_int16(pcm), timing)

        tries = 0
        timeout = runtime.config.server.request_timeout_s
        while True:
            try:
                segment = await runtime.pool.run(render, deadline=time.monotonic() + timeout)
                break
            except QueueFull:
                await asyncio.sleep(0.2)  # a full pool: wait for a free worker
            except JobTimeout as exc:
                if exc.queued:  # no worker became free in time: wait on
                    continue
                tries += 1
                if tries >= UNIT_TRIES:
                    raise JobFailed("timeout", f"unit {index}: {exc}") from exc
            except EngineUnavailable as exc:
                raise Paused(f"engine unavailable: {exc}") from exc
            except EngineError as exc:
                tries += 1
                if tries >= UNIT_TRIES:
                    raise JobFailed("engine_error", str(exc)) from exc
                await asyncio.sleep(1.0)
            except (ValueError, LookupError) as exc:  # FrontendError is a ValueError
                raise JobFailed("invalid_request", str(exc)) from exc
        await asyncio.to_thread(store.put, model.segment_key(job_id, index), segment.pack())
        return segment.samples

    async def _complete(
        self, job: Job, text: str, route: Route, board: Board, store: ResultStore
    ) -> None:
        """Join the segments into the finished file (and subtitles), then mark it done."""
        path, samples, timing = await asyncio.to_thread(
            segments.assemble,
            segments.read_all(lambda i: store.get(model.segment_key(job.id, i)), job.total),
            route.voice.sample_rate,
            route.format,
            route.rate,
            self._spool(),
        )
        try:
            job.size = path.stat().st_size
            await asyncio.to_thread(store.put_file, model.audio_key(job.id), path)
        finally:
            path.unlink(missing_ok=True)  # stored (moved), or failed: no spool file stays
        if job.subtitles:
            kind = job.subtitles

            def render() -> bytes:
                stamps = timeline.timestamps(text, route.units, timing, route.ssml)
                return subs.subtitles(text, stamps, route.ssml, kind).encode()

            cues = await asyncio.to_thread(render)
            await asyncio.to_thread(store.put, model.subtitles_key(job.id), cues)
        await asyncio.to_thread(store.delete_prefix, f"jobs/{job.id}/seg/")
        job.audio_s, job.rate = samples / route.rate, route.rate
        job.content_type = route.format.content_type
        self.state.metrics.audio_seconds.labels(route.voice.id).inc(job.audio_s)
        await self._finish(job, board, store, DONE)

    def _spool(self) -> Path:
        """Where the finished file is written before it goes to the store: beside the local
        store's files (so storing it is a rename), never a RAM-backed /tmp."""
        return Path(self.state.runtime.config.jobs.directory) / "spool"

    async def _finish(
        self,
        job: Job,
        board: Board,
        store: ResultStore,
        state: str,
        error: tuple[str, str] | None = None,
    ) -> None:
        job.state, job.finished, job.node = state, time.time(), self.state.node
        if error is not None:
            job.error = {"code": error[0], "message": error[1]}
            log.error("job %s failed: %s", job.id, error[1])
        if not await self._save(job, board, store):
            return
        self.state.metrics.jobs_finished.labels(state).inc()
        log.info(
            "job %s %s: %.1f s of audio, %d units, %d run(s)",
            job.id,
            state,
            job.audio_s,
            job.total,
            job.runs,
        )
        await self._audit(job)

    async def _audit(self, job: Job) -> None:
        """The job's end, in the audit log beside the requests that made and fetched it."""
        runtime = self.state.runtime
        if runtime.audit is None:
            return
        record = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "request_id": job.request_id,
            "subject": job.subject,
            "route": "job",
            "job": job.id,
            "state": job.state,
            "node": self.state.node,
            "units": job.total,
            "runs": job.runs,
            "audio_s": round(job.audio_s, 3),
            **({"error": job.error["code"]} if job.error else {}),
        }
        try:
            await runtime.audit.write(record)
        except Exception as exc:
            log.error("audit log write failed for job %s: %s", job.id, exc)
            self.state.metrics.audit_failures.inc()
