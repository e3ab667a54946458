"""Where job records live, so that either node of the pair can answer for a job and take
over one whose node died: Redis (through Sentinel, the cache's connection) when the cache
has one, else files in the result directory (one node; jobs survive its restarts).

Both boards keep the same rules:

* a finished record (done, failed, cancelled) is never overwritten: a cancel wins over the
  progress a running node writes a moment later, and that node sees the refusal and stops;
* a running job is held by a *lease* (a key with a TTL its node renews); a job whose lease
  lapsed is free for any node to take and resume;
* a finished job expires ``jobs.retention_s`` after it ended: its record, text and audio
  are deleted by whichever node sweeps first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from sambertd.jobs.model import FINISHED, Job

log = logging.getLogger("sambertd.jobs")

# KEYS: record, text, active zset, subject set; ARGV: record, text, limit, id, record prefix,
# created (the active zset's score: jobs are taken oldest first).  Members of the subject set
# whose record is gone or finished are pruned before counting.
_CREATE = """
for _, id in ipairs(redis.call('smembers', KEYS[4])) do
  local cur = redis.call('get', ARGV[5] .. id)
  if not cur or cjson.decode(cur)['finished'] ~= cjson.null then
    redis.call('srem', KEYS[4], id)
  end
end
if redis.call('scard', KEYS[4]) >= tonumber(ARGV[3]) then return 0 end
redis.call('set', KEYS[1], ARGV[1])
redis.call('set', KEYS[2], ARGV[2])
redis.call('zadd', KEYS[3], ARGV[6], ARGV[4])
redis.call('sadd', KEYS[4], ARGV[4])
return 1
"""
# KEYS: record, text, active zset, subject set, expiry zset, lease; ARGV: record, id,
# finished (0/1), retention ms, expiry time, owner.  Refused (0) when the record is gone or
# finished, or when ``owner`` is given and does not hold the lease (a runner whose lease
# lapsed must not write over the node that took the job over).
_SAVE = """
if ARGV[6] ~= '' and redis.call('get', KEYS[6]) ~= ARGV[6] then return 0 end
local cur = redis.call('get', KEYS[1])
if not cur then return 0 end
local state = cjson.decode(cur)['state']
if state == 'done' or state == 'failed' or state == 'cancelled' then return 0 end
if ARGV[3] == '1' then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[4])
  redis.call('pexpire', KEYS[2], ARGV[4])
  redis.call('zrem', KEYS[3], ARGV[2])
  redis.call('srem', KEYS[4], ARGV[2])
  redis.call('zadd', KEYS[5], ARGV[5], ARGV[2])
else
  redis.call('set', KEYS[1], ARGV[1])
end
return 1
"""
_LEASE = """
local v = redis.call('get', KEYS[1])
if not v then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


class BoardError(Exception):
    """Job records cannot be read or written now (Redis away, disk failing)."""


class Board(Protocol):
    retention_s: float

    async def create(self, job: Job, text: str, limit: int) -> bool:
        """Store a new job; False when its subject already has ``limit`` unfinished jobs."""

    async def get(self, job_id: str) -> Job | None: ...

    async def text(self, job_id: str) -> str | None: ...

    async def save(self, job: Job, owner: str = "") -> bool:
        """Write ``job``; False (nothing written) when the stored one is gone or finished,
        or when ``owner`` is given (a runner) and does not hold the job's lease."""

    async def remove(self, job_id: str) -> None: ...

    async def active(self) -> list[str]:
        """Ids of the unfinished jobs, oldest first."""

    async def lease(self, job_id: str, owner: str, seconds: float) -> bool:
        """Take or renew the job's lease; False when another owner holds it."""

    async def release(self, job_id: str, owner: str) -> None: ...

    async def due(self, now: float) -> list[str]:
        """Ids of finished jobs whose retention ended by ``now``."""


class RedisBoard:
    """Records in Redis under ``<namespace>:job:<id>``; each change is one script, so the
    pair never sees half an update."""

    def __init__(self, client: Callable[[], Any], namespace: str, retention_s: float) -> None:
        self._client = client  # the cache's master connection (Sentinel-aware), per call
        self.ns = namespace
        self.retention_s = retention_s

    def _key(self, job_id: str, part: str = "") -> str:
        return f"{self.ns}:job:{job_id}{part}"

    async def _run(self, op: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(2.0):
                return await op(self._client())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise BoardError(f"Redis: {type(exc).__name__}: {exc}") from exc

    async def create(self, job: Job, text: str, limit: int) -> bool:
        keys = [
            self._key(job.id),
            self._key(job.id, ":text"),
            f"{self.ns}:jobs:active",
            f"{self.ns}:jobs:sub:{job.subject}",
        ]
        # A lone surrogate (which /v1/tts takes too) goes through as the bytes it came as.
        data = text.encode("utf-8", "surrogatepass")
        args = [job.dumps(), data, limit, job.id, self._key(""), job.created]
        return bool(await self._run(lambda c: c.eval(_CREATE, len(keys), *keys, *args)))

    async def get(self, job_id: str) -> Job | None:
        data = await self._run(lambda c: c.get(self._key(job_id)))
        try:
            return None if data is None else Job.loads(data)
        except (ValueError, TypeError) as exc:
            raise BoardError(f"job record {job_id} is unreadable: {exc}") from exc

    async def text(self, job_id: str) -> str | None:
        data = await self._run(lambda c: c.get(self._key(job_id, ":text")))
        return None if data is None else bytes(data).decode("utf-8", "surrogatepass")

    async def save(self, job: Job, owner: str = "") -> bool:
        keys = [
            self._key(job.id),
            self._key(job.id, ":text"),
            f"{self.ns}:jobs:active",
            f"{self.ns}:jobs:sub:{job.subject}",
            f"{self.ns}:jobs:expiry",
            self._key(job.id, ":lease"),
        ]
        done = job.state in FINISHED
        ttl_ms = int(self.retention_s * 1000) + 60_000  # the sweep deletes the audio first
        expiry = (job.finished or time.time()) + self.retention_s
        args = [job.dumps(), job.id, "1" if done else "0", ttl_ms, expiry, owner]
        return bool(await self._run(lambda c: c.eval(_SAVE, len(keys), *keys, *args)))

    async def remove(self, job_id: str) -> None:
        job = await self.get(job_id)

        async def op(c: Any) -> None:
            pipe = c.pipeline(transaction=True)
            pipe.delete(self._key(job_id), self._key(job_id, ":text"), self._key(job_id, ":lease"))
            pipe.zrem(f"{self.ns}:jobs:active", job_id)
            pipe.zrem(f"{self.ns}:jobs:expiry", job_id)
            if job is not None:
                pipe.srem(f"{self.ns}:jobs:sub:{job.subject}", job_id)
            await pipe.execute()

        await self._run(op)

    async def active(self) -> list[str]:
        members = await self._run(lambda c: c.zrange(f"{self.ns}:jobs:active", 0, -1))
        return [bytes(m).decode() for m in members]

    async def lease(self, job_id: str, owner: str, seconds: float) -> bool:
        key, ms = self._key(job_id, ":lease"), int(seconds * 1000)
        return bool(await self._run(lambda c: c.eval(_LEASE, 1, key, owner, ms)))

    async def release(self, job_id: str, owner: str) -> None:
        key = self._key(job_id, ":lease")
        await self._run(lambda c: c.eval(_RELEASE, 1, key, owner))

    async def due(self, now: float) -> list[str]:
        ids = await self._run(lambda c: c.zrangebyscore(f"{self.ns}:jobs:expiry", 0, now))
        return [bytes(i).decode() for i in ids]


class FileBoard:
    """Records as files in ``<directory>/state`` for a node without Redis: one process, so
    a lock in memory makes each change whole, and leases live in memory (a restarted
    daemon takes its unfinished jobs back at once)."""

    def __init__(self, directory: str | Path, retention_s: float) -> None:
        self.dir = Path(directory) / "state"
        self.retention_s = retention_s
        self._lock = asyncio.Lock()
        self._leases: dict[str, tuple[str, float]] = {}

    def _path(self, job_id: str, suffix: str) -> Path:
        return self.dir / f"{job_id}{suffix}"

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise BoardError(f"job records in {self.dir}: {exc}") from exc

    def _write(self, path: Path, data: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        with tmp.open("w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8", errors="surrogatepass")
        except FileNotFoundError:
            return None

    def _all(self) -> list[Job]:
        """Every readable record; one that cannot be read is logged and skipped (it must
        not stop every other job)."""
        if not self.dir.is_dir():
            return []
        jobs = []
        for path in self.dir.glob("*.json"):
            data = self._read(path)
            if data is None:
                continue
            try:
                jobs.append(Job.loads(data))
            except (ValueError, TypeError) as exc:
                log.warning("skipping unreadable job record %s: %s", path, exc)
        return jobs

    async def create(self, job: Job, text: str, limit: int) -> bool:
        async with self._lock:
            jobs = await self._io(self._all)
            if (
                sum(1 for j in jobs if j.subject == job.subject and j.state not in FINISHED)
                >= limit
            ):
                return False
            await self._io(self._write, self._path(job.id, ".txt"), text)
            await self._io(self._write, self._path(job.id, ".json"), job.dumps())
            return True

    async def get(self, job_id: str) -> Job | None:
        data = await self._io(self._read, self._path(job_id, ".json"))
        try:
            return None if data is None else Job.loads(data)
        except (ValueError, TypeError) as exc:
            raise BoardError(f"job record {job_id} is unreadable: {exc}") from exc

    async def text(self, job_id: str) -> str | None:
        result: str | None = await self._io(self._read, self._path(job_id, ".txt"))
        return result

    async def save(self, job: Job, owner: str = "") -> bool:
        async with self._lock:
            if owner and self._leases.get(job.id, ("",))[0] != owner:
                return False
            current = await self.get(job.id)
            if current is None or current.state in FINISHED:
                return False
            await self._io(self._write, self._path(job.id, ".json"), job.dumps())
            return True

    async def remove(self, job_id: str) -> None:
        async with self._lock:
            for suffix in (".json", ".txt"):
                await self._io(self._path(job_id, suffix).unlink, True)
            self._leases.pop(job_id, None)

    async def active(self) -> list[str]:
        jobs = [j for j in await self._io(self._all) if j.state not in FINISHED]
        return [j.id for j in sorted(jobs, key=lambda j: j.created)]

    async def lease(self, job_id: str, owner: str, seconds: float) -> bool:
        now = time.monotonic()
        holder = self._leases.get(job_id)
        if holder is not None and holder[0] != owner and holder[1] > now:
            return False
        self._leases[job_id] = (owner, now + seconds)
        return True

    async def release(self, job_id: str, owner: str) -> None:
        if self._leases.get(job_id, ("",))[0] == owner:
            del self._leases[job_id]

    async def due(self, now: float) -> list[str]:
        return sorted(
            j.id
            for j in await self._io(self._all)
            if j.finished is not None and j.finished + self.retention_s <= now
        )
