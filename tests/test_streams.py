"""Streams through the real daemon over raw HTTP: what a client sees when one fails after its
200 header (an incomplete chunked body, never a second response), what the audit says,
headers, memory bounds and the active-stream gauge."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess, standin_daemon

LONG_UNIT = "本市将于下月起全面推行企业开办一网通办，" * 9 + "请相互转告。"


def exchange(port: int, body: dict[str, object], timeout: float = 120) -> bytes:
    """One HTTP/1.1 request; everything the server sent until it closed the connection."""
    data = json.dumps(body, ensure_ascii=False).encode()
    head = (
        f"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head + data)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    return raw


def parse(raw: bytes) -> tuple[str, dict[str, str], list[bytes], bool]:
    """(status line, headers, chunks, whether the terminating zero-size chunk arrived)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    chunks, pos = [], 0
    while (eol := body.find(b"\r\n", pos)) >= 0:
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return status, headers, chunks, True
        start = eol + 2
        if start + size + 2 > len(body):
            break
        chunks.append(body[start : start + size])
        pos = start + size + 2
    return status, headers, chunks, False


def assert_cut_after_header(d: DaemonProcess, raw: bytes, error: str) -> dict[str, object]:
    """The client got a 200 stream that ends without its final chunk, and nothing else."""
    status, headers, chunks, terminated = parse(raw)
    assert status == "HTTP/1.1 200 OK", raw[:200]
    assert headers["transfer-encoding"] == "chunked"
    assert not terminated, "a failed stream must not look complete"
    assert raw.count(b"HTTP/1.1 ") == 1, "a second response inside the audio"
    assert b'"error"' not in raw
    assert len(chunks) >= 1
    record = d.audit_for(headers["x-request-id"])
    assert (record["status"], record["aborted"], record["error"]) == (200, True, error)
    assert d.metric("sambertd_streams_aborted_total") >= 1
    return record


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A unit with 障 (zhang4) fails like a GPU fault; one with 慢 (man4) takes 3 s, longer
    than server.request_timeout_s."""
    d = standin_daemon(
        tmp_path, {"STANDIN_FAULT": "zhang4", "STANDIN_SLOW": "man4"}, server_request_timeout_s="1"
    )
    d.wait_ready()
    yield d
    d.stop()


def test_a_stream_that_times_out_midway_is_cut_not_answered_twice(standin: DaemonProcess) -> None:
    """The reviewer's case: a later unit takes longer than the per-request timeout."""
    raw = exchange(standin.port, {"text": "您好。网络较慢，请稍候。", "stream": True})
    _, headers, chunks, _ = parse(raw)
    assert chunks[0].startswith(b"RIFF") and len(chunks) == 2  # WAV header, first unit
    assert headers["x-node"] and headers["x-request-id"]  # streams carry them too
    assert_cut_after_header(standin, raw, "timeout")
    standin.wait_until(lambda: standin.get("/ready")[0] == 200)  # and it serves on
    assert "Traceback" not in standin.log()


def test_an_engine_fault_midway_cuts_the_stream(standin: DaemonProcess) -> None:
    raw = exchange(standin.port, {"text": "您好。系统出现故障，请稍后再试。", "stream": True})
    assert parse(raw)[1]["x-voice"] == "zhitian_emo"
    assert_cut_after_header(standin, raw, "engine_error")
    status, headers, body = standin.post("/v1/tts", {"text": "您好。"})
    assert status == 200 and headers["x-voice"] == "zhitian_emo", body[:200]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path, cache_max_entry_bytes="150000", server_max_request_chars="3000")
    d.wait_ready()
    yield d
    d.stop()


def test_a_client_that_hangs_up_midway_is_recorded_not_an_error(daemon: DaemonProcess) -> None:
    data = json.dumps({"text": "您好。" + LONG_UNIT * 3, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=60) as s:
        s.sendall(
            b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = s.recv(4096)  # the header and the first chunk(s)
        rid = parse(head)[1]["x-request-id"]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    record = daemon.audit_for(rid)  # SO_LINGER 0: the close is a reset, as a crashed IVR's
    assert record["error"] == "client_closed" and record["aborted"] is True
    assert record["status"] == 200
    daemon.wait_until(lambda: daemon.metric("sambertd_in_flight") == 0)
    assert "internal error" not in daemon.log() and "Traceback" not in daemon.log()


def test_streams_are_counted_while_they_run(daemon: DaemonProcess) -> None:
    seen: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(daemon.metric("sambertd_streams_active"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        status, _, _ = daemon.post("/v1/tts", {"text": LONG_UNIT * 2, "stream": True})
    finally:
        stop.set()
        watcher.join()
    assert status == 200
    assert max(seen) == 1 and daemon.metric("sambertd_streams_active") == 0


def test_a_stream_too_long_to_cache_is_not_kept(daemon: DaemonProcess) -> None:
    """With cache.max_entry_bytes = 150 kB: a long stream keeps nothing (its memory stays
    bounded and it is not cached); a short one is cached once complete."""
    long = {"text": LONG_UNIT, "stream": True, "format": "pcm"}
    first = daemon.post("/v1/tts", long)
    assert first[0] == 200 and len(first[2]) > 150_000
    assert daemon.post("/v1/tts", long)[1]["x-cache"] == "miss"
    short = {"text": "请稍候。", "stream": True, "format": "pcm"}
    daemon.post("/v1/tts", short)
    again = daemon.post("/v1/tts", short)
    assert again[1]["x-cache"] == "l1"


def test_a_reader_that_stops_reading_is_cut_after_the_timeout(tmp_path: Path) -> None:
    """A stream's client that takes no data for server.request_timeout_s does not hold the
    stream (its memory, its slot in the drain) forever."""
    d = DaemonProcess(tmp_path, server_request_timeout_s="2", server_max_request_chars="3000")
    try:
        d.wait_ready()
        data = json.dumps({"text": LONG_UNIT * 3, "stream": True}).encode()
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
            s.settimeout(60)
            s.connect(("127.0.0.1", d.port))
            s.sendall(
                b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            rid = parse(s.recv(1024))[1]["x-request-id"]  # then read nothing more
            record = d.audit_for(rid, timeout=120)
        assert (record["aborted"], record["error"]) == (True, "client_too_slow")
        assert d.metric("sambertd_streams_active") == 0
    finally:
        d.stop()
