"""The real daemon process over real HTTP on loopback: every route, errors, streaming,
backpressure, draining and client disconnects."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import soundfile as sf

from tests.daemon import DaemonProcess

SHORT = "欢迎致电政务服务热线。"
LONG = (
    "为进一步优化营商环境，本市将于下月起全面推行企业开办一网通办，"
    "申请人可通过政务服务网提交材料，审核通过后三个工作日内领取营业执照。"
) * 4


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("daemon"), server_max_request_chars="2000")
    d.wait_ready()
    yield d
    assert d.stop() == 0, d.log()


def decode(body: bytes) -> sf.SoundFile:
    return sf.SoundFile(io.BytesIO(body))


# -- routes -------------------------------------------------------------------------------


def test_post_tts_wav(daemon: DaemonProcess) -> None:
    status, headers, body = daemon.post(
        "/v1/tts", {"text": SHORT}, headers={"X-Request-Id": "ivr-7.call_42"}
    )
    assert status == 200, body[:300]
    assert headers["content-type"] == "audio/wav"
    assert headers["x-request-id"] == "ivr-7.call_42"
    f = decode(body)
    assert f.samplerate == 24000
    assert abs(f.frames / f.samplerate - float(headers["x-audio-duration"])) < 0.01
    assert 1.0 < f.frames / f.samplerate < 5.0


@pytest.mark.parametrize(
    ("fmt", "rate", "ctype", "sub"),
    [
        ("wav", 16000, "audio/wav", "PCM_16"),
        ("mp3", 22050, "audio/mpeg", "MPEG_LAYER_III"),
        ("alaw", 8000, "audio/wav", "ALAW"),
        ("ulaw", 8000, "audio/wav", "ULAW"),
    ],
)
def test_formats(daemon: DaemonProcess, fmt: str, rate: int, ctype: str, sub: str) -> None:
    status, headers, body = daemon.post(
        "/v1/tts", {"text": SHORT, "format": fmt, "sample_rate": rate, "speed": 1.2}
    )
    assert status == 200, body[:300]
    assert headers["content-type"] == ctype
    f = decode(body)
    assert (f.samplerate, f.subtype) == (rate, sub)


def test_pcm_is_raw_int16(daemon: DaemonProcess) -> None:
    status, headers, body = daemon.post(
        "/v1/tts", {"text": SHORT, "format": "pcm", "sample_rate": 16000}
    )
    assert status == 200 and headers["content-type"] == "audio/pcm"
    assert len(body) % 2 == 0
    assert abs(len(body) / 2 / 16000 - float(headers["x-audio-duration"])) < 0.01


def test_get_tts_for_ivr(daemon: DaemonProcess) -> None:
    from urllib.parse import urlencode

    query = urlencode({"text": "请按一号键。", "format": "ulaw", "speed": "1.1"})
    status, _headers, body = daemon.request("GET", f"/v1/tts?{query}")
    assert status == 200, body[:300]
    assert decode(body).subtype == "ULAW"


def test_openai_compatible_speech(daemon: DaemonProcess) -> None:
    status, headers, body = daemon.post(
        "/v1/audio/speech", {"model": "tts-1", "input": SHORT, "voice": "alloy", "speed": 3.0}
    )
    assert status == 200, body[:300]
    assert headers["content-type"] == "audio/mpeg"  # OpenAI's default format
    assert decode(body).format == "MP3"
    status, headers, body = daemon.post(
        "/v1/audio/speech",
        {"model": "tts-1", "input": SHORT, "voice": "baker", "response_format": "pcm"},
    )
    assert status == 200 and len(body) > 24000


def test_voices(daemon: DaemonProcess) -> None:
    status, _, body = daemon.get("/v1/voices")
    voices = json.loads(body)["voices"]
    assert status == 200
    assert voices[0]["id"] == "baker" and voices[0]["default"] is True
    assert voices[0]["sample_rate"] == 24000 and "neutral" in voices[0]["emotions"]


def test_health_ready_openapi(daemon: DaemonProcess) -> None:
    assert daemon.get("/health")[0] == 200
    status, _, body = daemon.get("/ready")
    assert status == 200 and json.loads(body)["status"] == "ready"
    spec = json.loads(daemon.get("/openapi.json")[2])
    assert spec["openapi"].startswith("3.")
    assert {"/v1/tts", "/v1/audio/speech", "/v1/voices", "/ready"} <= set(spec["paths"])


def test_metrics_count_requests_and_audio(daemon: DaemonProcess) -> None:
    before = daemon.metric("sambertd_audio_seconds_total")
    daemon.post("/v1/tts", {"text": "这一句只在计量测试里出现。"})
    text = daemon.get("/metrics")[2].decode()
    assert 'sambertd_requests_total{route="/v1/tts",status="200"}' in text
    assert "sambertd_request_seconds_bucket" in text
    assert "sambertd_queue_depth" in text and "sambertd_in_flight" in text
    assert "sambertd_synthesis_rtf_count" in text
    assert daemon.metric("sambertd_audio_seconds_total") > before + 1.0


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "raw", "ctype", "status", "code"),
    [
        ("POST", "/v1/tts", b"{not json", "application/json", 400, "invalid_json"),
        ("POST", "/v1/tts", b"\xff\xfe", "application/json", 400, "invalid_json"),
        ("POST", "/v1/tts", b"[1, 2]", "application/json", 422, "invalid_body"),
        ("POST", "/v1/tts", b'{"text": "hi"}', "text/plain", 415, "unsupported_media_type"),
        ("POST", "/v1/tts", b'{"text": 5}', "application/json", 422, "invalid_parameter"),
        ("POST", "/v1/tts", b"{}", "application/json", 422, "missing_parameter"),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u4f60", "spede": 1}',
            "application/json",
            422,
            "unknown_parameter",
        ),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u4f60", "speed": 9}',
            "application/json",
            422,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u4f60", "speed": true}',
            "application/json",
            422,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u4f60", "format": "ogg"}',
            "application/json",
            422,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u4f60", "sample_rate": 44100}',
            "application/json",
            422,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u4f60", "format": "ogg", "stream": true}',
            "application/json",
            422,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u4f60", "voice": "nobody"}',
            "application/json",
            404,
            "unknown_voice",
        ),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u4f60", "emotion": "angry"}',
            "application/json",
            422,
            "unknown_emotion",
        ),
        ("POST", "/v1/tts", b'{"text": "   "}', "application/json", 422, "empty_text"),
        (
            "POST",
            "/v1/tts",
            b'{"text": "\\u0000\\u001b[31m"}',
            "application/json",
            422,
            "empty_text",
        ),
        (
            "POST",
            "/v1/audio/speech",
            b'{"input": "\\u4f60", "response_format": "aac"}',
            "application/json",
            422,
            "invalid_parameter",
        ),
        ("PUT", "/v1/tts", b"{}", "application/json", 405, "method_not_allowed"),
        ("GET", "/v1/nothing", None, "", 404, "not_found"),
        ("GET", "/v1/tts", None, "", 422, "missing_parameter"),
    ],
)
def test_errors_are_json_with_the_right_status(
    daemon: DaemonProcess,
    method: str,
    path: str,
    raw: bytes | None,
    ctype: str,
    status: int,
    code: str,
) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    got, hdrs, body = daemon.request(method, path, raw=raw, headers=headers)
    assert got == status, body
    assert hdrs["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]


def test_text_and_body_limits_give_413(daemon: DaemonProcess) -> None:
    status, _, body = daemon.post("/v1/tts", {"text": "字" * 2001})
    assert status == 413 and json.loads(body)["error"]["code"] == "text_too_long"
    status, _, body = daemon.post("/v1/tts", {"text": "字", "pad": "x" * 70000})
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"


# -- streaming ------------------------------------------------------------------------------


def test_stream_sends_sentences_as_they_are_ready(daemon: DaemonProcess) -> None:
    async def go() -> tuple[list[bytes], dict[str, str]]:
        url = f"http://127.0.0.1:{daemon.port}/v1/tts"
        body = {"text": LONG, "stream": True, "sample_rate": 16000}
        async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
            assert r.status == 200
            chunks, current = [], b""
            async for data, end_of_chunk in r.content.iter_chunks():
                current += data
                if end_of_chunk:
                    chunks.append(current)
                    current = b""
            return chunks, dict(r.headers)

    chunks, headers = asyncio.run(go())
    assert headers["Transfer-Encoding"] == "chunked"
    # The WAV header, then one HTTP chunk per synthesis unit: a short first clause, then
    # units of at most 32 characters (LONG has 4 x 2 long clauses).
    assert chunks[0].startswith(b"RIFF") and len(chunks[0]) == 44
    assert len(chunks) >= 1 + 8, len(chunks)
    first_seconds = len(chunks[1]) / 2 / 16000
    assert first_seconds < 4.0, "the first unit should be one short clause"
    body = b"".join(chunks)
    data, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == 16000 and len(data) / rate > 20  # the whole text arrived


def test_stream_raw_pcm(daemon: DaemonProcess) -> None:
    status, headers, body = daemon.post(
        "/v1/tts", {"text": "第一句。第二句。", "stream": True, "format": "pcm"}
    )
    assert status == 200 and headers["content-type"] == "audio/pcm"
    assert len(body) > 24000 * 2 and not body.startswith(b"RIFF")


# -- backpressure, disconnects, draining -------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Iterator[DaemonProcess]:
    """One worker and a queue of one: easy to fill."""
    d = DaemonProcess(
        tmp_path,
        server_workers="1",
        server_queue_size="1",
        server_max_request_chars="2000",
        server_drain_timeout_s="60",
    )
    d.wait_ready()
    yield d
    d.stop()


async def until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    """Poll a blocking ``predicate`` (a /metrics read) without stopping this event loop,
    whose requests are what is being waited for."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _burst(port: int, n: int) -> list[tuple[int, str | None]]:
    """``n`` concurrent requests for different texts (identical ones would share one
    synthesis through the cache's single-flight)."""
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> tuple[int, str | None]:
            body = {"text": f"第{i + 1}条通知。{LONG}"}
            async with s.post(f"http://127.0.0.1:{port}/v1/tts", json=body) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After")

        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), 240)


def test_burst_beyond_the_queue_gets_429(small: DaemonProcess) -> None:
    results = asyncio.run(_burst(small.port, 6))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(200) == 2, statuses  # one running + one queued
    assert statuses.count(429) == 4, statuses
    assert all(ra == "1" for s, ra in results if s == 429)
    assert small.metric("sambertd_rejected_total") == 4


def test_disconnected_client_leaves_the_queue(small: DaemonProcess) -> None:
    async def go() -> int:
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{small.port}/v1/tts"
            running = asyncio.create_task(s.post(url, json={"text": LONG}))
            await until(lambda: small.metric("sambertd_in_flight") == 1)
            queued = asyncio.create_task(s.post(url, json={"text": "另一条。" + LONG}))
            await until(lambda: small.metric("sambertd_queue_depth") == 1)
            queued.cancel()  # the IVR caller hung up: close the connection
            r = await running
            await r.read()
            return r.status

    assert asyncio.run(go()) == 200
    deadline = time.monotonic() + 10
    while small.metric("sambertd_queue_cancelled_jobs") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert small.metric("sambertd_queue_cancelled_jobs") == 1
    # Only the first request was synthesized (plan + render): the queued one never ran.
    assert small.metric('sambertd_requests_total{route="/v1/tts",status="200"}') == 1


async def _late_request_while_draining(d: DaemonProcess) -> tuple[int, float, int, int, int]:
    """A long request in flight, SIGTERM, then a short one.  Returns the short one's status,
    ``sambertd_in_flight`` when its answer came, /ready's status then, and the long one's
    status and body size."""
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{d.port}"
        inflight = asyncio.create_task(s.post(f"{url}/v1/tts", json={"text": LONG}))
        await until(lambda: d.metric("sambertd_in_flight") == 1)
        d.signal(signal.SIGTERM)
        await until(lambda: d.get("/ready")[0] == 503)  # it has begun to drain
        async with s.post(f"{url}/v1/tts", json={"text": SHORT}) as late:
            late_status = late.status
        running = d.metric("sambertd_in_flight")
        async with s.get(f"{url}/ready") as rd:
            ready_status = rd.status
        r = await inflight
        body = await r.read()
        return late_status, running, ready_status, r.status, len(body)


def test_sigterm_drains_in_flight_and_refuses_new_work(small: DaemonProcess) -> None:
    """Straight from a client, the late request is parked: its 503 comes once the in-flight
    one is done."""
    late, running, ready, done, size = asyncio.run(_late_request_while_draining(small))
    assert (done, late, ready) == (200, 503, 503)
    assert running == 0 and size > 100_000
    assert small.proc.wait(30) == 0
    assert "draining" in small.log()


def test_draining_behind_a_proxy_refuses_new_work_at_once(tmp_path: Path) -> None:
    """Behind HAProxy (the peer is a trusted proxy), a request that reaches a draining node
    gets its 503 while the in-flight one still runs, so HAProxy re-sends it to another node
    at once; straight from a client (above) it waits for the drain's end."""
    d = DaemonProcess(
        tmp_path,
        server_workers="1",
        auth_trusted_proxies="127.0.0.1/32",
        server_drain_timeout_s="60",
    )
    try:
        d.wait_ready()
        late, running, _, done, _ = asyncio.run(_late_request_while_draining(d))
        assert (late, running, done) == (503, 1, 200)
        assert d.proc.wait(30) == 0
    finally:
        d.stop()


def test_port_in_use_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        d = DaemonProcess(tmp_path, server_port=str(s.getsockname()[1]))
        assert d.proc.wait(60) == 1
        assert "address already in use" in d.log().lower()
