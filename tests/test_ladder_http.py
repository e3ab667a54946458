"""The degradation ladder through the real daemon: the sambert engine cannot load here (its
model directory has the right layout but one-byte checkpoints, or torch is not installed — a
real failure either way, no stand-in), the real baker engine is the next rung."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess
from tests.modeldir import make_model_dir


def start(tmp_path: Path, degrade: bool) -> DaemonProcess:
    model = make_model_dir(tmp_path / "model")
    d = DaemonProcess(
        tmp_path,
        engine_engines="sambert,baker",
        engine_default_voice="zhitian_emo",
        engine_degrade="true" if degrade else "false",
        sambert_model_dir=str(model),
    )
    if degrade:
        d.wait_ready()
    return d


@pytest.fixture
def degrading(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = start(tmp_path, degrade=True)
    yield d
    d.stop()


def test_voices_of_a_failed_engine_are_served_by_the_next_rung(degrading: DaemonProcess) -> None:
    status, headers, body = degrading.post(
        "/v1/tts", {"text": "您好。", "voice": "zhitian_emo", "emotion": "happy"}
    )
    assert status == 200, body[:300]
    assert headers["x-degraded"] == "1" and headers["x-voice"] == "baker"
    # the default voice (zhitian_emo) degrades the same way
    status, headers, _ = degrading.post("/v1/tts", {"text": "您好。"})
    assert status == 200 and headers["x-degraded"] == "1"
    # asking for baker directly is not degraded
    status, headers, _ = degrading.post("/v1/tts", {"text": "您好。", "voice": "baker"})
    assert status == 200 and "x-degraded" not in headers


def test_ready_says_degraded_and_why(degrading: DaemonProcess) -> None:
    status, _, body = degrading.get("/ready")
    ready = json.loads(body)
    assert status == 200 and ready["status"] == "degraded"
    assert ready["engines"]["baker"] == "ok"
    assert "cannot load" in ready["engines"]["sambert"]
    # ... and /metrics says so for the alert rules (config/prometheus/alerts.yml)
    state = ready["engines"]["sambert"].split(":")[0]
    assert degrading.metric(f'sambertd_engine_state{{engine="sambert",state="{state}"}}') == 1
    assert degrading.metric('sambertd_engine_state{engine="baker",state="ok"}') == 1
    assert degrading.metric('sambertd_engine_state{engine="sambert",state="ok"}') == 0
    voices = {v["id"] for v in json.loads(degrading.get("/v1/voices")[2])["voices"]}
    assert {"zhitian_emo", "zhibei_emo", "baker"} <= voices


def test_without_degrade_requests_get_503_and_ready_fails(tmp_path: Path) -> None:
    d = start(tmp_path, degrade=False)
    try:
        d.wait_until(lambda: d.get("/ready")[0] > 0)  # it answers once its engines are up
        status, headers, body = d.get("/ready")
        assert status == 503 and json.loads(body)["status"] == "engine unavailable"
        status, headers, body = d.post("/v1/tts", {"text": "您好。"})
        assert status == 503
        assert json.loads(body)["error"]["code"] == "engine_unavailable"
        assert headers["retry-after"] == "5"
        status, _, _ = d.post("/v1/tts", {"text": "您好。", "voice": "baker"})
        assert status == 200  # baker's own voice still works on this node
    finally:
        d.stop()
