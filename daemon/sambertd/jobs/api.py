"""The jobs' HTTP routes: submit, status, audio and subtitles (with ranges), cancel/delete.

A job belongs to the token subject that submitted it; any other subject gets 404, as for a
job that does not exist (ids are not confirmed to strangers).  Auth, rate limits and the
audit record come from the middleware as for every API route (``routes.ROUTE_SCOPES``);
submitting also counts against ``jobs.max_active_per_subject``.  Either node answers for
any job: the records are in Redis, the audio in the result store.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sambertd.jobs import model
from sambertd.jobs.board import BoardError
from sambertd.jobs.model import CANCELLED, Job
from sambertd.jobs.ranges import parse_range
from sambertd.jobs.runner import Jobs
from sambertd.jobs.store import StoreError
from sambertd.routes import STATE, json_body
from sambertd.runtime import Runtime
from sambertd.state import AUDIT, REQUEST_ID, RUNTIME, STREAM, SUBJECT
from sambertd.validation import ApiError, tts_call

JOBS: web.AppKey[Jobs] = web.AppKey("jobs", Jobs)
CHUNK = 1 << 20  # bytes read from the store per write
SUBTITLE_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt"}
EXTENSIONS = {"pcm": "raw", "alaw": "wav", "ulaw": "wav", "opus": "ogg"}


def install(app: web.Application, jobs: Jobs) -> None:
    app[JOBS] = jobs
    app.router.add_post("/v1/jobs", submit)
    app.router.add_get("/v1/jobs/{id}", status, allow_head=False)
    app.router.add_delete("/v1/jobs/{id}", delete)
    app.router.add_get("/v1/jobs/{id}/audio", audio)
    app.router.add_get("/v1/jobs/{id}/subtitles", subtitles)


def _unavailable(exc: Exception) -> ApiError:
    return ApiError(503, "jobs_unavailable", f"job records: {exc}", {"Retry-After": "2"})


def _jobs(http: web.Request) -> Jobs:
    if not http[RUNTIME].config.jobs.enabled:
        raise ApiError(404, "jobs_disabled", "jobs are turned off on this node (jobs.enabled)")
    return http.app[JOBS]


async def _owned(http: web.Request) -> tuple[Jobs, Job]:
    """The job named in the path if the caller's subject owns it, else 404.  Only ids of
    the form we make reach the board (no other key, no path, can be named this way)."""
    jobs = _jobs(http)
    job_id = http.match_info["id"]
    if not model.ID.fullmatch(job_id):
        raise ApiError(404, "job_not_found", "no such job")
    http[AUDIT] = {"job": job_id}
    try:
        job = await jobs.board().get(job_id)
    except BoardError as exc:
        raise _unavailable(exc) from None
    if job is None or job.id != job_id or job.subject != http.get(SUBJECT):
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")
    return jobs, job


async def submit(http: web.Request) -> web.Response:
    """Validate as /v1/tts does (voice, emotion, SSML checked now, not when it runs), store
    the job, wake the runner: 202 with the job's URL."""
    jobs = _jobs(http)
    runtime: Runtime = http[RUNTIME]
    if http.app[STATE].draining:
        raise ApiError(503, "not_ready", "draining: submit to the other node", {"Retry-After": "2"})
    cfg = runtime.config
    raw = await json_body(http, cfg.jobs.max_body_bytes)
    if isinstance(raw, Mapping):
        for name in ("stream", "timestamps"):
            if raw.get(name):
                raise ApiError(422, "unsupported_parameter", f"{name}: not for jobs")
    call = tts_call(
        raw,
        max_chars=cfg.jobs.max_chars,
        default_format=cfg.audio.format,
        default_rate=cfg.audio.sample_rate,
    )
    r = call.request
    http[AUDIT] = {"text": r.text, "voice": r.voice or None, "format": r.format}
    route = await asyncio.to_thread(runtime.synthesizer.route, r)
    job = Job(
        id=model.new_id(),
        subject=http.get(SUBJECT, "anonymous"),
        voice=r.voice,
        emotion=r.emotion,
        speed=r.prosody.speed,
        pitch=r.prosody.pitch,
        volume=r.prosody.volume,
        format=r.format,
        sample_rate=r.sample_rate,
        ssml=route.ssml,
        subtitles=call.subtitles,
        chars=len(r.text),
        total=len(route.units),
        request_id=http.get(REQUEST_ID, ""),
    )
    try:
        created = await jobs.board().create(job, r.text, cfg.jobs.max_active_per_subject)
    except BoardError as exc:
        raise _unavailable(exc) from None
    if not created:
        raise ApiError(
            429,
            "quota_exceeded",
            f"this subject has {cfg.jobs.max_active_per_subject} unfinished jobs; "
            "wait for one to finish or cancel one",
            {"Retry-After": "10"},
        )
    http[AUDIT]["job"] = job.id
    http.app[STATE].metrics.jobs_submitted.inc()
    jobs.wake()
    return web.json_response(job.view(), status=202, headers={"Location": f"/v1/jobs/{job.id}"})


async def status(http: web.Request) -> web.Response:
    _, job = await _owned(http)
    return web.json_response(job.view(), dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def delete(http: web.Request) -> web.Response:
    """Cancel an unfinished job (200, its record says cancelled); remove a finished one, its
    audio and record (204)."""
    jobs, job = await _owned(http)
    try:
        if not job.finished_state:
            job.state, job.finished = CANCELLED, time.time()
            if await jobs.board().save(job):
                http.app[STATE].metrics.jobs_finished.labels(CANCELLED).inc()
                # Units already stored go now (a runner that stores one more sees the
                # cancel at its next save and deletes again).
                await asyncio.to_thread(jobs.store().delete_prefix, model.prefix(job.id))
                return web.json_response(job.view(), dumps=_dumps)
            fresh = await jobs.board().get(job.id)  # it finished meanwhile: remove it
            if fresh is None:
                raise ApiError(404, "job_not_found", f"no job {job.id!r}")
        await asyncio.to_thread(jobs.store().delete_prefix, model.prefix(job.id))
        await jobs.board().remove(job.id)
    except (BoardError, StoreError) as exc:
        raise _unavailable(exc) from None
    return web.Response(status=204)


async def audio(http: web.Request) -> web.StreamResponse:
    jobs, job = await _owned(http)
    _finished(job)
    key = model.audio_key(job.id)
    await _present(jobs, key)
    ext = EXTENSIONS.get(job.format, job.format)
    headers = {
        "X-Audio-Duration": f"{job.audio_s:.3f}",
        "X-Sample-Rate": str(job.rate),
        "X-Voice": job.resolved or job.voice,
        "Content-Disposition": f'attachment; filename="{job.id}.{ext}"',
    }
    return await _serve(http, key, job.size, job.content_type, headers)


async def _present(jobs: Jobs, key: str) -> int:
    """The object's size; 404 when the store has lost it, 503 when it cannot say — before
    any header leaves."""
    try:
        size = await asyncio.to_thread(jobs.store().size, key)
    except StoreError as exc:
        raise _unavailable(exc) from None
    if size is None:
        raise ApiError(404, "job_not_found", "the job's file is gone from the result store")
    return size


async def subtitles(http: web.Request) -> web.StreamResponse:
    jobs, job = await _owned(http)
    if not job.subtitles:
        raise ApiError(404, "no_subtitles", "this job was submitted without subtitles")
    _finished(job)
    key = model.subtitles_key(job.id)
    size = await _present(jobs, key)
    kind = SUBTITLE_TYPES[job.subtitles] + "; charset=utf-8"
    disposition = {"Content-Disposition": f'attachment; filename="{job.id}.{job.subtitles}"'}
    return await _serve(http, key, size, kind, disposition)


def _finished(job: Job) -> None:
    """409 unless done; only an unfinished job is worth asking again (Retry-After)."""
    if job.state == model.DONE:
        return
    why = f"job is {job.state}"
    if not job.finished_state:
        why += f" ({job.done} of {job.total or '?'} units done)"
        raise ApiError(409, "job_not_done", why, {"Retry-After": "2"})
    if job.error:
        why += f": {job.error['message']}"
    raise ApiError(409, "job_not_done", why)


async def _serve(
    http: web.Request, key: str, size: int, content_type: str, extra: dict[str, str]
) -> web.StreamResponse:
    """The object, whole (200) or one byte range of it (206); read from the store a chunk
    at a time, so a long recording never sits in memory."""
    start, end = 0, size - 1
    status = 200
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{key.split("/")[1]}-{size}"', **extra}
    # A Range with an If-Range that no longer matches is ignored (RFC 9110, 13.1.5).
    fresh = http.headers.get("If-Range", headers["ETag"]) == headers["ETag"]
    wanted = parse_range(http.headers.get("Range"), size) if fresh else None
    if wanted is not None:
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = content_type.split(";")[0]
    if "charset=" in content_type:
        response.charset = content_type.split("charset=")[1]
    response.content_length = end - start + 1 if size else 0
    store = http.app[JOBS].store()
    http[STREAM] = response
    await response.prepare(http)
    if http.method == "HEAD":
        return response
    position = start
    while position <= end:
        length = min(CHUNK, end + 1 - position)
        data = await asyncio.to_thread(store.read, key, position, length)
        if len(data) != length:
            raise StoreError(f"{key}: {len(data)} bytes where {length} were expected")
        await response.write(data)
        position += length
    return response
