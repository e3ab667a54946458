"""The HTTP daemon: aiohttp in front, the worker pool behind, systemd around it.

A request travels one straight path::

    middleware (request id, JSON errors, metrics) → handler → validation → pool → engine
        → encoder → response

Life cycle (``sambertd serve``): listen → warm the engines up in a worker → READY=1 → serve;
SIGHUP reloads config and lexicon without dropping requests; SIGTERM stops accepting, drains
in-flight work within ``server.drain_timeout_s`` and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import re
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sambertd import __version__, audio, openapi
from sambertd.audit import AuditLog
from sambertd.auth import (
    ADMIN,
    SYNTHESIZE,
    AuthError,
    Gate,
    RateLimiter,
    allowed,
    retry_after,
)
from sambertd.cache import Cache, Entry
from sambertd.config import Config, ConfigError, TlsConfig, load
from sambertd.engines import EngineError, UnknownVoiceError
from sambertd.frontend import FrontendError
from sambertd.frontend.lexicon import LexiconError
from sambertd.metrics import Metrics
from sambertd.notify import Notifier
from sambertd.pool import JobTimeout, QueueFull, WorkerPool
from sambertd.synth import EngineUnavailable, Plan, Route, Synthesizer
from sambertd.validation import ApiError, TtsCall, openai_call, tts_call

log = logging.getLogger("sambertd")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
STATE: web.AppKey[Daemon] = web.AppKey("daemon")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """``{"error": {"code", "message"}}``.  A message may echo client input with lone
    surrogates: they leave as JSON ``\\udXXX`` escapes instead of failing to encode."""
    body = json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)
    return web.Response(
        status=status,
        body=body.encode("utf-8", "backslashreplace"),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


class Daemon:
    """Shared state of one daemon process: config, synthesizer, pool, metrics, lifecycle."""

    def __init__(
        self, config: Config, config_path: str | None = None, synthesizer: Synthesizer | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.synthesizer = synthesizer or Synthesizer(config)
        self.pool = WorkerPool(config.server.worker_count(), config.server.queue_size)
        self.metrics = Metrics()
        self.cache = Cache(config.cache, self.metrics)
        self.gate = Gate(config.auth, self.cache.l2, config.cache.namespace)
        self.audit = (
            AuditLog(
                Path(config.audit.directory),
                fsync_interval_s=config.audit.fsync_interval_s,
                retention_days=config.audit.retention_days,
                journal=config.audit.journal,
            )
            if config.audit.enabled
            else None
        )
        self.metrics.cache_up.set_function(lambda: 1.0 if self.cache.l2.state == "ok" else 0.0)
        self.notifier = Notifier()
        self.warm = False
        self.tls: ssl.SSLContext | None = None
        self.node = config.server.node_name or socket.gethostname()
        self.draining = False
        self.served = 0
        self.active = 0  # HTTP requests inside a synthesis handler (incl. streams)
        self.metrics.bind(
            lambda: self.pool.depth,
            lambda: self.pool.in_flight,
            lambda: 1.0 if self.readiness()[0] else 0.0,
            lambda: self.pool.stats.cancelled,
        )

    # -- health ---------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """What /ready (and so keepalived) sees: warm, not draining, workers not wedged, and
        the preferred engine serving.  "degraded" (still 200) means a lower rung of the
        ladder or a CPU fallback is serving; with ``engine.degrade`` off a failed preferred
        engine makes this 503, so keepalived moves the VIP to the peer."""
        if self.draining:
            return False, "draining"
        if not self.warm:
            return False, "warming up"
        if self.pool.stuck(self.config.server.hang_timeout_s):
            return False, "worker hung"
        health = self.synthesizer.health()
        if all(v == "ok" for v in health.values()):
            return True, "ready"
        first = next(iter(health.values()))
        if not self.config.engine.degrade and not first.startswith(("ok", "degraded")):
            return False, "engine unavailable"
        return True, "degraded"

    def role(self) -> str:
        """The keepalived role (MASTER/BACKUP/FAULT) from failover/notify.sh, else
        "standalone".  Read on demand: a tiny file in /run, no watcher thread needed."""
        try:
            text = Path(self.config.server.role_file).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return "standalone"
        return text if text in ("MASTER", "BACKUP", "FAULT", "STOP") else "standalone"

    def status_line(self) -> str:
        state = self.readiness()[1]
        return (
            f"{state}; {self.role()}; in-flight {self.pool.in_flight}, queue {self.pool.depth}, "
            f"served {self.served}"
        )

    # -- synthesis ------------------------------------------------------------------------
    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking work in the pool, mapping pool refusals onto HTTP errors."""
        try:
            return await self.pool.run(fn, *args, timeout=self.config.server.request_timeout_s)
        except QueueFull:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(
                429, "busy", "all workers are busy and the queue is full", {"Retry-After": "1"}
            ) from None
        except JobTimeout:
            self.metrics.rejected.labels("timeout").inc()
            raise ApiError(
                503, "timeout", "synthesis did not finish in time", {"Retry-After": "1"}
            ) from None

    async def synthesize(self, http: web.Request, call: TtsCall) -> web.StreamResponse:
        """route → cache → (single-flight) synthesis → response."""
        if self.draining or not self.warm:
            raise ApiError(503, "not_ready", self.readiness()[1], {"Retry-After": "2"})
        self.active += 1
        r = call.request
        http["audit"] = {
            "text": r.text,
            "voice": r.voice or None,
            "emotion": r.emotion,
            "format": r.format,
        }
        try:
            route = await self._normalize(self.synthesizer.route(call.request))
            http["audit"]["voice"] = route.voice.id
            key = self.synthesizer.cache_key(route, self.config.cache.namespace)
            hit = await self.cache.get(key)
            if hit is not None:
                http["audit"].update(cache=hit[1], audio_s=round(hit[0].duration, 3))
                return self._respond(hit[0], hit[1], route.degraded)
            if call.stream:
                return await self._stream(http, route, key)
            entry, shared = await self.cache.single_flight(key, lambda: self._produce(route))
            source = "shared" if shared else "miss"
            http["audit"].update(cache=source, audio_s=round(entry.duration, 3))
            return self._respond(entry, source, route.degraded)
        finally:
            self.active -= 1
            self.served += 1

    async def _normalize(self, route: Route) -> Route:
        """Normalization is regex work: on the loop for short texts, in a thread for long."""
        if len(route.request.text) <= 500:
            return self.synthesizer.normalize(route)
        return await asyncio.to_thread(self.synthesizer.normalize, route)

    async def _produce(self, route: Route) -> Entry:
        started = time.perf_counter()
        plan: Plan = await self.run(self.synthesizer.plan, route)
        result = await self.run(self.synthesizer.render_plan, plan)
        self._account(plan, result.duration, time.perf_counter() - started)
        # A fallback taken mid-request is served marked degraded and never filed under the
        # preferred voice's key.  (A degraded *route* is keyed by the fallback voice.)
        return Entry.from_result(
            result,
            degraded=result.degraded and not route.degraded,
            cacheable=result.degraded == route.degraded,
        )

    def _respond(self, entry: Entry, cache: str, degraded: bool) -> web.Response:
        headers = {
            "X-Audio-Duration": f"{entry.duration:.3f}",
            "X-Voice": entry.voice,
            "X-Sample-Rate": str(entry.sample_rate),
            "X-Cache": cache,
            **({"X-Degraded": "1"} if degraded or entry.degraded else {}),
        }
        return web.Response(body=entry.audio, content_type=entry.content_type, headers=headers)

    async def _stream(self, http: web.Request, route: Route, key: str) -> web.StreamResponse:
        """One chunk per sentence; the first leaves as soon as sentence one is synthesized.
        Each sentence is its own pool job, so a client that leaves frees the queue at once.
        Once complete, the whole audio is cached like any other response."""
        started = time.perf_counter()
        plan: Plan = await self.run(self.synthesizer.plan, route, True)
        response = web.StreamResponse(
            headers={
                "Content-Type": plan.format.content_type,
                "X-Voice": plan.voice.id,
                "X-Sample-Rate": str(plan.rate),
                "X-Cache": "miss",
                **({"X-Degraded": "1"} if plan.degraded else {}),
            }
        )
        response.enable_chunked_encoding()
        total, pcm = 0.0, bytearray()
        for i in range(len(plan.sentences)):
            chunk, seconds = await self.run(plan.chunk, i)
            if i == 0:
                await response.prepare(http)
                if plan.format.name == "wav":
                    await response.write(audio.wav_stream_header(plan.rate))
                self.metrics.first_chunk.observe(time.perf_counter() - started)
            await response.write(chunk)
            pcm += chunk
            total += seconds
        await response.write_eof()
        self._account(plan, total, time.perf_counter() - started)
        http["audit"].update(cache="miss", audio_s=round(total, 3))
        body = (
            audio.wav_from_int16(bytes(pcm), plan.rate) if plan.format.name == "wav" else bytes(pcm)
        )
        await self.cache.put(
            key,
            Entry(
                audio=body,
                content_type=plan.format.content_type,
                sample_rate=plan.rate,
                duration=total,
                voice=plan.voice.id,
                engine=plan.rung.engine.name,
            ),
        )
        return response

    def _account(self, plan: Plan, seconds: float, elapsed: float) -> None:
        self.metrics.syntheses.labels(plan.rung.engine.name).inc()
        self.metrics.audio_seconds.labels(plan.voice.id).inc(seconds)
        if seconds > 0:
            self.metrics.rtf.observe(elapsed / seconds)

    async def audit_request(
        self, http: web.Request, route: str, status: int, started: float
    ) -> None:
        """One record per API request (allowed or refused); text as SHA-256 + length unless
        ``audit.include_text``.  Values go through JSON only: no log injection."""
        if self.audit is None:
            return
        info: dict[str, Any] = http.get("audit", {})
        text = info.pop("text", None)
        record = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "request_id": http.get("request_id"),
            "source_ip": http.get("client_ip"),
            "peer": http.remote,
            "subject": http.get("subject"),
            "route": route,
            "method": http.method,
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            **info,
        }
        if isinstance(text, str):
            record["text_sha256"] = hashlib.sha256(
                text.encode("utf-8", "surrogatepass")
            ).hexdigest()
            record["text_len"] = len(text)
            if self.config.audit.include_text:
                record["text"] = text
        await self.audit.write(record)

    # -- lifecycle ------------------------------------------------------------------------
    async def warm_up(self) -> None:
        started = time.perf_counter()
        await self.pool.run(self.synthesizer.warm_up)
        self.warm = True
        log.info(
            "engines warm in %.2f s: %s",
            time.perf_counter() - started,
            ", ".join(f"{e.name} ({e.model_version})" for e in self.synthesizer.engines),
        )

    async def reload(self) -> None:
        """SIGHUP: build a new synthesizer, access gate and certificate from the config file
        off the loop, then swap.  Requests already planned keep the old ones; a bad config,
        key or certificate keeps the running configuration and says why."""
        self.notifier.reloading()
        try:
            config = load(self.config_path)
            fresh = Synthesizer(config)
            gate = Gate(config.auth, self.cache.l2, config.cache.namespace)
            if self.tls is not None and config.tls.enabled:
                load_tls(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), config.tls)  # check first
            await self.pool.run(fresh.warm_up)
        except (ConfigError, LexiconError, EngineError, OSError, ValueError, ssl.SSLError) as exc:
            self.metrics.reloads.labels("failed").inc()
            log.error("reload failed, keeping the running configuration: %s", exc)
        else:
            self.config, self.synthesizer, self.gate = config, fresh, gate
            if self.tls is not None and config.tls.enabled:
                load_tls(self.tls, config.tls)
            self.metrics.reloads.labels("ok").inc()
            log.info(
                "reloaded configuration from %s (lexicon %d entries)",
                config.source,
                len(fresh.frontend.lexicon),
            )
        self.notifier.ready(self.status_line())

    async def drain(self) -> None:
        """Stop taking work and wait (bounded) for what is in flight."""
        self.draining = True
        self.notifier.stopping("draining")
        log.info("draining: %d request(s) in flight", self.active)
        deadline = time.monotonic() + self.config.server.drain_timeout_s
        while (self.active or not self.pool.idle()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.active:
            log.warning("drain timeout: %d request(s) still in flight", self.active)

    async def watchdog(self) -> None:
        """Ping systemd only while a worker can prove it runs: when every worker is stuck in a
        synthesis past hang_timeout_s, or a probe cannot run, the pings stop and systemd
        restarts us (WatchdogSec=)."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            hung = self.pool.stuck(self.config.server.hang_timeout_s)
            alive = (not hung) and (not self.pool.idle() or await self.pool.probe(interval))
            if alive:
                self.notifier.watchdog()
            else:
                log.error("worker pool not responding: withholding watchdog ping")
            await asyncio.sleep(interval)

    async def status_loop(self) -> None:
        while True:
            self.notifier.status(self.status_line())
            await asyncio.sleep(self.config.server.status_interval_s)

    async def health_loop(self) -> None:
        """Let engines re-check themselves (a GPU probe) now and then, in a worker."""
        while True:
            await asyncio.sleep(self.config.engine.health_interval_s)
            for engine in self.synthesizer.engines:
                with contextlib.suppress(QueueFull, JobTimeout):  # busy: next round checks
                    await self.pool.run(engine.check_health, timeout=30)


# -- HTTP layer -----------------------------------------------------------------------------


ROUTE_SCOPES = {
    "/v1/tts": SYNTHESIZE,
    "/v1/audio/speech": SYNTHESIZE,
    "/v1/admin/reload": ADMIN,
    "/v1/admin/cache/purge": ADMIN,
}


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, access control, JSON errors for everything, metrics and the audit record."""
    daemon = request.app[STATE]
    rid = request.headers.get("X-Request-Id", "")
    rid = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    ip = daemon.gate.client(request.remote or "", request.headers.get("X-Forwarded-For"))
    request["client_ip"], request["request_id"] = ip, rid
    try:
        await _admit(request, daemon, ip, ROUTE_SCOPES.get(name))
        response = await handler(request)
    except AuthError as exc:
        response = error_response(
            exc.status,
            exc.code,
            exc.message,
            {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None,
        )
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        response = _http_error(exc)
    except (FrontendError, UnknownVoiceError, ValueError, EngineError) as exc:
        response = _domain_error(exc, daemon)
    except asyncio.CancelledError:
        daemon.metrics.requests.labels(name, "499").inc()  # client went away
        await daemon.audit_request(request, name, 499, started)
        raise
    if not response.prepared:
        response.headers["X-Request-Id"] = rid
        response.headers["X-Node"] = daemon.node
    daemon.metrics.requests.labels(name, str(response.status)).inc()
    daemon.metrics.latency.labels(name).observe(time.perf_counter() - started)
    if name in ROUTE_SCOPES:
        # Written (to the kernel) before the response completes: a crash cannot lose it.
        try:
            await daemon.audit_request(request, name, response.status, started)
        except Exception as exc:  # fail closed: no audit record, no answer
            log.error("audit log write failed: %s", exc)
            if response.prepared:
                raise
            response = error_response(
                503, "audit_unavailable", "the request could not be recorded; try again later"
            )
    return response


async def _admit(request: web.Request, daemon: Daemon, ip: str, scope: str | None) -> None:
    """Allowlist for every route; for API routes also per-IP rate, token, per-subject rate —
    all before any work is done."""
    gate = daemon.gate
    if not allowed(ip, gate.allow):
        raise AuthError(403, "forbidden_ip", f"{ip} is not allowed")
    if scope is None:
        return
    await _limit(daemon, gate.per_ip, f"ip:{ip}", "rate_ip", "this address")
    principal = gate.authenticate(request.headers.get("Authorization"), ip, scope)
    request["subject"] = principal.subject
    await _limit(
        daemon, gate.per_subject, f"sub:{principal.subject}", "rate_subject", "this subject"
    )


async def _limit(daemon: Daemon, limiter: RateLimiter, key: str, reason: str, whose: str) -> None:
    """429 with Retry-After when ``key``'s token bucket is empty."""
    wait = await limiter.check(key)
    if wait:
        daemon.metrics.rejected.labels(reason).inc()
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for {whose}",
            {"Retry-After": retry_after(wait)},
        )


def _http_error(exc: web.HTTPException) -> web.Response:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return error_response(exc.status, codes.get(exc.status, "http_error"), exc.reason, headers)


def _domain_error(exc: Exception, daemon: Daemon) -> web.Response:
    if isinstance(exc, FrontendError):
        return error_response(413 if exc.code == "text_too_long" else 422, exc.code, str(exc))
    if isinstance(exc, UnknownVoiceError):
        status = 422 if "emotion" in str(exc) else 404
        return error_response(
            status, "unknown_voice" if status == 404 else "unknown_emotion", str(exc)
        )
    if isinstance(exc, EngineUnavailable):
        return error_response(503, "engine_unavailable", str(exc), {"Retry-After": "5"})
    if isinstance(exc, EngineError):
        log.error("engine error: %s", exc)
        daemon.metrics.engine_errors.labels("engine").inc()
        return error_response(
            503, "engine_error", "the speech engine failed; try again", {"Retry-After": "1"}
        )
    return error_response(422, "invalid_parameter", str(exc))


async def _json_body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    daemon = request.app[STATE]
    if (request.content_length or 0) > daemon.config.server.max_body_bytes:
        raise ApiError(
            413, "body_too_large", f"body over {daemon.config.server.max_body_bytes} bytes"
        )
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ApiError(400, "invalid_json", "JSON nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid UTF-8 JSON: {exc}") from None


def _tts_options(daemon: Daemon) -> dict[str, Any]:
    cfg = daemon.config
    return {
        "max_chars": cfg.server.max_request_chars,
        "default_format": cfg.audio.format,
        "default_rate": cfg.audio.sample_rate,
    }


async def tts_post(request: web.Request) -> web.StreamResponse:
    daemon = request.app[STATE]
    call = tts_call(await _json_body(request), **_tts_options(daemon))
    return await daemon.synthesize(request, call)


async def tts_get(request: web.Request) -> web.StreamResponse:
    """For IVR systems that can only fetch a URL: the same parameters in the query string."""
    daemon = request.app[STATE]
    query = {k: request.query.getone(k) for k in request.query}
    call = tts_call(query, from_query=True, **_tts_options(daemon))
    return await daemon.synthesize(request, call)


async def openai_speech(request: web.Request) -> web.StreamResponse:
    daemon = request.app[STATE]
    call = openai_call(await _json_body(request), max_chars=daemon.config.server.max_request_chars)
    return await daemon.synthesize(request, call)


async def voices(request: web.Request) -> web.Response:
    daemon = request.app[STATE]
    items = [
        {
            "id": v.id,
            "engine": v.engine,
            "language": v.language,
            "sample_rate": v.sample_rate,
            "sample_rates": list(audio.SAMPLE_RATES),
            "emotions": list(v.emotions),
            "description": v.description,
            "default": v.id == daemon.config.engine.default_voice,
        }
        for v in daemon.synthesizer.voices()
    ]
    return web.json_response({"voices": items})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive", "version": __version__})


async def ready(request: web.Request) -> web.Response:
    daemon = request.app[STATE]
    ok, state = daemon.readiness()
    body = {
        "status": state,
        "in_flight": daemon.pool.in_flight,
        "queue": daemon.pool.depth,
        "engines": daemon.synthesizer.health(),
        "cache": daemon.cache.l2.state,
        "role": daemon.role(),
    }
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[STATE]
    role = daemon.role()
    for name in ("MASTER", "BACKUP", "FAULT", "STOP", "standalone"):
        daemon.metrics.role.labels(name).set(1.0 if name == role else 0.0)
    body = daemon.metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.spec(request.app[STATE].config))


async def admin_reload(request: web.Request) -> web.Response:
    """Same as SIGHUP / systemctl reload, for operators who only have the API."""
    await request.app[STATE].reload()
    return web.json_response({"status": request.app[STATE].readiness()[1]})


async def admin_cache_purge(request: web.Request) -> web.Response:
    """Empty L1 here and this namespace in Redis (so both nodes of the pair)."""
    daemon = request.app[STATE]
    daemon.cache.l1.clear()
    purged = 0
    if daemon.cache.l2.enabled:
        try:
            purged = (await daemon.cache.l2.scan(delete=True))[0]
        except Exception as exc:  # Redis away: say so, L1 is still cleared
            raise ApiError(503, "cache_unavailable", f"Redis: {exc}") from None
    return web.json_response({"purged": purged})


def tls_context(config: TlsConfig) -> ssl.SSLContext | None:
    """TLS 1.2+ with forward-secret AEAD ciphers only; client certificates when a CA is set.
    Re-loading the same context object on SIGHUP rotates the certificate for new
    connections without a restart."""
    if not config.enabled:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    load_tls(context, config)
    return context


def load_tls(context: ssl.SSLContext, config: TlsConfig) -> None:
    context.load_cert_chain(config.cert_file, config.key_file)
    if config.client_ca_file:
        context.load_verify_locations(config.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED


def create_app(daemon: Daemon) -> web.Application:
    app = web.Application(
        middlewares=[middleware], client_max_size=daemon.config.server.max_body_bytes
    )
    app[STATE] = daemon
    app.router.add_post("/v1/tts", tts_post)
    app.router.add_get("/v1/tts", tts_get, allow_head=False)
    app.router.add_post("/v1/audio/speech", openai_speech)
    app.router.add_get("/v1/voices", voices, allow_head=False)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/openapi.json", openapi_json, allow_head=False)
    app.router.add_post("/v1/admin/reload", admin_reload)
    app.router.add_post("/v1/admin/cache/purge", admin_cache_purge)
    return app


# -- process ----------------------------------------------------------------------------


async def serve(config: Config, config_path: str | None = None) -> None:
    """Run until SIGTERM/SIGINT; READY=1 only once the engines are warm."""
    started = time.perf_counter()
    daemon = Daemon(config, config_path)
    runner = web.AppRunner(create_app(daemon), handler_cancellation=True, access_log=None)
    await runner.setup()
    if daemon.audit is not None:
        await daemon.audit.start()  # before the first request can arrive
    context = tls_context(config.tls)
    daemon.tls = context
    site = web.TCPSite(
        runner, config.server.host, config.server.port, backlog=512, ssl_context=context
    )
    await site.start()
    if not config.auth.enabled:
        log.warning(
            "AUTHENTICATION IS OFF: any local process may call the API "
            "(allowed only because %s is a loopback address)",
            config.server.host,
        )
    log.info(
        "sambertd %s listening on %s:%d (%d worker(s), queue %d)",
        __version__,
        config.server.host,
        config.server.port,
        daemon.pool.workers,
        daemon.pool.queue_size,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: set[asyncio.Task[None]] = set()
    loop.add_signal_handler(signal.SIGHUP, lambda: tasks.add(loop.create_task(daemon.reload())))
    await daemon.warm_up()
    daemon.notifier.ready(daemon.status_line())
    log.info("ready in %.2f s", time.perf_counter() - started)
    background = [
        loop.create_task(daemon.watchdog()),
        loop.create_task(daemon.status_loop()),
        loop.create_task(daemon.health_loop()),
    ]
    await stop.wait()
    await daemon.drain()
    for task in [*background, *tasks]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.cleanup()
    await daemon.cache.close()
    if daemon.audit is not None:
        await daemon.audit.close()
    daemon.pool.shutdown()
    log.info("stopped after serving %d request(s)", daemon.served)
