"""SSML, timestamps and subtitles through a real daemon (embedded voice), and the hostile
XML a public endpoint will be sent."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import soundfile as sf

from tests.daemon import DaemonProcess

BREAK = '<speak>您好<break time="500ms"/>欢迎致电政务服务热线。</speak>'
NO_BREAK = "<speak>您好欢迎致电政务服务热线。</speak>"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("ssml"), audio_format="wav")
    try:
        d.wait_ready()
        yield d
    finally:
        d.stop()


def seconds(body: bytes) -> float:
    data, rate = sf.read(io.BytesIO(body), dtype="int16")
    return len(data) / rate


def error(body: bytes) -> dict[str, str]:
    return dict(json.loads(body)["error"])


def test_a_break_is_real_silence(daemon: DaemonProcess) -> None:
    status, _headers, with_break = daemon.post("/v1/tts", {"text": BREAK})
    assert status == 200, with_break
    status, _, without = daemon.post("/v1/tts", {"text": NO_BREAK})
    assert status == 200
    assert seconds(with_break) - seconds(without) >= 0.45
    data, _rate = sf.read(io.BytesIO(with_break), dtype="int16")
    # somewhere there is half a second of digital silence
    run = longest = 0
    for sample in abs(data[::24]):  # every ms at 24 kHz
        run = run + 1 if sample == 0 else 0
        longest = max(longest, run)
    assert longest >= 450


def test_text_type_ssml_on_get_and_plain_text_left_alone(daemon: DaemonProcess) -> None:
    status, _, body = daemon.get(f"/v1/tts?text_type=ssml&text={quote(BREAK)}")
    assert status == 200 and seconds(body) > 1.0
    # plain text that happens to hold < and & is read, not parsed
    status, _, body = daemon.post("/v1/tts", {"text": "a<b & c>d，您好。"})
    assert status == 200
    status, _, body = daemon.post("/v1/tts", {"text": "您好", "text_type": "ssml"})
    assert status == 400 and error(body)["code"] == "invalid_ssml"


def test_openai_route_takes_ssml_input(daemon: DaemonProcess) -> None:
    status, _, body = daemon.post(
        "/v1/audio/speech", {"model": "tts-1", "input": BREAK, "response_format": "wav"}
    )
    assert status == 200 and seconds(body) > 1.0


@pytest.mark.parametrize(
    ("text", "code", "needle"),
    [
        ("<speak>您好<break></speak>", "invalid_ssml", "line 1, column"),
        ("<speak><audio src='a.wav'/></speak>", "unsupported_ssml", "<say-as>"),
        (
            '<speak><say-as interpret-as="vehicle">A1</say-as></speak>',
            "unsupported_ssml",
            "telephone",
        ),
        ('<speak><prosody rate="warp">快</prosody></speak>', "invalid_ssml", "rate"),
    ],
)
def test_bad_ssml_is_a_400_that_says_what(
    daemon: DaemonProcess, text: str, code: str, needle: str
) -> None:
    status, headers, body = daemon.post("/v1/tts", {"text": text})
    assert status == 400 and headers["content-type"].startswith("application/json")
    err = error(body)
    assert err["code"] == code and needle in err["message"], err


class _Listener:
    """A TCP socket on loopback that records whether anybody connected: the URL an
    external entity would make the parser fetch."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connected = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connected = True
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_xxe_and_billion_laughs_get_400_and_read_nothing(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a")
    listener = _Listener()
    try:
        payloads = [
            f'<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY x SYSTEM "file://{secret}">]>'
            "<speak>&x;</speak>",
            f'<!DOCTYPE speak SYSTEM "http://127.0.0.1:{listener.port}/x.dtd"><speak>你好</speak>',
            f'<!DOCTYPE speak [<!ENTITY % p SYSTEM "http://127.0.0.1:{listener.port}/p">%p;]>'
            "<speak>你好</speak>",
            '<!DOCTYPE l [<!ENTITY a "哈哈哈哈哈哈哈哈"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">]>'
            "<speak>&d;&d;&d;&d;</speak>",
        ]
        for payload in payloads:
            status, _, body = daemon.post("/v1/tts", {"text": payload, "text_type": "ssml"})
            assert status == 400, body
            assert error(body)["code"] == "invalid_ssml"
            assert b"TOP-SECRET" not in body
    finally:
        listener.close()
    assert not listener.connected, "the parser fetched an external entity"


def test_timestamps_and_subtitles_come_with_the_audio(daemon: DaemonProcess) -> None:
    text = "各位市民：本市将于2025年3月1日起施行新规。咨询电话12345。"
    status, headers, body = daemon.post(
        "/v1/tts", {"text": text, "timestamps": True, "subtitles": "vtt"}
    )
    assert status == 200 and headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    audio = base64.b64decode(answer["audio"])
    duration_ms = seconds(audio) * 1000
    chars = answer["timestamps"]["characters"]
    assert [c["text"] for c in chars][:4] == ["各", "位", "市", "民"]
    assert any(c["text"] == "2025" and c["reading"] == "二零二五" for c in chars)
    assert abs(chars[-1]["end_ms"] - duration_ms) <= 100
    assert answer["subtitles"].startswith("WEBVTT\n\n") and "12345。" in answer["subtitles"]
    # a second call is a cache hit with the same timing
    status, headers, again = daemon.post(
        "/v1/tts", {"text": text, "timestamps": True, "subtitles": "vtt"}
    )
    assert headers["x-cache"] in ("l1", "l2") and json.loads(again) == answer


def test_bad_timing_options_are_refused(daemon: DaemonProcess) -> None:
    status, _, body = daemon.post("/v1/tts", {"text": "您好", "subtitles": "ass"})
    assert status == 422 and "srt, vtt" in error(body)["message"]
    status, _, body = daemon.post("/v1/tts", {"text": "您好", "text_type": "markdown"})
    assert status == 422 and "text_type" in error(body)["message"]


def test_a_timed_stream_sends_each_units_timestamps_with_its_audio(
    daemon: DaemonProcess,
) -> None:
    text = "各位市民：本市将于2025年3月1日起施行新规。详情请拨打12345咨询。谢谢。"
    call = {"text": text, "stream": True, "timestamps": True, "subtitles": "srt", "format": "pcm"}
    status, headers, body = daemon.post("/v1/tts", call)
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in body.decode().splitlines()]
    *chunks, last = lines
    assert last["done"] is True and last["subtitles"].startswith("1\n00:00:00,")
    assert len(chunks) >= 3  # one line per unit, each with that unit's characters
    audio = b"".join(base64.b64decode(c["audio"]) for c in chunks)
    duration_ms = len(audio) / 2 / int(headers["x-sample-rate"]) * 1000
    assert abs(last["duration_ms"] - duration_ms) <= 1
    starts = [c["timestamps"]["characters"][0]["start_ms"] for c in chunks]
    assert starts == sorted(starts) and starts[0] < 1000 < starts[-1]
    assert abs(chunks[-1]["timestamps"]["characters"][-1]["end_ms"] - duration_ms) <= 100
    # the same call again is served from the cache, in the same shape
    status, headers, again = daemon.post("/v1/tts", call)
    assert status == 200 and headers["x-cache"] in ("l1", "l2")
    *cached, cached_last = [json.loads(x) for x in again.decode().splitlines()]
    assert b"".join(base64.b64decode(c["audio"]) for c in cached) == audio
    joined = [ch for c in chunks for ch in c["timestamps"]["characters"]]
    assert cached[0]["timestamps"]["characters"] == joined
    assert cached_last["subtitles"] == last["subtitles"]


def test_hostile_inputs_are_client_errors_not_500s(daemon: DaemonProcess) -> None:
    status, _, body = daemon.post(
        "/v1/tts", {"text": '<speak><prosody volume="1000000dB">你好</prosody></speak>'}
    )
    assert status == 400 and error(body)["code"] == "invalid_ssml"
    raw = b'{"text": "<speak>\\ud800\\u4f60</speak>"}'  # a lone surrogate, JSON-escaped
    status, _, body = daemon.request(
        "POST", "/v1/tts", headers={"Content-Type": "application/json"}, raw=raw
    )
    assert status == 400 and error(body)["code"] == "invalid_ssml"
    status, _, body = daemon.post("/v1/tts", {"text": "7)73。，", "timestamps": True})
    assert status == 200, body
