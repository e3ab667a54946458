#!/usr/bin/env python3
"""The cost of HAProxy in the path (issue #15): each row measured direct and through a real
HAProxy (failover/haproxy.cfg.j2, one server) in one run on loopback (run by hand:
bench/haproxy.py; bounded in count and time).  Prints one table; compare rows of the same
run, not across machines.

Rows (each: direct, through HAProxy, and through/direct):
  bare aiohttp   — a handler returning fixed bytes (bench/load.py's bare row): the ceiling of
                   aiohttp on the server core, so the ratio is HAProxy's cost at its largest
  cache hit L1   — the real daemon, one short text already cached in-process, POST /v1/tts
  uncached short — distinct ~15-character sentences on the real daemon: the engine is the
                   bottleneck, so the ratio is what HAProxy costs a node's real capacity
Then the per-node capacity: the uncached row's requests/s and audio seconds per second
(X-Audio-Duration of the answered texts, asked again after the timed runs: cache hits).
That is the number the README multiplies by N ("capacity × N on paper"), and through
HAProxy the same number with HAProxy's cost and queue in it.

HAProxy.  The template rendered as Ansible renders it (haproxy_log "stdout", written to a
file: one httplog line per request), with one change: the frontend binds 127.0.0.1, not
every address.  One server, ``maxconn`` = ``--maxconn`` (default 2 × the daemon's own
worker count for this machine, as the Ansible role's haproxy_maxconn_per_worker and
tests/test_haproxy.py set it): with ``--concurrency`` above it, the excess waits in
HAProxy's queue instead of the daemon's.  Health checks hit
/ready every second (the bare server answers it too).  Through rows note, from HAProxy's
own log, the queue wait (Tw, p50/p99) and from /proc the CPU HAProxy spent per request
(clock ticks: meaningless below a few hundred requests), and any status but 200 with its
termination flags: a few "400 CH--" are wrk's in-flight requests cut when its time is up.

Pinning (2+ CPUs, as bench/load.py): wrk on the last CPU; the bare server, the cache-hit
daemon and HAProxy on the others (HAProxy then starts one thread: it sizes nbthread from
its CPU affinity).  HAProxy shares the server's core on purpose: on the keepalived pair it
runs beside a daemon on the same host (the pair are TTS nodes too), so this is the cost
there; on a dedicated HAProxy host the through rows would lose less.  The uncached row's
daemon is unpinned (the engine needs every core), HAProxy stays pinned and the Python
client unpinned, as in bench/load.py.

Shared machines: it prints how busy the CPUs were in the second before it started, and the
load average at the end; any other load lands on one side more than the other (see the
"req/s by run" note of each side: its two runs should agree).

Order.  Every row runs direct, through, through, direct (ABBA) against one server process;
the table gives each side's mean of its two runs (req/s, percentiles), so a drift or a
warm-up favours neither side.  The uncached runs take interleaved slices of one list of
distinct sentences (run k: sentences k, k+4, ...), so no run repeats another's text (the
daemon would answer from its cache) and no run gets the longer ones.

Bounds: wrk runs ``--seconds``/3 or ``--hit-requests`` requests, uncached runs ``--seconds``
or ``--requests`` requests, the whole bench ``--deadline`` seconds (SIGALRM); every process it
starts (bare server, daemons, HAProxy, wrk) is stopped by its pid, also on SIGTERM.

usage: bench/haproxy.py [--seconds 30] [--requests 300] [--concurrency 8] [--maxconn N]
                        [--hit-requests 200000] [--rows bare hit uncached] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import IO

import aiohttp
from jinja2 import StrictUndefined, Template

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.daemon import DaemonProcess, free_port

from baseline import REPO, Pins, choose_pins, pinned, require_wrk
from load import (
    BARE,
    CLIENT_TIMEOUT,
    HIT_BODY,
    Stats,
    bare_server,
    client_stats,
    engine_settings,
    load,
    ms,
    pool_workers,
    prime,
    short_texts,
    wrk_stats,
)

TEMPLATE = REPO / "failover" / "haproxy.cfg.j2"
SIDES = ("direct", "haproxy")
ABBA = ("direct", "haproxy", "haproxy", "direct")
# The bare server answers the health check too (any answer of 200 will do).
BARE_ROUTE = 'app.router.add_post("/v1/tts", h)'
BARE_READY = BARE.replace(BARE_ROUTE, f'{BARE_ROUTE}; app.router.add_get("/ready", h)')
# httplog: ... %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc ...  ("+" on values logged early)
TIMERS = re.compile(rb" (-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/\+?(-?\d+) (-?\d+) \+?\d+ \S+ \S+ (\S{4}) ")

Pair = dict[str, Stats]  # side → stats


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and the --deadline alarm as SystemExit: the finally blocks stop everything."""
    raise SystemExit(128 + signum)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


@dataclass
class Proxy:
    """A running HAProxy: its process, frontend port and log (one httplog line a request)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/tts"

    @contextmanager
    def measured(self) -> Iterator[list[str]]:
        """Yields a list that, after the block, holds a note: HAProxy's queue wait (Tw) and
        CPU per request over the block, from its log lines written meanwhile."""
        note: list[str] = []
        offset, cpu = self.log.stat().st_size, cpu_seconds(self.proc.pid)
        yield note
        time.sleep(0.2)  # the last lines of the run
        cpu = cpu_seconds(self.proc.pid) - cpu
        with self.log.open("rb") as f:
            f.seek(offset)
            timers = [m.groups() for m in TIMERS.finditer(f.read())]
        waits = [int(t[1]) for t in timers if int(t[1]) >= 0]
        odd = Counter(f"{t[5].decode()} {t[6].decode()}" for t in timers if t[5] != b"200")
        note.append(
            f"HAProxy: {len(timers)} logged, Tw p50 {pct(waits, 50):.0f} p99 "
            f"{pct(waits, 99):.0f} ms, CPU {1e6 * cpu / max(1, len(timers)):.0f} µs/req"
            + "".join(f", {k}×{n}" for k, n in sorted(odd.items()))
        )


def monitor_up(stats_port: int) -> bool:
    """HAProxy's /monitor: 200 once it runs and sees its server up."""
    try:
        url = f"http://127.0.0.1:{stats_port}/monitor"
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def render(tmp: Path, target: int, maxconn: int) -> tuple[Path, int, int]:
    """(config file, frontend port, stats port): the template for one server on loopback."""
    port, stats = free_port(), free_port()
    conf = Template(TEMPLATE.read_text(), undefined=StrictUndefined).render(
        haproxy_port=port,
        haproxy_servers=[
            {"name": "node", "address": "127.0.0.1", "port": target, "maxconn": maxconn}
        ],
        haproxy_stats_port=stats,
        haproxy_socket=tmp / "haproxy.sock",
        haproxy_log="stdout",
    )
    bind = f"bind :{port}\n"
    if conf.count(bind) != 1:
        raise SystemExit(f"{TEMPLATE}: expected one '{bind.strip()}' to put on loopback")
    path = tmp / "haproxy.cfg"
    path.write_text(conf.replace(bind, f"bind 127.0.0.1:{port}\n"))
    subprocess.run(["haproxy", "-c", "-q", "-f", str(path)], check=True, timeout=30)
    return path, port, stats


@contextmanager
def haproxy(tmp: Path, target: int, maxconn: int, pins: Pins) -> Iterator[Proxy]:
    """HAProxy in the foreground (-db) in front of 127.0.0.1:``target``, on the server CPUs."""
    path, port, stats = render(tmp, target, maxconn)
    log_path = tmp / "haproxy.log"
    log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in the finally
    with pinned(pins.server):
        proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while not monitor_up(stats):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy never saw its server up: {log_path.read_text()}")
            time.sleep(0.1)
        yield Proxy(proc, port, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def mean_stats(runs: list[Stats], note: str) -> Stats:
    """One side's runs as one: counts summed, req/s and percentiles averaged."""
    rates = [s.rate for s in runs if s.rate is not None]
    pcts = [s.pcts for s in runs if s.pcts is not None]
    mean = tuple(sum(p[i] for p in pcts) / len(pcts) for i in range(3)) if pcts else None
    extra: dict[str, float] = {}
    for s in runs:
        for k, v in s.extra.items():
            extra[k] = extra.get(k, 0.0) + v / len(runs)
    return Stats(
        ok=sum(s.ok for s in runs),
        failed=sum(s.failed for s in runs),
        rate=sum(rates) / len(rates) if rates else None,
        pcts=(mean[0], mean[1], mean[2]) if mean else None,
        extra=extra,
        note=f"req/s by run {'/'.join(f'{r:.1f}' for r in rates)}; {note}",
    )


def busy_share(seconds: float = 1.0) -> float:
    """The share of every CPU's time not idle over ``seconds`` (/proc/stat): a shared machine
    that is busy before the bench starts makes every row slower and the ratios noisy."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def abba(run: Callable[[str, int], Stats], proxy: Proxy) -> Pair:
    """``run(url, index)`` direct, through, through, direct; each side's mean."""
    runs: dict[str, list[Stats]] = {side: [] for side in SIDES}
    notes: dict[str, list[str]] = {side: [] for side in SIDES}
    for i, side in enumerate(ABBA):
        if side == "direct":
            stats = run("direct", i)
        else:
            with proxy.measured() as note:
                stats = run("haproxy", i)
            stats = replace(stats, note="; ".join((stats.note, *note)))
        runs[side].append(stats)
        notes[side].append(stats.note)
        print(f"  done: run {i + 1}/4 {side}", file=sys.stderr)
    return {side: mean_stats(runs[side], " | ".join(dict.fromkeys(notes[side]))) for side in SIDES}


def bare_pair(args: argparse.Namespace, pins: Pins, tmp: Path) -> Pair:
    """bench/load.py's bare server (plus GET /ready), pinned, direct and through HAProxy."""
    with bare_server(pins, BARE_READY) as port, haproxy(tmp, port, args.maxconn, pins) as proxy:
        urls = {"direct": f"http://127.0.0.1:{port}/v1/tts", "haproxy": proxy.url()}
        return abba(lambda side, _: wrk_stats(urls[side], {"text": "x"}, args, pins), proxy)


def hit_pair(args: argparse.Namespace, pins: Pins, tmp: Path) -> Pair:
    """The real daemon (pinned, default settings), one text cached in L1."""
    with pinned(pins.server):
        d = DaemonProcess(tmp)
    try:
        d.wait_ready(120)
        tier = prime(d)
        with haproxy(tmp, d.port, args.maxconn, pins) as proxy:
            urls = {"direct": f"http://127.0.0.1:{d.port}/v1/tts", "haproxy": proxy.url()}
            pair = abba(lambda side, _: wrk_stats(urls[side], HIT_BODY, args, pins), proxy)
        note = f"X-Cache {tier}; {pool_workers(d)} workers (pinned)"
        return {side: replace(s, note=f"{s.note}; {note}") for side, s in pair.items()}
    finally:
        d.stop()


async def audio_seconds(url: str, bodies: list[dict[str, str]]) -> tuple[float, int]:
    """(sum of X-Audio-Duration, how many were not cache hits) for texts already answered."""
    total, misses = 0.0, 0
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as s:
        for body in bodies:
            async with s.post(url, json=body) as r:
                await r.read()
                total += float(r.headers.get("X-Audio-Duration", "0"))
                misses += r.headers.get("X-Cache") == "miss"
    return total, misses


def uncached_pair(args: argparse.Namespace, pins: Pins, tmp: Path) -> Pair:
    """The real daemon, unpinned, --config WORKERS:THREADS; distinct sentences per run."""
    threads = args.config.split(":")[1]
    settings = engine_settings(args.config)
    texts = [{"text": t} for t in short_texts(len(ABBA) * args.requests)]
    answered: list[list[dict[str, str]]] = []
    walls: list[float] = []
    d = DaemonProcess(tmp, **settings)
    try:
        d.wait_ready(120)
        direct = f"http://127.0.0.1:{d.port}/v1/tts"
        with haproxy(tmp, d.port, args.maxconn, pins) as proxy:
            urls = {"direct": direct, "haproxy": proxy.url()}

            def run(side: str, i: int) -> Stats:
                bodies = texts[i :: len(ABBA)]
                ok, failed, wall, lat = asyncio.run(
                    load(urls[side], bodies, args.concurrency, args.seconds)
                )
                answered.append(bodies[: ok + failed])
                walls.append(wall)
                return client_stats(ok, failed, wall, lat, note="Python client")

            pair = abba(run, proxy)
        # Audio per run, asked again directly (cache hits, after the timed runs).
        for i, side in enumerate(ABBA):
            audio, misses = asyncio.run(audio_seconds(direct, answered[i]))
            s = pair[side]
            extra = {**s.extra, "audio s/s": s.extra.get("audio s/s", 0) + audio / walls[i] / 2}
            if misses:
                extra["replay misses"] = s.extra.get("replay misses", 0) + misses
            pair[side] = replace(s, extra=extra)
        note = f"{pool_workers(d)} workers, {threads} thread(s)"
        return {side: replace(s, note=f"{s.note}; {note}") for side, s in pair.items()}
    finally:
        d.stop()


ROWS: dict[str, tuple[str, Callable[[argparse.Namespace, Pins, Path], Pair]]] = {
    "bare": ("bare aiohttp (ceiling)", bare_pair),
    "hit": ("cache hit L1", hit_pair),
    "uncached": ("uncached short", uncached_pair),
}


def ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:>8.3f}" if a and b is not None else f"{'-':>8}"


def table(results: dict[str, Pair]) -> None:
    print(
        f"{'row':<24} {'path':<15} {'ok':>6} {'fail':>5} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'audio/s':>8}  notes"
    )
    for name, pair in results.items():
        for side in SIDES:
            s = pair[side]
            audio = s.extra.get("audio s/s")
            cells = [
                f"{v:>8.1f}" if v is not None else f"{'-':>8}"
                for v in (s.rate, ms(s, 0), ms(s, 2), audio)
            ]
            print(
                f"{name if side == 'direct' else '':<24} {side:<15} {s.ok:>6} {s.failed:>5} "
                f"{' '.join(cells)}  {s.note}"
            )
        d, h = pair["direct"], pair["haproxy"]
        cells = [
            ratio(d.rate, h.rate),
            ratio(ms(d, 0), ms(h, 0)),
            ratio(ms(d, 2), ms(h, 2)),
            ratio(d.extra.get("audio s/s"), h.extra.get("audio s/s")),
        ]
        print(f"{'':<24} {'through/direct':<15} {'':>6} {'':>5} {' '.join(cells)}")


def capacity(pair: Pair, args: argparse.Namespace) -> None:
    """The per-node number the README multiplies by N."""
    for side, label in (("direct", "one node, direct"), ("haproxy", "one node via HAProxy")):
        s = pair[side]
        audio = s.extra.get("audio s/s", 0.0)
        rate = s.rate or 0.0
        print(
            f"capacity, {label:<21}: {rate:.2f} req/s, {audio:.2f} audio s/s "
            f"(concurrency {args.concurrency}, uncached ~15-char sentences)"
        )
    print(
        "  N nodes on paper: N × the direct figure; the through/direct ratio above is what "
        "HAProxy sharing a node's CPU costs that node."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=30, help="deadline of one uncached run (wrk runs: 1/3)"
    )
    parser.add_argument("--requests", type=int, default=300, help="cap of one uncached run")
    parser.add_argument("--concurrency", type=int, default=8, help="connections / clients")
    parser.add_argument("--hit-requests", type=int, default=200_000, help="cap of one wrk run")
    parser.add_argument(
        "--maxconn",
        type=int,
        default=0,
        help="HAProxy's maxconn for the server (default: 2 × the daemon's worker count here)",
    )
    parser.add_argument(
        "--config", default="auto:1", help="WORKERS:THREADS of the uncached row's daemon"
    )
    parser.add_argument(
        "--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="rows to run"
    )
    parser.add_argument("--no-pin", action="store_true", help="no taskset / CPU affinity")
    parser.add_argument(
        "--deadline", type=float, default=900, help="seconds the whole bench may take"
    )
    args = parser.parse_args()
    if {"bare", "hit"} & set(args.rows):
        require_wrk()
    if not args.maxconn:
        from sambertd.config import ServerConfig

        args.maxconn = 2 * ServerConfig().worker_count()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGALRM, _terminate)
    signal.alarm(int(args.deadline))
    pins = choose_pins(not args.no_pin)
    if pins.client:
        print(
            f"pinning: wrk on CPU {pins.client[-1]}; bare server, cache-hit daemon and HAProxy "
            f"on CPU {','.join(map(str, pins.server))}; uncached daemon and client unpinned"
        )
    else:
        print("pinning: none")
    print(
        f"HAProxy {haproxy_version()}; server maxconn {args.maxconn}, "
        f"client concurrency {args.concurrency}; ABBA: direct, HAProxy, HAProxy, direct"
    )
    busy = busy_share()
    print(f"CPU busy before the start: {100 * busy:.0f}% of all CPUs (others' processes)")
    if busy > 0.1:
        print("  WARNING: the machine is not idle; the rows and their ratios are noisy")
    results: dict[str, Pair] = {}
    try:
        for key in args.rows:
            name, unit = ROWS[key]
            with tempfile.TemporaryDirectory(prefix="sambertd-haproxy-") as tmp:
                results[name] = unit(args, pins, Path(tmp))
            print(f"  done: {name}", file=sys.stderr)
    finally:
        signal.alarm(0)
    table(results)
    print(f"load average at the end: {Path('/proc/loadavg').read_text().split()[0]}")
    print(
        "req/s and percentiles: each side's mean of its two runs; audio/s: audio seconds "
        "answered per wall second."
    )
    if "uncached short" in results:
        capacity(results["uncached short"], args)


def haproxy_version() -> str:
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=30)
    return out.stdout.split("\n", 1)[0].removeprefix("HAProxy version ").split(" ", 1)[0]


if __name__ == "__main__":
    main()
