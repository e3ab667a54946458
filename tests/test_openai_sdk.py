"""OpenAI parity, with OpenAI's own Python SDK as the client against the real daemon: every
response_format plain and streamed, ``stream_format: "sse"``, refusals as the SDK's errors,
and a first chunk that leaves before the last sentence is synthesized.

``python -m tests.test_openai_sdk serve`` runs the stand-in daemon with a gate: a unit that
holds GATE_SYLLABLE waits until the file GATE_FILE exists.  The latency test opens the gate
only after its first chunk arrived, so "the first chunk came before the last unit was done"
holds by construction, not by timing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import soundfile as sf

from tests.daemon import DaemonProcess

FORMATS = ("wav", "mp3", "pcm", "flac", "opus")
SUBTYPES = {"wav": "PCM_16", "mp3": "MPEG_LAYER_III", "flac": "PCM_16", "opus": "OPUS"}
MP3_SLACK = 5 * 576  # a stream has no Info tag: placeholder frame, encoder delay, padding
GATE_SYLLABLE = "man4"  # 慢
GATED_TEXT = "您好，欢迎致电。这里是政务服务热线。网络较慢，请稍候。"


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """Samples and rate, read to the end as a player would (a streamed FLAC says "length
    unknown": soundfile must not seek after each read); pcm is OpenAI's s16le at 24 kHz."""
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768, 24000
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert f.subtype == SUBTYPES[fmt] and f.channels == 1
        f.seekable = lambda: False  # type: ignore[method-assign]
        blocks = []
        while len(block := f.read(4096, dtype="float32")):
            blocks.append(block)
        return np.concatenate(blocks), f.samplerate


def seconds(data: bytes, fmt: str) -> float:
    samples, rate = decode(data, fmt)
    assert np.abs(samples).max() > 0.01, "silence"
    return len(samples) / rate


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("openai"), server_max_request_chars="2000")
    d.wait_ready()
    yield d
    assert d.stop() == 0, d.log()


def client_for(d: DaemonProcess) -> openai.OpenAI:
    # The timeout only bounds a failure (a stream that stalls); nothing passes on time.
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{d.port}/v1", api_key="unused", max_retries=0, timeout=120
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_plain_and_streamed(daemon: DaemonProcess, fmt: str) -> None:
    """A stream (a cache miss: sent unit by unit) and then the plain call of the same text
    (a cache hit: the stream's complete file) are the same audio."""
    client = client_for(daemon)
    text = f"欢迎致电政务服务热线。请按{FORMATS.index(fmt) + 1}号键。"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format=fmt
    ) as response:
        assert response.headers["x-cache"] == "miss"
        assert response.headers["transfer-encoding"] == "chunked"
        streamed = b"".join(response.iter_bytes())
    plain = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format=fmt
    ).content
    assert 1.5 < seconds(plain, fmt) < 8.0
    heard, whole = decode(streamed, fmt)[0], decode(plain, fmt)[0]
    if fmt == "mp3":  # lossy: the same length, give or take the codec's delay
        assert 0 <= len(heard) - len(whole) < MP3_SLACK
    elif fmt == "opus":  # Ogg is append-only: the stream is the file
        assert streamed == plain
    else:
        assert np.array_equal(heard, whole)
    other = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="nova", input="您好。" + text, response_format=fmt
    ).content  # a miss, streamed by the server, read whole by the client
    assert seconds(other, fmt) > seconds(plain, fmt)


def test_aac_is_refused_naming_what_is_served(daemon: DaemonProcess) -> None:
    client = client_for(daemon)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.audio.speech.create(
            model="tts-1", voice="alloy", input="您好。", response_format="aac"
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "invalid_parameter"
    assert "aac" in str(caught.value).lower()
    assert "mp3, opus, flac, wav, pcm" in error["message"]


def test_errors_before_the_first_byte_are_json(daemon: DaemonProcess) -> None:
    client = client_for(daemon)
    with pytest.raises(openai.NotFoundError) as caught:
        client.audio.speech.create(model="tts-1", voice="nobody", input="您好。")
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "unknown_voice"
    with pytest.raises(openai.UnprocessableEntityError):
        client.audio.speech.create(
            model="tts-1", voice="alloy", input="您好。", extra_body={"stream_format": "ws"}
        )


def sse_events(lines: Iterator[str]) -> list[dict[str, object]]:
    """Each event's JSON (its ``data:`` line), checked against its ``event:`` name."""
    events, name = [], None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            event = json.loads(line[len("data: ") :])
            assert event["type"] == name
            events.append(event)
    return events


def sse_call(client: openai.OpenAI, text: str, fmt: str) -> tuple[dict[str, str], list[dict]]:
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="coral", input=text, response_format=fmt, stream_format="sse"
    ) as response:
        assert response.headers["content-type"] == "text/event-stream"
        return dict(response.headers), sse_events(response.iter_lines())


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_sse_events_carry_the_same_audio(daemon: DaemonProcess, fmt: str) -> None:
    """speech.audio.delta events, then one speech.audio.done with usage; the deltas joined
    are the raw stream's bytes — live (a miss) and from the cache (a hit) alike."""
    client, text = client_for(daemon), f"您好，这里是政务服务热线。{fmt}"
    headers, events = sse_call(client, text, fmt)
    assert headers["x-cache"] == "miss"
    *deltas, done = events
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    assert done == {
        "type": "speech.audio.done",
        "usage": {"input_tokens": len(text), "output_tokens": 0, "total_tokens": len(text)},
    }
    live = b"".join(base64.b64decode(str(e["audio"])) for e in deltas)
    hit_headers, hit_events = sse_call(client, text, fmt)
    assert hit_headers["x-cache"] == "l1" and hit_events[-1] == done
    cached = b"".join(base64.b64decode(str(e["audio"])) for e in hit_events[:-1])
    raw = client.audio.speech.create(
        model="tts-1", voice="coral", input=text, response_format=fmt
    ).content
    assert cached == raw  # the complete file, as the cache holds it
    if fmt == "wav":
        assert np.array_equal(decode(live, fmt)[0], decode(raw, fmt)[0])
    else:
        assert 0 <= len(decode(live, fmt)[0]) - len(decode(raw, fmt)[0]) < MP3_SLACK


@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus", "alaw", "ulaw"])
def test_the_native_route_streams_every_format(daemon: DaemonProcess, fmt: str) -> None:
    """``"stream": true`` on /v1/tts, beyond wav and pcm; the stream's complete file is then
    served from the cache."""
    body = {"text": "欢迎致电政务服务热线。请稍候。", "format": fmt, "stream": True}
    status, headers, streamed = daemon.post("/v1/tts", body)
    assert status == 200 and headers["x-cache"] == "miss", streamed[:200]
    assert headers["transfer-encoding"] == "chunked"
    status, headers, cached = daemon.post("/v1/tts", body)
    assert status == 200 and headers["x-cache"] == "l1"
    with sf.SoundFile(io.BytesIO(cached)) as f:
        whole = f.read(dtype="float32")
    with sf.SoundFile(io.BytesIO(streamed)) as f:
        f.seekable = lambda: False  # type: ignore[method-assign]
        blocks = []
        while len(block := f.read(4096, dtype="float32")):
            blocks.append(block)
    heard = np.concatenate(blocks)
    if fmt == "mp3":
        assert 0 <= len(heard) - len(whole) < MP3_SLACK
    else:
        assert np.array_equal(heard, whole)


# -- the first chunk leaves before the last unit is synthesized -----------------------------


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Path]]:
    """The stand-in Sambert daemon whose unit with 慢 waits for a file (see the module)."""
    from tests.modeldir import make_model_dir

    tmp = tmp_path_factory.mktemp("gated")
    gate = tmp / "gate"
    d = DaemonProcess(
        tmp,
        module="tests.test_openai_sdk",
        env={"GATE_SYLLABLE": GATE_SYLLABLE, "GATE_FILE": str(gate), "CACHE_DIRECTORY": str(tmp)},
        engine_engines="sambert,baker",
        engine_default_voice="zhitian_emo",
        sambert_model_dir=str(make_model_dir(tmp / "model")),
        server_request_timeout_s="300",
    )
    d.wait_ready()
    yield d, gate
    gate.touch()
    assert d.stop() == 0, d.log()


def audible(data: bytes, fmt: str) -> bool:
    """Whether what arrived so far already holds some sound (not only a header)."""
    try:
        return len(decode(data, fmt)[0]) > 0
    except (sf.LibsndfileError, RuntimeError, ValueError):  # a header alone does not open
        return False


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_first_chunk_arrives_while_the_last_unit_is_still_synthesizing(
    gated: tuple[DaemonProcess, Path], fmt: str
) -> None:
    d, gate = gated
    gate.unlink(missing_ok=True)
    with client_for(d).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=GATED_TEXT, response_format=fmt
    ) as response:
        rid = response.headers["x-request-id"]
        chunks = response.iter_bytes()
        received = b""
        while not audible(received, fmt):  # the last unit cannot finish: its gate is shut
            received += next(chunks)
        assert not gate.exists()
        assert d.metric("sambertd_streams_active") == 1  # the request is still in flight
        assert not [r for r in d.audit_records() if r.get("request_id") == rid]
        gate.touch()  # now the last unit may finish
        received += b"".join(chunks)
    assert d.audit_for(rid)["status"] == 200
    assert seconds(received, fmt) > 2.0  # 20 syllables at 0.1 s, with pauses


def _serve_gated() -> None:
    """The stand-in daemon (tests/standin_daemon.py) with a voice that waits at the gate."""
    from tests import standin_daemon

    marker = "{" + GATE_SYLLABLE.rstrip("012345") + "$tone" + GATE_SYLLABLE[-1]
    gate = Path(os.environ["GATE_FILE"])

    class GatedVoice(standin_daemon._Voice):
        def forward(self, symbols: str, speed: float = 1.0, pitch: float = 1.0) -> np.ndarray:
            while marker in symbols and not gate.exists():
                time.sleep(0.01)
            return super().forward(symbols, speed, pitch)

    standin_daemon._Voice = GatedVoice  # type: ignore[misc]
    standin_daemon.main()


if __name__ == "__main__":
    _serve_gated()
