"""The shipped unit under a real systemd (see tests/systemd_ns.py): READY after warm-up,
watchdog restarts a frozen daemon, reload keeps serving, stop drains, logs reach the journal."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd_ns import INSIDE, SystemdNamespace, unavailable

REPO = Path(__file__).resolve().parent.parent
PORT = 8080  # the namespace has its own loopback: no clash with anything on the host
LONG = "本市将于下月起全面推行企业开办一网通办，申请人可通过政务服务网提交材料。" * 6

CLIENT = textwrap.dedent("""\
    import json, sys, urllib.request, urllib.error
    path, body = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
    req = urllib.request.Request("http://127.0.0.1:%s" + path,
                                 data=body.encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            print(r.status, len(r.read()))
    except urllib.error.HTTPError as e:
        print(e.code, len(e.read()))
    """)

# The sum of one metric's samples, read from inside the namespace.
METRIC = textwrap.dedent("""\
    import sys, urllib.request
    name = sys.argv[1]
    with urllib.request.urlopen("http://127.0.0.1:%s/metrics", timeout=120) as r:
        lines = r.read().decode().splitlines()
    print(sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.split("{")[0].split(" ")[0] == name))
    """)

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def world_readable(path: Path) -> bool:
    """Can an unprivileged service user reach ``path`` (every parent directory o+x)?"""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def unit_files() -> dict[str, str]:
    """The shipped unit, plus a test drop-in that points it at this checkout's venv.

    Where the checkout or its interpreter sits under a directory the ``sambertd`` user cannot
    enter (a clone in /root, say), the drop-in runs the unit as root; a checkout under /tmp is
    bound back into the unit's private /tmp.  Everything else in the shipped unit stays."""
    python = Path(sys.executable).resolve()
    as_root = not (world_readable(REPO) and world_readable(python))
    user = "User=root\nGroup=root\nProtectHome=read-only\n" if as_root else ""
    # PrivateTmp= hides a checkout that lives in /tmp: bind it back, read-only.
    if REPO.is_relative_to("/tmp") or REPO.is_relative_to("/var/tmp"):
        user += f"BindReadOnlyPaths={REPO}\n"
    dropin = (
        textwrap.dedent(f"""\
        [Service]
        ExecStart=
        ExecStart={sys.executable} -m sambertd serve
        Environment=SAMBERTD_SERVER_PORT={PORT} SAMBERTD_SERVER_HOST=127.0.0.1
        Environment=SAMBERTD_SERVER_WORKERS=1 SAMBERTD_SERVER_DRAIN_TIMEOUT_S=20
        Environment=SAMBERTD_SERVER_MAX_REQUEST_CHARS=2000
        WatchdogSec=4
        """)
        + user
    )
    return {
        "sambertd.service": (REPO / "systemd" / "sambertd.service").read_text(),
        "sambertd.service.d/test.conf": dropin,
    }


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdNamespace]:
    work = tmp_path_factory.mktemp("systemd")
    (work / "client.py").write_text(CLIENT % PORT)
    (work / "metric.py").write_text(METRIC % PORT)
    work.chmod(0o755)
    box = SystemdNamespace(work, unit_files(), users=["sambertd"], keep=(REPO,))
    box.start()
    try:
        yield box
    finally:
        box.stop()


def http(ns: SystemdNamespace, path: str, body: str | None = None) -> tuple[int, int]:
    args = [sys.executable, str(INSIDE / "client.py"), path] + ([body] if body else [])
    out = ns.run(*args).stdout.split()
    return int(out[0]), int(out[1])


def http_async(ns: SystemdNamespace, path: str, body: str):  # type: ignore[no-untyped-def]
    return ns.popen(sys.executable, str(INSIDE / "client.py"), path, body)


def tts(text: str) -> str:
    import json

    return json.dumps({"text": text}, ensure_ascii=False)


def in_flight(ns: SystemdNamespace) -> float:
    """Requests the daemon is synthesizing now (0 while it does not answer)."""
    out = ns.run(sys.executable, str(INSIDE / "metric.py"), "sambertd_in_flight", check=False)
    return float(out.stdout) if out.returncode == 0 else 0.0


def wait_for(predicate, timeout: float, step: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_start_returns_only_after_ready(ns: SystemdNamespace) -> None:
    started = time.monotonic()
    ns.run("systemctl", "start", "sambertd")
    elapsed = time.monotonic() - started
    # No polling: the instant start returns, the daemon must already answer /ready.
    assert http(ns, "/ready")[0] == 200
    assert ns.show("sambertd", "ActiveState") == "active"
    assert ns.show("sambertd", "StatusText").startswith("ready")
    dropin = unit_files()["sambertd.service.d/test.conf"]
    expected_user = "root" if "User=root" in dropin else "sambertd"
    assert ns.show("sambertd", "User") == expected_user
    assert elapsed > 0.5  # it waited for warm-up instead of returning at fork


def test_reload_keeps_serving(ns: SystemdNamespace) -> None:
    pid = ns.show("sambertd", "MainPID")
    client = http_async(ns, "/v1/tts", tts(LONG))
    assert wait_for(lambda: in_flight(ns) >= 1, 60)  # however long the client takes to start
    ns.run("systemctl", "reload", "sambertd")
    out, err = client.communicate(timeout=120)
    assert out.split()[0] == "200", err
    assert ns.show("sambertd", "MainPID") == pid
    assert http(ns, "/v1/tts", tts("重新加载以后仍然可以服务。"))[0] == 200
    journal = ns.run("journalctl", "-u", "sambertd", "--no-pager").stdout
    assert "reloaded configuration" in journal


def test_watchdog_restarts_a_frozen_daemon(ns: SystemdNamespace) -> None:
    import os
    import signal

    before = ns.show("sambertd", "MainPID")
    os.kill(ns.host_pid("sambertd"), signal.SIGSTOP)  # a hung process sends no pings
    assert wait_for(lambda: ns.show("sambertd", "NRestarts") == "1", 30), ns.run(
        "journalctl", "-u", "sambertd", "--no-pager"
    ).stdout[-2000:]
    assert wait_for(lambda: ns.show("sambertd", "ActiveState") == "active", 60)
    assert ns.show("sambertd", "MainPID") != before
    journal = ns.run("journalctl", "--no-pager").stdout
    assert "Watchdog timeout" in journal
    assert http(ns, "/ready")[0] == 200


def test_stop_drains_in_flight_request(ns: SystemdNamespace) -> None:
    client = http_async(ns, "/v1/tts", tts(LONG))
    assert wait_for(lambda: in_flight(ns) >= 1, 60)
    ns.run("systemctl", "stop", "sambertd")
    out, err = client.communicate(timeout=120)
    status, size = map(int, out.split())
    assert status == 200 and size > 100_000, err
    assert ns.show("sambertd", "ActiveState") == "inactive"
    assert ns.show("sambertd", "Result") == "success"


def test_journal_has_one_line_events_with_priorities(ns: SystemdNamespace) -> None:
    journal = ns.run("journalctl", "-u", "sambertd", "--no-pager", "-o", "verbose").stdout
    assert "MESSAGE=sambertd: sambertd 0.1.0 listening on 127.0.0.1:8080" in journal
    assert "MESSAGE=sambertd: draining" in journal
    assert "PRIORITY=6" in journal
    short = ns.run("journalctl", "-u", "sambertd", "--no-pager", "-o", "cat").stdout
    assert not any(line[:4].isdigit() for line in short.splitlines()), "duplicated timestamps"
