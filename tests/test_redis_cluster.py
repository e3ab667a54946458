"""Tests of the real-redis helper itself, so sentinel tests can trust what it sets up."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.redis_cluster import RedisServer, RedisTopology, free_port, redis_available

pytestmark = pytest.mark.skipif(redis_available() is not None, reason=redis_available() or "")


def _eventually(
    probe: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] | None = None
) -> None:
    """Replication and sentinel reconfiguration are asynchronous: poll, bounded."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs() if logs else ''}")
        time.sleep(0.1)


def test_free_port_is_bindable() -> None:
    assert 0 < free_port() < 65536


def test_topology_replicates_master_to_replica(tmp_path: Path) -> None:
    """With a password, so auth reaches data nodes, replication and sentinels alike."""
    with RedisTopology(tmp_path, password="s3cret") as topo:
        assert len(topo.sentinels) == 3
        master = topo.master_address()
        with topo.client(master) as c:
            assert c.execute_command("ROLE")[0] == b"master"
            c.set("greeting", "你好")
            replica_port = int(c.info("replication")["slave0"]["port"])
        with topo.client(("127.0.0.1", replica_port)) as r:
            _eventually(lambda: r.get("greeting") == "你好".encode(), 5, "key on replica")
        with (
            # No retries: redis-py 7 backs off for ~5 s before reporting the auth error.
            redis.Redis(host="127.0.0.1", port=master[1], retry=Retry(NoBackoff(), 0)) as anon,
            pytest.raises(redis.AuthenticationError),
        ):
            anon.ping()


def test_failover_then_killed_master_rejoins_as_replica(tmp_path: Path) -> None:
    """One topology for both steps: the rejoin only makes sense after a failover."""
    with RedisTopology(tmp_path) as topo:
        old = topo.master_address()
        killed_at = time.monotonic()
        assert topo.kill_master() == old
        new = topo.wait_for_failover(old, timeout=30)
        print(f"failover took {time.monotonic() - killed_at:.1f}s")
        assert new != old
        with topo.client(new) as c:
            assert c.set("after", "failover")
            assert c.execute_command("ROLE")[0] == b"master"

        topo.restart_killed()
        with topo.client(old) as c:

            def rejoined() -> bool:
                role = c.execute_command("ROLE")
                return role[0] == b"slave" and role[3] == b"connected"

            _eventually(rejoined, 20, "old master to become a connected replica", topo.logs)
            _eventually(
                lambda: c.get("after") == b"failover", 5, "data on the rejoined node", topo.logs
            )
        assert topo.master_address() == new


def test_topology_stop_all_is_safe_before_start(tmp_path: Path) -> None:
    topo = RedisTopology(tmp_path)
    topo.stop_all()
    topo.stop_all()


def test_redis_server_start_and_kill(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with redis.Redis.from_url(server.url) as c:
            assert c.ping()
        server.kill()
        with (
            redis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0)) as c,
            pytest.raises(redis.ConnectionError),
        ):
            c.ping()
        server.start()  # same port again, empty (nothing is persisted)
        with redis.Redis.from_url(server.url) as c:
            assert c.dbsize() == 0
    finally:
        server.stop()
