#!/usr/bin/env python3
"""HTTP load against a real daemon on loopback (run by hand: bench/load.py; bounded in count
and time).  Prints one table; compare rows of the same run, not across machines.

Rows:
  bare aiohttp   — a handler returning fixed bytes: the ceiling of aiohttp on the server core
  cache hit L1   — one short text, already cached in-process (compare with the bare row)
  cache hit L2   — the same with L1 off, served from a real redis-server on loopback
  uncached short — distinct ~15-character sentences (nothing can be served from a cache)
  stream first   — time to the first audio chunk of a streamed 300-character text
Also: time from process start to READY (/ready 200) and the daemon's RSS after the uncached load.

Load generators.  The bare and cache-hit rows cost the server so little that a Python client
sharing the cores measured mostly itself, so they use wrk (C, epoll; Debian's package): one
thread, ``--concurrency`` connections, one fixed POST body from a Lua script written to a temp
dir.  The script also stops wrk at the request cap and prints p50/p95/p99 from wrk's own
histogram (``--latency`` prints no p95).  The uncached and stream rows keep the Python client:
there the engine is the bottleneck and the client mostly waits.

Pinning (2+ CPUs, wrk rows only): wrk runs on the last CPU (``taskset -c 1`` on 2 cores); the
daemon, the bare server and redis-server on the others (CPU 0), so client and server never
take turns on one core and those rows measure one server core.  The uncached and stream rows
are unpinned: the engine needs every core (and "auto" workers count the daemon's CPUs).

--baseline REF measures REF (a temporary git worktree, its daemon/ first on PYTHONPATH) and
this working tree in the same run: each configuration runs on both, in ABBA order, and the
table gives both columns and HEAD/baseline.  The bare row runs the same code on both sides:
its ratio is this run's noise.

usage: bench/load.py [--requests 300] [--seconds 30] [--concurrency 8] [--hit-requests 200000]
                     [--config WORKERS:THREADS ...]   (default: auto:2 and 2:1)
                     [--baseline REF] [--python-client] [--no-pin] [--engine-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.daemon import DaemonProcess, free_port
from tests.redis_cluster import RedisServer, redis_available

from baseline import (
    Metric,
    Pins,
    Side,
    choose_pins,
    compare,
    order,
    overrides,
    pinned,
    require_wrk,
    rss_mb,
    run_wrk,
    sides,
)

BARE = """
from aiohttp import web
async def h(request):
    await request.read()
    return web.Response(body=b"x" * 64000, content_type="audio/wav")
app = web.Application(); app.router.add_post("/v1/tts", h)
web.run_app(app, host="127.0.0.1", port={port}, print=None, access_log=None)
"""
PLACES = "东城西城朝阳海淀丰台石景山门头沟房山通州顺义昌平大兴怀柔平谷密云延庆"
HIT_BODY = {"text": "欢迎致电政务服务热线。"}
STREAM_TEXT = (
    "各位市民：为进一步优化政务服务，本市政务服务中心自二零二六年三月一日起实行延时服务，"
    "工作日办理时间调整为八点半至十八点，周六上午照常受理社保、医保和不动产登记业务。"
    "办理业务前，请先通过政务服务网或手机应用预约，并携带本人有效身份证件及相关材料原件。"
    "如需咨询，请拨打政务服务热线一二三四五，工作人员将为您提供帮助。"
    "老年人、残疾人等特殊群体可申请上门服务或绿色通道优先办理。"
    "另外，自四月起，个人所得税年度汇算、公积金提取和居住证续签均可在自助终端办理，"
    "全程无需排队；如遇系统维护，将提前三天在官方网站和政务服务窗口公告。"
    "涉及企业开办、工程建设项目审批的事项，可通过一网通办平台在线提交，审核结果将以短信通知。"
    "感谢您的理解与支持。"
)
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=60)  # one request; the loops have deadlines too


@dataclass(frozen=True)
class Stats:
    """One row on one side; ``rate`` is None where req/s means nothing (the stream row sends
    one request at a time), latencies are seconds."""

    ok: int
    failed: int
    rate: float | None
    pcts: tuple[float, float, float] | None  # p50, p95, p99
    extra: dict[str, float] = field(default_factory=dict)  # lower is better: READY s, RSS MB
    note: str = ""


Rows = list[tuple[str, Stats]]


def short_texts(n: int) -> list[str]:
    """Distinct ~15-character sentences, so no request repeats another."""
    out = []
    for i in range(n):
        place = PLACES[(i * 2) % len(PLACES) : (i * 2) % len(PLACES) + 2]
        out.append(f"{place}区第{i + 1}号窗口请到三楼办理。")
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def client_stats(ok: int, failed: int, wall: float, lat: list[float], **kw: Any) -> Stats:
    """Stats from the Python client's latencies (none if every request failed)."""
    pcts = (pct(lat, 50), pct(lat, 95), pct(lat, 99)) if lat else None
    return Stats(ok, failed, ok / wall if wall else None, pcts, **kw)


async def load(
    url: str, bodies: list[dict[str, str]], concurrency: int, seconds: float
) -> tuple[int, int, float, list[float]]:
    """(ok, failed, wall seconds, latencies) for up to len(bodies) requests within seconds."""
    latencies: list[float] = []
    failed = 0
    queue = list(reversed(bodies))
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=CLIENT_TIMEOUT) as s:

        async def worker() -> None:
            nonlocal failed
            while queue and time.monotonic() < deadline:
                body = queue.pop()
                t0 = time.perf_counter()
                async with s.post(url, json=body) as r:
                    await r.read()
                    if r.status == 200:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(latencies), failed, time.perf_counter() - started, latencies


WAV_HEADER = 44


async def first_chunk(url: str, rounds: int, seconds: float) -> list[float]:
    """Seconds to the first audio chunk, for up to ``rounds`` streams within ``seconds``."""
    out = []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as s:
        for i in range(rounds):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            text = STREAM_TEXT.replace("感谢", f"第{i}次感谢")  # distinct each round
            async with s.post(url, json={"text": text, "stream": True}) as r:
                received = 0  # the 44-byte WAV header may come alone or with audio
                while received <= WAV_HEADER:
                    data = await r.content.readany()
                    if not data:
                        break
                    received += len(data)
                out.append(time.perf_counter() - t0)
                await r.read()
    return out


def wrk_stats(url: str, body: dict[str, str], args: argparse.Namespace, pins: Pins) -> Stats:
    """One wrk run: POST ``body`` for ``--seconds``/3 or ``--hit-requests`` requests (the cap
    is a bound: at the default, the deadline ends a run on this hardware)."""
    seconds = max(1, round(args.seconds / 3))
    r = run_wrk(url, body, args.concurrency, seconds, args.hit_requests, pins)
    wall = (r["capped_us"] or r["duration_us"]) / 1e6
    ok = r["requests"] - r["status_errors"]
    pcts = (r["p50_us"] / 1e6, r["p95_us"] / 1e6, r["p99_us"] / 1e6)
    cap = f", stopped at the cap ({args.hit_requests})" if r["capped_us"] else ""
    return Stats(ok, r["status_errors"] + r["socket_errors"], ok / wall, pcts, note=f"wrk{cap}")


def hit_stats(url: str, body: dict[str, str], args: argparse.Namespace, pins: Pins) -> Stats:
    """A fixed-body row: wrk, or the Python client with --python-client."""
    if not args.python_client:
        return wrk_stats(url, body, args, pins)
    bodies = [body] * args.hit_requests
    res = asyncio.run(load(url, bodies, args.concurrency, args.seconds / 3))
    return client_stats(*res, note="Python client")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout} s")


@contextmanager
def bare_server(pins: Pins, source: str = BARE) -> Iterator[int]:
    """The bare aiohttp server (``source``, formatted with its port) on the server's CPUs;
    yields its port once it listens, and stops it by its pid."""
    port = free_port()
    with pinned(pins.server):
        bare = subprocess.Popen([sys.executable, "-c", source.format(port=port)])
    try:
        wait_port(port)
        yield port
    finally:
        bare.terminate()
        bare.wait(30)


def bare_rows(args: argparse.Namespace, pins: Pins, side: Side) -> Rows:
    """The aiohttp ceiling; the same code on both sides (its ratio is the run's noise)."""
    with bare_server(pins) as port:
        url = f"http://127.0.0.1:{port}/v1/tts"
        return [("bare aiohttp (ceiling)", hit_stats(url, {"text": "x"}, args, pins))]


def prime(d: DaemonProcess) -> str:
    """Synthesize the hit text, then ask again until the answer comes from a cache (an L2
    write may land after the first answer); returns the X-Cache value wrk will get."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, headers, _ = d.post("/v1/tts", HIT_BODY, timeout=60)
        if status == 200 and headers.get("x-cache") != "miss":
            return headers.get("x-cache", "(no X-Cache header)")
        time.sleep(0.2)
    raise RuntimeError(f"{HIT_BODY} never came from the cache: {d.log()}")


def cache_rows(name: str, l2: bool, args: argparse.Namespace, pins: Pins, side: Side) -> Rows:
    """Cache-hit throughput against a daemon whose answer is already cached (L2: in a fresh
    redis-server per run, so neither side reads the other's entries)."""
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis") if l2 else None
        settings: dict[str, Any] = {}
        if redis is not None:
            with pinned(pins.server):
                redis.start()
            settings = {"cache_redis_url": redis.url, "cache_l1_max_bytes": "0"}
        try:
            with pinned(pins.server):
                d = DaemonProcess(Path(tmp), env=overrides(side), **settings)
            try:
                d.wait_ready(120)
                tier = prime(d)
                stats = hit_stats(f"http://127.0.0.1:{d.port}/v1/tts", HIT_BODY, args, pins)
                return [(name, replace(stats, note=f"{stats.note}; X-Cache {tier}"))]
            finally:
                d.stop()
        finally:
            if redis is not None:
                redis.stop()


def pool_workers(d: DaemonProcess) -> str:
    """The worker count the daemon chose (/ready says it): "auto" may differ between sides."""
    status, _, body = d.get("/ready")
    return str(json.loads(body).get("workers", "?")) if status == 200 else "?"


def engine_settings(spec: str) -> dict[str, Any]:
    """The daemon's SAMBERTD_* settings for a WORKERS:THREADS spec of the engine rows."""
    workers, threads = spec.split(":")
    settings: dict[str, Any] = {
        "engine_threads": threads,
        "server_queue_size": "64",
        "server_max_request_chars": "2000",
    }
    if workers != "auto":
        settings["server_workers"] = workers
    return settings


def engine_rows(spec: str, args: argparse.Namespace, side: Side) -> Rows:
    """Uncached and streamed rows for one WORKERS:THREADS setting (server.workers and
    engine.threads, as SAMBERTD_* variables; "auto" leaves server.workers at its default)."""
    workers, threads = spec.split(":")
    settings = engine_settings(spec)
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp), env=overrides(side), **settings)
        try:
            startup = d.wait_ready(120)
            url = f"http://127.0.0.1:{d.port}/v1/tts"
            bodies = [{"text": t} for t in short_texts(args.requests)]
            res = asyncio.run(load(url, bodies, args.concurrency, args.seconds))
            extra = {"READY s": startup, "RSS MB": rss_mb(d.proc.pid)}
            note = f"Python client; {pool_workers(d)} workers"
            uncached = client_stats(*res, extra=extra, note=note)
            lat = asyncio.run(first_chunk(url, 10, args.seconds))
            note = f"{len(STREAM_TEXT)} chars, Python client"
            stream = replace(client_stats(len(lat), 0, 0, lat), note=note)
        finally:
            d.stop()
    return [
        (f"uncached short w{workers} t{threads}", uncached),
        (f"stream first chunk w{workers} t{threads}", stream),
    ]


def plan(args: argparse.Namespace, pins: Pins) -> list[Callable[[Side], Rows]]:
    """Every configuration, each a function of the side it runs on."""
    units: list[Callable[[Side], Rows]] = []
    if not args.engine_only:
        units.append(partial(bare_rows, args, pins))
        units.append(partial(cache_rows, "cache hit L1", False, args, pins))
        if redis_available() is None:
            units.append(partial(cache_rows, "cache hit L2 (redis)", True, args, pins))
    units += [partial(engine_rows, spec, args) for spec in args.config]
    return units


def ms(s: Stats, i: int) -> float | None:
    return None if s.pcts is None else s.pcts[i] * 1000


def metrics(base: Stats, head: Stats) -> list[Metric]:
    """The compared numbers of one row, each with the direction that is better."""
    out: list[Metric] = [
        ("ok", "", base.ok, head.ok),
        ("failed", "lower", base.failed, head.failed),
    ]
    if base.rate is not None or head.rate is not None:
        out.append(("req/s", "higher", base.rate, head.rate))
    out += [(f"p{p} ms", "lower", ms(base, i), ms(head, i)) for i, p in enumerate((50, 95, 99))]
    for key in {**base.extra, **head.extra}:
        out.append((key, "lower", base.extra.get(key), head.extra.get(key)))
    return out


def table(results: dict[str, dict[str, Stats]], label: str) -> None:
    """One side: the table this bench always printed."""
    print(
        f"{'row':<30} {'ok':>5} {'fail':>5} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8}  notes"
    )
    for name, by_side in results.items():
        s = by_side[label]
        extra = ", ".join(f"{k} {v:.2f}" for k, v in s.extra.items())
        notes = "; ".join(x for x in (s.note, extra) if x)
        cells = [
            f"{v:>8.1f}" if v is not None else f"{'-':>8}"
            for v in (s.rate, *(ms(s, i) for i in range(3)))
        ]
        print(f"{name:<30} {s.ok:>5} {s.failed:>5} {' '.join(cells)}  {notes}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="cap of the uncached row")
    parser.add_argument("--seconds", type=float, default=30, help="deadline (wrk rows: 1/3)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--hit-requests", type=int, default=200_000, help="cap of wrk rows")
    parser.add_argument("--config", nargs="*", default=["auto:2", "2:1"])
    parser.add_argument("--baseline", metavar="REF", help="git ref to measure against")
    parser.add_argument("--python-client", action="store_true", help="no wrk: aiohttp client")
    parser.add_argument("--no-pin", action="store_true", help="no taskset / CPU affinity")
    parser.add_argument(
        "--engine-only", action="store_true", help="only the uncached and stream rows"
    )
    args = parser.parse_args()
    if not args.python_client:
        require_wrk()
    pins = choose_pins(not (args.no_pin or args.python_client))
    print(pins.describe())
    results: dict[str, dict[str, Stats]] = {}
    with sides(args.baseline) as both:
        for i, unit in enumerate(plan(args, pins)):
            for side in order(both, i):
                for name, stats in unit(side):
                    results.setdefault(name, {})[side.label] = stats
                    print(f"  done: {name} on {side.label}", file=sys.stderr)
        labels = [s.label for s in both]
    if len(labels) == 1:
        table(results, labels[0])
        return
    compare([(name, metrics(by[labels[0]], by[labels[1]])) for name, by in results.items()], labels)
    print("ratio = HEAD/baseline; 'better' says which direction is an improvement.")
    print("HEAD = this working tree; the bare row runs the same code on both (noise).")
    for name, by in results.items():
        notes = dict.fromkeys(by[label].note for label in labels)  # once where both agree
        print(f"  {name}: {' | '.join(notes)}")


if __name__ == "__main__":
    main()
