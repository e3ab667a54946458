"""Failures on the request path, through the real daemon: work past its deadline stops, a
long text is not a hung worker, a client's mistake never trips an engine's breaker, any
unexpected exception is a JSON 500 that is audited, and workers are sized by GPUs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sambertd import audio, runtime
from sambertd.config import AuditConfig, Config, ServerConfig
from sambertd.metrics import Metrics
from sambertd.routes import create_app
from sambertd.state import State
from tests.daemon import DaemonProcess, standin_daemon

# 60 units of 9 characters (max_sentence_chars 12): seconds of work on any machine, in
# steps far shorter than a second.
MANY_UNITS = "请到三号窗口办理。" * 60


def test_work_past_its_deadline_stops_between_units(tmp_path: Path) -> None:
    d = DaemonProcess(
        tmp_path,
        server_request_timeout_s="1",
        frontend_max_sentence_chars="12",
        server_max_request_chars="2000",
    )
    try:
        d.wait_ready()
        status, headers, body = d.post("/v1/tts", {"text": MANY_UNITS})
        assert status == 504 and json.loads(body)["error"]["code"] == "timeout"
        assert "retry-after" not in headers  # the same text would time out again
        d.wait_until(lambda: d.metric("sambertd_in_flight") == 0, timeout=20)
        # The worker stopped at a unit boundary instead of rendering all 60 units.
        assert d.metric("sambertd_units_synthesized_total") < 60
        assert d.metric("sambertd_jobs_stopped") == 1
        assert d.get("/ready")[0] == 200
    finally:
        d.stop()


def test_a_long_text_is_progress_not_a_hung_worker(tmp_path: Path) -> None:
    """hang_timeout_s = 2 s while one request renders for over 4 s: /ready must stay 200
    (a 503 would move the VIP and stop the watchdog pings).  The stand-in engine's units take
    a fixed 0.25 s (a sleep, STANDIN_SLOW): with baker a unit's time is the machine's — 0.1 s
    here, near hang_timeout_s on a slow runner, where the test would measure the machine."""
    d = standin_daemon(
        tmp_path,
        {"STANDIN_SLOW": "qing3", "STANDIN_SLOW_S": "0.25"},  # 请, once in every unit
        server_hang_timeout_s="2",
        frontend_max_sentence_chars="12",
        server_max_request_chars="2000",
    )
    try:
        d.wait_ready()
        statuses: list[int] = []
        result: list[int] = []
        text = "请到三号窗口办理。" * 16  # 16 units of 0.25 s at the least
        worker = threading.Thread(
            target=lambda: result.append(d.post("/v1/tts", {"text": text})[0])
        )
        started = time.monotonic()
        worker.start()
        while worker.is_alive():
            statuses.append(d.get("/ready")[0])
            time.sleep(0.1)
        worker.join()
        assert result == [200]
        assert time.monotonic() - started > 2, "the request must outlast hang_timeout_s"
        assert set(statuses) == {200}, statuses
        assert d.metric("sambertd_units_synthesized_total") >= 16
    finally:
        d.stop()


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[DaemonProcess]:
    """One stand-in GPU, the worker count left to the daemon, voices that render volume
    only (as the adapter's first version did)."""
    d = standin_daemon(
        tmp_path, {"STANDIN_GPUS": "1", "STANDIN_CONTROLS": "volume"}, server_workers="0"
    )
    d.wait_ready()
    yield d
    d.stop()


def test_a_clients_mistake_never_trips_the_engine_breaker(standin: DaemonProcess) -> None:
    """These voices render volume only: speed 1.2 is the client's error (422), and 25 of
    them (the breaker opens at 20 calls and 5 % errors) leave the engine serving."""
    for _ in range(25):
        status, _, body = standin.post("/v1/tts", {"text": "您好。", "speed": 1.2})
        error = json.loads(body)["error"]
        assert status == 422 and error["code"] == "unsupported_parameter", body
        assert "volume only" in error["message"]
    status, headers, _ = standin.post("/v1/tts", {"text": "您好。", "voice": "zhitian_emo"})
    assert status == 200 and headers["x-voice"] == "zhitian_emo"
    assert "x-degraded" not in headers
    assert json.loads(standin.get("/ready")[2])["engines"]["sambert"] == "ok"
    voices = {v["id"]: v for v in json.loads(standin.get("/v1/voices")[2])["voices"]}
    assert voices["zhitian_emo"]["controls"] == ["volume"]


def test_workers_are_four_per_gpu_the_engine_runs_on(standin: DaemonProcess) -> None:
    ready = json.loads(standin.get("/ready")[2])
    assert ready["workers"] == 4 and standin.metric("sambertd_workers") == 4


def test_on_cpu_workers_follow_the_cpus_this_process_may_use() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert ServerConfig().worker_count(0) == cpus  # one thread per call: one call per CPU
    assert ServerConfig().worker_count(0, threads=2) == max(1, cpus // 2)
    assert ServerConfig().worker_count(2) == 8
    assert ServerConfig(workers=3).worker_count(2) == 3


# -- unexpected exceptions: the real app in-process, a fault placed in the encoder -------------


@pytest.mark.parametrize("fault", [RuntimeError("codec: lame failed"), MemoryError()])
def test_an_unexpected_exception_is_a_json_500_that_is_audited(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault: BaseException,
) -> None:
    """Fault injection (a codec failing, memory running out) where no real input can cause
    it: the real app, pool and engine run; only the encoder raises."""
    config = dataclasses.replace(Config(), audit=AuditConfig(directory=str(tmp_path / "audit")))
    built = runtime.build(config, Metrics())

    def broken(*args: object) -> bytes:
        raise fault

    async def go() -> tuple[int, dict[str, str], dict[str, object]]:
        state = State(built, Metrics())
        test_server = TestServer(create_app(state))
        await test_server.start_server()
        try:
            monkeypatch.setattr(audio, "encode", broken)
            async with (
                aiohttp.ClientSession() as session,
                session.post(test_server.make_url("/v1/tts"), json={"text": "您好。"}) as r,
            ):
                return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.json()
        finally:
            await test_server.close()
            await runtime.close(built)

    with caplog.at_level(logging.ERROR, logger="sambertd"):
        status, headers, body = asyncio.run(go())
    error = body["error"]
    assert status == 500 and isinstance(error, dict)
    assert error["code"] == "internal_error"
    assert error["request_id"] == headers["x-request-id"] and headers["x-node"]
    assert type(fault).__name__ in caplog.text  # the traceback went to the log
    (record,) = [
        json.loads(line)
        for path in (tmp_path / "audit").glob("audit-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert (record["status"], record["error"]) == (500, "internal_error")
    assert record["request_id"] == headers["x-request-id"]
