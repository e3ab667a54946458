"""Prometheus metrics, in a registry of our own (no global state shared with libraries)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 6.0, 12.0, 30.0)
RTF_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)


# What sambertd_engine_state reports: Synthesizer.health()'s first word (breaker.py's states
# other than "closed", which health() says as ok/degraded).
ENGINE_STATES = ("ok", "degraded", "open", "half-open")


class Metrics:
    """Everything /metrics exposes; gauges read live values through callbacks."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "sambertd_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "sambertd_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_chunk = Histogram(
            "sambertd_stream_first_chunk_seconds",
            "Time to the first audio chunk of a stream",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "sambertd_audio_seconds", "Audio produced, in seconds", ["voice"], registry=r
        )
        self.rtf = Histogram(
            "sambertd_synthesis_rtf",
            "Real-time factor (synthesis time / audio time) per request",
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.engine_errors = Counter(
            "sambertd_engine_errors", "Synthesis failures", ["engine"], registry=r
        )
        self.rejected = Counter(
            "sambertd_rejected", "Requests refused before synthesis", ["reason"], registry=r
        )
        self.queue_depth = Gauge("sambertd_queue_depth", "Jobs waiting for a worker", registry=r)
        self.in_flight = Gauge("sambertd_in_flight", "Jobs being synthesized", registry=r)
        self.ready = Gauge("sambertd_ready", "1 when /ready answers 200", registry=r)
        self.cancelled = Gauge(
            "sambertd_queue_cancelled_jobs",
            "Queued jobs dropped because their client went away",
            registry=r,
        )
        self.stopped = Gauge(
            "sambertd_jobs_stopped",
            "Running jobs stopped between units: their request timed out or went away",
            registry=r,
        )
        self.syntheses = Counter(
            "sambertd_syntheses", "Texts actually synthesized (not cached)", ["engine"], registry=r
        )
        self.cache_lookups = Counter(
            "sambertd_cache_lookups", "Cache lookups by result", ["result"], registry=r
        )
        self.cache_shared = Counter(
            "sambertd_cache_singleflight_shared",
            "Requests that shared another request's synthesis",
            registry=r,
        )
        self.cache_errors = Counter(
            "sambertd_cache_redis_errors", "Redis errors and timeouts", registry=r
        )
        self.cache_up = Gauge(
            "sambertd_cache_redis_up", "1 when Redis is in use, 0 when down or disabled", registry=r
        )
        self.role = Gauge(
            "sambertd_vrrp_role", "1 for this node's current keepalived role", ["role"], registry=r
        )
        self.reloads = Counter(
            "sambertd_reloads",
            "Configuration reloads by result (ok, failed, refused)",
            ["result"],
            registry=r,
        )
        self.units = Counter(
            "sambertd_units_synthesized",
            "Synthesis units (sentences or clauses) the engines rendered",
            ["engine"],
            registry=r,
        )
        self.streams_aborted = Counter(
            "sambertd_streams_aborted",
            "Streams cut after their 200 header, by the error that cut them",
            ["reason"],
            registry=r,
        )
        self.workers = Gauge("sambertd_workers", "Concurrent syntheses allowed", registry=r)
        self.streams = Gauge("sambertd_streams_active", "Streams being sent", registry=r)
        self.engine_state = Gauge(
            "sambertd_engine_state",
            "1 for each engine's current state: ok, degraded (e.g. a CPU fallback), or its "
            "breaker open / half-open (the ladder serves its voices)",
            ["engine", "state"],
            registry=r,
        )
        self.audit_failures = Counter(
            "sambertd_audit_write_failures",
            "API answers withheld (503) or streams cut because their audit record failed",
            registry=r,
        )
        self._jobs(r)

    def _jobs(self, r: CollectorRegistry) -> None:
        self.jobs_submitted = Counter(
            "sambertd_jobs_submitted", "Jobs accepted by POST /v1/jobs", registry=r
        )
        self.jobs_finished = Counter(
            "sambertd_jobs_finished",
            "Jobs this node finished, by final state (done, failed, cancelled)",
            ["state"],
            registry=r,
        )
        self.jobs_resumed = Counter(
            "sambertd_jobs_resumed",
            "Job runs that resumed after units another run had stored (a takeover, a restart)",
            registry=r,
        )
        self.job_units = Counter(
            "sambertd_job_units", "Units of jobs rendered and stored", registry=r
        )
        self.jobs_running = Gauge("sambertd_jobs_running", "Jobs this node runs now", registry=r)

    def set_engines(self, health: dict[str, str]) -> None:
        """From ``Synthesizer.health()`` ("ok", "degraded: why", "open: why"), at each
        scrape: one series per engine and state, 1 for the current one."""
        for engine, text in health.items():
            current = text.split(":", 1)[0]
            for name in ENGINE_STATES:
                self.engine_state.labels(engine, name).set(1.0 if name == current else 0.0)

    def bind(
        self,
        *,
        queue_depth: Callable[[], float],
        in_flight: Callable[[], float],
        ready: Callable[[], float],
        cancelled: Callable[[], float],
        stopped: Callable[[], float],
        workers: Callable[[], float],
        streams: Callable[[], float],
    ) -> None:
        self.cancelled.set_function(cancelled)
        self.stopped.set_function(stopped)
        self.queue_depth.set_function(queue_depth)
        self.in_flight.set_function(in_flight)
        self.ready.set_function(ready)
        self.workers.set_function(workers)
        self.streams.set_function(streams)

    def render(self) -> bytes:
        return generate_latest(self.registry)
