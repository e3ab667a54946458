#!/usr/bin/env python3
"""A long text as one request vs as a job, on the same daemon in one run.

One request renders its units one after another in one worker; a job keeps as many units in
flight as the pool has workers and stores each one (local directory, or S3 through moto's
S3 server, an emulator).  Rounds alternate request and jobs; the table gives the median of
each and the ratio request/job (above 1: the job is faster).

    .venv/bin/python bench/jobs.py --chars 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import DaemonProcess
from tests.notice import notice
from tests.s3_emulator import MotoServer, make_bucket


def one_request(d: DaemonProcess, text: str) -> float:
    started = time.perf_counter()
    status, headers, _ = d.post("/v1/tts", {"text": text, "speed": 1.0 + 1e-6}, timeout=900)
    assert status == 200 and headers["x-cache"] == "miss", (status, headers)
    return time.perf_counter() - started


def one_job(d: DaemonProcess, text: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    status, _, data = d.post("/v1/jobs", {"text": text})
    assert status == 202, data
    job_id = json.loads(data)["id"]
    while True:
        view = json.loads(d.get(f"/v1/jobs/{job_id}")[2])
        if view["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert view["state"] == "done", view
    elapsed = time.perf_counter() - started
    d.request("DELETE", f"/v1/jobs/{job_id}")
    return elapsed, view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    text = notice(args.chars)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        endpoint = stack.enter_context(MotoServer(tmp))
        (tmp / "secret").write_text("moto")
        common = {
            "server_max_request_chars": str(len(text)),
            "cache_enabled": "false",
            "server_request_timeout_s": "900",
        }
        local = DaemonProcess(tmp, **common)
        s3 = DaemonProcess(
            tmp,
            jobs_store="s3",
            jobs_s3_endpoint=endpoint,
            jobs_s3_bucket=make_bucket(endpoint),
            jobs_s3_access_key="moto",
            jobs_s3_secret_key_file=str(tmp / "secret"),
            **common,
        )
        for d in (local, s3):
            stack.callback(d.stop)
            d.wait_ready()
        s3.signal(signal.SIGSTOP)  # one daemon at a time on the CPUs
        times: dict[str, list[float]] = {"request": [], "job (local)": [], "job (s3 emulator)": []}
        view: dict[str, Any] = {}
        for _ in range(args.rounds):
            times["request"].append(one_request(local, text))
            elapsed, view = one_job(local, text)
            times["job (local)"].append(elapsed)
            local.signal(signal.SIGSTOP)
            s3.signal(signal.SIGCONT)
            times["job (s3 emulator)"].append(one_job(s3, text)[0])
            s3.signal(signal.SIGSTOP)
            local.signal(signal.SIGCONT)
        s3.signal(signal.SIGCONT)
        workers = json.loads(local.get("/ready")[2])["workers"]
    base = statistics.median(times["request"])
    print(
        f"{len(text)} characters, {view['progress']['total']} units, "
        f"{view['duration_ms'] / 1000:.0f} s of audio, {workers} worker(s), "
        f"{args.rounds} round(s), medians:"
    )
    print("| way | seconds | request / this |\n|---|---|---|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):.1f} | {base / statistics.median(values):.2f} |"
        )


if __name__ == "__main__":
    main()
