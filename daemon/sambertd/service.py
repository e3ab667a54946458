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
import base64
import functools
import json
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from sambertd import audio, sse, subtitles, timeline
from sambertd.cache import Entry
from sambertd.frontend import Unit
from sambertd.pool import checkpoint
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
    runtime: Runtime = http[RUNTIME]
    if state.draining:  # not started here: 503, after the drain's end (State.park) on the VIP
        # From a trusted proxy (HAProxy, scale-out) the 503 goes at once: the proxy re-sends
        # the request to another node now, instead of after this node's longest request.
        if not runtime.gate.proxied(http.remote or ""):
            await state.park()
        raise ApiError(
            503, "not_ready", "draining: this node is handing over, retry", {"Retry-After": "2"}
        )
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
        if hit is not None and (hit[0].timing or not call.timed):
            info.update(cache=hit[1], audio_s=round(hit[0].duration, 3))
            return _answer(call, route, hit[0], hit[1])
        if call.stream:
            return await _stream(state, runtime, http, call, route, key)
        deadline = time.monotonic() + runtime.config.server.request_timeout_s
        entry, shared = await runtime.cache.single_flight(
            key, lambda: _produce(state, runtime, route, deadline)
        )
        source = "shared" if shared else "miss"
        info.update(cache=source, audio_s=round(entry.duration, 3))
        return _answer(call, route, entry, source)
    finally:
        state.active -= 1
        state.served += 1


async def _route(runtime: Runtime, call: TtsCall) -> Route:
    route = functools.partial(
        runtime.synthesizer.route, call.request, call.stream, origins=call.timed
    )
    if len(call.request.text) <= INLINE_ROUTE_CHARS:
        return route()
    return await asyncio.to_thread(route)


def _answer(call: TtsCall, route: Route, entry: Entry, cache: str) -> web.Response:
    """The audio as it is, or — when timestamps or subtitles were asked for — a JSON
    object with the audio in base64 next to them."""
    if not call.timed:
        return _respond(entry, cache, route.degraded)
    if call.stream:  # the lines a live timed stream sends, in one: audio, then the close
        first = _line(call, route, entry.audio, route.units, entry.timing)
        last = _last_line(call, route, entry.timing, entry.duration)
        headers = {**_headers(entry, cache, route.degraded), "Content-Type": NDJSON}
        return web.Response(body=first + last, headers=headers)
    stamps = timeline.timestamps(route.request.text, route.units, entry.timing, route.ssml)
    body: dict[str, Any] = {
        "audio": base64.b64encode(entry.audio).decode("ascii"),
        "content_type": entry.content_type,
        "format": route.format.name,
        "sample_rate": entry.sample_rate,
        "duration_ms": round(entry.duration * 1000),
        "voice": entry.voice,
    }
    if call.timestamps:
        body["timestamps"] = stamps
    if call.subtitles:
        body["subtitles"] = _subtitles(call.subtitles, route, stamps)
    response = web.json_response(body, dumps=_dumps)
    response.headers.update(_headers(entry, cache, route.degraded))
    return response


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


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


def _headers(entry: Entry, cache: str, degraded: bool) -> dict[str, str]:
    return {
        "X-Audio-Duration": f"{entry.duration:.3f}",
        "X-Voice": entry.voice,
        "X-Sample-Rate": str(entry.sample_rate),
        "X-Cache": cache,
        **({"X-Degraded": "1"} if degraded or entry.degraded else {}),
    }


def _respond(entry: Entry, cache: str, degraded: bool) -> web.Response:
    headers = _headers(entry, cache, degraded)
    return web.Response(body=entry.audio, content_type=entry.content_type, headers=headers)


class _Keeper:
    """A stream's complete file (its encoder's), kept for the cache only while it would still
    be stored: memory per stream stays bounded by ``cache.max_entry_bytes`` plus one unit
    (nothing with the cache off)."""

    def __init__(self, runtime: Runtime, encoder: audio.Encoder) -> None:
        self._cache = runtime.cache
        self._encoder = encoder
        self.check()

    def check(self) -> None:
        """Called after each unit: past the limit, the encoder stops keeping the file."""
        if not self._cache.keeps(self._encoder.size):
            self._encoder.drop()


async def _stream(
    state: State, runtime: Runtime, http: web.Request, call: TtsCall, route: Route, key: str
) -> web.StreamResponse:
    """One chunk per unit, encoded as it comes (:class:`~sambertd.audio.Encoder`, any
    format); the first leaves as soon as unit one is synthesized.  Each unit is its own pool
    job, so a client that leaves frees the queue at once.  The encoder's complete file is
    what a plain request of the same units gets, so it goes to the cache under the same key.
    On the OpenAI route with ``stream_format: "sse"`` each chunk leaves as an event; with
    timestamps or subtitles asked for, as a JSON line with its unit's timestamps (NDJSON)."""
    started = time.perf_counter()
    timeout = runtime.config.server.request_timeout_s
    pool, synthesizer = runtime.pool, runtime.synthesizer
    plan: Plan = await pool.run(synthesizer.plan, route, deadline=time.monotonic() + timeout)
    events = http.get(sse.SSE, False)
    response = web.StreamResponse(
        headers={
            "Content-Type": sse.CONTENT_TYPE
            if events
            else NDJSON
            if call.timed
            else route.format.content_type,
            "X-Voice": route.voice.id,
            "X-Sample-Rate": str(route.rate),
            "X-Cache": "miss",
            **({"X-Degraded": "1"} if route.degraded else {}),
        }
    )
    response.enable_chunked_encoding()
    encoder = audio.Encoder(route.format, route.rate)
    keeper = _Keeper(runtime, encoder)
    last = len(plan.sentences) - 1

    def frame(data: bytes, index: int | None = None) -> bytes:
        if events:
            return sse.delta(data)
        if call.timed:
            at = slice(index, index + 1) if index is not None else slice(0)
            return _line(call, route, data, route.units[at], plan.timeline[at])
        return data

    def unit(i: int) -> tuple[bytes, float]:
        """In the worker: synthesize and encode unit ``i`` (the tail too, after the last)."""
        pcm = plan.output(i)
        checkpoint()  # its request gone meanwhile: the encoder is not touched again
        data = encoder.push(pcm)
        if i == last:
            data += encoder.finish()
        return data, len(pcm) / plan.rate

    total = 0.0
    state.streams += 1
    try:
        for i in range(len(plan.sentences)):
            chunk, seconds = await pool.run(unit, i, deadline=time.monotonic() + timeout)
            if i == 0:
                http[STREAM] = response
                await response.prepare(http)
                if call.timed:  # the header rides in the first line
                    chunk = encoder.header + chunk
                elif encoder.header:
                    await _write(response, frame(encoder.header), timeout)
                state.metrics.first_chunk.observe(time.perf_counter() - started)
            if chunk or call.timed:  # an encoder may hold a short unit back (a frame, a page)
                await _write(response, frame(chunk, i), timeout)
            keeper.check()
            total += seconds
        if events and response.prepared:
            await _write(response, sse.done(len(route.request.text)), timeout)
        if call.timed and response.prepared:
            await _write(response, _last_line(call, route, plan.timeline, total), timeout)
    finally:
        state.streams -= 1
    engine = route.rung.engine.name
    account(state, engine, route.voice.id, total, time.perf_counter() - started)
    http[AUDIT].update(cache="miss", audio_s=round(total, 3))
    complete = encoder.complete
    if complete is not None:
        entry = Entry(
            audio=complete,
            content_type=route.format.content_type,
            sample_rate=route.rate,
            duration=total,
            voice=route.voice.id,
            engine=engine,
            timing=tuple(plan.timeline),
        )
        await runtime.cache.put(key, entry)
    return response


NDJSON = "application/x-ndjson"


def _line(
    call: TtsCall,
    route: Route,
    data: bytes,
    units: Sequence[Unit],
    timing: Sequence[timeline.UnitTiming],
) -> bytes:
    """One NDJSON line of a timed stream: a piece of the audio file (base64) and when the
    characters of its units are spoken (ms from the start of the whole audio)."""
    body: dict[str, Any] = {"audio": base64.b64encode(data).decode("ascii")}
    if units and call.timestamps:
        body["timestamps"] = timeline.timestamps(route.request.text, units, timing, route.ssml)
    return (_dumps(body) + "\n").encode()


def _last_line(
    call: TtsCall, route: Route, timing: Sequence[timeline.UnitTiming], seconds: float
) -> bytes:
    """The closing line: the length, and the subtitles (they need every unit's timing)."""
    body: dict[str, Any] = {
        "done": True,
        "format": route.format.name,
        "sample_rate": route.rate,
        "duration_ms": round(seconds * 1000),
    }
    if call.subtitles:
        stamps = timeline.timestamps(route.request.text, route.units, timing, route.ssml)
        body["subtitles"] = _subtitles(call.subtitles, route, stamps)
    return (_dumps(body) + "\n").encode()


def _subtitles(kind: str, route: Route, stamps: dict[str, Any]) -> str:
    return subtitles.subtitles(route.request.text, stamps, route.ssml, kind)


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
