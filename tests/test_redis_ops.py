"""Operations of the Redis / Sentinel part, against real redis-server and redis-sentinel.

- config/redis.conf and config/sentinel.conf load (Redis forbids inline comments);
- the role's templates quote passwords (a hostile password survives a real server);
- Sentinel is locked down: its node's address + loopback only, a password, no script reconfig;
- ansible/roles/redis/files/sambertd-redis-settings applies changed settings to the running
  servers after a failover: the topology stays, every node takes the new password, the second
  run changes nothing.

Everything binds loopback addresses (127.0.0.2... stand for the nodes' service addresses) on
free ports, lives in tmp_path and is killed by pid.  Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from tests.redis_cluster import REDIS_SENTINEL, REDIS_SERVER, free_port, redis_available

REPO = Path(__file__).resolve().parents[1]
ROLE = REPO / "ansible" / "roles" / "redis"
PROGRAM = ROLE / "files" / "sambertd-redis-settings"
T = TypeVar("T")

pytestmark = pytest.mark.skipif(redis_available() is not None, reason=str(redis_available()))

# Needs quoting in Redis's config syntax: space, both quotes, '#', backslash, non-ASCII.
HOSTILE = "p#ss w\\0rd \"x\" 'y' $HOME ;ü"
# What Sentinel can also write back (its rewrite does not quote auth-pass / sentinel-pass).
SENTINEL_SAFE = "p#ss\\w0rd$HOME;{x}ü=="


def wait(what: str, probe: Callable[[], T | None], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result is not None:
                return result
        except (redis.RedisError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(0.1)


class Procs:
    """redis-server / redis-sentinel processes we started; killed by pid at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.args: dict[str, list[str]] = {}

    def start(self, name: str, binary: str, conf: Path, *extra: str) -> None:
        log = self.root / f"{name}.log"
        self.args[name] = [binary, str(conf), "--logfile", str(log), *extra]
        self.procs[name] = subprocess.Popen(
            self.args[name], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.root
        )

    def restart(self, name: str) -> None:
        self.kill(name)
        self.procs[name] = subprocess.Popen(
            self.args[name], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.root
        )

    def kill(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(10)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def ping(self, name: str, host: str, port: int, password: str | None) -> None:
        def probe() -> bool | None:
            p = self.procs[name]
            if p.poll() is not None:
                log = self.root / f"{name}.log"
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"{name} exited {p.returncode}: {self.args[name]}\n{text}")
            with client(host, port, password) as c:
                return True if c.ping() else None

        wait(f"{name} to answer PING", probe)

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


def client(host: str, port: int, password: str | None) -> redis.Redis:
    return redis.Redis(
        host=host, port=port, password=password, socket_timeout=2, socket_connect_timeout=2
    )


def refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) != 0


def render(template: str, **variables: Any) -> str:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        trim_blocks=True,  # Ansible's template module defaults
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return str(env.get_template(template).render(ansible_managed="test", **variables))


def role_defaults(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "redis_config_dir": "/etc/redis",
        "redis_port": 6379,
        "redis_master_port": 6379,
        "redis_maxmemory": "2gb",
        "redis_maxmemory_policy": "volatile-lru",
        "redis_master_name": "sambertd",
        "redis_sentinel_quorum": 2,
        "redis_sentinel_down_after_ms": 3000,
        "redis_sentinel_failover_timeout_ms": 30000,
    }
    values.update(overrides)
    values.setdefault("redis_sentinel_announce_ip", values["redis_bind_ip"])
    if "redis_sentinel_bind" not in values:  # the role's default, rendered
        jinja2 = pytest.importorskip("jinja2")
        yaml = pytest.importorskip("yaml")
        default = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
        expr = str(default["redis_sentinel_bind"])
        values["redis_sentinel_bind"] = jinja2.Environment().from_string(expr).render(**values)
    return values


HOST = "127.0.0.1"


def local(tmp: Path, name: str) -> tuple[str, ...]:
    d = tmp / name
    d.mkdir(exist_ok=True)
    return ("--dir", str(d), "--pidfile", str(d / "pid"), "--daemonize", "no")


# -- (13) the config/ files load --------------------------------------------------------------


def test_config_files_load_in_real_servers(tmp_path: Path, procs: Procs) -> None:
    """config/redis.conf and config/sentinel.conf, with only bind/port/dir overridden."""
    for name, binary, password in [
        ("redis", REDIS_SERVER, "CHANGE-ME"),
        ("sentinel", REDIS_SENTINEL, "CHANGE-ME-TOO"),
    ]:
        conf = tmp_path / f"{name}.conf"
        shutil.copy(REPO / "config" / f"{name}.conf", conf)  # Sentinel rewrites its file
        port = free_port()
        d = tmp_path / name
        d.mkdir()
        procs.start(name, binary, conf, "--bind", HOST, "--port", str(port), "--dir", str(d))
        procs.ping(name, HOST, port, password)


# -- (14) hostile passwords through the role's templates --------------------------------------


def test_templates_quote_a_hostile_password(tmp_path: Path, procs: Procs) -> None:
    """Master and replica from redis.conf.j2 with a password that needs quoting; the replica's
    link comes up (masterauth); a truncated password is refused."""
    a_port, b_port = free_port(), free_port()
    common = {"redis_master_host": "127.0.0.2", "redis_master_port": a_port}
    for name, ip, port in [("a", "127.0.0.2", a_port), ("b", "127.0.0.3", b_port)]:
        conf = tmp_path / f"redis-{name}.conf"
        conf.write_text(
            render(
                "redis.conf.j2",
                **role_defaults(
                    redis_bind_ip=ip, redis_port=port, redis_password=HOSTILE, **common
                ),
            )
        )
        procs.start(f"redis-{name}", REDIS_SERVER, conf, *local(tmp_path, name))
        procs.ping(f"redis-{name}", ip, port, HOSTILE)
    with client("127.0.0.3", b_port, HOSTILE) as b:
        wait("replica link up", lambda: b.info("replication")["master_link_status"] == "up" or None)
    with pytest.raises(redis.AuthenticationError), client(HOST, a_port, "p") as c:
        c.ping()


def test_sentinel_template_round_trips_the_passwords_it_allows(
    tmp_path: Path, procs: Procs
) -> None:
    """sentinel.conf.j2 with the most hostile password the role allows: Sentinel authenticates
    to the master, requires its own password, and starts again from the file it rewrote."""
    r_port, s_port = free_port(), free_port()
    conf = tmp_path / "redis.conf"
    values = role_defaults(
        redis_bind_ip="127.0.0.2",
        redis_port=r_port,
        redis_master_host="127.0.0.2",
        redis_master_port=r_port,
        redis_password=SENTINEL_SAFE,
        redis_sentinel_port=s_port,
        redis_sentinel_password=SENTINEL_SAFE[::-1],
    )
    conf.write_text(render("redis.conf.j2", **values))
    procs.start("redis", REDIS_SERVER, conf, *local(tmp_path, "r"))
    procs.ping("redis", HOST, r_port, SENTINEL_SAFE)
    sconf = tmp_path / "sentinel.conf"
    sconf.write_text(render("sentinel.conf.j2", **values))
    procs.start("sentinel", REDIS_SENTINEL, sconf, *local(tmp_path, "s"))
    for attempt in range(2):  # the second start reads the file Sentinel rewrote
        procs.ping("sentinel", HOST, s_port, SENTINEL_SAFE[::-1])
        with client(HOST, s_port, SENTINEL_SAFE[::-1]) as s:

            def authenticated() -> bool | None:
                m = s.sentinel_master("sambertd")
                # role-reported comes from INFO, which needs AUTH with auth-pass.
                return True if m["role-reported"] == "master" and m["is_master"] else None

            wait("sentinel to read the master's INFO", authenticated)
            s.execute_command("SENTINEL", "FLUSHCONFIG")
        if attempt == 0:
            procs.restart("sentinel")


# -- (3) Sentinel is locked down --------------------------------------------------------------


def test_sentinel_binds_its_node_address_and_requires_a_password(
    tmp_path: Path, procs: Procs
) -> None:
    s_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        render(
            "sentinel.conf.j2",
            **role_defaults(
                redis_bind_ip="127.0.0.2",
                redis_master_host="127.0.0.2",
                redis_password="cache-pw",
                redis_sentinel_port=s_port,
                redis_sentinel_password="sentinel-pw",
            ),
        )
    )
    procs.start("sentinel", REDIS_SENTINEL, conf, *local(tmp_path, "s"))
    procs.ping("sentinel", "127.0.0.2", s_port, "sentinel-pw")
    procs.ping("sentinel", HOST, s_port, "sentinel-pw")
    assert refused("127.0.0.3", s_port), "Sentinel listens beyond its node address + loopback"
    with client("127.0.0.2", s_port, None) as anonymous:
        with pytest.raises(redis.AuthenticationError):
            anonymous.execute_command("SENTINEL", "MONITOR", "rogue", "127.0.0.9", "6379", "1")
        with pytest.raises(redis.AuthenticationError):
            anonymous.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sambertd")
    with client("127.0.0.2", s_port, "sentinel-pw") as admin:
        with pytest.raises(redis.ResponseError, match=r"(?i)reconfig"):
            admin.execute_command("SENTINEL", "SET", "sambertd", "notification-script", "/bin/true")
        assert admin.execute_command("SENTINEL", "MASTERS")


def test_role_requires_sentinel_password_and_binds_node_ip() -> None:
    yaml = pytest.importorskip("yaml")
    defaults = (ROLE / "defaults" / "main.yml").read_text()
    assert "redis_sentinel_bind: 0.0.0.0" not in defaults
    assert "sambertd_node_ip" in yaml.safe_load(defaults)["redis_bind_ip"]
    secrets = yaml.safe_load((ROLE / "tasks" / "secrets.yml").read_text())
    that = [t for task in secrets for t in task["ansible.builtin.assert"]["that"]]
    assert "_redis_sentinel_pw | length > 0" in that
    spec = yaml.safe_load((ROLE / "meta" / "main.yml").read_text())["argument_specs"]["main"]
    assert "required" in spec["options"]["redis_sentinel_password"]["description"].lower()


# -- (7) changed settings go to the running servers ------------------------------------------


def test_seed_is_written_once_and_secrets_stay_out_of_logs() -> None:
    """Static: the live files are templated only when unseeded, with diff off, and every task
    that hands passwords to a command is no_log."""
    yaml = pytest.importorskip("yaml")
    seeded = yaml.safe_load((ROLE / "tasks" / "seeded.yml").read_text())
    templates = [t for t in seeded if "ansible.builtin.template" in t]
    assert templates and all(t["when"] == "_redis_marker.rc != 0" for t in templates)
    assert all(t.get("diff") is False for t in templates)
    assert not [t for t in seeded if "ansible.builtin.copy" in t], "a seed copy is re-imposed"
    settings = yaml.safe_load((ROLE / "tasks" / "settings.yml").read_text())
    commands = [t for t in settings if "ansible.builtin.command" in t]
    assert commands and all(t.get("no_log") is True for t in commands)
    assert all("password" not in json.dumps(t["ansible.builtin.command"]["argv"]) for t in commands)


class Deployment:
    """Nodes a (127.0.0.2) and b (127.0.0.3) with redis-server + sentinel, a witness
    (127.0.0.4) with a sentinel, all from the role's templates, a the initial master."""

    def __init__(self, tmp: Path, procs: Procs, password: str, sentinel_password: str) -> None:
        self.tmp, self.procs = tmp, procs
        self.ips = {"a": "127.0.0.2", "b": "127.0.0.3", "w": "127.0.0.4"}
        self.rport = {n: free_port() for n in ("a", "b")}
        self.sport = {n: free_port() for n in ("a", "b", "w")}
        self.password, self.sentinel_password = password, sentinel_password
        for n in ("a", "b", "w"):
            values = role_defaults(
                redis_bind_ip=self.ips[n],
                redis_port=self.rport.get(n, 0),
                redis_master_host=self.ips["a"],
                redis_master_port=self.rport["a"],
                redis_password=password,
                redis_sentinel_port=self.sport[n],
                redis_sentinel_password=sentinel_password,
                redis_sentinel_down_after_ms=1000,
                redis_sentinel_failover_timeout_ms=5000,
            )
            d = tmp / n
            d.mkdir()
            if n != "w":
                (d / "redis.conf").write_text(render("redis.conf.j2", **values))
                # On loopback a replica's connections come from 127.0.0.1, not its own address.
                announce = ("--replica-announce-ip", self.ips[n])
                procs.start(
                    f"redis-{n}", REDIS_SERVER, d / "redis.conf", *local(d, "run-r"), *announce
                )
            (d / "sentinel.conf").write_text(render("sentinel.conf.j2", **values))

    def start(self) -> None:
        for n in ("a", "b"):
            self.procs.ping(f"redis-{n}", self.ips[n], self.rport[n], self.password)
        for n in ("a", "b", "w"):
            self.procs.start(
                f"sentinel-{n}", REDIS_SENTINEL, self.tmp / n / "sentinel.conf",
                *local(self.tmp / n, "run-s"),
            )  # fmt: skip
        self.wait_settled("a")

    def server(self, n: str, password: str | None = None) -> redis.Redis:
        return client(self.ips[n], self.rport[n], password or self.password)

    def sentinel(self, n: str, password: str | None = None) -> redis.Redis:
        return client(self.ips[n], self.sport[n], password or self.sentinel_password)

    def wait_settled(self, master: str, timeout: float = 40) -> None:
        """Every sentinel names ``master``, sees the replica up and the 2 other sentinels."""
        want = (self.ips[master], self.rport[master])

        def probe() -> bool | None:
            for n in ("a", "b", "w"):
                with self.sentinel(n) as s:
                    m = s.sentinel_master("sambertd")
                    replicas = s.sentinel_slaves("sambertd")
                ok = (
                    (m["ip"], int(m["port"])) == want
                    and m["is_master"]
                    and not (m["is_sdown"] or m["is_odown"])
                    and "failover_in_progress" not in m["flags"]
                    and int(m["num-other-sentinels"]) == 2
                    and any(
                        r.get("master-link-status") == "ok" and not r["is_sdown"] for r in replicas
                    )
                )
                if not ok:
                    return None
            other = "b" if master == "a" else "a"
            with self.server(other) as r:
                info = r.info("replication")
            return True if info["master_port"] == self.rport[master] and (
                info["master_link_status"] == "up"
            ) else None  # fmt: skip

        wait(f"sentinels to settle on {master}", probe, timeout)

    def settings(
        self, host: str, password: str, sentinel_password: str, **extra: Any
    ) -> dict[str, Any]:
        sentinel = {
            "nodes": [f"{self.ips[n]}:{self.sport[n]}" for n in ("a", "b", "w")],
            "local": f"{self.ips[host]}:{self.sport[host]}",
            "password": sentinel_password,
            "master_name": "sambertd",
            "auth_pass": password,
            "quorum": 2,
            "down_after_ms": extra.get("down_after_ms", 1000),
            "failover_timeout_ms": 5000,
            "parallel_syncs": 1,
        }
        return {
            "config_files": [str(self.tmp / host / f) for f in ("redis.conf", "sentinel.conf")],
            "redis": {
                "nodes": [f"{self.ips[n]}:{self.rport[n]}" for n in ("a", "b")],
                "password": password,
                "maxmemory": extra.get("maxmemory", "2gb"),
                "maxmemory_policy": "volatile-lru",
            },
            "sentinel": sentinel,
        }


def run_settings(settings: dict[str, Any], check: bool = False) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(PROGRAM), *(["--check"] if check else [])],
        input=json.dumps(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for secret in (settings["redis"]["password"], settings["sentinel"]["password"]):
        assert secret not in proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_rotation_after_failover_keeps_topology_and_is_idempotent(
    tmp_path: Path, procs: Procs
) -> None:
    old, old_s = "old-cache-pw", "old-sentinel-pw"
    new, new_s = SENTINEL_SAFE, "new#sentinel\\pw"
    dep = Deployment(tmp_path, procs, old, old_s)
    dep.start()

    # A failover first: b becomes master; Redis and Sentinel rewrite their files.
    with dep.sentinel("w") as s:
        s.execute_command("SENTINEL", "FAILOVER", "sambertd")
    dep.wait_settled("b")
    pids = {name: procs.pid(name) for name in procs.procs}

    # Unchanged settings: nothing to do, from any host.
    for host in ("a", "b", "w"):
        assert run_settings(dep.settings(host, old, old_s))["changed"] is False

    # Rotate both passwords and change two other settings, from node a's point of view.
    wanted = dep.settings("a", new, new_s, maxmemory="1gb", down_after_ms=1500)
    assert run_settings(wanted, check=True)["changed"] is True
    with dep.server("a", old) as r:  # --check changed nothing
        assert r.ping()
    result = run_settings(wanted)
    assert result["changed"] is True and not result["unreachable"], result
    dep.password, dep.sentinel_password = new, new_s

    # Same processes, same topology: b master, a its replica, every sentinel on b.
    assert {name: procs.pid(name) for name in procs.procs} == pids
    assert all(p.poll() is None for p in procs.procs.values())
    dep.wait_settled("b")
    for n in ("a", "b"):
        with pytest.raises(redis.AuthenticationError), dep.server(n, old) as r:
            r.ping()
        with dep.server(n) as r:
            assert r.config_get("maxmemory")["maxmemory"] == str(1024**3)
    for n in ("a", "b", "w"):
        with pytest.raises(redis.AuthenticationError), dep.sentinel(n, old_s) as s:
            s.ping()
        with dep.sentinel(n) as s:
            assert int(s.sentinel_master("sambertd")["down-after-milliseconds"]) == 1500
    with dep.server("b") as master, dep.server("a") as replica:
        master.set("rotated", "yes")
        wait("replication of a new key", lambda: replica.get("rotated"))

    # Idempotent, from every host (each also checks its own sentinel's file).
    for host in ("a", "b", "w"):
        again = dep.settings(host, new, new_s, maxmemory="1gb", down_after_ms=1500)
        assert run_settings(again) == {"changed": False, "changes": [], "unreachable": []}

    # What the servers persisted starts again: a stays b's replica, the witness's sentinel
    # reads back its rewritten file (unquoted auth-pass, user line) and knows b.
    assert "replicaof" in (tmp_path / "a" / "redis.conf").read_text()
    for name in ("redis-a", "sentinel-w"):
        procs.restart(name)
    procs.ping("redis-a", dep.ips["a"], dep.rport["a"], new)
    procs.ping("sentinel-w", dep.ips["w"], dep.sport["w"], new_s)
    dep.wait_settled("b")


def test_settings_refuse_to_change_anything_with_a_node_down(tmp_path: Path, procs: Procs) -> None:
    dep = Deployment(tmp_path, procs, "pw-1", "spw-1")
    dep.start()
    procs.kill("sentinel-w")
    wanted = dep.settings("a", "pw-2", "spw-2")
    proc = subprocess.run(
        [sys.executable, str(PROGRAM)],
        input=json.dumps(wanted),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "nothing was changed" in proc.stdout, proc.stdout
    assert "pw-2" not in proc.stdout
    with dep.server("a", "pw-1") as r:
        assert r.ping()
    with pytest.raises(redis.AuthenticationError), dep.server("a", "pw-2") as r:
        r.ping()
