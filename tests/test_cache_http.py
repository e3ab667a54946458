"""The cache through the real daemon with real Redis: hits, sharing between daemons,
single-flight, Redis down, and a Sentinel failover under load."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.daemon import DaemonProcess
from tests.redis_cluster import RedisServer, RedisTopology, redis_available

pytestmark = pytest.mark.skipif(redis_available() is not None, reason=str(redis_available()))


# Redis answers in well under a millisecond here, but a busy machine can stall a daemon for
# longer than its 50 ms op timeout, and a timed-out lookup is a miss: the tests that count
# hits give Redis seconds (those about Redis going away keep the production timeouts).
PATIENT = {"cache_op_timeout_s": "2", "cache_connect_timeout_s": "2"}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def daemon(tmp_path: Path, name: str, **settings: str) -> DaemonProcess:
    (tmp_path / name).mkdir()
    d = DaemonProcess(tmp_path / name, **settings)
    d.wait_ready()
    return d


def test_hits_l1_then_l2_on_the_peer_and_normalized_text_shares(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    a = daemon(tmp_path, "a", cache_redis_url=redis_server.url, **PATIENT)
    b = daemon(tmp_path, "b", cache_redis_url=redis_server.url, **PATIENT)
    try:
        first = a.post("/v1/tts", {"text": "大厅九点开门。"})
        again = a.post("/v1/tts", {"text": "大厅九点开门。"})
        written = a.post("/v1/tts", {"text": "大厅9:00开门。"})  # normalizes to the same
        peer = b.post("/v1/tts", {"text": "大厅九点开门。"})
        assert [r[1]["x-cache"] for r in (first, again, written, peer)] == [
            "miss",
            "l1",
            "l1",
            "l2",
        ]
        assert first[2] == again[2] == written[2] == peer[2]  # the very same bytes
        assert a.metric("sambertd_syntheses_total") == 1
        assert b.metric("sambertd_syntheses_total") == 0
        other = a.post("/v1/tts", {"text": "大厅九点开门。", "format": "mp3"})
        assert other[1]["x-cache"] == "miss"  # format is part of the key
        keys = redis_server.client().keys("sambertd:tts:*")
        assert len(keys) == 2
        ttl = redis_server.client().ttl(keys[0])
        assert 86_000 < ttl <= 86_400
        assert json.loads(a.get("/ready")[2])["cache"] == "ok"
    finally:
        a.stop()
        b.stop()


def test_concurrent_identical_requests_share_one_synthesis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    d = daemon(tmp_path, "d", cache_redis_url=redis_server.url, server_queue_size="64")
    try:

        async def burst() -> list[tuple[int, str, bytes]]:
            async with aiohttp.ClientSession() as s:

                async def one() -> tuple[int, str, bytes]:
                    async with s.post(
                        f"http://127.0.0.1:{d.port}/v1/tts",
                        json={"text": "请携带身份证原件到三号窗口办理。"},
                    ) as r:
                        return r.status, r.headers["X-Cache"], await r.read()

                return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(12))), 60)

        results = asyncio.run(burst())
        assert all(status == 200 for status, _, _ in results)
        assert len({body for _, _, body in results}) == 1
        assert d.metric("sambertd_syntheses_total") == 1  # 12 requests, one synthesis
        sources = sorted(c for _, c, _ in results)
        assert sources.count("miss") == 1 and set(sources) <= {"miss", "shared", "l1"}
    finally:
        d.stop()


def test_streams_are_cached_once_complete(tmp_path: Path, redis_server: RedisServer) -> None:
    """A stream and a plain request share an entry exactly when their units are the same
    (then so are the samples); a stream whose first clause is cut short has its own."""
    import io

    import soundfile as sf

    d = daemon(tmp_path, "d", cache_redis_url=redis_server.url)
    try:
        short = "请稍候。"  # one unit either way
        streamed = d.post("/v1/tts", {"text": short, "stream": True, "sample_rate": 16000})
        cached = d.post("/v1/tts", {"text": short, "sample_rate": 16000})
        assert streamed[1]["x-cache"] == "miss" and cached[1]["x-cache"] == "l1"
        info = sf.info(io.BytesIO(cached[2]))
        assert info.samplerate == 16000 and info.frames == (len(streamed[2]) - 44) // 2
        assert cached[2][44:] == streamed[2][44:]  # the very same samples
        long = "流式合成的结果，在完整结束以后也会进入缓存。"  # the stream's first unit is shorter
        first = d.post("/v1/tts", {"text": long, "stream": True, "sample_rate": 16000})
        again = d.post("/v1/tts", {"text": long, "stream": True, "sample_rate": 16000})
        plain = d.post("/v1/tts", {"text": long, "sample_rate": 16000})
        assert [r[1]["x-cache"] for r in (first, again, plain)] == ["miss", "l1", "miss"]
        assert again[2][44:] == first[2][44:]
    finally:
        d.stop()


def test_redis_down_serves_uncached_without_errors(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    d = daemon(tmp_path, "d", cache_redis_url=redis_server.url)
    try:
        assert d.post("/v1/tts", {"text": "缓存正常时的一句话。"})[0] == 200
        redis_server.kill()
        for i in range(6):
            status, headers, _ = d.post("/v1/tts", {"text": f"缓存中断时的第{i + 1}句话。"})
            assert status == 200 and headers["x-cache"] == "miss"
        ready = json.loads(d.get("/ready")[2])
        assert ready["status"] == "ready" and ready["cache"].startswith("open")
        assert d.metric("sambertd_cache_redis_up") == 0
        assert d.metric("sambertd_cache_redis_errors_total") >= 1
        redis_server.start()
        deadline = time.monotonic() + 60
        i = 0
        while json.loads(d.get("/ready")[2])["cache"] != "ok" and time.monotonic() < deadline:
            i += 1
            d.post("/v1/tts", {"text": f"缓存恢复探测第{i}句。"})
            time.sleep(0.3)
        assert json.loads(d.get("/ready")[2])["cache"] == "ok"  # back by itself
    finally:
        d.stop()


def test_sentinel_failover_under_load_loses_no_request(tmp_path: Path) -> None:
    """Master killed → Sentinel promotes the replica → the daemon follows; a bounded load
    runs throughout and no request fails."""
    with RedisTopology(tmp_path / "redis", down_after_ms=1000) as topo:
        sentinels = ",".join(f"{h}:{p}" for h, p in topo.sentinels)
        # No L1: every request reads Redis, so the load really crosses the failover.
        d = daemon(
            tmp_path,
            "d",
            cache_sentinels=sentinels,
            cache_master_name="sambertd",
            cache_l1_max_bytes="0",
            server_queue_size="64",
        )
        try:
            texts = [f"第{i}号窗口现在开始办理业务。" for i in range(12)]
            statuses: list[int] = []
            answered: list[float] = []  # when each of the load's requests was answered
            stop = time.monotonic() + 60

            async def load(done: asyncio.Event) -> None:
                async with aiohttp.ClientSession() as s:
                    i = 0
                    while not done.is_set() and time.monotonic() < stop and i < 20_000:
                        async with s.post(
                            f"http://127.0.0.1:{d.port}/v1/tts",
                            json={"text": texts[i % len(texts)]},
                        ) as r:
                            await r.read()
                            statuses.append(r.status)
                            answered.append(time.monotonic())
                        i += 1

            async def scenario() -> tuple[float, float]:
                done = asyncio.Event()
                clients = [asyncio.create_task(load(done)) for _ in range(3)]
                while len(answered) < 6:  # the load runs (however fast this machine is)
                    assert time.monotonic() < stop and not any(c.done() for c in clients)
                    await asyncio.sleep(0.05)
                old = topo.kill_master()
                killed = time.monotonic()
                new = await asyncio.to_thread(topo.wait_for_failover, old, 40)
                new_client = topo.client(new)
                before = new_client.dbsize()
                # The daemon follows once it writes a fresh entry to the new master.
                n = 0
                while new_client.dbsize() <= before and time.monotonic() - killed < 50:
                    n += 1
                    async with (
                        aiohttp.ClientSession() as s,
                        s.post(
                            f"http://127.0.0.1:{d.port}/v1/tts",
                            json={"text": f"故障切换之后的第{n}句。"},
                        ) as r,
                    ):
                        statuses.append(r.status)
                        await r.read()
                    await asyncio.sleep(0.2)
                followed = time.monotonic() - killed
                done.set()
                await asyncio.gather(*clients)
                return killed, followed

            killed, followed = asyncio.run(scenario())
            assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
            lookups = d.metric("sambertd_cache_lookups_total")
            errors = d.metric("sambertd_cache_redis_errors_total")
            assert errors >= 1  # the failover was really crossed by the load
            # Load on both sides of the kill (a count in a fixed time would measure the machine).
            assert any(t < killed for t in answered) and any(t > killed for t in answered)
            assert followed < 30, followed
            print(
                f"\nfailover: {len(statuses)} requests, 0 failed, {lookups:.0f} lookups, "
                f"{errors:.0f} Redis errors absorbed; daemon wrote to the new master "
                f"{followed:.1f} s after the kill"
            )
        finally:
            d.stop()


def test_cli_warm_stats_purge(tmp_path: Path, redis_server: RedisServer) -> None:
    """Phrases warmed by the CLI are hits in the daemon; stats counts them; purge empties."""
    import os
    import subprocess
    import sys

    phrases = tmp_path / "phrases.txt"
    phrases.write_text(
        "# hotline greetings\n欢迎致电政务服务热线。\n请按一号键查询社保。\n\n", encoding="utf-8"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAMBERTD_")},
        "SAMBERTD_CACHE_REDIS_URL": redis_server.url,
        **{f"SAMBERTD_{k.upper()}": v for k, v in PATIENT.items()},
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sambertd", "cache", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    warm = cli("warm", "-i", str(phrases))
    assert warm.returncode == 0, warm.stderr
    assert "warmed 2 phrase(s), 0 already cached" in warm.stdout
    assert "warmed 0 phrase(s), 2 already cached" in cli("warm", "-i", str(phrases)).stdout
    d = daemon(tmp_path, "d", cache_redis_url=redis_server.url, **PATIENT)
    try:
        status, headers, _ = d.post("/v1/tts", {"text": "请按一号键查询社保。"})
        assert status == 200 and headers["x-cache"] == "l2"
        assert d.metric("sambertd_syntheses_total") == 0
    finally:
        d.stop()
    assert "2 entries" in cli("stats").stdout
    assert "purged 2 entries" in cli("purge", "--yes").stdout
    assert "0 entries" in cli("stats").stdout
    no_redis = subprocess.run(
        [sys.executable, "-m", "sambertd", "cache", "stats"],
        env={k: v for k, v in env.items() if k != "SAMBERTD_CACHE_REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_redis.returncode == 1 and "no Redis configured" in no_redis.stderr


def test_purge_on_one_node_reaches_the_peers_l1(tmp_path: Path, redis_server: RedisServer) -> None:
    a = daemon(tmp_path, "a", cache_redis_url=redis_server.url, **PATIENT)
    b = daemon(tmp_path, "b", cache_redis_url=redis_server.url, **PATIENT)
    try:
        text = {"text": "本周六政务大厅照常办公。"}
        assert b.post("/v1/tts", text)[1]["x-cache"] == "miss"
        assert b.post("/v1/tts", text)[1]["x-cache"] == "l1"  # in B's memory now
        status, _, body = a.post("/v1/admin/cache/purge", {})
        assert status == 200 and json.loads(body)["purged"] == 1
        assert redis_server.client().keys("sambertd:tts:*") == []
        # B sees the purge epoch within a second and empties its L1 (L1 entries live 10 min).
        b.wait_until(lambda: b.post("/v1/tts", text)[1]["x-cache"] == "miss", timeout=30)
    finally:
        a.stop()
        b.stop()
