"""The roles refuse missing, empty or placeholder secrets before they change anything.

Runs the real ``ansible-playbook`` on ``site.yml`` with the real ``inventory.example.yml``
(every host on ``ansible_connection=local``, in ``--check`` mode) and the secrets where that
inventory says they go: an ansible-vault encrypted ``group_vars/all/vault.yml``.  An
unloaded vault or a CHANGE-ME must stop the run at the first play with a message that says
what to do; real secrets must pass the checks.  Ansible's own state stays under tmp_path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_ansible import _env as ansible_env

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


ANSIBLE_PLAYBOOK, ANSIBLE_VAULT = _tool("ansible-playbook"), _tool("ansible-vault")
pytestmark = pytest.mark.skipif(
    ANSIBLE_PLAYBOOK is None or ANSIBLE_VAULT is None,
    reason="ansible-playbook not installed (pip install 'ansible-core>=2.16,<2.19')",
)
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)
GOOD = {
    "vault_vrrp_auth_pass": "vrrp-pw1",
    "vault_redis_password": "s3cret-redis-0123456789",
    "vault_sentinel_password": "s3cret-sentinel-0123456789",
}
TASK = re.compile(r"^TASK \[(?:[\w.]+ : )?(.+?)\] \**$", re.M)


def _env(tmp: Path) -> dict[str, str]:
    """tests/test_ansible.py's environment, for the project copied into ``tmp``."""
    return ansible_env(tmp, tmp)


def _project(tmp: Path, vault: dict[str, str] | None) -> Path:
    """ansible/ copied under tmp, the example's controller files in ansible/files/, and the
    secrets (if any) in an encrypted group_vars/all/vault.yml as the example inventory says."""
    ansible = tmp / "ansible"
    shutil.copytree(REPO / "ansible", ansible, ignore=shutil.ignore_patterns(".cache", ".ansible"))
    files = ansible / "files"
    files.mkdir(exist_ok=True)
    for name in ("hs256.secret", "server.crt", "server.key"):
        (files / name).write_text("x" * 48)
    (tmp / "vault-pass").write_text("test-vault-password\n")
    if vault is not None:
        plain = ansible / "group_vars" / "all" / "vault.yml"
        plain.parent.mkdir(parents=True)
        plain.write_text("".join(f'{k}: "{v}"\n' for k, v in vault.items()))
        assert ANSIBLE_VAULT is not None
        subprocess.run(
            [
                ANSIBLE_VAULT,
                "encrypt",
                "--vault-password-file",
                str(tmp / "vault-pass"),
                str(plain),
            ],
            env=_env(tmp),
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert plain.read_text().startswith("$ANSIBLE_VAULT;")
    return ansible


def _play(
    tmp: Path, *extra: str, playbook: str = "site.yml", inventory: str = "inventory.example.yml"
) -> tuple[int, str]:
    assert ANSIBLE_PLAYBOOK is not None
    cmd = [
        ANSIBLE_PLAYBOOK,
        "-i",
        inventory,
        playbook,
        "--check",
        "--vault-password-file",
        str(tmp / "vault-pass"),
        "-e",
        "ansible_connection=local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        f"sambertd_root={tmp / 'root'}",
        *extra,
    ]
    proc = subprocess.run(
        cmd, env=_env(tmp), cwd=tmp / "ansible", capture_output=True, text=True, timeout=180
    )
    return proc.returncode, proc.stdout + proc.stderr


def _check_names() -> set[str]:
    """The names of the tasks in every role's tasks/secrets.yml."""
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")
    return {
        task["name"]
        for path in (REPO / "ansible" / "roles").glob("*/tasks/secrets.yml")
        for task in yaml.safe_load(path.read_text())
    }


def _refused_early(rc: int, out: str, message: str) -> None:
    assert rc != 0, out[-4000:]
    assert message in out, out[-4000:]
    recap = {m[0]: (int(m[2]), int(m[4])) for m in RECAP.findall(out)}
    assert recap and all(changed == 0 for changed, _ in recap.values()), out[-4000:]
    assert any(failed for _, failed in recap.values()), out[-4000:]
    # Only argument validation and the checks ran: no task that could change something.
    tasks, checks = TASK.findall(out), _check_names()
    assert any(t in checks for t in tasks), out[-4000:]
    ran = [t for t in tasks if not t.startswith("Validating arguments") and t not in checks]
    assert not ran, f"ran before or after the refusal: {ran}\n{out[-4000:]}"


@pytest.mark.parametrize(
    ("vault", "message"),
    [
        (None, "redis_password (= sambertd_cache_password) is empty or undefined"),
        (
            {k: v for k, v in GOOD.items() if k != "vault_redis_password"},
            "sambertd_cache_password) is empty or undefined",
        ),
        (
            {**GOOD, "vault_redis_password": "CHANGE-ME"},
            "redis_password (= sambertd_cache_password) is a placeholder",
        ),
        (
            {**GOOD, "vault_sentinel_password": "changeme"},
            "redis_sentinel_password (= sambertd_cache_sentinel_password) is a placeholder",
        ),
        (
            {k: v for k, v in GOOD.items() if k != "vault_vrrp_auth_pass"},
            "keepalived_auth_pass (VRRP) is empty or undefined",
        ),
        (
            {**GOOD, "vault_vrrp_auth_pass": "CHANGE-ME"},
            "keepalived_auth_pass (VRRP) is a placeholder",
        ),
        (
            {**GOOD, "vault_vrrp_auth_pass": "  "},
            "keepalived_auth_pass (VRRP) is empty or undefined",
        ),
    ],
    ids=[
        "no-vault",
        "no-redis-password",
        "redis-change-me",
        "sentinel-change-me",
        "no-vrrp",
        "vrrp-change-me",
        "vrrp-blank",
    ],
)
def test_site_refuses_a_missing_or_placeholder_secret_before_any_change(
    tmp_path: Path, vault: dict[str, str] | None, message: str
) -> None:
    _project(tmp_path, vault)
    rc, out = _play(tmp_path)
    _refused_early(rc, out, message)
    assert "ansible-vault create" in out  # the message says how to fix it
    assert not (tmp_path / "root").exists()


def test_site_refuses_a_secret_file_missing_on_the_controller(tmp_path: Path) -> None:
    ansible = _project(tmp_path, GOOD)
    (ansible / "files" / "server.key").unlink()
    rc, out = _play(tmp_path)
    _refused_early(rc, out, "files/server.key (to be installed as /etc/sambertd/keys/server.key)")


def test_each_role_refuses_a_placeholder_on_its_own(tmp_path: Path) -> None:
    """Without site.yml's first play, the role's own first task refuses.  (Its sambertd_bundle
    dependency runs before it and needs a bundle: ``--tags secrets`` leaves that out.)"""
    ansible = _project(tmp_path, {**GOOD, "vault_vrrp_auth_pass": "change_me"})
    (ansible / "only-keepalived.yml").write_text(
        "- name: keepalived alone\n  hosts: tts\n  gather_facts: false\n"
        "  roles:\n    - role: keepalived\n"
    )
    rc, out = _play(tmp_path, "--tags", "secrets", playbook="only-keepalived.yml")
    _refused_early(rc, out, "keepalived_auth_pass (VRRP) is a placeholder")
    assert "TASK [keepalived : Refuse a missing or placeholder VRRP password]" in out


def test_real_secrets_from_the_vault_pass_the_checks(tmp_path: Path) -> None:
    _project(tmp_path, GOOD)
    rc, out = _play(tmp_path, "--tags", "secrets")
    assert rc == 0, out[-4000:]
    recap = {m[0]: (int(m[2]), int(m[4])) for m in RECAP.findall(out)}
    assert set(recap) == {"tts-a", "tts-b", "witness1"}, out[-4000:]
    assert all(failed == 0 for _, failed in recap.values()), out[-4000:]
    for task in (
        "redis : Refuse a missing or placeholder Redis or Sentinel password",
        "sambertd : Refuse a missing or placeholder Redis password",
        "sambertd : Refuse secret and key files that are not on the controller",
        "keepalived : Refuse a missing or placeholder VRRP password",
    ):
        assert f"TASK [{task}]" in out, task
    for secret in GOOD.values():
        assert secret not in out  # quiet: no secret is printed


def test_scaleout_checks_every_tts_node_and_the_haproxy_files(tmp_path: Path) -> None:
    """inventory.scaleout.example.yml: the extra TTS nodes (tts_nodes) get the sambertd
    checks too, and a missing HAProxy TLS file stops the run before any change."""
    _project(tmp_path, GOOD)
    rc, out = _play(tmp_path, "--tags", "secrets", inventory="inventory.scaleout.example.yml")
    assert rc == 0, out[-4000:]
    recap = {m[0]: (int(m[2]), int(m[4])) for m in RECAP.findall(out)}
    assert set(recap) == {"tts-a", "tts-b", "tts-c", "tts-d", "witness1"}, out[-4000:]
    assert all(failed == 0 for _, failed in recap.values()), out[-4000:]
    # site.yml's first play (no role prefix) checks the extra nodes' sambertd secrets too.
    first = out.split("TASK [Refuse a missing or placeholder Redis password] ", 1)[1]
    first = first.split("TASK [", 1)[0]
    assert "ok: [tts-c]" in first and "ok: [tts-d]" in first, first
    assert "TASK [Refuse HAProxy TLS files that are not on the controller]" in out
    for secret in GOOD.values():
        assert secret not in out

    tmp2 = tmp_path / "missing"
    tmp2.mkdir()
    _project(tmp2, GOOD)
    # The daemons' key stays; only HAProxy's copy of it is named wrong.
    inventory = tmp2 / "ansible" / "inventory.scaleout.example.yml"
    inventory.write_text(
        inventory.read_text().replace(
            "{src: files/server.key, dest: /etc/haproxy/",
            "{src: files/haproxy.key, dest: /etc/haproxy/",
        )
    )
    rc, out = _play(tmp2, inventory="inventory.scaleout.example.yml")
    _refused_early(
        rc, out, "files/haproxy.key (to be installed as /etc/haproxy/certs/sambertd.pem.key)"
    )
