"""The audit log as the daemon writes it: one record per API request, a chain an auditor can
verify, and nothing acknowledged lost to a kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.daemon import DaemonProcess


def records(directory: Path) -> list[dict[str, object]]:
    out = []
    for path in sorted(directory.glob("audit-*.jsonl")):
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):  # a torn last line after kill -9
                out.append(json.loads(line))
    return out


def verify_cli(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sambertd", "audit", "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_record_per_request_and_the_chain_verifies(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path)
    d.wait_ready()
    hostile = '您好\n{"forged": true}\x1b[31m'
    try:
        d.post("/v1/tts", {"text": "您好。"}, headers={"X-Request-Id": "call-1"})
        d.post("/v1/tts", {"text": hostile}, headers={"X-Request-Id": "call-2"})
        d.post("/v1/tts", {"text": 5}, headers={"X-Request-Id": "call-3"})  # a 422
        d.get("/ready")  # not an API route: not audited
    finally:
        assert d.stop() == 0
    recs = records(d.audit_dir)
    assert [r["request_id"] for r in recs] == ["call-1", "call-2", "call-3"]
    first = recs[0]
    assert first["status"] == 200 and first["route"] == "/v1/tts"
    assert first["voice"] == "baker" and first["cache"] == "miss"
    assert first["source_ip"] == "127.0.0.1" and first["text_len"] == 3
    assert len(str(first["text_sha256"])) == 64 and "text" not in first  # text not stored
    assert recs[2]["status"] == 422
    raw = b"".join(p.read_bytes() for p in d.audit_dir.glob("audit-*.jsonl"))
    assert raw.count(b"\n") == 3 and b"forged" not in raw  # no line injection
    ok = verify_cli(d.audit_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_tampering_is_detected_by_the_cli(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path)
    d.wait_ready()
    try:
        for i in range(4):
            d.post("/v1/tts", {"text": f"第{i}句。"})
    finally:
        d.stop()
    (path,) = d.audit_dir.glob("audit-*.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[1])
    edited["status"] = 500
    path.write_bytes(lines[0] + json.dumps(edited).encode() + b"\n" + b"".join(lines[2:]))
    bad = verify_cli(path)
    assert bad.returncode == 1 and ":2" in bad.stdout
    path.write_bytes(b"".join(lines[:1] + lines[2:]))  # a deleted record
    assert verify_cli(path).returncode == 1


def test_kill_9_under_load_loses_no_acknowledged_record(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, server_queue_size="64")
    d.wait_ready()
    acknowledged: list[str] = []

    async def load() -> None:
        async with aiohttp.ClientSession() as s:

            async def client(c: int) -> None:
                for i in range(400):  # bounded in count; the kill ends it sooner
                    rid = f"c{c}-{i}"
                    try:
                        async with s.post(
                            f"http://127.0.0.1:{d.port}/v1/tts",
                            json={"text": f"第{i % 5}号窗口。"},
                            headers={"X-Request-Id": rid},
                        ) as r:
                            await r.read()
                            if r.status == 200:
                                acknowledged.append(rid)  # the client has its answer
                    except aiohttp.ClientError:
                        return

            async def killer() -> None:
                # Under load, however long it takes this machine to answer 20 requests.
                while len(acknowledged) <= 20:
                    await asyncio.sleep(0.05)
                os.kill(d.proc.pid, signal.SIGKILL)

            await asyncio.wait_for(asyncio.gather(killer(), *(client(c) for c in range(4))), 60)

    started = time.monotonic()
    asyncio.run(load())
    d.proc.wait(10)
    d.stop()
    assert time.monotonic() - started < 60
    assert len(acknowledged) > 20
    written = {str(r["request_id"]) for r in records(d.audit_dir)}
    missing = [rid for rid in acknowledged if rid not in written]
    assert not missing, f"{len(missing)} acknowledged request(s) not in the audit log"
    report = verify_cli(d.audit_dir)
    # At most the record being written at the kill may be torn; nothing else may be broken.
    assert report.returncode == 0 or "torn" in report.stdout, report.stdout


def test_a_full_audit_disk_withholds_answers_and_is_counted(tmp_path: Path) -> None:
    """The audit directory on a small tmpfs of our own (unmounted afterwards), filled up
    while the daemon runs: the next API request gets 503 audit_unavailable, never an
    unrecorded answer, and sambertd_audit_write_failures_total counts it for the alert."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        d = DaemonProcess(tmp_path, audit_directory=str(disk))
        try:
            d.wait_ready()
            assert d.post("/v1/tts", {"text": "您好。"})[0] == 200
            with contextlib.suppress(OSError), (disk / "filler").open("wb") as f:
                while True:  # bounded by the tmpfs's 1 MiB
                    f.write(b"\0" * 65536)
            # The audit file's last page may still have room for a few records.
            for i in range(40):
                status, _, body = d.post("/v1/tts", {"text": f"请稍候{i}。"})
                if status != 200:
                    break
            assert status == 503 and json.loads(body)["error"]["code"] == "audit_unavailable"
            assert d.metric("sambertd_audit_write_failures_total") >= 1
        finally:
            d.stop()
    finally:
        subprocess.run(["umount", str(disk)], check=False)
