"""The HTTP layer: one middleware around every route, then small handlers.

The middleware is the outermost layer of a request and the only place that answers errors::

    request id → runtime → allowlist, rate, token → handler → error table → audit → response

It guarantees three things.  Every exception becomes a JSON answer (``errors.py``).  Every API
request leaves one audit record — written before the response completes, so a crash cannot
lose it, and if it cannot be written the request fails (fail closed).  And a stream that fails
after its 200 header is never followed by a second response: the connection is closed without
the final chunk, which every HTTP client reports as an incomplete body.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sambertd import __version__, audio, console, openapi, service, sse
from sambertd.auth import (
    ADMIN,
    SYNTHESIZE,
    AuthError,
    RateLimiter,
    allowed,
    loopback,
    retry_after,
)
from sambertd.config import MAX_BODY_CEILING
from sambertd.errors import CLIENT_CLOSED, Failure, error_response, failure_for
from sambertd.runtime import Runtime
from sambertd.state import AUDIT, CLIENT_IP, REQUEST_ID, RUNTIME, STREAM, SUBJECT, State
from sambertd.validation import ApiError, openai_call, tts_call

log = logging.getLogger("sambertd")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE: web.AppKey[State] = web.AppKey("state")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PROBES = frozenset({"/ready", "/health"})  # open to the node itself, whatever `auth.allow` says
ROUTE_SCOPES = {
    "/v1/tts": SYNTHESIZE,
    "/v1/audio/speech": SYNTHESIZE,
    "/v1/jobs": SYNTHESIZE,
    "/v1/jobs/{id}": SYNTHESIZE,
    "/v1/jobs/{id}/audio": SYNTHESIZE,
    "/v1/jobs/{id}/subtitles": SYNTHESIZE,
    "/v1/admin/reload": ADMIN,
    "/v1/admin/cache/purge": ADMIN,
}


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pin the request to the current runtime for its whole life (a reload meanwhile does
    not mix two configurations into one request), then serve it."""
    state = request.app[STATE]
    runtime = state.runtime
    runtime.users += 1
    try:
        return await _serve(request, handler, state, runtime)
    finally:
        runtime.users -= 1


async def _serve(
    request: web.Request, handler: Handler, state: State, runtime: Runtime
) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")
    request[REQUEST_ID] = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
    request[RUNTIME] = runtime
    resource = request.match_info.route.resource
    name = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    ip = runtime.gate.client(request.remote or "", request.headers.get("X-Forwarded-For"))
    request[CLIENT_IP] = ip
    try:
        await _admit(request, state, runtime, ip, ROUTE_SCOPES.get(name))
        response = await handler(request)
    except asyncio.CancelledError:  # the client went away; aiohttp cancelled the handler
        stream = request.get(STREAM)
        status = CLIENT_CLOSED
        if stream is not None and stream.prepared:
            request.get(AUDIT, {})["aborted"] = True
            status = stream.status
        await _record(request, state, name, status, started, "client_closed")
        raise
    except Exception as exc:
        failure = failure_for(exc, request, state.metrics)
        stream = request.get(STREAM)
        if stream is not None and stream.prepared:
            return await _abort(request, state, name, stream, failure, started)
        response = error_response(failure, request[REQUEST_ID])
        error: str | None = failure.code
    else:
        error = None
    try:
        if name in ROUTE_SCOPES:
            await audit(request, name, response.status, started, error)
    except Exception as exc:  # fail closed: no audit record, no answer
        log.error("audit log write failed: %s", exc)
        state.metrics.audit_failures.inc()
        if response.prepared:  # a finished stream: withhold its final chunk
            _cut(request)
        else:
            unavailable = Failure(
                503, "audit_unavailable", "the request could not be recorded; try again later"
            )
            response = error_response(unavailable, request[REQUEST_ID])
    _count(state, name, response.status, started)
    return response


async def _abort(
    request: web.Request,
    state: State,
    name: str,
    stream: web.StreamResponse,
    failure: Failure,
    started: float,
) -> web.StreamResponse:
    """A stream failed after its header: record it, then end the connection without the
    final chunk (the client sees an incomplete body, not a second response)."""
    log.warning(
        "stream %s aborted after its header: %s (%s)",
        request[REQUEST_ID],
        failure.code,
        failure.message,
    )
    state.metrics.streams_aborted.labels(failure.code).inc()
    request.get(AUDIT, {})["aborted"] = True  # status stays what the client was sent
    await _record(request, state, name, stream.status, started, failure.code)
    _cut(request)
    return stream


def _cut(request: web.Request) -> None:
    """Close the connection after what was written so far: no terminating chunk follows
    (aiohttp's own ``write_eof`` then fails quietly on the closing transport)."""
    if request.transport is not None:
        request.transport.close()


def _count(state: State, name: str, status: int, started: float) -> None:
    state.metrics.requests.labels(name, str(status)).inc()
    state.metrics.latency.labels(name).observe(time.perf_counter() - started)


async def _record(
    request: web.Request,
    state: State,
    name: str,
    status: int,
    started: float,
    error: str | None,
) -> None:
    """Metrics, and for API routes the audit record, of a request that ends badly anyway
    (cut or abandoned): a failing audit write cannot change its outcome."""
    _count(state, name, status, started)
    if name in ROUTE_SCOPES:
        with contextlib.suppress(Exception):
            await audit(request, name, status, started, error)


async def audit(
    http: web.Request, route: str, status: int, started: float, error: str | None
) -> None:
    """One record per API request (allowed or refused); text as SHA-256 + length unless
    ``audit.include_text``.  Values go through JSON only: no log injection."""
    runtime: Runtime = http[RUNTIME]
    if runtime.audit is None:
        return
    info: dict[str, Any] = dict(http.get(AUDIT, {}))
    text = info.pop("text", None)
    record = {
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        "request_id": http.get(REQUEST_ID),
        "source_ip": http.get(CLIENT_IP),
        "peer": http.remote,
        "subject": http.get(SUBJECT),
        "route": route,
        "method": http.method,
        "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        **({"error": error} if error else {}),
        **info,
    }
    if isinstance(text, str):
        record["text_sha256"] = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        record["text_len"] = len(text)
        if runtime.config.audit.include_text:
            record["text"] = text
    await runtime.audit.write(record)


async def _admit(
    request: web.Request, state: State, runtime: Runtime, ip: str, scope: str | None
) -> None:
    """Allowlist for every route; for API routes also per-IP rate, token, per-subject rate —
    all before any work is done."""
    gate = runtime.gate
    if not allowed(ip, gate.allow) and not _local_probe(request, ip):
        raise AuthError(403, "forbidden_ip", f"{ip} is not allowed")
    if scope is None:
        return
    await _limit(state, gate.per_ip, f"ip:{ip}", "rate_ip", "this address")
    principal = gate.authenticate(request.headers.get("Authorization"), ip, scope)
    request[SUBJECT] = principal.subject
    await _limit(
        state, gate.per_subject, f"sub:{principal.subject}", "rate_subject", "this subject"
    )


def _local_probe(request: web.Request, ip: str) -> bool:
    """The node's own health probes (keepalived's track script, the upgrade playbook) on
    /ready and /health pass the allowlist from loopback: both the TCP peer and the client
    it speaks for must be loopback, so no forwarded request gets in this way.  These
    routes need no token and show only readiness, counts and the VRRP role."""
    return request.path in PROBES and loopback(request.remote or "") and loopback(ip)


async def _limit(state: State, limiter: RateLimiter, key: str, reason: str, whose: str) -> None:
    """429 with Retry-After when ``key``'s token bucket is empty."""
    wait = await limiter.check(key)
    if wait:
        state.metrics.rejected.labels(reason).inc()
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for {whose}",
            {"Retry-After": retry_after(wait)},
        )


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, streamed or not, says which request and which node it is.  While
    the node drains, every connection closes after its response: a kept-alive one would
    be reused after the VIP has moved, and the peer would reset it."""
    if REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID]
    state = request.app[STATE]
    response.headers["X-Node"] = state.node
    if state.draining:
        response.force_close()
        response.headers["Connection"] = "close"


# -- handlers ---------------------------------------------------------------------------------


async def json_body(request: web.Request, limit: int | None = None) -> Any:
    """The JSON body, at most ``limit`` bytes, by default ``server.max_body_bytes`` (the
    current runtime's limit, so a reload can change it)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    limit = limit or request[RUNTIME].config.server.max_body_bytes
    too_large = ApiError(413, "body_too_large", f"body over {limit} bytes")
    if (request.content_length or 0) > limit:
        raise too_large
    raw = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        raw += chunk
        if len(raw) > limit:
            raise too_large
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ApiError(400, "invalid_json", "JSON nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid UTF-8 JSON: {exc}") from None
    except ValueError as exc:  # valid JSON, unusable value: an integer of 4300+ digits
        raise ApiError(
            422, "invalid_parameter", f"a number in the body is too long: {exc}"
        ) from None


def _tts_options(request: web.Request) -> dict[str, Any]:
    cfg = request[RUNTIME].config
    return {
        "max_chars": cfg.server.max_request_chars,
        "default_format": cfg.audio.format,
        "default_rate": cfg.audio.sample_rate,
    }


async def tts_post(request: web.Request) -> web.StreamResponse:
    call = tts_call(await json_body(request), **_tts_options(request))
    return await service.synthesize(request.app[STATE], request, call)


async def tts_get(request: web.Request) -> web.StreamResponse:
    """For IVR systems that can only fetch a URL: the same parameters in the query string."""
    query = {k: request.query.getone(k) for k in request.query}
    call = tts_call(query, from_query=True, **_tts_options(request))
    return await service.synthesize(request.app[STATE], request, call)


async def openai_speech(request: web.Request) -> web.StreamResponse:
    """OpenAI's speech route: always a stream, as OpenAI answers (chunked, sent as units are
    synthesized), raw audio or Server-Sent Events.  A cache hit leaves whole, as events too
    when asked; errors before the first byte are JSON like everywhere else."""
    max_chars = request[RUNTIME].config.server.max_request_chars
    call = openai_call(await json_body(request), max_chars=max_chars)
    request[sse.SSE] = call.sse
    response = await service.synthesize(request.app[STATE], request, call)
    if call.sse and isinstance(response, web.Response):
        return sse.whole(response, len(call.request.text))
    return response


async def voices(request: web.Request) -> web.Response:
    runtime: Runtime = request[RUNTIME]
    items = [
        {
            "id": v.id,
            "engine": v.engine,
            "language": v.language,
            "sample_rate": v.sample_rate,
            "sample_rates": list(audio.SAMPLE_RATES),
            "emotions": list(v.emotions),
            "controls": list(v.controls),
            "description": v.description,
            "default": v.id == runtime.config.engine.default_voice,
        }
        for v in runtime.synthesizer.voices()
    ]
    return web.json_response({"voices": items})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive", "version": __version__})


async def ready(request: web.Request) -> web.Response:
    state = request.app[STATE]
    runtime = state.runtime
    ok, status = state.readiness()
    body = {
        "status": status,
        # Draining with requests still in flight through the VIP: keep the VIP here
        # until they are done (failover/check_sambertd.sh reads this).
        "hold_vip": state.holds_vip(),
        "requests": state.active,  # synthesis requests in flight (what a drain waits for)
        "parked": state.parked,  # requests that came while draining, waiting for their 503
        "in_flight": runtime.pool.in_flight,
        "queue": runtime.pool.depth,
        "workers": runtime.pool.workers,
        "queue_size": runtime.pool.queue_size,
        "engines": runtime.synthesizer.health(),
        "cache": runtime.cache.l2.state,
        "role": state.role(),
    }
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    role = state.role()
    for name in ("MASTER", "BACKUP", "FAULT", "STOP", "standalone"):
        state.metrics.role.labels(name).set(1.0 if name == role else 0.0)
    state.metrics.set_engines(state.runtime.synthesizer.health())
    body = state.metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.spec(request[RUNTIME].config))


async def admin_reload(request: web.Request) -> web.Response:
    """Same as SIGHUP / systemctl reload, for operators who only have the API: 200 when the
    new configuration runs, else the reason (the old one keeps running)."""
    state = request.app[STATE]
    assert state.reload is not None, "the life cycle sets the reloader before serving"
    outcome = await state.reload()
    if outcome.ok:
        return web.json_response({"status": "reloaded", "ready": state.readiness()[1]})
    if outcome.restart_needed:
        raise ApiError(409, "restart_required", outcome.message)
    raise ApiError(500, "reload_failed", outcome.message)


async def admin_cache_purge(request: web.Request) -> web.Response:
    """Empty L1 here and this namespace in Redis; the peer empties its L1 within a second."""
    runtime: Runtime = request[RUNTIME]
    try:
        purged = await runtime.cache.purge()
    except Exception as exc:  # Redis away: say so (L1 here is cleared already)
        raise ApiError(503, "cache_unavailable", f"Redis: {exc}") from None
    return web.json_response({"purged": purged, "namespace": runtime.config.cache.namespace})


def create_probe_app(state: State) -> web.Application:
    """The local probe listener's app (a Unix socket in the runtime directory, see
    ``listener.probe_path``): /ready and /health only, no TLS, no token, no allowlist.
    Only root and the daemon's user can connect, so keepalived's track script and the
    upgrade playbook can probe a node whose TCP port demands a client certificate."""
    app = web.Application()
    app[STATE] = state
    app.on_response_prepare.append(_stamp)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    return app


def create_app(state: State) -> web.Application:
    # Bodies are read with the runtime's own limit (``json_body``); this is only a ceiling.
    app = web.Application(middlewares=[middleware], client_max_size=MAX_BODY_CEILING)
    app[STATE] = state
    app.on_response_prepare.append(_stamp)
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
    console.add_routes(app)  # GET /console: 404 unless [console] enabled (read per request)
    return app
