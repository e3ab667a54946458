"""Real redis-server / redis-sentinel processes on loopback ports, for tests (not a test module).

Mocks cannot show what a client does while sentinels elect a new master, so these helpers run
the Debian binaries: a master, one replica and three sentinels (quorum 2), or a lone server.
Everything binds 127.0.0.1 on a free port, lives in a caller-given directory and is killed by
pid; every wait is bounded and fails with the tail of the relevant logs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_SENTINEL = "/usr/bin/redis-sentinel"
HOST = "127.0.0.1"

Address = tuple[str, int]
T = TypeVar("T")


def free_port() -> int:
    """A port the kernel just handed out on loopback (a tiny reuse race is accepted)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def redis_available() -> str | None:
    """None when both binaries exist, else a reason suitable for ``pytest.skip``."""
    missing = [p for p in (REDIS_SERVER, REDIS_SENTINEL) if not os.access(p, os.X_OK)]
    return f"redis binaries not installed: {', '.join(missing)}" if missing else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait(what: str, probe: Callable[[], T | None], timeout: float, logs: Callable[[], str]) -> T:
    """Poll ``probe`` until it returns non-None; redis errors count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result is not None:
                return result
        except (redis.RedisError, OSError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{logs()}"
            )
        time.sleep(0.1)


def _client(address: Address, password: str | None, **kwargs: Any) -> redis.Redis:
    """redis-py's defaults (retries included), but with timeouts so a dead node cannot hang."""
    kwargs.setdefault("socket_timeout", 2.0)
    kwargs.setdefault("socket_connect_timeout", 2.0)
    return redis.Redis(host=address[0], port=int(address[1]), password=password, **kwargs)


def _probe_client(address: Address, password: str | None) -> redis.Redis:
    """No retries: redis-py's default backoff turns each refused PING into ~1 s of waiting."""
    return _client(address, password, retry=Retry(NoBackoff(), 0), socket_timeout=1.0)


class _Proc:
    """One redis-server or redis-sentinel with its own dir, config file and log."""

    def __init__(
        self,
        name: str,
        root: Path,
        binary: str,
        extra_conf: Iterable[str],
        password: str | None = None,
    ) -> None:
        self.name = name
        self.binary = binary
        self.port = free_port()
        self.password = password
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / ("sentinel.conf" if binary == REDIS_SENTINEL else "redis.conf")
        self.log = self.dir / "log"
        self.out = self.dir / "stdout"
        self.popen: subprocess.Popen[bytes] | None = None
        lines = [f"port {self.port}", f"bind {HOST}", "daemonize no", f"dir {self.dir}"]
        lines.append(f"logfile {self.log}")
        if binary == REDIS_SERVER:
            # Nothing here is worth keeping: no RDB snapshots, no AOF.
            lines += ['save ""', "appendonly no"]
            # Redis 7 waits 5 s before a diskless full sync to batch replicas; we have one.
            lines.append("repl-diskless-sync-delay 0")
        lines += extra_conf
        # Sentinels rewrite this file, so it must be a plain writable file in their own dir.
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def address(self) -> Address:
        return (HOST, self.port)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        if self.alive():
            return
        with self.out.open("ab") as out:
            self.popen = subprocess.Popen(
                [self.binary, str(self.conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )

    def client(self, **kwargs: Any) -> redis.Redis:
        return _client(self.address, self.password, **kwargs)

    def probe_client(self) -> redis.Redis:
        return _probe_client(self.address, self.password)

    def wait_ready(self, timeout: float) -> None:
        def probe() -> bool | None:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}\n{self.tail()}"
                )
            with self.probe_client() as c:
                return True if c.ping() else None

        _wait(f"{self.name} to answer PING", probe, timeout, self.tail)

    def signal(self, sig: int, wait: float = 10) -> None:
        """Send ``sig`` to our own pid only, then reap it (escalating to SIGKILL)."""
        p = self.popen
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, sig)
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait(5)

    def tail(self, lines: int = 25) -> str:
        parts = []
        for path in (self.log, self.out):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if text:
                parts.append(
                    f"--- {self.name} {path.name} (port {self.port}) ---\n" + "\n".join(text)
                )
        return "\n".join(parts)


class RedisServer:
    """A single standalone redis-server on a free port, for tests that need no sentinels."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        extra = [f"requirepass {password}"] if password else []
        self._proc = _Proc("redis", Path(workdir), REDIS_SERVER, extra, password)
        self.password = password

    @property
    def port(self) -> int:
        return self._proc.port

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        self._proc.start()
        try:
            self._proc.wait_ready(timeout)
        except BaseException:
            self._proc.signal(signal.SIGKILL)
            raise

    def stop(self) -> None:
        """Graceful SIGTERM (falls back to SIGKILL)."""
        self._proc.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._proc.signal(signal.SIGKILL)

    def client(self, **kwargs: Any) -> redis.Redis:
        return self._proc.client(**kwargs)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


class RedisTopology:
    """A master, one replica and three sentinels (quorum 2) on free loopback ports in workdir."""

    def __init__(
        self,
        workdir: Path,
        master_name: str = "sambertd",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        password: str | None = None,
    ) -> None:
        root = Path(workdir)
        self.master_name = master_name
        self.password = password
        auth = [f"requirepass {password}", f"masterauth {password}"] if password else []
        # Both data nodes carry masterauth: either may end up a replica after a failover.
        self._master = _Proc("redis-a", root, REDIS_SERVER, auth, password)
        self._replica = _Proc(
            "redis-b",
            root,
            REDIS_SERVER,
            [*auth, f"replicaof {HOST} {self._master.port}"],
            password,
        )
        sentinel_conf = [
            "sentinel resolve-hostnames no",
            f"sentinel announce-ip {HOST}",
            f"sentinel monitor {master_name} {HOST} {self._master.port} 2",
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
        ]
        if password:
            sentinel_conf.append(f"sentinel auth-pass {master_name} {password}")
        self._sentinels = [
            _Proc(f"sentinel-{i}", root, REDIS_SENTINEL, sentinel_conf) for i in range(3)
        ]
        self._killed: _Proc | None = None

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def _data_nodes(self) -> list[_Proc]:
        return [self._master, self._replica]

    @property
    def _all(self) -> list[_Proc]:
        return [*self._data_nodes, *self._sentinels]

    def _node(self, address: Address) -> _Proc:
        for p in self._data_nodes:
            if p.port == int(address[1]):
                return p
        raise KeyError(f"no redis-server of ours at {address}")

    def logs(self) -> str:
        """Tail of every process's log, for failure messages."""
        return "\n".join(t for t in (p.tail() for p in self._all) if t)

    def _ask_sentinels(self, fn: Callable[[redis.Redis], T]) -> T:
        """First answer from any live sentinel; sentinels may be mid-election or down."""
        errors = []
        for s in self._sentinels:
            if not s.alive():
                continue
            try:
                with s.probe_client() as c:
                    return fn(c)
            except redis.RedisError as exc:
                errors.append(f"{s.name}: {exc!r}")
        raise redis.ConnectionError("no sentinel answered: " + "; ".join(errors))

    # -- API -------------------------------------------------------------------------------------

    @property
    def sentinels(self) -> list[Address]:
        return [s.address for s in self._sentinels]

    def start(self, timeout: float = 20) -> None:
        """Bring everything up and wait until sentinels agree on the whole topology."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.5, deadline - time.monotonic())

        try:
            for p in self._data_nodes:
                p.start()
            for p in self._data_nodes:
                p.wait_ready(left())

            def link_up() -> bool | None:
                with self._replica.probe_client() as c:
                    info = c.info("replication")
                return True if info.get("master_link_status") == "up" else None

            _wait("replica link to master", link_up, left(), self.logs)

            for s in self._sentinels:
                s.start()
            for s in self._sentinels:
                s.wait_ready(left())

            def sentinel_sees_all(s: _Proc) -> Callable[[], bool | None]:
                def probe() -> bool | None:
                    with s.probe_client() as c:
                        m = c.sentinel_master(self.master_name)
                        replicas = c.sentinel_slaves(self.master_name)
                    healthy = [
                        r
                        for r in replicas
                        if not (r["is_sdown"] or r["is_disconnected"])
                        and r.get("master-link-status") == "ok"
                    ]
                    ok = (
                        m["is_master"]
                        and not (m["is_sdown"] or m["is_odown"])
                        and int(m.get("num-other-sentinels", 0)) >= 2
                        and len(healthy) >= 1
                    )
                    return True if ok else None

                return probe

            for s in self._sentinels:
                _wait(f"{s.name} to see master, replica and 2 sentinels",
                      sentinel_sees_all(s), left(), self.logs)  # fmt: skip
        except BaseException:
            self.stop_all()
            raise

    def master_address(self) -> Address:
        """The master as a sentinel reports it (SENTINEL get-master-addr-by-name)."""
        addr = self._ask_sentinels(lambda c: c.sentinel_get_master_addr_by_name(self.master_name))
        if not addr:
            raise redis.ResponseError(f"sentinels do not know {self.master_name!r}")
        return (_text(addr[0]), int(addr[1]))

    def kill_master(self) -> Address:
        """SIGKILL whichever node the sentinels call master; returns its address."""
        address = self.master_address()
        node = self._node(address)
        node.signal(signal.SIGKILL)
        self._killed = node
        return address

    def wait_for_failover(self, old: Address, timeout: float = 30) -> Address:
        """Until a sentinel names a different master and that node itself answers ROLE master."""
        old = (old[0], int(old[1]))

        def probe() -> Address | None:
            new = self.master_address()
            if new == old:
                return None
            with _probe_client(new, self.password) as c:
                role = c.execute_command("ROLE")
            return new if _text(role[0]) == "master" else None

        return _wait(f"failover away from {old}", probe, timeout, self.logs)

    def restart_killed(self, timeout: float = 10) -> None:
        """Start the killed node again on its port; the sentinels then demote it to replica.

        Returns once it answers PING.  It first comes back as an empty *master*; sentinels
        only send REPLICAOF after it has reported that role for ~8 s, so allow ~10-12 s.
        """
        node = self._killed
        if node is None:
            raise RuntimeError("no node was killed")

        def settled() -> bool | None:
            # Restarting while any sentinel still thinks the killed node is master (or is
            # mid-failover) lets the empty node win an election and wipe the data set.
            views = []
            for s in self._sentinels:
                if not s.alive():
                    continue
                with s.probe_client() as c:
                    m = c.sentinel_master(self.master_name)
                views.append(m)
            # last-ping-sent == 0: a PONG from the new master arrived since the sentinel
            # switched. Before that, a down-after of ~1 s races the sentinel's 1 s reconnect
            # delay, and stale is-master-down votes turn the false SDOWN into an instant ODOWN.
            ok = views and all(
                int(m["port"]) != node.port
                and m["is_master"]
                and not (m["is_sdown"] or m["is_odown"])
                and "failover_in_progress" not in m["flags"]
                and int(m["last-ping-sent"]) == 0
                for m in views
            )
            return True if ok and len({int(m["port"]) for m in views}) == 1 else None

        _wait("all sentinels to agree on the new master", settled, timeout, self.logs)
        node.start()
        node.wait_ready(timeout)
        self._killed = None

    def stop_all(self) -> None:
        """SIGKILL every process we started and reap it; safe after partial or failed start."""
        errors = []
        for p in reversed(self._all):
            try:
                p.signal(signal.SIGKILL)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def client(self, address: Address, **kwargs: Any) -> redis.Redis:
        """A plain sync client to ``address`` (with the password, if any)."""
        return _client(address, self.password, **kwargs)

    def __enter__(self) -> RedisTopology:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
