"""Request orchestration behind the synthesis routes: route → cache → pool → stream.

One request uses one :class:`~sambertd.runtime.Runtime` from start to end (taken by the HTTP
middleware).  Plain requests run under one deadline (``server.request_timeout_s``) for all of
their work; each unit of a stream gets that much for itself.  What went on is left in
``http[AUDIT]`` for the middleware's audit record.

A stream's header leaves with its first unit; what can still go wrong after that is the
middleware's to handle (it cuts the connection so the client sees an incomplete body).  A
finished stream is not ended here: the middleware writes the audit record first, then aiohttp
sends the final chunk.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from sambertd import audio
from sambertd.cache import Entry
from sambertd.runtime import Runtime
from sambertd.state import AUDIT, RUNTIME, STREAM, State
from sambertd.synth import Plan, Route
from sambertd.types import Result
from sambertd.validation import ApiError, TtsCall

# Routing runs the front-end's regex steps; past this many characters, off the event loop.
INLINE_ROUTE_CHARS = 500


class SlowClient(Exception):
    """A stream's reader did not take a chunk within ``server.request_timeout_s``."""


async def synthesize(state: State, http: web.Request, call: TtsCall) -> web.StreamResponse:
    """route → cache → (single-flight) synthesis or stream → response."""
    if state.draining:
        raise ApiError(503, "not_ready", state.readiness()[1], {"Retry-After": "2"})
    runtime: Runtime = http[RUNTIME]
    state.active += 1
    r = call.request
    info: dict[str, Any] = {
        "text": r.text,
        "voice": r.voice or None,
        "emotion": r.emotion,
        "format": r.format,
    }
    http[AUDIT] = info
    try:
        route = await _route(runtime, call)
        info["voice"] = route.voice.id
        key = runtime.synthesizer.cache_key(route, runtime.config.cache.namespace)
        hit = await runtime.cache.get(key)
        if hit is not None:
            info.update(cache=hit[1], audio_s=round(hit[0].duration, 3))
            return _respond(hit[0], hit[1], route.degraded)
        if call.stream:
            return await _stream(state, runtime, http, route, key)
        deadline = time.monotonic() + runtime.config.server.request_timeout_s
        entry, shared = await runtime.cache.single_flight(
            key, lambda: _produce(state, runtime, route, deadline)
        )
        source = "shared" if shared else "miss"
        info.update(cache=source, audio_s=round(entry.duration, 3))
        return _respond(entry, source, route.degraded)
    finally:
        state.active -= 1
        state.served += 1


async def _route(runtime: Runtime, call: TtsCall) -> Route:
    synthesizer = runtime.synthesizer
    if len(call.request.text) <= INLINE_ROUTE_CHARS:
        return synthesizer.route(call.request, call.stream)
    return await asyncio.to_thread(synthesizer.route, call.request, call.stream)


async def _produce(state: State, runtime: Runtime, route: Route, deadline: float) -> Entry:
    started = time.perf_counter()
    result: Result = await runtime.pool.run(runtime.synthesizer.render, route, deadline=deadline)
    account(state, result.engine, result.voice, result.duration, time.perf_counter() - started)
    # A fallback taken mid-request is served marked degraded and never filed under the
    # preferred voice's key.  (A degraded *route* is keyed by the fallback voice.)
    return Entry.from_result(
        result,
        degraded=result.degraded and not route.degraded,
        cacheable=result.degraded == route.degraded,
    )


def _respond(entry: Entry, cache: str, degraded: bool) -> web.Response:
    headers = {
        "X-Audio-Duration": f"{entry.duration:.3f}",
        "X-Voice": entry.voice,
        "X-Sample-Rate": str(entry.sample_rate),
        "X-Cache": cache,
        **({"X-Degraded": "1"} if degraded or entry.degraded else {}),
    }
    return web.Response(body=entry.audio, content_type=entry.content_type, headers=headers)


class _Keeper:
    """A stream's chunks, kept for the cache only while the whole would still be stored:
    memory per stream stays bounded by ``cache.max_entry_bytes`` (nothing with the cache
    off), and the file is joined in one copy at the end."""

    def __init__(self, runtime: Runtime) -> None:
        self._cache = runtime.cache
        self.chunks: list[bytes] | None = [] if self._cache.keeps(0) else None
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if self.chunks is None:
            return
        self.size += len(chunk)
        if self._cache.keeps(self.size):
            self.chunks.append(chunk)
        else:
            self.chunks = None


async def _stream(
    state: State, runtime: Runtime, http: web.Request, route: Route, key: str
) -> web.StreamResponse:
    """One chunk per unit; the first leaves as soon as unit one is synthesized.  Each unit is
    its own pool job, so a client that leaves frees the queue at once."""
    started = time.perf_counter()
    timeout = runtime.config.server.request_timeout_s
    pool, synthesizer = runtime.pool, runtime.synthesizer
    plan: Plan = await pool.run(synthesizer.plan, route, deadline=time.monotonic() + timeout)
    response = web.StreamResponse(
        headers={
            "Content-Type": route.format.content_type,
            "X-Voice": route.voice.id,
            "X-Sample-Rate": str(route.rate),
            "X-Cache": "miss",
            **({"X-Degraded": "1"} if route.degraded else {}),
        }
    )
    response.enable_chunked_encoding()
    keeper = _Keeper(runtime)
    total = 0.0
    state.streams += 1
    try:
        for i in range(len(plan.sentences)):
            chunk, seconds = await pool.run(plan.chunk, i, deadline=time.monotonic() + timeout)
            if i == 0:
                http[STREAM] = response
                await response.prepare(http)
                if route.format.name == "wav":
                    await _write(response, audio.wav_stream_header(route.rate), timeout)
                state.metrics.first_chunk.observe(time.perf_counter() - started)
            await _write(response, chunk, timeout)
            keeper.add(chunk)
            total += seconds
    finally:
        state.streams -= 1
    engine = route.rung.engine.name
    account(state, engine, route.voice.id, total, time.perf_counter() - started)
    http[AUDIT].update(cache="miss", audio_s=round(total, 3))
    if keeper.chunks is not None:
        pieces = keeper.chunks
        body = (
            audio.wav_from_int16(pieces, route.rate)
            if route.format.name == "wav"
            else b"".join(pieces)
        )
        keeper.chunks = None
        entry = Entry(body, route.format.content_type, route.rate, total, route.voice.id, engine)
        await runtime.cache.put(key, entry)
    return response


async def _write(response: web.StreamResponse, data: bytes, timeout: float) -> None:
    """Write with a deadline: a reader that stops reading does not hold the stream forever."""
    try:
        async with asyncio.timeout(timeout):
            await response.write(data)
    except TimeoutError:
        raise SlowClient(f"the client took no data for {timeout:g} s") from None


def account(state: State, engine: str, voice: str, seconds: float, elapsed: float) -> None:
    metrics = state.metrics
    metrics.syntheses.labels(engine).inc()
    metrics.audio_seconds.labels(voice).inc(seconds)
    if seconds > 0:
        metrics.rtf.observe(elapsed / seconds)
