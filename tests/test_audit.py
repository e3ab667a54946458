"""Audit log: hash chain, rotation, restart, tamper detection, durability, journald encoding.

Real files under tmp_path and the real writer thread; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sambertd
from sambertd.audit import (
    GENESIS,
    AuditLog,
    canonical,
    day_path,
    encode_journal,
    format_report,
    journal_fields,
    record_hash,
    verify,
)

DAY = 86400.0
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp()
D0 = dt.date(2024, 3, 1)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_log(directory: Path, clock: Clock, retention_days: int = 180) -> AuditLog:
    log = AuditLog(
        directory,
        journal=False,
        clock=clock,
        fsync_interval_s=0.05,
        retention_days=retention_days,
    )
    log.start_sync()
    return log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def records(directory: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for path in sorted(directory.glob("audit-*.jsonl")):
        out.extend(json.loads(line) for line in lines(path))
    return out


@pytest.fixture
def three_days(tmp_path: Path) -> Iterator[Path]:
    """A log of 3 days x 10 records: seq 1-10, 11-20, 21-30."""
    directory = tmp_path / "audit"
    clock = Clock()
    log = open_log(directory, clock)
    for day in range(3):
        clock.now = T0 + day * DAY
        for i in range(10):
            log.write_sync({"route": "/v1/tts", "status": 200, "subject": f"u{day}", "n": i})
    log.close_sync()
    yield directory


def day_file(directory: Path, n: int) -> Path:
    return day_path(directory, D0 + dt.timedelta(days=n))


def rewrite(path: Path, new_lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in new_lines))


def forge(line: bytes, **changes: object) -> bytes:
    """What a careful attacker writes: changed content with a recomputed hash."""
    record = json.loads(line)
    record.update(changes)
    record["hash"] = record_hash(record)
    return canonical(record)


# --------------------------------------------------------------------------- the chain


def test_chain_across_rotation_and_restart(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    clock = Clock(T0 + 12 * 3600 - 5)  # 23:59:55 UTC
    log = open_log(directory, clock)
    for i in range(100):
        log.write_sync({"route": "/v1/tts", "i": i})
    clock.now += 10  # past midnight: the next record opens the next day's file
    for i in range(100, 200):
        log.write_sync({"route": "/v1/tts", "i": i})
    log.close_sync()
    assert len(lines(day_file(directory, 0))) == 100
    assert len(lines(day_file(directory, 1))) == 100

    log = open_log(directory, clock)  # restart: continues seq and prev
    assert log.last_seq == 200
    for i in range(200, 300):
        last = log.write_sync({"route": "/v1/tts", "i": i})
    log.close_sync()

    recs = records(directory)
    assert [r["seq"] for r in recs] == list(range(1, 301))
    assert [r["i"] for r in recs] == list(range(300))
    assert recs[0]["prev"] == GENESIS
    report = verify([directory])
    assert report.ok and report.problems == [] and report.torn == []
    assert report.records == 300 and report.last_hash == last and report.last_seq == 300
    assert format_report(report).startswith("OK: 300 records in 2 file(s), seq 1..300")


def test_modes_and_line_format(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "audit"
    log = open_log(directory, Clock())
    digest = log.write_sync({"subject": "张三", "route": "/v1/tts"})
    log.close_sync()
    path = day_file(directory, 0)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    line = lines(path)[0]
    assert "张三".encode() in line and b": " not in line and b", " not in line
    record = json.loads(line)
    assert list(record) == sorted(record)
    assert record["hash"] == digest == record_hash(record)
    assert record["seq"] == 1 and record["prev"] == GENESIS


def test_untouched_log_verifies(three_days: Path) -> None:
    report = verify([three_days])
    assert (report.ok, report.records, report.problems, report.torn) == (True, 30, [], [])
    # Files given one by one, in any order, are read oldest first.
    files = [day_file(three_days, n) for n in (2, 0, 1)]
    assert verify(files).ok


# --------------------------------------------------------------------------- tampering


def test_modified_record(three_days: Path) -> None:
    path = day_file(three_days, 1)
    content = lines(path)
    content[3] = content[3].replace(b'"subject":"u1"', b'"subject":"u9"')
    rewrite(path, content)
    report = verify([three_days])
    assert not report.ok
    assert report.problems == [
        f"{path}:4: record modified: content does not match its hash (seq 14)"
    ]


def test_modified_record_with_recomputed_hash(three_days: Path) -> None:
    path = day_file(three_days, 1)
    content = lines(path)
    content[3] = forge(content[3], subject="u9")
    rewrite(path, content)
    (problem,) = verify([three_days]).problems
    assert problem.startswith(f"{path}:5: prev does not match the line before it ({path}:4")


def test_deleted_record(three_days: Path) -> None:
    path = day_file(three_days, 1)
    content = lines(path)
    del content[3]
    rewrite(path, content)
    report = verify([three_days])
    assert report.problems == [f"{path}:4: seq 14 missing after {path}:3 (1 record(s) deleted)"]


def test_reordered_pair(three_days: Path) -> None:
    path = day_file(three_days, 1)
    content = lines(path)
    content[3], content[4] = content[4], content[3]
    rewrite(path, content)
    (problem,) = verify([three_days]).problems
    assert problem.startswith(f"{path}:5: seq 14 out of order: it comes after seq 15 ({path}:4)")


def test_inserted_forged_record(three_days: Path) -> None:
    path = day_file(three_days, 1)
    content = lines(path)
    content.insert(4, forge(content[3], subject="admin"))  # a second seq 14, valid hash
    rewrite(path, content)
    (problem,) = verify([three_days]).problems
    assert problem.startswith(f"{path}:5: seq 14 repeated (also {path}:4)")


def test_inserted_foreign_line(three_days: Path) -> None:
    path = day_file(three_days, 1)
    content = lines(path)
    content.insert(4, b"GET /admin 200")
    rewrite(path, content)
    (problem,) = verify([three_days]).problems
    assert problem.startswith(f"{path}:5: not an audit record: not valid JSON")


def test_deleted_middle_day_file(three_days: Path) -> None:
    day_file(three_days, 1).unlink()
    report = verify([three_days])
    first, last = day_file(three_days, 0), day_file(three_days, 2)
    assert report.problems == [
        f"{last}:1: seq 11..20 missing between {first}:10 and here (10 records): "
        "records or a whole day file were deleted"
    ]


def test_torn_last_line_then_restart(three_days: Path) -> None:
    path = day_file(three_days, 2)
    data = path.read_bytes()
    path.write_bytes(data[: -len(lines(path)[-1]) // 2])  # power cut half-way through seq 30
    report = verify([three_days])
    assert report.ok and report.problems == [] and report.records == 29
    (torn,) = report.torn
    assert torn.startswith(f"{path}:10: torn last line")

    clock = Clock(T0 + 2 * DAY)
    log = open_log(three_days, clock)
    assert log.last_seq == 29  # continues from the last complete line
    log.write_sync({"route": "/v1/tts", "n": "after"})
    log.close_sync()
    assert json.loads(lines(path)[-1])["seq"] == 30
    report = verify([three_days])
    assert report.ok and report.problems == [] and report.records == 30
    (torn,) = report.torn
    assert torn.startswith(f"{path}:10: torn record (incomplete write sealed by a restart")
    assert "torn:" in format_report(report)


# --------------------------------------------------------------------------- retention


def test_retention(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    for back in (2, 3, 4, 40):
        day_file(directory, -back).write_bytes(b"")
    other = directory / "notes.txt"
    other.write_text("not ours")
    clock = Clock()
    log = open_log(directory, clock, retention_days=3)
    log.write_sync({"route": "/v1/tts"})
    assert not day_file(directory, -4).exists() and not day_file(directory, -40).exists()
    assert day_file(directory, -3).exists() and day_file(directory, -2).exists()
    assert other.exists()
    # At rotation, too: two days on, the 3- and 2-day-old files are now too old.
    clock.now += 2 * DAY
    log.write_sync({"route": "/v1/tts"})
    log.close_sync()
    assert not day_file(directory, -3).exists() and not day_file(directory, -2).exists()
    assert day_file(directory, 0).exists() and day_file(directory, 2).exists()


def test_retention_never_deletes_today_or_yesterday(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    for back in (1, 2):
        day_file(directory, -back).write_bytes(b"")
    log = open_log(directory, Clock(), retention_days=0)
    log.close_sync()
    assert day_file(directory, -1).exists() and day_file(directory, 0).exists()
    assert not day_file(directory, -2).exists()


# --------------------------------------------------------------------------- hostile values


def test_hostile_values_stay_on_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    log = open_log(directory, Clock())
    hostile = "a\nb\r\n\x1b[31mred\x1b[0m\x00nul\u2028\u2029\x85\ud800lone\udfffz"
    log.write_sync({"subject": hostile, "key\nwith newline": ["\n", {"x\r": "\x1b"}]})
    log.write_sync({"subject": "next"})
    log.close_sync()
    data = day_file(directory, 0).read_bytes()
    assert data.count(b"\n") == 2 and b"\x1b" not in data and b"\x00" not in data
    first = json.loads(lines(day_file(directory, 0))[0])
    # Lone surrogates cannot be UTF-8: they become U+FFFD before hashing; the rest is kept.
    assert first["subject"] == hostile.replace("\ud800", "\ufffd").replace("\udfff", "\ufffd")
    assert first["key\nwith newline"] == ["\n", {"x\r": "\x1b"}]
    assert verify([directory]).ok


def test_rejects_what_cannot_be_stored(tmp_path: Path) -> None:
    log = open_log(tmp_path, Clock())
    with pytest.raises(ValueError, match="seq"):
        log.write_sync({"seq": 5})
    with pytest.raises(TypeError):
        log.write_sync({"when": dt.datetime.now()})
    with pytest.raises(ValueError):
        log.write_sync({"x": float("nan")})
    log.close_sync()
    with pytest.raises(RuntimeError):
        log.write_sync({"x": 1})


# --------------------------------------------------------------------------- asyncio


def test_write_returns_once_the_line_is_in_the_file(tmp_path: Path) -> None:
    async def go() -> None:
        log = AuditLog(tmp_path, journal=False, clock=Clock(), fsync_interval_s=10.0)
        await log.start()
        for i in range(50):
            digest = await log.write({"route": "/v1/tts", "i": i})
            last = json.loads(lines(day_file(tmp_path, 0))[-1])
            assert (last["hash"], last["i"]) == (digest, i)
        await log.close()

    asyncio.run(asyncio.wait_for(go(), 20))


def test_order_of_concurrent_writes(tmp_path: Path) -> None:
    async def go() -> None:
        async with AuditLog(tmp_path, journal=False, clock=Clock()) as log:
            await asyncio.gather(*(log.write({"i": i}) for i in range(300)))

    asyncio.run(asyncio.wait_for(go(), 20))
    assert [r["i"] for r in records(tmp_path)] == list(range(300))
    assert verify([tmp_path]).ok


def test_slow_disk_does_not_block_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def go() -> tuple[float, float, int, set[int], int]:
        log = AuditLog(tmp_path, journal=False, clock=Clock(), fsync_interval_s=0.0)
        await log.start()
        synced_on: set[int] = set()

        def slow_fsync(fd: int) -> None:
            synced_on.add(threading.get_ident())
            time.sleep(0.5)

        monkeypatch.setattr(os, "fsync", slow_fsync)
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        for i in range(3):  # each waits for the previous record's 0.5 s fsync
            await log.write({"i": i})
        elapsed = time.monotonic() - started
        task.cancel()
        await log.close()
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        return elapsed, max(gaps), len(ticks), synced_on, threading.get_ident()

    elapsed, worst_gap, count, synced_on, loop_thread = asyncio.run(asyncio.wait_for(go(), 20))
    assert elapsed >= 0.9  # the writer really was slow...
    assert synced_on and loop_thread not in synced_on  # ...because fsync ran off the loop,
    # ...which kept ticking: no pause as long as one fsync (a busy machine's scheduler can
    # hold it for a while, so not the 10 ms it asks for, and not 100 ticks in the second).
    assert worst_gap < 0.45 and count >= 10


# --------------------------------------------------------------------------- kill -9

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from pathlib import Path
    from sambertd.audit import AuditLog

    async def main() -> None:
        log = AuditLog(Path(sys.argv[1]), journal=False)
        await log.start()
        # Acknowledgements go to a file with one atomic write each: a pipe nobody reads
        # would fill up and stall the writer, hiding what the test is about.
        acks = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        print("ready", flush=True)
        deadline = time.monotonic() + 20
        for i in range(200_000):
            if time.monotonic() > deadline:
                break
            digest = await log.write({"route": "/v1/tts", "i": i, "pad": "x" * (i % 300)})
            os.write(acks, f"{log.last_seq} {digest}\\n".encode())

    asyncio.run(main())
    """
)


def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    env = dict(os.environ, PYTHONPATH=str(Path(sambertd.__file__).parents[1]))
    acks = tmp_path / "acks"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(acks)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready and child.stdout.readline() == b"ready\n"
        # Mid-stream, once plenty is acknowledged: however long that takes on this machine
        # (the child writes for 20 s at most, and exits on its own after that).
        deadline = time.monotonic() + 15
        while not acks.exists() or acks.read_bytes().count(b"\n") < 50:
            assert time.monotonic() < deadline and child.poll() is None, "no acknowledgements"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    acked = [line.split() for line in acks.read_bytes().split(b"\n")[:-1]]  # torn last: dropped
    assert len(acked) > 10
    on_disk = {r["seq"]: r["hash"] for r in records(directory)}
    for seq, digest in acked:
        assert on_disk.get(int(seq)) == digest.decode()
    report = verify([directory])
    assert report.problems == [] and len(report.torn) <= 1


# --------------------------------------------------------------------------- journald


def test_encode_journal_native_protocol() -> None:
    data = encode_journal([("MESSAGE", "audit /v1/tts 200 u1"), ("SAMBERTD_TEXT", "a\nb")])
    assert data == (
        b"MESSAGE=audit /v1/tts 200 u1\nSAMBERTD_TEXT\n" + struct.pack("<Q", 3) + b"a\nb\n"
    )
    assert encode_journal([("X", "中文")]) == "X=中文\n".encode()
    for bad in ("lower", "_TRUSTED", "1DIGIT", "A" * 65, "WITH SPACE"):
        with pytest.raises(ValueError):
            encode_journal([(bad, "v")])


def test_journal_fields() -> None:
    record = {
        "route": "/v1/tts",
        "status": 200,
        "subject": "u1\x1b[2J",
        "ok": True,
        "client-ip": "10.0.0.1",
        "tags": ["not", "scalar"],
        "seq": 7,
        "prev": "a" * 64,
        "hash": "b" * 64,
    }
    fields = dict(journal_fields(record))
    assert fields["MESSAGE"] == "audit /v1/tts 200 u1\\x1b[2J"
    assert fields["SYSLOG_IDENTIFIER"] == "sambertd-audit" and fields["PRIORITY"] == "6"
    assert fields["SAMBERTD_AUDIT_SEQ"] == "7"
    assert fields["SAMBERTD_AUDIT_HASH"] == "b" * 64
    assert fields["SAMBERTD_AUDIT_PREV"] == "a" * 64
    assert fields["SAMBERTD_SUBJECT"] == "u1\x1b[2J"  # exact value, in its own field
    assert fields["SAMBERTD_STATUS"] == "200" and fields["SAMBERTD_OK"] == "true"
    assert fields["SAMBERTD_CLIENT_IP"] == "10.0.0.1"
    assert "SAMBERTD_TAGS" not in fields and "SAMBERTD_SEQ" not in fields


def test_journal_send_and_failure_counting(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="aj") as short:  # AF_UNIX paths are short
        path = Path(short) / "journal.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(str(path))
        server.settimeout(10)
        log = AuditLog(tmp_path, clock=Clock(), journal_socket=path)
        log.start_sync()
        digest = log.write_sync({"route": "/v1/tts", "subject": "line1\nline2"})
        datagram = server.recv(65536)
        assert f"SAMBERTD_AUDIT_HASH={digest}\n".encode() in datagram
        assert b"SAMBERTD_SUBJECT\n" + struct.pack("<Q", 11) + b"line1\nline2\n" in datagram
        server.close()  # the path stays but nobody listens: counted, never raised
        log.write_sync({"route": "/v1/tts"})
        log.close_sync()
        assert (log.journal_sent, log.journal_errors) == (1, 1)
    assert verify([tmp_path]).ok
