"""The Ansible roles and playbooks (ansible/): syntax, ansible-lint, the role variables
mirroring config/sambertd.toml and failover/haproxy.cfg.j2, and the scale-out configuration
(HAProxy + keepalived) rendered by the roles' own tasks and checked by haproxy and keepalived.
The playbooks run for real on booted hosts in tests/test_hosts.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
@pytest.mark.parametrize("inventory", ["inventory.example.yml", "inventory.scaleout.example.yml"])
@pytest.mark.parametrize("playbook", ["site.yml", "upgrade.yml"])
def test_syntax_check(project: Path, tmp_path: Path, playbook: str, inventory: str) -> None:
    assert ANSIBLE_PLAYBOOK is not None
    _run(
        [ANSIBLE_PLAYBOOK, "-i", inventory, "--syntax-check", playbook],
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


def _role_defaults_and_options(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A role's defaults/main.yml and its argument_specs options."""
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")
    role = REPO / "ansible" / "roles" / name
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    meta = yaml.safe_load((role / "meta" / "main.yml").read_text())
    return defaults, meta["argument_specs"]["main"]["options"]


def test_role_variables_mirror_config_toml() -> None:
    """Every key of config/sambertd.toml is a role default with the same value, is
    documented with its type in argument_specs, and is rendered by the template."""
    defaults, options = _role_defaults_and_options("sambertd")
    template = (REPO / "ansible/roles/sambertd/templates/sambertd.toml.j2").read_text()
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


def test_haproxy_role_variables_mirror_the_template() -> None:
    """Every haproxy_* variable failover/haproxy.cfg.j2 reads is a default of roles/haproxy
    (the role renders the template without a vars block), and every default is documented in
    argument_specs with the same default."""
    defaults, options = _role_defaults_and_options("haproxy")
    template = (REPO / "failover" / "haproxy.cfg.j2").read_text()
    problems = [
        f"{var}: read by haproxy.cfg.j2, not a role default"
        for var in sorted(set(re.findall(r"\bhaproxy_[a-z_]+", template)) - set(defaults))
    ]
    problems += [f"{var}: not in argument_specs" for var in sorted(set(defaults) - set(options))]
    problems += [f"{var}: in argument_specs, not a default" for var in set(options) - set(defaults)]
    problems += [
        f"{var}: argument_specs default {spec['default']!r} != {defaults.get(var)!r}"
        for var, spec in options.items()
        if "default" in spec and spec["default"] != defaults.get(var)
    ]
    assert not problems, "\n".join(problems)


class _Ready(BaseHTTPRequestHandler):
    """A TTS node's /ready, as far as the haproxy role reads it."""

    workers = 3

    def do_GET(self) -> None:
        body = json.dumps({"status": "ready", "workers": self.workers}).encode()
        self.send_response(200 if self.path == "/ready" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


RENDER_PLAY = """\
- name: Render the scale-out configuration with the roles' own tasks
  hosts: tts
  gather_facts: false
  vars:
    haproxy_config_file: "{{ out }}/{{ inventory_hostname }}/haproxy.cfg"
    keepalived_config_dir: "{{ out }}/{{ inventory_hostname }}/keepalived"
  tasks:
    - name: The haproxy role's configuration tasks
      ansible.builtin.include_role:
        name: haproxy
        tasks_from: config.yml
    - name: The keepalived role's configuration tasks
      ansible.builtin.include_role:
        name: keepalived
        tasks_from: config.yml
    - name: Stop before the handlers (reloads of this machine's services)
      ansible.builtin.meta: end_play
"""


@needs_ansible
@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("haproxy") and shutil.which("keepalived")),
    reason="needs root (the roles install root-owned files), haproxy and keepalived",
)
def test_scaleout_inventory_renders_valid_haproxy_and_keepalived_configs(tmp_path: Path) -> None:
    """inventory.scaleout.example.yml through the haproxy and keepalived roles' own
    configuration tasks (tasks/config.yml: the template with its validate, i.e.
    ``haproxy -c -f`` and ``keepalived --config-test``), on the pair's hosts run locally.  The
    copy of the roles drops their sambertd_bundle dependency (no bundle here) and the play
    ends before the reload handlers.  Every node's /ready is one stand-in answering
    ``workers: 3`` over TLS on 127.0.0.1 (the role asks each node for itself): maxconn must be
    2 x 3.  A second run with no node answering keeps the running configuration's maxconn."""
    from tests.pki import make_pki

    assert ANSIBLE_PLAYBOOK is not None
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")
    root = tmp_path / "repo"
    for part in ("ansible", "failover"):
        shutil.copytree(
            REPO / part, root / part, ignore=shutil.ignore_patterns(".cache", ".ansible")
        )
    for role in ("haproxy", "keepalived"):
        meta = root / "ansible" / "roles" / role / "meta" / "main.yml"
        data = yaml.safe_load(meta.read_text())
        assert data["dependencies"] == [{"role": "sambertd_bundle"}]
        data["dependencies"] = []
        meta.write_text(yaml.safe_dump(data))
    (root / "ansible" / "render.yml").write_text(RENDER_PLAY)
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    pem = tmp_path / "frontend.pem"
    pem.write_bytes(pki.server[0].read_bytes() + pki.server[1].read_bytes())

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*pki.server)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "out"
    cmd = [
        ANSIBLE_PLAYBOOK,
        "-i",
        "inventory.scaleout.example.yml",
        "render.yml",
        "-e",
        "ansible_connection=local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        f"out={out}",
        "-e",
        f"sambertd_server_port={port}",
        "-e",
        f"haproxy_frontend_pem={pem}",
        "-e",
        "vault_vrrp_auth_pass=vrrp-pw1",
    ]
    env = _env(tmp_path, root)
    try:
        first = _run(cmd, env, root / "ansible")
    finally:
        server.shutdown()
        server.server_close()
    assert "maxconn: tts-a=6, tts-b=6, tts-c=6, tts-d=6" in first, first[-3000:]

    nodes = {"tts-a": "10.0.0.11", "tts-b": "10.0.0.12", "tts-c": "10.0.0.21", "tts-d": "10.0.0.22"}
    for host in ("tts-a", "tts-b"):
        cfg = out / host / "haproxy.cfg"
        text = cfg.read_text()
        servers = re.findall(r"^\s*server (\S+) (\S+) maxconn (\d+)$", text, re.M)
        assert servers == [(n, f"{ip}:{port}", "6") for n, ip in nodes.items()], text
        assert re.search(rf"^\s*bind :8080 ssl crt {re.escape(str(pem))}$", text, re.M), text
        assert re.search(r"^\s*default-server check .* ssl verify none$", text, re.M), text
        assert "bind 127.0.0.1:8404" in text and "stats socket /run/haproxy/admin.sock" in text
        subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], check=True, timeout=30)

        kdir = out / host / "keepalived"
        conf = (kdir / "keepalived.conf").read_text()
        assert f'script "{kdir}/check_haproxy.sh 8404"' in conf, conf
        assert re.search(r"track_script \{\s*chk_haproxy\s*chk_witness\s*\}", conf), conf
        assert "chk_sambertd" not in conf, conf
        assert (kdir / "check_haproxy.sh").read_bytes() == (
            REPO / "failover" / "check_haproxy.sh"
        ).read_bytes()
        subprocess.run(
            ["keepalived", "--config-test", "--use-file", str(kdir / "keepalived.conf")],
            check=True,
            timeout=30,
            capture_output=True,
        )

    # No node answers now (down, or restarting): each server keeps its maxconn from the
    # running haproxy.cfg, so nothing changes and nothing needs a reload.
    before = {h: (out / h / "haproxy.cfg").read_text() for h in ("tts-a", "tts-b")}
    second = _run(cmd, env, root / "ansible")
    assert "maxconn: tts-a=6, tts-b=6, tts-c=6, tts-d=6" in second, second[-3000:]
    assert {h: (out / h / "haproxy.cfg").read_text() for h in before} == before
    recap = {m[0]: int(m[2]) for m in RECAP.findall(second)}
    assert recap == {"tts-a": 0, "tts-b": 0}, second[-3000:]
