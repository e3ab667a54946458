"""Cache pieces in-process: L1 bounds and TTL, keys, entry packing, single-flight; L2 against
a real redis-server (tests/redis_cluster.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sambertd.cache import L1, Cache, Entry
from sambertd.config import CacheConfig
from tests.redis_cluster import RedisServer, redis_available


def entry(size: int = 10, voice: str = "baker") -> Entry:
    return Entry(
        audio=b"x" * size,
        content_type="audio/wav",
        sample_rate=24000,
        duration=1.5,
        voice=voice,
        engine="baker",
    )


def patient(**settings: Any) -> CacheConfig:
    """Redis answers in well under a millisecond here, but a busy machine can stall this
    process for longer than the daemon's 50 ms op timeout, and a timed-out op counts against
    the breaker: the tests that are not about timeouts give Redis seconds."""
    return CacheConfig(op_timeout_s=2.0, connect_timeout_s=2.0, **settings)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_l1_is_bounded_in_bytes_and_evicts_least_recently_used() -> None:
    l1 = L1(max_bytes=100, ttl_s=60)
    l1.put("a", entry(40))
    l1.put("b", entry(40))
    assert l1.get("a") is not None  # a is now most recent
    l1.put("c", entry(40))  # over 100: b goes
    assert l1.get("b") is None and l1.get("a") and l1.get("c")
    assert l1.bytes == 80 and len(l1) == 2
    l1.put("huge", entry(101))  # larger than the whole cache: not stored
    assert l1.get("huge") is None and l1.bytes == 80


def test_l1_entries_expire() -> None:
    clock = Clock()
    l1 = L1(max_bytes=100, ttl_s=600, clock=clock)
    l1.put("a", entry())
    clock.now = 599
    assert l1.get("a") is not None
    clock.now = 601
    assert l1.get("a") is None and l1.bytes == 0


def test_entry_round_trips() -> None:
    e = Entry(
        audio=b"RIFF\n\x00\xff",
        content_type="audio/wav",
        sample_rate=8000,
        duration=2.25,
        voice="zhitian_emo",
        engine="sambert",
    )
    assert Entry.unpack(e.pack()) == e


def test_single_flight_shares_one_production_and_survives_a_leaving_caller() -> None:
    async def go() -> None:
        cache = Cache(CacheConfig())  # no Redis: in-process only
        produced = 0
        gate = asyncio.Event()

        async def produce() -> Entry:
            nonlocal produced
            produced += 1
            await gate.wait()
            return entry()

        callers = [asyncio.ensure_future(cache.single_flight("k", produce)) for _ in range(8)]
        await asyncio.sleep(0.05)
        callers[0].cancel()  # the first caller hangs up: the others still get the audio
        gate.set()
        results = await asyncio.gather(*callers[1:])
        assert produced == 1
        assert sorted(shared for _, shared in results) == [True] * 7
        assert all(e.audio == b"x" * 10 for e, _ in results)

    asyncio.run(go())


def test_single_flight_cancels_the_work_when_every_caller_leaves() -> None:
    async def go() -> None:
        cache = Cache(CacheConfig())
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def produce() -> Entry:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return entry()

        callers = [asyncio.ensure_future(cache.single_flight("k", produce)) for _ in range(2)]
        await started.wait()
        for c in callers:
            c.cancel()
        await asyncio.wait_for(cancelled.wait(), 2)

    asyncio.run(go())


# -- L2 against a real redis-server ------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    reason = redis_available()
    if reason:
        pytest.skip(reason)
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_l2_stores_with_ttl_and_l1_fills_from_it(redis_server: RedisServer) -> None:
    async def go() -> None:
        cfg = patient(redis_url=redis_server.url, l2_ttl_s=120)
        a, b = Cache(cfg), Cache(cfg)  # two daemons sharing one Redis
        await a.put("ns:tts:1", entry(1000))
        hit = await b.get("ns:tts:1")
        assert hit is not None and hit[1] == "l2" and hit[0].audio == b"x" * 1000
        again = await b.get("ns:tts:1")
        assert again is not None and again[1] == "l1"
        ttl = redis_server.client().pttl("ns:tts:1")
        assert 110_000 < ttl <= 120_000
        assert await b.get("ns:tts:missing") is None
        await a.close()
        await b.close()

    asyncio.run(go())


def test_l2_size_limit_per_entry(redis_server: RedisServer) -> None:
    async def go() -> None:
        cache = Cache(patient(redis_url=redis_server.url, max_entry_bytes=5000))
        await cache.put("big", entry(6000))
        await cache.put("small", entry(100))
        client = redis_server.client()
        assert client.exists("big") == 0 and client.exists("small") == 1
        # Nor in L1: one long announcement would evict everything else there.
        assert cache.l1.get("big") is None and cache.l1.get("small") is not None
        await cache.close()

    asyncio.run(go())


def test_redis_down_is_fast_and_silent_then_comes_back(redis_server: RedisServer) -> None:
    import time

    async def go() -> None:
        cfg = CacheConfig(redis_url=redis_server.url, redis_retry_s=0.5)
        cache = Cache(cfg)
        await cache.put("k1", entry())
        redis_server.kill()
        took: list[float] = []
        for i in range(20):
            started = time.monotonic()
            assert await cache.get(f"absent{i}") is None
            await cache.put(f"new{i}", entry())
            took.append(time.monotonic() - started)
        # Each call is cut at the timeouts (0.2 s), then skipped by the breaker: the 40 calls
        # take about 10 ms here.  redis-py's own retries with backoff take a second a call.
        assert max(took) < 1 and sum(took) < 4, took
        assert cache.l2.state.startswith("open")
        redis_server.start()
        await asyncio.sleep(0.6)  # past redis_retry_s: the next call is the trial
        for _ in range(20):  # a trial that a slow machine timed out is followed by another
            await cache.put("k2", entry())
            if cache.l2.state == "ok":
                break
            await asyncio.sleep(0.6)
        assert cache.l2.state == "ok"
        assert redis_server.client().exists("k2") == 1
        await cache.close()

    asyncio.run(go())


def test_pair_wide_lock_makes_the_other_node_wait_for_the_entry(redis_server: RedisServer) -> None:
    async def go() -> None:
        # B waits for A's entry (0.3 s away) up to lock_wait_s: far longer, on any machine.
        cfg = patient(redis_url=redis_server.url, lock_wait_s=30)
        a, b = Cache(cfg), Cache(cfg)
        token, elsewhere = await a.l2.lock("k")  # node A starts synthesizing "k"
        assert token and not elsewhere
        produced = 0

        async def produce() -> Entry:
            nonlocal produced
            produced += 1
            return entry()

        async def a_finishes() -> None:
            await asyncio.sleep(0.3)
            await a.put("k", entry(42))
            await a.l2.unlock("k", token)

        (got, _), _ = await asyncio.gather(b.single_flight("k", produce), a_finishes())
        assert produced == 0 and got.audio == b"x" * 42  # B used A's work
        await a.close()
        await b.close()

    asyncio.run(go())


def test_a_redis_error_on_the_lock_is_not_a_reason_to_wait(tmp_path: Path) -> None:
    import time

    from tests.redis_cluster import free_port

    async def go() -> float:
        url = f"redis://127.0.0.1:{free_port()}/0"
        cache = Cache(CacheConfig(redis_url=url, lock_wait_s=30))
        started = time.monotonic()
        await cache.single_flight("k", lambda: asyncio.sleep(0, entry()))  # type: ignore[arg-type,return-value]
        await cache.close()
        return time.monotonic() - started

    # Nobody holds the lock: synthesize at once (milliseconds), not after lock_wait_s.
    assert asyncio.run(go()) < 10


def test_a_caller_arriving_while_a_cancelled_flight_winds_down_gets_its_audio() -> None:
    """The last waiter leaves; the shared work is cancelled but needs a moment to finish
    (it releases the pair-wide lock in Redis).  A new caller in that moment must start a
    fresh synthesis, not inherit the cancellation (which it would report as a 499)."""

    async def go() -> None:
        cache = Cache(CacheConfig())
        calls = 0

        async def produce() -> Entry:
            nonlocal calls
            calls += 1
            if calls == 1:
                try:
                    await asyncio.sleep(30)
                finally:
                    await asyncio.sleep(0.2)  # winding down, like the unlock round trip
            return entry(7)

        first = asyncio.ensure_future(cache.single_flight("k", produce))
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.sleep(0.05)  # the cancelled work is still winding down
        got, shared = await asyncio.wait_for(cache.single_flight("k", produce), 5)
        assert got.audio == b"x" * 7 and not shared and calls == 2
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(go())


def test_a_purge_on_one_node_empties_the_other_nodes_l1(redis_server: RedisServer) -> None:
    async def go() -> None:
        cfg = patient(redis_url=redis_server.url, namespace="ns")
        a, b = Cache(cfg), Cache(cfg)
        await b.sync_epoch()  # B's first look: remembers the epoch, clears nothing
        await a.put("ns:tts:1", entry(10))
        assert (await b.get("ns:tts:1")) is not None and len(b.l1) == 1
        await b.sync_epoch()
        assert len(b.l1) == 1  # nothing purged yet
        assert await a.purge() == 1
        assert len(a.l1) == 0 and redis_server.client().exists("ns:tts:1") == 0
        await b.sync_epoch()
        assert len(b.l1) == 0 and await b.get("ns:tts:1") is None
        await a.close()
        await b.close()

    asyncio.run(go())
