"""The unit's sandbox: how systemd rates it, that it parses cleanly with its drop-ins, and that
every engine runs under it without touching a filtered system call; and the Ansible drop-in
(roles/sambertd/templates/sambertd-override.conf.j2) that sets TimeoutStopSec, WatchdogSec and
MemoryMax from role variables.

The engine runs use the shipped unit with one change: a refused system call kills the daemon
(``SystemCallErrorNumber=kill``) instead of failing with EPERM, so a call the filter refuses
cannot go unnoticed behind a fallback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.systemd_ns import INSIDE, SystemdNamespace, unavailable
from tests.test_systemd import CLIENT, PORT, unit_files, wait_for

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "sambertd.service"
NVIDIA = REPO / "systemd" / "sambertd.service.d" / "nvidia.conf"
ROLE = REPO / "ansible" / "roles" / "sambertd"
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
_LOCAL_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_PLAYBOOK = (
    str(_LOCAL_PLAYBOOK) if _LOCAL_PLAYBOOK.exists() else shutil.which("ansible-playbook")
)

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
needs_systemd = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
needs_ansible = pytest.mark.skipif(
    ANSIBLE_PLAYBOOK is None, reason="ansible-playbook not installed"
)


def unit_dir(tmp: Path, *dropins: tuple[str, str]) -> Path:
    """A copy of the unit with the given drop-ins (name, text) beside it; returns the unit."""
    tmp.mkdir(parents=True, exist_ok=True)
    unit = tmp / "sambertd.service"
    shutil.copy(UNIT, unit)
    if dropins:
        (tmp / "sambertd.service.d").mkdir()
        for name, text in dropins:
            (tmp / "sambertd.service.d" / name).write_text(text)
    return unit


def exposure(unit: Path) -> tuple[float, str]:
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Overall exposure level for sambertd\.service: (\d+\.\d+)", out)
    assert m, out
    return float(m.group(1)), out


def verify(unit: Path) -> str:
    """``systemd-analyze verify`` of the unit and the drop-ins beside it; everything it says.
    ExecStart's /opt/sambertd/venv/bin/sambertd must exist, so a private mount namespace gets
    a tmpfs /opt holding a stand-in (nothing of the host's /opt is touched)."""
    script = textwrap.dedent(f"""\
        set -e
        mount --make-rprivate /
        mount -t tmpfs tmpfs /opt
        mkdir -p /opt/sambertd/venv/bin
        printf '#!/bin/sh\\n' > /opt/sambertd/venv/bin/sambertd
        chmod 755 /opt/sambertd/venv/bin/sambertd
        exec {ANALYZE} verify --man=no {unit}
        """)
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return (proc.stdout + proc.stderr).strip()


# ---------------------------------------------------------------- the rating


@needs_analyze
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_exposure_level_is_at_most_2(gpu: bool, tmp_path: Path) -> None:
    dropins = [("nvidia.conf", NVIDIA.read_text())] if gpu else []
    level, report = exposure(unit_dir(tmp_path, *dropins))
    assert level <= MAX_EXPOSURE, report
    if gpu:  # the drop-in was read: its device list is what the rating complains about
        assert "char-nvidia-frontend:rw" in report, report


@needs_analyze
def test_rating_reads_the_repository_layout() -> None:
    """The command the unit's comment gives, as an operator types it in the checkout (the
    drop-in directory beside the unit is read too)."""
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", "systemd/sambertd.service"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    m = re.search(r"Overall exposure level for sambertd\.service: (\d+\.\d+)", out)
    assert m and float(m.group(1)) <= MAX_EXPOSURE, out


@needs_analyze
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root + unshare")
def test_unit_and_gpu_dropin_verify_without_warnings(tmp_path: Path) -> None:
    assert verify(unit_dir(tmp_path / "cpu")) == ""
    assert verify(unit_dir(tmp_path / "gpu", ("nvidia.conf", NVIDIA.read_text()))) == ""


@needs_analyze
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root + unshare")
def test_verify_would_report_a_bad_dropin(tmp_path: Path) -> None:
    """The check above can fail: a broken drop-in beside the unit is reported."""
    said = verify(unit_dir(tmp_path, ("nvidia.conf", NVIDIA.read_text() + "NoSuchKey=1\n")))
    assert "NoSuchKey" in said


# ---------------------------------------------------------------- engines under the sandbox

KILL = "[Service]\nSystemCallErrorNumber=kill\n"


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdNamespace]:
    if unavailable() is not None:
        pytest.skip(str(unavailable()))
    work = tmp_path_factory.mktemp("hardening")
    (work / "client.py").write_text(CLIENT % PORT)
    work.chmod(0o755)
    units = unit_files()  # the repository's unit + the drop-in that runs this checkout
    units["sambertd.service.d/50-kill.conf"] = KILL
    box = SystemdNamespace(work, units, users=["sambertd"], keep=(REPO,))
    box.start()
    try:
        yield box
    finally:
        box.stop()


def set_engine(ns: SystemdNamespace, environment: str) -> None:
    """(Re)place the engine drop-in and reload systemd; the unit must be stopped."""
    name = "60-engine.conf"
    (ns.work / name).write_text(f"[Service]\n{environment}\n")
    ns.run("cp", str(INSIDE / name), f"/run/systemd/system/sambertd.service.d/{name}")
    ns.run("systemctl", "daemon-reload")


def synthesize(ns: SystemdNamespace, voice: str) -> tuple[int, int]:
    body = json.dumps({"text": "今天天气很好，我们去公园散步吧。", "voice": voice})
    out = ns.run(sys.executable, str(INSIDE / "client.py"), "/v1/tts", body).stdout.split()
    return int(out[0]), int(out[1])


def journal(ns: SystemdNamespace) -> str:
    return ns.run("journalctl", "-u", "sambertd", "--no-pager", "-o", "cat").stdout


def run_engine(ns: SystemdNamespace, environment: str, voice: str, loaded: str) -> None:
    """Start, synthesize, reload, synthesize, stop: every step under the kill-on-refusal filter."""
    set_engine(ns, environment)
    ns.run("systemctl", "reset-failed", "sambertd", check=False)
    start = ns.run("systemctl", "start", "sambertd", check=False, timeout=300)
    invocation = ns.show("sambertd", "InvocationID")
    log = ns.run("journalctl", "--no-pager", "-o", "cat", f"_SYSTEMD_INVOCATION_ID={invocation}")
    assert start.returncode == 0, journal(ns)[-3000:]
    try:
        assert loaded in log.stdout, log.stdout[-3000:]
        assert synthesize(ns, voice)[0] == 200
        ns.run("systemctl", "reload", "sambertd")
        assert wait_for(lambda: ns.show("sambertd", "StatusText").startswith("ready"), 120)
        status, size = synthesize(ns, voice)
        assert status == 200 and size > 10_000
    finally:
        ns.run("systemctl", "stop", "sambertd")
    assert ns.show("sambertd", "Result") == "success", journal(ns)[-3000:]
    assert ns.show("sambertd", "NRestarts") == "0", journal(ns)[-3000:]


@needs_systemd
def test_sandbox_is_in_effect(ns: SystemdNamespace) -> None:
    """What the unit asks for is what the kernel gives the running daemon."""
    set_engine(ns, "")
    ns.run("systemctl", "start", "sambertd", timeout=300)
    try:
        pid = ns.host_pid("sambertd")
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        assert fields["Seccomp"].strip() == "2"
        assert fields["NoNewPrivs"].strip() == "1"
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
        assert fields["Umask"].strip() == "0077"
        # PrivateUsers=: a user namespace that maps only a few ids, not the identity map
        uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
        assert uid_map != ["0", "0", "4294967295"], uid_map
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        # ProtectProc=invisible: /proc is mounted with hidepid
        mounts = Path(f"/proc/{pid}/mountinfo").read_text()
        assert re.search(r" /proc .*hidepid=(invisible|2)", mounts), mounts
        assert synthesize(ns, "baker")[0] == 200
    finally:
        ns.run("systemctl", "stop", "sambertd")


@needs_systemd
@pytest.mark.parametrize("runtime", ["openvino", "litert"])
def test_baker_runs_under_the_filter(ns: SystemdNamespace, runtime: str) -> None:
    """OpenVINO JIT-compiles and pins threads (sched_setaffinity, mbind); LiteRT's XNNPACK."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    run_engine(
        ns,
        f"Environment=SAMBERTD_ENGINE_RUNTIME={runtime}",
        "baker",
        f"vocoder on {runtime}",
    )


@needs_systemd
def test_sambert_runs_under_the_filter(ns: SystemdNamespace, kantts_model: Path) -> None:
    """torch + numba (the KAN-TTS code, random weights): JIT, OpenMP thread placement."""
    shutil.copytree(kantts_model, ns.work / "model", dirs_exist_ok=True)
    run_engine(
        ns,
        f"Environment=SAMBERTD_ENGINE_ENGINES=sambert SAMBERTD_SAMBERT_MODEL_DIR={INSIDE}/model\n"
        "Environment=SAMBERTD_ENGINE_DEFAULT_VOICE=zhitian_emo SAMBERTD_ENGINE_DEGRADE=false",
        "zhitian_emo",
        "sambert loaded from",
    )


# ---------------------------------------------------------------- the Ansible drop-in

OVERRIDES = {
    "sambertd_timeout_stop_s": 45,
    "sambertd_watchdog_s": 33,
    "sambertd_memory_max": "3500M",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The role's drop-in template rendered by ansible-playbook: with the role defaults, and
    with OVERRIDES set as the inventory would."""
    if ANSIBLE_PLAYBOOK is None:
        pytest.skip("ansible-playbook not installed")
    tmp = tmp_path_factory.mktemp("ansible-dropin")
    home = tmp / "home"
    home.mkdir()
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        ANSIBLE_HOME=str(home / ".ansible"),
        ANSIBLE_LOCAL_TEMP=str(home / "local"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_VAULT_PASSWORD_FILE"):  # only the defaults here
        env.pop(name, None)
    template = ROLE / "templates" / "sambertd-override.conf.j2"
    play = [
        {
            "name": "Render the sambertd drop-in",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults" / "main.yml")],
            "tasks": [
                {
                    "name": "With the role defaults",
                    "ansible.builtin.template": {
                        "src": str(template),
                        "dest": str(tmp / "defaults.conf"),
                        "mode": "0644",
                    },
                },
                {
                    "name": "With inventory values",
                    "ansible.builtin.template": {
                        "src": str(template),
                        "dest": str(tmp / "overrides.conf"),
                        "mode": "0644",
                    },
                    "vars": OVERRIDES,
                },
            ],
        }
    ]
    (tmp / "play.yml").write_text(json.dumps(play))  # JSON is YAML
    proc = subprocess.run(
        [
            ANSIBLE_PLAYBOOK,
            "-i",
            "localhost,",
            "-e",
            json.dumps({"ansible_python_interpreter": sys.executable}),
            str(tmp / "play.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return {
        "defaults": (tmp / "defaults.conf").read_text(),
        "overrides": (tmp / "overrides.conf").read_text(),
    }


def unit_values(text: str) -> dict[str, str]:
    keys = ("TimeoutStopSec", "WatchdogSec", "MemoryMax")
    return {k: v for k, _, v in (line.partition("=") for line in text.splitlines()) if k in keys}


@needs_ansible
def test_dropin_defaults_equal_the_shipped_unit(rendered: dict[str, str]) -> None:
    """With the role defaults the drop-in changes nothing: the role and the unit agree."""
    assert unit_values(rendered["defaults"]) == unit_values(UNIT.read_text())
    assert len(unit_values(rendered["defaults"])) == 3


@needs_ansible
@needs_analyze
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root + unshare")
def test_rendered_dropin_verifies_without_warnings(
    rendered: dict[str, str], tmp_path: Path
) -> None:
    unit = unit_dir(
        tmp_path,
        ("10-ansible.conf", rendered["overrides"]),
        ("nvidia.conf", NVIDIA.read_text()),
    )
    assert verify(unit) == ""


@needs_ansible
@needs_systemd
def test_systemd_applies_the_ansible_dropin(rendered: dict[str, str], tmp_path: Path) -> None:
    """The real systemd runs the unit with the rendered drop-in and the NVIDIA one, as on a GPU
    host (where this one has no NVIDIA devices, their grant is simply empty): the role's values
    win, the GPU grant and the sandbox stay, and the daemon serves."""
    work = tmp_path / "ns"
    work.mkdir()
    work.chmod(0o755)
    (work / "client.py").write_text(CLIENT % PORT)
    units = unit_files()
    # the test drop-in (it sorts after 10-ansible.conf) must not set what is under test
    units["sambertd.service.d/test.conf"] = units["sambertd.service.d/test.conf"].replace(
        "WatchdogSec=4\n", ""
    )
    units["sambertd.service.d/10-ansible.conf"] = rendered["overrides"]
    units["sambertd.service.d/nvidia.conf"] = NVIDIA.read_text()
    box = SystemdNamespace(work, units, users=["sambertd"], keep=(REPO,))
    box.start()
    try:
        dropins = box.show("sambertd", "DropInPaths")
        assert "10-ansible.conf" in dropins and "nvidia.conf" in dropins
        assert box.show("sambertd", "TimeoutStopUSec") == "45s"
        assert box.show("sambertd", "MemoryMax") == str(3500 * 1024 * 1024)
        assert box.show("sambertd", "PrivateDevices") == "no"
        assert box.show("sambertd", "DevicePolicy") == "closed"
        assert "char-nvidia-frontend rw" in box.show("sambertd", "DeviceAllow")
        assert box.show("sambertd", "PrivateUsers") == "yes"
        box.run("systemctl", "start", "sambertd", timeout=300)
        assert box.show("sambertd", "WatchdogUSec") == "33s"  # known once it runs
        environ = Path(f"/proc/{box.host_pid('sambertd')}/environ").read_bytes().split(b"\0")
        assert b"WATCHDOG_USEC=33000000" in environ
        assert synthesize(box, "baker")[0] == 200
        box.run("systemctl", "stop", "sambertd")
        assert box.show("sambertd", "Result") == "success"
    finally:
        box.stop()


def test_role_installs_the_dropin_on_every_host() -> None:
    """The drop-in directory and 10-ansible.conf are not limited to GPU hosts, and a change
    reloads systemd and restarts the daemon."""
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())

    def task(module: str, path_end: str) -> dict[str, Any]:
        for t in tasks:
            args = t.get(module) or t.get(module.rsplit(".", 1)[-1]) or {}
            if str(args.get("path", args.get("dest", ""))).endswith(path_end):
                return dict(t)
        raise AssertionError(f"no {module} task for {path_end}")

    directory = task("ansible.builtin.file", "/sambertd.service.d")
    assert "when" not in directory
    dropin = task("ansible.builtin.template", "/sambertd.service.d/10-ansible.conf")
    assert "when" not in dropin
    assert dropin["ansible.builtin.template"]["src"] == "sambertd-override.conf.j2"
    assert set(dropin["notify"]) == {"Reload systemd for sambertd", "Restart sambertd"}
    assert tasks.index(directory) < tasks.index(dropin)
    specs = yaml.safe_load((ROLE / "meta" / "main.yml").read_text())["argument_specs"]["main"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    for var in OVERRIDES:
        assert var in specs["options"] and var in defaults, var
