"""Two-level audio cache: L1 in-process LRU, L2 Redis through Sentinel; single-flight.

Why this shape:

* Government hotlines repeat themselves (greetings, menus, policy clauses), so most requests
  can be answered from memory.  L1 (bytes-bounded LRU with a TTL) answers in microseconds; L2
  (Redis, shared by the pair) survives restarts and a VIP move.
* The key (made by ``Synthesizer.cache_key``) is a hash of what decides the audio: the
  normalized unit texts (so "9:00" and "9点" share an entry), voice, emotion, prosody,
  format, rate, and the fingerprints of the front-end (settings, lexicon) and the engine.
* Redis is an optimisation, never a dependency: every call is bounded by a timeout, failures
  open a circuit breaker, and while it is open requests are served uncached with no error.
  The breaker's trial request brings the cache back by itself — after a Sentinel failover,
  redis-py's Sentinel pool has by then discovered the new master.
* Single-flight: identical concurrent requests share one synthesis in-process; across the
  pair a short Redis lock keeps both nodes from synthesizing a cold popular text at once
  (bounded wait, then synthesize anyway).
* Purge reaches both nodes: it deletes the namespace in Redis and bumps an epoch counter
  there; every node polls the epoch (``sync_epoch``) and empties its L1 when it changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sambertd.breaker import CLOSED, CircuitBreaker
from sambertd.timeline import UnitTiming

if TYPE_CHECKING:
    from sambertd.config import CacheConfig
    from sambertd.metrics import Metrics
    from sambertd.types import Result

log = logging.getLogger(__name__)
_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


@dataclass(frozen=True)
class Entry:
    """One cached response: the encoded audio and the headers it is served with."""

    audio: bytes
    content_type: str
    sample_rate: int
    duration: float
    voice: str
    engine: str
    degraded: bool = False
    cacheable: bool = True  # False: served, never stored (see Daemon._produce)
    timing: tuple[UnitTiming, ...] = ()  # per unit; empty when synthesized without it

    @classmethod
    def from_result(cls, result: Result, degraded: bool = False, cacheable: bool = True) -> Entry:
        """The cache entry for a finished synthesis."""
        return cls(
            audio=result.audio,
            content_type=result.format.content_type,
            sample_rate=result.sample_rate,
            duration=result.duration,
            voice=result.voice,
            engine=result.engine,
            degraded=degraded,
            cacheable=cacheable,
            timing=result.timing,
        )

    def pack(self) -> bytes:
        skip = ("audio", "cacheable", "timing")
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        meta["timing"] = [t.pack() for t in self.timing]
        return json.dumps(meta).encode() + b"\n" + self.audio

    @classmethod
    def unpack(cls, data: bytes) -> Entry:
        head, _, audio = data.partition(b"\n")
        meta = json.loads(head)
        timing = tuple(UnitTiming.unpack(t) for t in meta.pop("timing", ()))
        return cls(audio=audio, timing=timing, **meta)


class L1:
    """In-process LRU bounded in bytes, entries expire after ``ttl_s``.  An entry over
    ``max_entry_bytes`` is not kept: one long announcement would evict everything else."""

    def __init__(
        self,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_entry_bytes: int | None = None,
    ) -> None:
        self.max_bytes, self.ttl_s, self._clock = max_bytes, ttl_s, clock
        self.max_entry_bytes = max_bytes if max_entry_bytes is None else max_entry_bytes
        self._items: OrderedDict[str, tuple[float, Entry]] = OrderedDict()
        self.bytes = 0

    def get(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() - item[0] > self.ttl_s:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str, entry: Entry) -> None:
        size = len(entry.audio)
        if size > min(self.max_bytes, self.max_entry_bytes):
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (self._clock(), entry)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        _, entry = self._items.pop(key)
        self.bytes -= len(entry.audio)

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


class L2:
    """Redis (via Sentinel when configured) behind hard timeouts and a circuit breaker."""

    def __init__(self, config: CacheConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.breaker = CircuitBreaker(
            window_s=10, min_calls=3, max_error_rate=0.5, open_s=config.redis_retry_s
        )
        self._master: Any = None
        self._reader: Any = None
        self._jobs_client: Any = None
        self.enabled = bool(config.sentinels or config.redis_url)

    def _connect(self) -> None:
        self._master, self._reader = self._clients(self.config.op_timeout_s)

    def _clients(self, op_timeout: float) -> tuple[Any, Any]:
        """A (master, reader) pair of connection pools whose operations wait ``op_timeout``."""
        cfg = self.config
        common: dict[str, Any] = {
            "socket_timeout": op_timeout,
            "socket_connect_timeout": cfg.connect_timeout_s,
            "password": cfg.password or None,
            "retry_on_timeout": False,
        }
        if cfg.tls:
            common.update(ssl=True, ssl_ca_certs=cfg.tls_ca or None)
        if cfg.sentinels:
            from redis.asyncio.sentinel import Sentinel

            sentinel_kwargs = {
                "socket_timeout": cfg.op_timeout_s,
                "socket_connect_timeout": cfg.connect_timeout_s,
                "password": cfg.sentinel_password or None,
            }
            if cfg.tls:
                sentinel_kwargs.update(ssl=True, ssl_ca_certs=cfg.tls_ca or None)
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                [_address(a) for a in cfg.sentinels], sentinel_kwargs=sentinel_kwargs, **common
            )
            master = sentinel.master_for(cfg.master_name, **common)
            reader = (
                sentinel.slave_for(cfg.master_name, **common) if cfg.read_from_replicas else master
            )
            return master, reader
        import redis.asyncio as aioredis

        master = aioredis.from_url(cfg.redis_url, **common)
        return master, master

    def client(self) -> Any:
        """A master connection of its own for callers that must see errors (job records:
        unlike a cache entry, one cannot be skipped), not behind the breaker, and with
        operations allowed up to a second (a job's text can be 600 KB)."""
        if not self.enabled:
            raise RuntimeError("no Redis is configured (cache.sentinels, cache.redis_url)")
        if self._jobs_client is None:
            self._jobs_client = self._clients(max(1.0, self.config.op_timeout_s))[0]
        return self._jobs_client

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        state = self.breaker.state
        return "ok" if state == CLOSED else f"{state}: {self.breaker.reason}"

    async def _call(self, reader: bool, op: Callable[[Any], Awaitable[Any]]) -> tuple[bool, Any]:
        """(done, result).  Never raises: an error or timeout counts against the breaker."""
        if not self.enabled or not self.breaker.allow():
            return False, None
        if self._master is None:
            self._connect()
        client = self._reader if reader else self._master
        try:
            async with asyncio.timeout(
                self.config.op_timeout_s * 2 + self.config.connect_timeout_s
            ):
                result = await op(client)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # redis errors, timeouts, Sentinel discovery failures
            if self.metrics:
                self.metrics.cache_errors.inc()
            was = self.breaker.state
            self.breaker.record(False, f"{type(exc).__name__}: {exc}")
            if was == CLOSED and self.breaker.state != CLOSED:
                log.warning("redis cache unavailable, serving uncached: %s", exc)
            return False, None
        if self.breaker.state != CLOSED:
            log.info("redis cache is back")
        self.breaker.record(True)
        return True, result

    async def get(self, key: str) -> Entry | None:
        done, data = await self._call(True, lambda c: c.get(key))
        if not done or data is None:
            return None
        try:
            return Entry.unpack(data)
        except (ValueError, TypeError):
            log.warning("dropping unreadable cache entry %s", key)
            return None

    async def put(self, key: str, entry: Entry) -> bool:
        data = entry.pack()
        if len(data) > self.config.max_entry_bytes:
            return False
        ttl_ms = int(self.config.l2_ttl_s * 1000)
        done, _ = await self._call(False, lambda c: c.set(key, data, px=ttl_ms))
        return done

    async def lock(self, key: str) -> tuple[str | None, bool]:
        """A short cross-node lock: ``(token, held_elsewhere)``.  ``(None, False)`` means
        Redis did not answer — then nobody is worth waiting for."""
        token = secrets.token_hex(8)
        ttl = int(self.config.lock_ttl_s * 1000)
        done, ok = await self._call(False, lambda c: c.set(f"{key}:lock", token, nx=True, px=ttl))
        if not done:
            return None, False
        return (token, False) if ok else (None, True)

    async def unlock(self, key: str, token: str) -> None:
        await self._call(False, lambda c: c.eval(_UNLOCK, 1, f"{key}:lock", token))

    async def eval(self, script: str, key: str, *args: Any) -> tuple[bool, Any]:
        """Run a Lua script on the master (rate-limit buckets shared by the pair)."""
        return await self._call(False, lambda c: c.eval(script, 1, key, *args))

    async def scan(self, delete: bool) -> tuple[int, int, dict[str, Any]]:
        """(entries, bytes, memory info) of this namespace, deleting them if asked.  For the
        operator's CLI: uses SCAN (never KEYS, which blocks Redis) and raises on errors."""
        if self._master is None:
            self._connect()
        count = size = 0
        async for key in self._master.scan_iter(match=f"{self.config.namespace}:tts:*", count=500):
            if key.endswith(b":lock"):
                continue
            count += 1
            if delete:
                await self._master.unlink(key)
            else:
                size += await self._master.strlen(key)
        info = {} if delete else await self._master.info("memory")
        return count, size, info

    @property
    def epoch_key(self) -> str:
        return f"{self.config.namespace}:epoch"

    async def purge(self) -> int:
        """Delete this namespace's entries, then bump the epoch so every node empties its
        L1 (in that order: a peer that empties L1 early could refill it from Redis)."""
        count = (await self.scan(delete=True))[0]
        await self._master.incr(self.epoch_key)
        return count

    async def epoch(self) -> tuple[bool, Any]:
        """(answered, the namespace's purge counter or None)."""
        return await self._call(True, lambda c: c.get(self.epoch_key))

    async def close(self) -> None:
        clients = (self._master, self._reader, self._jobs_client)
        for client in {id(c): c for c in clients if c is not None}.values():
            await client.aclose()


@dataclass
class _Flight:
    task: asyncio.Future[Entry]
    waiters: int = 0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Cache:
    """L1 + L2 + single-flight, as the daemon uses them."""

    def __init__(self, config: CacheConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.l1 = L1(config.l1_max_bytes, config.l1_ttl_s, max_entry_bytes=config.max_entry_bytes)
        self.l2 = L2(config, metrics)
        self._flights: dict[str, _Flight] = {}
        self._epoch: Any = None
        self._epoch_known = False

    def keeps(self, size: int) -> bool:
        """Would an entry of ``size`` audio bytes be stored at either level?  A stream stops
        collecting its audio once it cannot be (its memory stays bounded)."""
        limit = self.config.max_entry_bytes
        if not self.l2.enabled:
            limit = min(limit, self.config.l1_max_bytes)
        return self.config.enabled and size <= limit

    def _count(self, result: str) -> None:
        if self.metrics:
            self.metrics.cache_lookups.labels(result).inc()

    async def get(self, key: str) -> tuple[Entry, str] | None:
        """The entry and where it came from ("l1" or "l2"), or None."""
        if not self.config.enabled:
            return None
        entry = self.l1.get(key)
        if entry is not None:
            self._count("l1_hit")
            return entry, "l1"
        entry = await self.l2.get(key)
        if entry is not None:
            self.l1.put(key, entry)
            self._count("l2_hit")
            return entry, "l2"
        self._count("miss")
        return None

    async def put(self, key: str, entry: Entry) -> None:
        if not self.config.enabled or not entry.cacheable:
            return
        self.l1.put(key, entry)
        await self.l2.put(key, entry)

    async def single_flight(
        self, key: str, produce: Callable[[], Awaitable[Entry]]
    ) -> tuple[Entry, bool]:
        """Run ``produce`` once for concurrent callers of the same key; (entry, shared).

        The work runs in its own task so that one caller going away does not fail the
        others; it is cancelled only when every caller has gone (so a hung-up IVR call
        still frees the queue).  A cancelled flight leaves the table at once, so a caller
        arriving while it winds down starts a fresh one instead of inheriting the cancel."""
        while True:
            flight = self._flights.get(key)
            if flight is not None and flight.task.cancelled():
                self._drop(key, flight)
                flight = None
            shared = flight is not None
            if flight is None:
                flight = self._start(key, produce)
            elif self.metrics:
                self.metrics.cache_shared.inc()
            flight.waiters += 1
            try:
                return await asyncio.shield(flight.task), shared
            except asyncio.CancelledError:
                if _cancelled_myself():
                    if flight.waiters == 1 and not flight.task.done():
                        self._drop(key, flight)
                        flight.task.cancel()
                    raise
                # The shared work was cancelled under us (its last other waiter left just
                # before we joined): start again.
            finally:
                flight.waiters -= 1

    def _start(self, key: str, produce: Callable[[], Awaitable[Entry]]) -> _Flight:
        flight = _Flight(asyncio.ensure_future(self._produce_once(key, produce)))
        self._flights[key] = flight
        flight.task.add_done_callback(lambda _: self._land(key, flight))
        return flight

    def _drop(self, key: str, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _land(self, key: str, flight: _Flight) -> None:
        self._drop(key, flight)
        if not flight.task.cancelled():
            flight.task.exception()  # retrieved: no "never retrieved" warning if all left

    async def _produce_once(self, key: str, produce: Callable[[], Awaitable[Entry]]) -> Entry:
        """Take the pair-wide lock; if the other node holds it, wait (bounded) for its entry
        to appear in L2, then synthesize anyway."""
        token, held_elsewhere = await self.l2.lock(key) if self.config.enabled else (None, False)
        if held_elsewhere:
            deadline = time.monotonic() + self.config.lock_wait_s
            while time.monotonic() < deadline and self.l2.state == "ok":
                await asyncio.sleep(0.05)
                entry = await self.l2.get(key)
                if entry is not None:
                    self.l1.put(key, entry)
                    self._count("l2_hit")
                    return entry
        try:
            entry = await produce()
            await self.put(key, entry)
            return entry
        finally:
            if token is not None:
                await self.l2.unlock(key, token)

    async def purge(self) -> int:
        """Empty L1 here and this namespace in Redis; the peer empties its L1 when its next
        ``sync_epoch`` sees the bumped epoch.  Raises when Redis does not answer."""
        self.l1.clear()
        if not self.l2.enabled:
            return 0
        count = await self.l2.purge()
        await self.sync_epoch()
        return count

    async def sync_epoch(self) -> None:
        """Empty L1 when a node purged since we last looked (called every second).  Until
        the epoch has been read once, nobody can tell whether what L1 took meanwhile was
        purged: the first answer empties it too (at most a second's worth, or what was
        taken while Redis was away)."""
        if not (self.config.enabled and self.l2.enabled):
            return
        answered, epoch = await self.l2.epoch()
        if not answered:
            return
        if (epoch != self._epoch or not self._epoch_known) and len(self.l1):
            log.info("cache purged (or not yet known): emptying L1 (%d entries)", len(self.l1))
            self.l1.clear()
        self._epoch, self._epoch_known = epoch, True

    async def close(self) -> None:
        await self.l2.close()


def _cancelled_myself() -> bool:
    """Inside ``except CancelledError``: was *this* task cancelled (not something it awaited)?"""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
