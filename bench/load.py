#!/usr/bin/env python3
"""HTTP load against a real daemon on loopback (run by hand: bench/load.py; bounded in count
and time).  Prints one table; compare rows of the same run, not across machines.

Rows:
  bare aiohttp   — a handler returning fixed bytes: the ceiling of this client + aiohttp here
  uncached short — distinct ~15-character sentences (nothing can be served from a cache)
  stream first   — time to the first audio chunk of a streamed 300-character text
  cache hit L1   — one short text, already cached in-process (compare with the bare row)
  cache hit L2   — the same with L1 off, served from a real redis-server on loopback
Also: time from process start to READY (/ready 200) and the daemon's RSS after the load.

usage: bench/load.py [--requests 300] [--seconds 30] [--concurrency 8]
                     [--config WORKERS:THREADS ...]   (default: auto:2 and 2:1)
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.daemon import DaemonProcess, free_port

BARE = """
from aiohttp import web
async def h(request):
    await request.read()
    return web.Response(body=b"x" * 64000, content_type="audio/wav")
app = web.Application(); app.router.add_post("/v1/tts", h)
web.run_app(app, host="127.0.0.1", port={port}, print=None, access_log=None)
"""
PLACES = "东城西城朝阳海淀丰台石景山门头沟房山通州顺义昌平大兴怀柔平谷密云延庆"
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


async def load(
    url: str, bodies: list[dict[str, object]], concurrency: int, seconds: float
) -> tuple[int, int, float, list[float]]:
    """(ok, failed, wall seconds, latencies) for up to len(bodies) requests within seconds."""
    latencies: list[float] = []
    failed = 0
    queue = list(reversed(bodies))
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

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


async def first_chunk(url: str, rounds: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as s:
        for i in range(rounds):
            t0 = time.perf_counter()
            text = STREAM_TEXT.replace("感谢", f"第{i}次感谢")  # distinct each round
            async with s.post(url, json={"text": text, "stream": True}) as r:
                await r.content.readany()  # the WAV header
                await r.content.readany()  # the first audio chunk
                out.append(time.perf_counter() - t0)
                await r.read()
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def row(name: str, ok: int, failed: int, wall: float, lat: list[float], extra: str = "") -> None:
    print(
        f"{name:<28} {ok:>5} {failed:>5} {ok / wall:>8.1f} {pct(lat, 50) * 1000:>8.1f} "
        f"{pct(lat, 95) * 1000:>8.1f} {pct(lat, 99) * 1000:>8.1f}  {extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--config", nargs="*", default=["auto:2", "2:1"])
    args = parser.parse_args()
    print(
        f"{'row':<28} {'ok':>5} {'fail':>5} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8}  notes"
    )
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE.format(port=port)])
    try:
        time.sleep(1.0)
        url = f"http://127.0.0.1:{port}/v1/tts"
        res = asyncio.run(
            load(url, [{"text": "x"}] * (args.requests * 10), args.concurrency, args.seconds / 3)
        )
        row("bare aiohttp (ceiling)", *res)
    finally:
        bare.terminate()
        bare.wait()
    import tempfile

    cache_rows(args)
    for spec in args.config:
        workers, threads = spec.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            settings = {
                "engine_threads": threads,
                "server_queue_size": "64",
                "server_max_request_chars": "2000",
            }
            if workers != "auto":
                settings["server_workers"] = workers
            d = DaemonProcess(Path(tmp), **settings)
            try:
                startup = d.wait_ready(120)
                url = f"http://127.0.0.1:{d.port}/v1/tts"
                bodies = [{"text": t} for t in short_texts(args.requests)]
                res = asyncio.run(load(url, bodies, args.concurrency, args.seconds))
                row(
                    f"uncached short w{workers} t{threads}",
                    *res,
                    extra=f"READY {startup:.2f} s, RSS {rss_mb(d.proc.pid):.0f} MB",
                )
                lat = asyncio.run(first_chunk(url, 10))
                row(
                    f"stream first chunk w{workers} t{threads}",
                    len(lat),
                    0,
                    sum(lat),
                    lat,
                    extra=f"{len(STREAM_TEXT)} chars",
                )
            finally:
                d.stop()


def cache_rows(args: argparse.Namespace) -> None:
    """Cache-hit throughput against a daemon whose answer is already cached."""
    import tempfile

    from tests.redis_cluster import RedisServer, redis_available

    with tempfile.TemporaryDirectory() as tmp:
        redis = None if redis_available() else RedisServer(Path(tmp) / "redis")
        if redis is not None:
            redis.start()
        try:
            variants = [("cache hit L1", {})]
            if redis is not None:
                variants.append(
                    (
                        "cache hit L2 (redis)",
                        {"cache_redis_url": redis.url, "cache_l1_max_bytes": "0"},
                    )
                )
            for name, settings in variants:
                d = DaemonProcess(Path(tmp), **settings)
                try:
                    d.wait_ready(120)
                    url = f"http://127.0.0.1:{d.port}/v1/tts"
                    body = {"text": "欢迎致电政务服务热线。"}
                    asyncio.run(load(url, [body], 1, 30))  # prime the cache
                    res = asyncio.run(
                        load(url, [body] * (args.requests * 10), args.concurrency, args.seconds / 3)
                    )
                    row(name, *res)
                finally:
                    d.stop()
        finally:
            if redis is not None:
                redis.stop()


if __name__ == "__main__":
    main()
