"""The production engine through the real daemon over HTTP: modelscope's Voice and KAN-TTS
(random weights, tests/kantts_model.py), no ttsfrd, no stand-in — both voices, emotions,
streaming, the cache key following the model, the ladder when the model breaks, and the
operator's commands."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from tests.daemon import DaemonProcess


def sambert_daemon(tmp: Path, model: Path, **settings: str) -> DaemonProcess:
    return DaemonProcess(
        tmp,
        env={"CACHE_DIRECTORY": str(tmp / "cache")},
        engine_engines="sambert,baker",
        engine_default_voice="zhitian_emo",
        sambert_model_dir=str(model),
        sambert_voices="",
        **settings,
    )


@pytest.fixture(scope="module")
def daemon(kantts_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = sambert_daemon(tmp_path_factory.mktemp("sambert"), kantts_model)
    d.wait_ready(timeout=120)
    yield d
    d.stop()


def test_both_voices_are_listed_and_speak_at_16_khz(daemon: DaemonProcess) -> None:
    listed = {v["id"]: v for v in json.loads(daemon.get("/v1/voices")[2])["voices"]}
    assert (
        listed["zhitian_emo"]["engine"] == "sambert"
        and "happy" in listed["zhitian_emo"]["emotions"]
    )
    assert listed["zhida"]["emotions"] == ["neutral"]
    for body in (
        {"text": "您好，欢迎致电。", "voice": "zhitian_emo", "emotion": "happy"},
        {"text": "您好，欢迎致电。", "voice": "zhida"},
    ):
        status, headers, audio = daemon.post("/v1/tts", body)
        assert status == 200, audio[:300]
        assert headers["x-voice"] == body["voice"] and "x-degraded" not in headers
        info = sf.info(io.BytesIO(audio))
        assert info.samplerate == 16000 and info.frames > 8000
    ready = json.loads(daemon.get("/ready")[2])
    assert ready["status"] == "ready" and ready["engines"]["sambert"] == "ok"


def test_a_stream_from_the_production_engine(daemon: DaemonProcess) -> None:
    status, headers, body = daemon.post(
        "/v1/tts", {"text": "第一句话。第二句话。", "voice": "zhida", "stream": True}
    )
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    data, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == 16000 and len(data) > 16000 // 2


def test_the_cache_key_follows_the_model(kantts_model: Path, tmp_path: Path) -> None:
    """A site replaces the model in place and reloads: new audio, not the cached one."""
    model = shutil.copytree(kantts_model, tmp_path / "model")
    d = sambert_daemon(tmp_path, model)
    try:
        d.wait_ready(timeout=120)
        text = {"text": "请稍候。", "voice": "zhida"}
        first = d.post("/v1/tts", text)
        assert first[1]["x-cache"] == "miss" and d.post("/v1/tts", text)[1]["x-cache"] == "l1"
        from tests.kantts_model import build_voice

        build_voice(model, "zhida", "M1", seed=7)  # new weights, same names
        assert d.post("/v1/admin/reload", {})[0] == 200
        again = d.post("/v1/tts", text)
        assert again[1]["x-cache"] == "miss" and again[2] != first[2]
    finally:
        d.stop()


def test_a_broken_model_falls_back_to_baker(kantts_model: Path, tmp_path: Path) -> None:
    model = shutil.copytree(kantts_model, tmp_path / "model")
    (model / "voices" / "zhitian_emo" / "am" / "ckpt" / "checkpoint_0.pth").write_bytes(b"torn")
    d = sambert_daemon(tmp_path, model)
    try:
        d.wait_ready(timeout=120)
        status, headers, _ = d.post("/v1/tts", {"text": "您好。", "voice": "zhitian_emo"})
        assert status == 200 and headers["x-voice"] == "baker" and headers["x-degraded"] == "1"
        assert "cannot load" in json.loads(d.get("/ready")[2])["engines"]["sambert"]
    finally:
        d.stop()


def sambertd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sambertd", *args], capture_output=True, text=True, timeout=300
    )


def test_check_loads_every_voice_and_times_a_sentence(kantts_model: Path) -> None:
    done = sambertd("check", "--model-dir", str(kantts_model), "--load")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "builtin front-end" in done.stdout
    for voice in ("zhitian_emo", "zhida"):
        assert f"{voice}: " in done.stdout and "s of audio in" in done.stdout


def test_frontend_prints_the_symbols(kantts_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMBERTD_SAMBERT_MODEL_DIR", str(kantts_model))
    done = sambertd("frontend", "您好。", "--symbols", "zhitian_emo", "--emotion", "sad")
    assert done.returncode == 0, done.stderr
    assert "{n_c$tone2$s_begin$word_begin$emotion_sad$F7}" in done.stdout
