"""The Ansible roles and playbooks (ansible/): syntax, ansible-lint, and the role variables
mirroring config/sambertd.toml.  The playbooks run for real on booted hosts in
tests/test_hosts.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

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
    # The caller's own Ansible settings (a vault password file, a config) stay out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
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
