"""The Ansible roles and playbooks (ansible/): syntax, ansible-lint, and a real apply.

The apply runs site.yml with ``ansible_connection=local`` for three inventory hosts (tts-a,
tts-b, witness1), each into its own throwaway root under tmp_path (``sambertd_root``), with
user creation, package installs, pip and systemctl switched off: it checks the files,
templates and units the roles write.  Order: ``--check`` (must write nothing), a real run,
then a second real run that must report changed=0.  Ansible's own state (temp dirs, caches)
is kept under tmp_path too.  Nothing outside tmp_path is touched.
"""

from __future__ import annotations

import copy
import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.modeldir import make_model_dir

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


ANSIBLE_PLAYBOOK = _tool("ansible-playbook")
ANSIBLE_LINT = _tool("ansible-lint")
needs_ansible = pytest.mark.skipif(
    ANSIBLE_PLAYBOOK is None,
    reason="ansible-playbook not installed (pip install 'ansible-core>=2.16,<2.19')",
)

HOSTS = {"tts-a": "10.0.0.11", "tts-b": "10.0.0.12", "witness1": "10.0.0.13"}
VIP = "10.0.0.10/24"
# Non-default daemon settings: they must come out of the rendered TOML under the same keys.
OVERRIDES: dict[str, Any] = {
    "sambertd_server_host": "0.0.0.0",
    "sambertd_server_port": 9090,
    "sambertd_server_drain_timeout_s": 20.0,
    "sambertd_engine_engines": ["baker"],
    "sambertd_cache_sentinels": ["10.0.0.11:26379", "10.0.0.12:26379", "10.0.0.13:26379"],
    "sambertd_cache_password": "s3cret-redis",
    "sambertd_cache_read_from_replicas": True,
    "sambertd_audit_retention_days": 365,
    "sambertd_frontend_sandhi": False,
    "sambertd_auth_enabled": True,  # required off loopback; the secret file is set per test
}
PLACEHOLDERS = {
    "keepalived.conf.j2": (
        "vrrp_instance sambertd {\n    interface {{ vrrp_interface }}\n"
        "    priority {{ vrrp_priority }}\n    unicast_src_ip {{ node_ip }}\n"
        "    unicast_peer {\n{% for p in vrrp_peer_ips %}        {{ p }}\n{% endfor %}    }\n"
        "    virtual_ipaddress {\n        {{ vrrp_vip }}\n    }\n}\n"
    ),
    "check_sambertd.sh": "#!/bin/sh\nexec curl -fsS http://127.0.0.1:${1:-8080}/ready\n",
    "notify.sh": '#!/bin/sh\nprintf \'%s\\n\' "$4" > "$1"\n',
}
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def _toml_defaults() -> dict[str, dict[str, Any]]:
    return tomllib.loads((REPO / "config" / "sambertd.toml").read_text(encoding="utf-8"))


def _env(tmp: Path, project: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        ANSIBLE_CONFIG=str(project / "ansible" / "ansible.cfg"),
        ANSIBLE_HOME=str(home / ".ansible"),
        ANSIBLE_LOCAL_TEMP=str(home / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(home / "ansible-remote"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the parts of the repository the playbooks read (playbook_dir/../...)."""
    root = tmp_path_factory.mktemp("repo")
    for part in ("ansible", "systemd", "config", "failover"):
        if (REPO / part).is_dir():
            shutil.copytree(
                REPO / part, root / part, ignore=shutil.ignore_patterns(".cache", ".ansible")
            )
    failover = root / "failover"
    failover.mkdir(exist_ok=True)
    for name, text in PLACEHOLDERS.items():  # the real ones may not be written yet
        if not (failover / name).exists():
            (failover / name).write_text(text)
            if name.endswith(".sh"):
                (failover / name).chmod(0o755)
    return root


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 180) -> str:
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    out = proc.stdout + proc.stderr
    fatal = "\n".join(line for line in out.splitlines() if "fatal:" in line or "ERROR" in line)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{fatal[-6000:]}\n...\n{out[-3000:]}"
    )
    return out


@needs_ansible
@pytest.mark.parametrize("playbook", ["site.yml", "upgrade.yml"])
def test_syntax_check(project: Path, tmp_path: Path, playbook: str) -> None:
    assert ANSIBLE_PLAYBOOK is not None
    _run(
        [ANSIBLE_PLAYBOOK, "-i", "inventory.example.yml", "--syntax-check", playbook],
        _env(tmp_path, project),
        project / "ansible",
    )


@needs_ansible
@pytest.mark.skipif(
    ANSIBLE_LINT is None,
    reason="ansible-lint not installed (pip install 'ansible-lint>=24,<26')",
)
def test_ansible_lint_production_profile(project: Path, tmp_path: Path) -> None:
    assert ANSIBLE_LINT is not None
    out = _run(
        [ANSIBLE_LINT, "--offline", "--profile", "production", "--nocolor"],
        _env(tmp_path, project),
        project / "ansible",
        timeout=240,
    )
    assert "Profile 'production' was required, and it passed" in out, out


def test_role_variables_mirror_config_toml() -> None:
    """Every key of config/sambertd.toml is a role default with the same value, is
    documented with its type in argument_specs, and is rendered by the template."""
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")
    role = REPO / "ansible" / "roles" / "sambertd"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((role / "meta" / "main.yml").read_text())["argument_specs"]["main"][
        "options"
    ]
    template = (role / "templates" / "sambertd.toml.j2").read_text()
    types = {bool: "bool", int: "int", float: "float", str: "str", list: "list"}
    problems = []
    for section, values in _toml_defaults().items():
        for key, value in values.items():
            var = f"sambertd_{section}_{key}"
            if defaults.get(var, object()) != value:
                problems.append(f"{var}: default {defaults.get(var)!r} != {value!r}")
            if options.get(var, {}).get("type") != types[type(value)]:
                problems.append(f"{var}: argument_specs type missing or wrong")
            if f"{key} = {{{{ {var} | to_json }}}}" not in template:
                problems.append(f"{var}: not rendered as '{key} = ...' in sambertd.toml.j2")
    assert not problems, "\n".join(problems)


def _write_inventory(tmp: Path, roots: dict[str, Path], model_archive: Path) -> Path:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    secret = tmp / "hs256.secret"
    secret.write_text("x" * 48)
    py = sys.executable
    hostvars: dict[str, dict[str, Any]] = {
        name: {"ansible_host": ip, "sambertd_root": str(roots[name])} for name, ip in HOSTS.items()
    }
    hostvars["tts-a"].update(
        keepalived_priority=150,
        sambertd_model_archive=str(model_archive),
        sambertd_model_check_command=f"{py} -m sambertd check --model-dir",
    )
    hostvars["tts-b"].update(keepalived_priority=100, sambertd_gpu=True)
    hostvars["witness1"].update(redis_server_enabled=False)
    common: dict[str, Any] = {
        "ansible_connection": "local",
        "ansible_python_interpreter": py,
        "sambertd_manage_users": False,
        "sambertd_manage_services": False,
        "sambertd_install_python": False,
        "sambertd_install_packages": False,
        "keepalived_install_packages": False,
        "keepalived_validate": False,
        "redis_install_packages": False,
        "sambertd_user": user,
        "sambertd_group": group,
        "redis_user": user,
        "redis_group": group,
        "sambertd_validate_command": f"{py} -m sambertd -c %s check",
        "sambertd_secret_files": [
            {"src": str(secret), "dest": "/etc/sambertd/keys/hs256.secret", "mode": "0640"}
        ],
        # `sambertd check` (the validate step) reads it on this machine, outside the roots.
        "sambertd_auth_hs256_secret_file": str(secret),
        "keepalived_vip": VIP,
        "keepalived_auth_pass": "vrrp-pw1",
        "redis_master_host": HOSTS["tts-a"],
        **OVERRIDES,
    }
    inventory = {
        "all": {
            "children": {
                "tts": {"hosts": {h: hostvars[h] for h in ("tts-a", "tts-b")}},
                "witness": {"hosts": {"witness1": hostvars["witness1"]}},
            },
            "vars": common,
        }
    }
    path = tmp / "inventory.yml"
    path.write_text(json.dumps(inventory, indent=1))
    return path


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    out: dict[str, tuple[int, bytes | None]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, p.read_bytes() if p.is_file() else None)
    return out


def _recap(out: str) -> dict[str, dict[str, int]]:
    found = {
        m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
        for m in RECAP.findall(out)
    }
    assert set(found) == set(HOSTS), f"no PLAY RECAP for every host:\n{out[-4000:]}"
    return found


@needs_ansible
def test_site_applies_check_mode_then_real_then_idempotent(project: Path, tmp_path: Path) -> None:
    assert ANSIBLE_PLAYBOOK is not None
    roots = {name: tmp_path / "roots" / name for name in HOSTS}
    for root in roots.values():
        root.mkdir(parents=True)
    model = make_model_dir(tmp_path / "model-src" / "sambert")
    archive = tmp_path / "sambert-model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(model.iterdir()):
            tar.add(p, arcname=p.name)
    inventory = _write_inventory(tmp_path, roots, archive)
    env = _env(tmp_path, project)
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), "site.yml"]
    cwd = project / "ansible"

    before = {name: _snapshot(root) for name, root in roots.items()}
    out = _run([*cmd, "--check", "--diff"], env, cwd)
    assert {name: _snapshot(root) for name, root in roots.items()} == before, "--check wrote"
    assert all(r["changed"] > 0 for r in _recap(out).values()), out[-4000:]

    first = _recap(_run(cmd, env, cwd))
    assert all(r["changed"] > 0 and r["failed"] == 0 for r in first.values()), first

    second = _recap(out2 := _run(cmd, env, cwd))
    assert all(r["changed"] == 0 for r in second.values()), f"not idempotent:\n{out2[-6000:]}"

    # sambertd.toml: every key of config/sambertd.toml, defaults plus the overrides.
    expected = copy.deepcopy(_toml_defaults())
    secret = str(tmp_path / "hs256.secret")
    for var, value in [*OVERRIDES.items(), ("sambertd_auth_hs256_secret_file", secret)]:
        section, _, key = var.removeprefix("sambertd_").partition("_")
        assert key in expected[section], var
        expected[section][key] = value
    for node in ("tts-a", "tts-b"):
        etc = roots[node] / "etc"
        conf = etc / "sambertd" / "sambertd.toml"
        assert tomllib.loads(conf.read_text(encoding="utf-8")) == expected
        assert oct(conf.stat().st_mode & 0o777) == "0o640"
        unit = etc / "systemd" / "system" / "sambertd.service"
        assert unit.read_bytes() == (REPO / "systemd" / "sambertd.service").read_bytes()
        secret = etc / "sambertd" / "keys" / "hs256.secret"
        assert secret.read_text() == "x" * 48 and secret.stat().st_mode & 0o777 == 0o640
        keepalived = (etc / "keepalived" / "keepalived.conf").read_text()
        assert VIP in keepalived and HOSTS[node] in keepalived
        other = HOSTS["tts-b" if node == "tts-a" else "tts-a"]
        assert other in keepalived
        assert f"priority {150 if node == 'tts-a' else 100}" in keepalived
        for script in ("check_sambertd.sh", "notify.sh"):
            assert (etc / "keepalived" / script).stat().st_mode & 0o777 == 0o755
    dropin = "etc/systemd/system/sambertd.service.d/nvidia.conf"
    assert not (roots["tts-a"] / dropin).exists()
    assert (roots["tts-b"] / dropin).read_bytes() == (
        REPO / "systemd" / "sambertd.service.d" / "nvidia.conf"
    ).read_bytes()
    voices = roots["tts-a"] / "opt/sambertd/models/sambert/voices/voices.json"
    assert json.loads(voices.read_text())["voices"]
    assert not (roots["tts-b"] / "opt/sambertd/models").exists()

    # Redis: A is the initial master, B its replica, the witness runs Sentinel only.
    redis_a = (roots["tts-a"] / "etc/redis/redis.conf").read_text()
    redis_b = (roots["tts-b"] / "etc/redis/redis.conf").read_text()
    assert "\nreplicaof " not in redis_a and "bind 10.0.0.11 127.0.0.1" in redis_a
    assert "replicaof 10.0.0.11 6379" in redis_b and "requirepass s3cret-redis" in redis_b
    assert not (roots["witness1"] / "etc/redis/redis.conf").exists()
    for node in HOSTS:
        sentinel = (roots[node] / "etc/redis/sentinel.conf").read_text()
        assert "sentinel monitor sambertd 10.0.0.11 6379 2" in sentinel
        assert f"sentinel announce-ip {HOSTS[node]}" in sentinel
    assert not (roots["witness1"] / "etc/sambertd").exists()


@needs_ansible
def test_live_redis_config_is_not_overwritten_after_failover(project: Path, tmp_path: Path) -> None:
    """Sentinel rewrites redis.conf/sentinel.conf after a failover; a re-run of site.yml
    must keep the rewritten live files while the seed is unchanged."""
    assert ANSIBLE_PLAYBOOK is not None
    roots = {name: tmp_path / "roots" / name for name in HOSTS}
    model = make_model_dir(tmp_path / "model-src" / "sambert")
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model, arcname=".")
    inventory = _write_inventory(tmp_path, roots, archive)
    env = _env(tmp_path, project)
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), "site.yml", "--limit", "tts-b"]
    cwd = project / "ansible"
    _run(cmd, env, cwd)
    live = roots["tts-b"] / "etc/redis/redis.conf"
    rewritten = live.read_text().replace("replicaof 10.0.0.11 6379", "")
    rewritten += "# Generated by CONFIG REWRITE\n"
    live.write_text(rewritten)
    assert _recap_one(_run(cmd, env, cwd), "tts-b")["changed"] == 0
    assert live.read_text() == rewritten


def _recap_one(out: str, host: str) -> dict[str, int]:
    for m in RECAP.findall(out):
        if m[0] == host:
            return {"changed": int(m[2]), "failed": int(m[4])}
    raise AssertionError(f"no recap for {host}:\n{out[-4000:]}")
