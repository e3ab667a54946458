"""Job records: the same rules on both boards, Redis (a real redis-server) and files.

A cancel is never overwritten by progress, a finished record never changes, a lease keeps
other owners out until it lapses, quotas count only unfinished jobs, and retention lists
finished jobs once their time is up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sambertd.jobs.board import Board, BoardError, FileBoard, RedisBoard
from sambertd.jobs.model import CANCELLED, DONE, RUNNING, Job
from tests.redis_cluster import RedisServer, redis_available

RETENTION = 0.5


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    missing = redis_available()
    if missing:
        pytest.skip(missing)
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["redis", "files"])
def board(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Board]:
    """Makes the board inside the test's event loop (a Redis client belongs to one)."""
    if request.param == "files":
        return lambda: FileBoard(tmp_path, RETENTION)
    server: RedisServer = request.getfixturevalue("redis_server")
    namespace = f"t{time.monotonic_ns()}"

    def make() -> Board:
        client = aioredis.from_url(server.url)
        return RedisBoard(lambda: client, namespace, RETENTION)

    return make


def run(test: Callable[[Board], Awaitable[None]], board: Callable[[], Board]) -> None:
    async def main() -> None:
        await test(board())

    asyncio.run(main())


def job(subject: str = "s1") -> Job:
    from sambertd.jobs.model import new_id

    return Job(id=new_id(), subject=subject, chars=4)


def test_create_get_text_and_quota(board: Callable[[], Board]) -> None:
    run(_create_get_text_and_quota, board)


async def _create_get_text_and_quota(board: Board) -> None:
    a, b = job(), job()
    assert await board.create(a, "第一份通知", 2) and await board.create(b, "第二份", 2)
    assert not await board.create(job(), "第三份", 2)  # s1 has two unfinished jobs
    assert await board.create(job("s2"), "别人的", 2)
    assert await board.text(a.id) == "第一份通知"
    got = await board.get(a.id)
    assert got is not None and got.subject == "s1" and got.state == "queued"
    assert set(await board.active()) >= {a.id, b.id}
    a.state, a.finished = DONE, time.time()
    assert await board.save(a)
    assert a.id not in await board.active()
    assert await board.create(job(), "第三份", 2)  # a finished job frees its place


def test_cancel_wins_over_progress(board: Callable[[], Board]) -> None:
    run(_cancel_wins_over_progress, board)


async def _cancel_wins_over_progress(board: Board) -> None:
    a = job()
    await board.create(a, "文本", 4)
    runner_copy = await board.get(a.id)
    assert runner_copy is not None
    a.state, a.finished = CANCELLED, time.time()
    assert await board.save(a)
    runner_copy.state, runner_copy.done = RUNNING, 5
    assert not await board.save(runner_copy)  # refused: the runner must stop
    stored = await board.get(a.id)
    assert stored is not None and stored.state == CANCELLED and stored.done == 0
    assert not await board.save(job())  # a record that does not exist is not created


def test_lease_keeps_others_out_until_it_lapses(board: Callable[[], Board]) -> None:
    run(_lease_keeps_others_out_until_it_lapses, board)


async def _lease_keeps_others_out_until_it_lapses(board: Board) -> None:
    a = job()
    await board.create(a, "文本", 4)
    assert await board.lease(a.id, "node-a", 0.3)
    assert await board.lease(a.id, "node-a", 0.3)  # renewal
    assert not await board.lease(a.id, "node-b", 0.3)
    await board.release(a.id, "node-b")  # not the holder: nothing happens
    assert not await board.lease(a.id, "node-b", 0.3)
    deadline = time.monotonic() + 10
    while not await board.lease(a.id, "node-b", 5):
        assert time.monotonic() < deadline, "the lease never lapsed"
        await asyncio.sleep(0.05)
    await board.release(a.id, "node-b")
    assert await board.lease(a.id, "node-a", 5)


def test_finished_jobs_come_due_after_retention(board: Callable[[], Board]) -> None:
    run(_finished_jobs_come_due_after_retention, board)


async def _finished_jobs_come_due_after_retention(board: Board) -> None:
    a = job()
    await board.create(a, "文本", 4)
    a.state, a.finished = DONE, time.time()
    await board.save(a)
    assert a.id not in await board.due(time.time())
    assert a.id in await board.due(time.time() + RETENTION + 0.1)
    await board.remove(a.id)
    assert await board.get(a.id) is None and await board.text(a.id) is None
    assert a.id not in await board.due(time.time() + 60)


def test_redis_away_is_a_board_error() -> None:
    async def main() -> None:
        client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        board = RedisBoard(lambda: client, "x", RETENTION)
        with pytest.raises(BoardError, match="Redis"):
            await board.get("anything")
        await client.aclose()

    asyncio.run(main())


def test_active_jobs_come_oldest_first(board: Callable[[], Board]) -> None:
    run(_active_jobs_come_oldest_first, board)


async def _active_jobs_come_oldest_first(board: Board) -> None:
    jobs = [job(f"s{i}") for i in range(4)]
    for age, j in zip((30, 10, 40, 20), jobs, strict=True):
        j.created = time.time() - age
    for j in jobs:
        await board.create(j, "文本", 4)
    assert await board.active() == [jobs[2].id, jobs[0].id, jobs[3].id, jobs[1].id]


def test_only_the_lease_holder_writes_progress(board: Callable[[], Board]) -> None:
    run(_only_the_lease_holder_writes_progress, board)


async def _only_the_lease_holder_writes_progress(board: Board) -> None:
    """A runner whose lease lapsed (it stalled; another node took the job) cannot write
    over the new holder's progress; a cancel (no owner) always can."""
    a = job()
    await board.create(a, "文本", 4)
    assert await board.lease(a.id, "node-b", 5)
    stale = await board.get(a.id)
    assert stale is not None
    stale.state, stale.done = RUNNING, 3
    assert not await board.save(stale, "node-a")
    stale.done = 7
    assert await board.save(stale, "node-b")
    got = await board.get(a.id)
    assert got is not None and got.done == 7
    got.state, got.finished = CANCELLED, time.time()
    assert await board.save(got)
