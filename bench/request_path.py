#!/usr/bin/env python3
"""The request path against a baseline, in one run on one machine (run by hand).

Starts the real daemon twice — from ``--baseline REF`` (checked out into a temporary git
worktree by bench/baseline.py) and from this checkout — and measures on each:

  abandoned work  — a plain request of 60 short units with request_timeout_s = 1: seconds the
                    worker stays busy after the timeout answer (work nobody waits for)
  stream memory   — peak growth of the daemon's RSS while it streams a long text to a client
                    that reads at once, cache off (MB)
  reload          — wall time of POST /v1/admin/reload when only the lexicon changed

usage: bench/request_path.py [--baseline f2450e5] [--stream-chars 4500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.daemon import DaemonProcess

from baseline import overrides, rss_mb, sides

UNITS = "请到三号窗口办理。" * 60
LONG = "为进一步优化营商环境，本市将于下月起全面推行企业开办一网通办。"


def abandoned(tmp: Path, env: dict[str, str]) -> float:
    d = DaemonProcess(
        tmp,
        env=env,
        server_request_timeout_s="1",
        frontend_max_sentence_chars="12",
        server_max_request_chars="2000",
    )
    try:
        d.wait_ready()
        status = d.post("/v1/tts", {"text": UNITS})[0]
        assert status in (503, 504), status
        answered = time.monotonic()
        d.wait_until(lambda: d.metric("sambertd_in_flight") == 0, timeout=300)
        return time.monotonic() - answered
    finally:
        d.stop()


def stream_memory(tmp: Path, env: dict[str, str], chars: int) -> float:
    d = DaemonProcess(
        tmp,
        env=env,
        cache_enabled="false",
        server_max_request_chars="5000",
        server_request_timeout_s="120",
    )
    try:
        d.wait_ready()
        d.post("/v1/tts", {"text": "预热。", "stream": True})
        base, peak = rss_mb(d.proc.pid), 0.0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            deadline = time.monotonic() + 600
            while not done.is_set() and time.monotonic() < deadline:
                peak = max(peak, rss_mb(d.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        text = (LONG * (chars // len(LONG) + 1))[:chars]
        status = d.post("/v1/tts", {"text": text, "stream": True}, timeout=600)[0]
        done.set()
        sampler.join()
        assert status == 200, status
        return peak - base
    finally:
        d.stop()


def reload_seconds(tmp: Path, env: dict[str, str]) -> float:
    lexicon = tmp / "lexicon.txt"
    lexicon.write_text("", encoding="utf-8")
    d = DaemonProcess(tmp, env=env, frontend_lexicon=str(lexicon))
    try:
        d.wait_ready()
        lexicon.write_text("长沙 zhang3 sha1\n", encoding="utf-8")
        started = time.monotonic()
        assert d.post("/v1/admin/reload", {})[0] == 200
        return time.monotonic() - started
    finally:
        d.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="f2450e5")
    parser.add_argument("--stream-chars", type=int, default=4500)
    args = parser.parse_args()
    rows = []
    with sides(args.baseline) as both:  # [baseline, HEAD]: bench/baseline.py
        for side in both:
            env = overrides(side)
            with tempfile.TemporaryDirectory() as tmp:
                base = Path(tmp)
                for name in ("a", "b", "c"):
                    (base / name).mkdir()
                rows.append(
                    (
                        side.label,
                        abandoned(base / "a", env),
                        stream_memory(base / "b", env, args.stream_chars),
                        reload_seconds(base / "c", env),
                    )
                )
    print(f"{'':<18} {'abandoned work s':>17} {'stream RSS +MB':>15} {'reload s':>9}")
    for label, work, memory, reload in rows:
        print(f"{label:<18} {work:>17.2f} {memory:>15.1f} {reload:>9.2f}")
    (_, w0, m0, r0), (_, w1, m1, r1) = rows
    print(f"{'ratio (this/base)':<18} {w1 / w0:>17.3f} {m1 / max(m0, 0.1):>15.3f} {r1 / r0:>9.3f}")
    print(f"({args.stream_chars}-character stream; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
