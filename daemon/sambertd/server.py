"""The daemon's life cycle, in named steps: startup → serve → drain → shutdown.

* **startup**: bind the port (so a port in use fails at once), build the runtime — engines
  loaded and warm — then serve and send READY=1.
* **serve**: until SIGTERM/SIGINT.  Background loops ping the watchdog, update STATUS, let
  engines re-check their GPU and pick up cache purges made on the peer.  SIGHUP (or
  ``POST /v1/admin/reload``) builds a complete new runtime from the config file and swaps it
  in whole, or keeps the running one and says why; READY=1 follows RELOADING=1 either way.
* **drain**: start no new work (/ready 503; new requests wait, then get 503) and wait,
  bounded by ``drain_timeout_s``, for the requests in flight; meanwhile /ready tells
  keepalived to keep the VIP here, so their connections are not reset (``drain``).
* **shutdown**: stop the loops, close the connections, the cache, the audit log and the
  pools — whatever happened before, each step runs.

Signal handlers only set a flag or schedule a task.  The request path is in ``routes.py`` and
``service.py``; everything built from the configuration is in ``runtime.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from sambertd import __version__, runtime
from sambertd.config import Config
from sambertd.jobs import api as jobs_api
from sambertd.jobs.runner import Jobs
from sambertd.listener import Listener, bind, probe_path
from sambertd.metrics import Metrics
from sambertd.notify import Notifier
from sambertd.pool import JobTimeout, QueueFull
from sambertd.routes import create_app, create_probe_app
from sambertd.state import ReloadOutcome, State

log = logging.getLogger("sambertd")
EPOCH_POLL_S = 1.0  # how often a node looks for cache purges made on its peer


class Server:
    """One daemon process: its state, its listener and its background tasks."""

    def __init__(self, config: Config, load_config: Callable[[], Config]) -> None:
        """``load_config`` reads the configuration again (file, environment and command-line
        overrides, as at start) for a reload."""
        self.load_config = load_config
        self.metrics = Metrics()
        self.notifier = Notifier()
        self._first = config
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.state: State | None = None
        self._listener: Listener | None = None
        self._probe: web.AppRunner | None = None
        self.jobs: Jobs | None = None

    # -- startup -------------------------------------------------------------------------------
    async def startup(self) -> tuple[web.AppRunner, Listener]:
        """Bind first (a port in use fails at once), then load and warm the engines; only
        then accept connections (those that arrive meanwhile wait in the backlog) and send
        READY=1."""
        started = time.perf_counter()
        config = self._first
        listener = Listener(bind(config.server.host, config.server.port))
        try:
            built = await asyncio.to_thread(runtime.build, config, self.metrics, None, self._unit)
        except BaseException:
            await listener.close()
            raise
        await built.cache.sync_epoch()  # the purge epoch, before L1 takes anything
        state = self.state = State(built, self.metrics)
        state.reload = self.reload
        self._bind_metrics(state)
        self.jobs = Jobs(state)
        app = create_app(state)
        jobs_api.install(app, self.jobs)
        await self._check_store()
        app_runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await app_runner.setup()
        listener.runner = app_runner
        self._listener = listener
        await listener.serve(built.tls)
        await self._serve_probe(state)
        if not config.auth.enabled:
            log.warning(
                "AUTHENTICATION IS OFF: any local process may call the API "
                "(allowed only because %s is a loopback address)",
                config.server.host,
            )
        log.info(
            "sambertd %s listening on %s:%d (%d worker(s), queue %d); engines: %s",
            __version__,
            config.server.host,
            config.server.port,
            built.pool.workers,
            built.pool.queue_size,
            ", ".join(f"{e.name} ({e.model_version})" for e in built.synthesizer.engines),
        )
        self.notifier.ready(state.status_line())
        log.info("ready in %.2f s", time.perf_counter() - started)
        return app_runner, listener

    async def _check_store(self) -> None:
        """A result store that cannot be used is logged at start (speech still works; jobs
        wait until it can be written)."""
        jobs = self.jobs
        assert jobs is not None
        if not self._first.jobs.enabled:
            return
        try:  # the store is built in the thread too: boto3 reads its data files
            await asyncio.to_thread(lambda: jobs.store().check())
        except Exception as exc:  # StoreError, or a client library's refusal of a setting
            log.error("jobs: result store unusable, jobs will wait: %s", exc)

    async def _serve_probe(self, state: State) -> None:
        """The local probe socket (``listener.probe_path``), when there is a runtime
        directory.  A stale socket of a dead daemon is replaced."""
        path = probe_path()
        if path is None:
            return
        runner = self._probe = web.AppRunner(create_probe_app(state), access_log=None)
        await runner.setup()
        await web.UnixSite(runner, str(path)).start()
        path.chmod(0o600)
        log.info("local probes (/ready, /health) on %s", path)

    def _unit(self, engine: str) -> None:
        self.metrics.units.labels(engine).inc()

    def _bind_metrics(self, state: State) -> None:
        """Gauges read the *current* runtime each scrape, so a reload is seen at once."""
        m = self.metrics
        m.bind(
            queue_depth=lambda: sum(r.pool.depth for r in state.runtimes()),
            in_flight=lambda: sum(r.pool.in_flight for r in state.runtimes()),
            ready=lambda: 1.0 if state.readiness()[0] else 0.0,
            cancelled=lambda: state.runtime.pool.stats.cancelled,
            stopped=lambda: sum(r.pool.stats.stopped for r in state.runtimes()),
            workers=lambda: state.runtime.pool.workers,
            streams=lambda: state.streams,
        )
        m.jobs_running.set_function(lambda: self.jobs.running if self.jobs else 0)
        m.cache_up.set_function(lambda: 1.0 if state.runtime.cache.l2.state == "ok" else 0.0)

    # -- serve ---------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> ReloadOutcome:
        """Build a complete new runtime from the config file, off the event loop, and swap
        it in; or keep the running one and say why.  One reload at a time; a reload asked
        for while one runs happens after it (and reads the file then)."""
        assert self.state is not None
        state = self.state
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                outcome = await self._rebuild(state)
            finally:
                self.notifier.ready(state.status_line())
        return outcome

    async def _rebuild(self, state: State) -> ReloadOutcome:
        old = state.runtime
        try:
            config = await asyncio.to_thread(self.load_config)
            restart = runtime.restart_needed(old.config, config)
            if restart:
                self.metrics.reloads.labels("refused").inc()
                message = (
                    f"{', '.join(restart)} changed: that needs `systemctl restart sambertd`; "
                    "the running configuration is kept"
                )
                log.error("reload refused: %s", message)
                return ReloadOutcome(False, message, restart_needed=True)
            fresh = await asyncio.to_thread(runtime.build, config, self.metrics, old, self._unit)
        except Exception as exc:  # anything at all: the running configuration stays
            self.metrics.reloads.labels("failed").inc()
            log.error("reload failed, keeping the running configuration: %s", exc)
            return ReloadOutcome(False, f"reload failed: {exc}")
        if fresh.cache is not old.cache:
            await fresh.cache.sync_epoch()
        if fresh.tls is not None or old.tls is not None:
            assert self._listener is not None
            await self._listener.serve(fresh.tls)
        state.runtime = fresh
        state.retiring.append(old)
        self._spawn(self._retire(old))
        self.metrics.reloads.labels("ok").inc()
        log.info(
            "reloaded configuration from %s (lexicon %d entries, %d worker(s))",
            config.source,
            len(fresh.synthesizer.frontend.lexicon),
            fresh.pool.workers,
        )
        return ReloadOutcome(True, "reloaded")

    async def _retire(self, old: runtime.Runtime) -> None:
        assert self.state is not None
        state = self.state
        try:
            await runtime.retire(old, lambda: [r for r in state.runtimes() if r is not old])
        finally:
            state.retiring.remove(old)

    async def _every(
        self, seconds: Callable[[], float], step: Callable[[], Awaitable[None]], wait: bool
    ) -> None:
        """Run ``step`` every ``seconds()`` (read each round: a reload may change it) until
        cancelled; ``wait`` first if asked.  A failing step is logged and the loop goes on:
        a loop that died would silently stop, say, the watchdog pings."""
        while True:
            if wait:
                await asyncio.sleep(seconds())
            try:
                await step()
            except Exception:
                log.exception("background step %s failed", step.__name__)
            wait = True

    async def watchdog_step(self) -> None:
        """Ping systemd only while a worker can prove it runs: when a synthesis has made no
        progress for hang_timeout_s, or a probe cannot run, the pings stop and systemd
        restarts us (WatchdogSec=)."""
        assert self.state is not None and self.notifier.watchdog_interval is not None
        pool = self.state.runtime.pool
        probe = self.notifier.watchdog_interval
        if not self.state.hung() and (not pool.idle() or await pool.probe(probe)):
            self.notifier.watchdog()
        else:
            log.error("worker pool not responding: withholding watchdog ping")

    async def status_step(self) -> None:
        assert self.state is not None
        self.notifier.status(self.state.status_line())

    async def health_step(self) -> None:
        """Let engines re-check themselves (a GPU probe) now and then, in a worker."""
        assert self.state is not None
        current = self.state.runtime
        for engine in current.synthesizer.engines:
            with contextlib.suppress(QueueFull, JobTimeout):  # busy: the next round checks
                await current.pool.run(engine.check_health, deadline=time.monotonic() + 30)

    async def epoch_step(self) -> None:
        """Empty L1 soon after a purge made on the peer (see ``Cache.sync_epoch``)."""
        assert self.state is not None
        await self.state.runtime.cache.sync_epoch()

    def _start_loops(self) -> None:
        state = self.state
        assert state is not None
        interval = self.notifier.watchdog_interval
        if interval is not None:
            self._spawn(self._every(lambda: interval, self.watchdog_step, wait=False))
        self._spawn(
            self._every(
                lambda: state.runtime.config.server.status_interval_s, self.status_step, wait=True
            )
        )
        self._spawn(self._every(lambda: EPOCH_POLL_S, self.epoch_step, wait=True))
        assert self.jobs is not None
        self._spawn(self.jobs.loop())
        self._spawn(
            self._every(
                lambda: state.runtime.config.engine.health_interval_s, self.health_step, wait=True
            )
        )

    # -- drain and shutdown ----------------------------------------------------------------------
    async def drain(self) -> None:
        """Stop taking work and wait (bounded) for what is in flight.

        Behind the VIP (README, "The HA pair"): while requests are in flight, /ready is 503
        but says ``hold_vip``, so the track script keeps the VIP here — moving it would
        reset those connections.  New requests are parked, not started.  Once the
        in-flight work is done (or ``drain_timeout_s`` has passed, or a worker hangs),
        the parked requests get 503 with Retry-After, /ready stops holding the VIP, and
        the track script's next run (within a second) gives it to the peer, where the
        clients' retries land."""
        assert self.state is not None
        state = self.state
        deadline = time.monotonic() + state.runtime.config.server.drain_timeout_s
        state.drain_deadline = deadline
        state.draining = True
        self.notifier.stopping("draining")
        log.info("draining: %d request(s) in flight", state.active)

        def busy() -> bool:
            jobs = self.jobs.running if self.jobs else 0  # they stop after their current unit
            return bool(state.active or jobs) or not all(r.pool.idle() for r in state.runtimes())

        try:
            while busy() and time.monotonic() < deadline and not state.hung():
                await asyncio.sleep(0.05)
            if state.active:
                log.warning("drain timeout: %d request(s) still in flight", state.active)
        finally:
            state.drained.set()
        parked = state.parked
        # The parked requests' 503s leave now (milliseconds); let them go before closing.
        until = time.monotonic() + 2.0
        while state.parked and time.monotonic() < until:
            await asyncio.sleep(0.02)
        log.info("drained; %d parked request(s) told to retry elsewhere", parked)

    async def shutdown(self, app_runner: web.AppRunner, listener: Listener) -> None:
        """Every step runs, whatever the one before it did."""
        for task in list(self._tasks):
            task.cancel()
        for result in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("background task ended with %s: %s", type(result).__name__, result)
        steps = [listener.close(), app_runner.cleanup()]
        if self.jobs is not None:
            steps.insert(0, self.jobs.stop())
        if self._probe is not None:
            steps.append(self._close_probe(self._probe))
        if self.state is not None:
            steps += [runtime.close(r) for r in self.state.runtimes()]
        for step in steps:
            try:
                await step
            except Exception as exc:
                log.error("shutdown step failed: %s: %s", type(exc).__name__, exc)

    async def _close_probe(self, runner: web.AppRunner) -> None:
        await runner.cleanup()
        path = probe_path()
        if path is not None:
            path.unlink(missing_ok=True)

    async def run(self) -> None:
        """startup → serve → drain → shutdown."""
        app_runner, listener = await self.startup()
        assert self.state is not None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        self._start_loops()
        try:
            await stop.wait()
            await self.drain()
        finally:
            await self.shutdown(app_runner, listener)
        log.info("stopped after serving %d request(s)", self.state.served)


async def serve(config: Config, load_config: Callable[[], Config]) -> None:
    """Run until SIGTERM/SIGINT; READY=1 only once the engines are warm.  ``load_config``
    reads the configuration again for a reload."""
    await Server(config, load_config).run()
