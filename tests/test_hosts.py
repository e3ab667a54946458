"""The rollout for real: ``make bundle`` output → ``site.yml`` over SSH onto booted Debian 12
hosts (tests/hosts.py): tts-a and tts-b (sambertd, Redis, Sentinel, keepalived) and witness1
(Sentinel).  The hosts have no route to any registry: all they install comes from the bundle.

One module-scoped fleet runs the tests in file order: check mode on fresh hosts, the rollout
and its idempotence, failures under a client load through the VIP, a rolling upgrade to N+1
and back, check mode refusing what the real run would, a broken upgrade and its rollback, a
partition that the witness settles, and the upgrade to a bundle with the production engine.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts import Fleet, unavailable
from tests.rollout import (
    BIN,
    FLEET,
    N1,
    N2,
    PORT,
    REPO,
    SECRETS,
    Load,
    N,
    Site,
    build_bundle,
    build_bundles,
    lock_file,
    moves,
    partition,
    summary,
    token,
)

KANTTS = REPO.parent / "shared" / "vendor" / "KAN-TTS-66202d0.tar.gz"
_why = unavailable() or (None if (BIN / "ansible-playbook").exists() else "ansible-core missing")
pytestmark = pytest.mark.skipif(_why is not None, reason=str(_why))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_bundles(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("hosts")
    fleet = Fleet(work, FLEET)
    try:
        fleet.up()
        yield Site(fleet, work)
    finally:
        fleet.down()


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
        assert site.installed(name) == N
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


# ---------------------------------------------------------------- failures under load


def signal(name: str) -> str:
    """A shell command that signals sambertd's main process.  (``systemctl kill`` fails
    with EIO in these containers when it signals the unit's other processes.)"""
    return f"kill -s {name} $(systemctl show -P MainPID sambertd)"


def test_failures_under_load_move_the_vip_and_clients_see_none(site: Site) -> None:
    site.wait(lambda: site.holder() == "tts-a", 30, "tts-a holds the VIP")
    site.recovered("tts-b")
    load = Load(site, "failures")
    times: dict[str, float] = {}
    try:
        site.wait(lambda: len(site.cache_keys()) > 0, 60, "the load fills the cache")
        a, b = site.fleet["tts-a"], site.fleet["tts-b"]
        # 1. A's daemon is killed (systemd restarts it; nopreempt keeps the VIP on B).
        times["daemon killed"] = site.switchover("tts-b", lambda: a.ssh(signal("KILL")))
        site.recovered("tts-a")
        assert site.holders_during(4) == {"tts-b"}, "the VIP moved again: flapping"
        # 2. B's daemon freezes.
        times["daemon frozen"] = site.switchover("tts-a", lambda: b.ssh(signal("STOP")))
        b.ssh(signal("CONT"))
        site.recovered("tts-b")
        assert site.holders_during(4) == {"tts-a"}, "the VIP moved again: flapping"
        # 3. A's link is cut.
        times["link down"] = site.switchover("tts-b", lambda: site.lab.link("a", up=False))
        site.lab.link("a", up=True)
        site.recovered("tts-a")
        assert site.holders_during(4) == {"tts-b"}, "the VIP moved again: flapping"
        # 4. B, the holder, is shut down (a host power-off: systemd drains and stops it all).
        times["host shut down"] = site.switchover("tts-a", b.stop, timeout=60)
        b.boot(site.fleet.image)
        site.recovered("tts-b")
        assert site.holders_during(4) == {"tts-a"}, "the VIP moved again: flapping"
    finally:
        records = load.stop()
    failed, retried, served = summary(records)
    print(f"\nbooted hosts, switchover times: {times}; {len(records)} requests, "
          f"{retried} needed the retry, {len(failed)} failed")  # fmt: skip
    assert served == {"tts-a", "tts-b"}
    assert not failed, failed[:5]
    assert times["daemon killed"] <= 3.5 and times["daemon frozen"] <= 3.5, times
    assert times["link down"] <= 3.5 + 16 / 256, times


# ---------------------------------------------------------------- rolling upgrade


def test_rolling_upgrade_under_load_to_n1_and_back(site: Site, bundles: dict[str, Path]) -> None:
    holder = site.holder()
    assert holder in ("tts-a", "tts-b")
    for name in ("tts-a", "tts-b"):
        if name != holder:
            site.recovered(name)
    load = Load(site, "upgrade")
    windows: dict[str, tuple[float, float]] = {}
    try:
        site.wait(lambda: len(site.cache_keys()) > 0, 60, "the load fills the cache")
        keys = site.cache_keys()
        for label, version in (("to N+1", N1), ("back to N", N)):
            started = time.time()
            site.play("upgrade.yml", bundles[version])
            windows[label] = (started, time.time())
            assert {site.installed(n) for n in ("tts-a", "tts-b")} == {version}
            assert site.holder() in ("tts-a", "tts-b")
        time.sleep(1)
    finally:
        records = load.stop()
    failed, retried, served = summary(records)
    per = {
        label: moves([r for r in records if lo <= r[0] <= hi])  # type: ignore[operator]
        for label, (lo, hi) in windows.items()
    }
    print(f"\nrolling upgrade: {len(records)} requests, {retried} needed the retry, "
          f"{len(failed)} failed; VIP moves {per}; plays "
          f"{ {k: round(hi - lo) for k, (lo, hi) in windows.items()} } s")  # fmt: skip
    assert not failed, failed[:5]
    assert served == {"tts-a", "tts-b"}
    assert all(count <= 2 for count in per.values()), per
    assert keys <= site.cache_keys(), "cache entries were lost"


def test_check_mode_runs_the_config_checks_that_the_real_run_would(
    site: Site, bundles: dict[str, Path]
) -> None:
    """The template module skips ``validate`` under --check; the roles check a scratch copy."""
    rc, out, _ = site.play(
        "site.yml", bundles[N], "--check", "-e", "sambertd_server_queue_size=-5", check=False
    )
    assert rc != 0 and "queue_size" in out, out[-3000:]
    rc, out, _ = site.play(
        "site.yml", bundles[N], "--check", "-e", "keepalived_router_id=300", check=False
    )
    assert rc != 0 and "300" in out, out[-3000:]
    _, out, recap = site.play("site.yml", bundles[N], "--check")
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), recap
    for name in ("tts-a", "tts-b"):
        left = site.fleet[name].ssh("ls /tmp /root/.ansible/tmp 2>/dev/null").stdout
        assert not re.search(r"\.(toml|conf)\b", left), f"scratch files left on {name}: {left}"


def test_broken_upgrade_stops_with_the_other_node_serving(
    site: Site, bundles: dict[str, Path]
) -> None:
    holder = site.holder()
    assert holder in ("tts-a", "tts-b")
    pids = {n: site.fleet[n].unit("sambertd", "MainPID") for n in ("tts-a", "tts-b")}
    rc, out, _ = site.play(
        "upgrade.yml", bundles[N1], "-e", "sambertd_server_queue_size=-5", check=False
    )
    assert rc != 0
    assert "queue_size" in out
    assert site.holder() == holder
    status, node = site.ready_via_vip()
    assert (status, node) == (200, holder)
    for name in ("tts-a", "tts-b"):
        assert site.fleet[name].unit("sambertd") == "active"
        config = site.fleet[name].ssh("grep '^queue_size' /etc/sambertd/sambertd.toml").stdout
        assert "-5" not in config
    # Neither daemon was restarted: the standby may hold N+1's code on disk, but it still
    # runs N with the old config.  Running upgrade.yml with the N bundle rolls it back.
    assert {n: site.fleet[n].unit("sambertd", "MainPID") for n in pids} == pids
    site.play("upgrade.yml", bundles[N])
    assert {site.installed(n) for n in ("tts-a", "tts-b")} == {N}
    assert site.holder() in ("tts-a", "tts-b")


# ---------------------------------------------------------------- split brain


def test_partition_the_witness_leaves_exactly_one_vip_holder(
    site: Site, bundles: dict[str, Path]
) -> None:
    # Without the witness (the control), the cut-off standby takes the VIP too: split brain.
    site.write_inventory(keepalived_witness_ips=[])
    site.play("site.yml", bundles[N], "--tags", "keepalived")
    holder = site.holder()
    assert holder in ("tts-a", "tts-b")
    other = "tts-b" if holder == "tts-a" else "tts-a"
    site.recovered(other)
    partition(site, other, cut=True)
    try:
        site.wait(lambda: site.holder() == "both", 15, "the cut-off node takes the VIP too")
    finally:
        partition(site, other, cut=False)
    site.wait(lambda: site.holder() in ("tts-a", "tts-b"), 15, "one holder after healing")
    holder = site.holder()
    other = "tts-b" if holder == "tts-a" else "tts-a"
    site.recovered(other)
    # With the witness: the node that reaches neither its peer nor the witness gives up.
    site.write_inventory()
    site.play("site.yml", bundles[N], "--tags", "keepalived")
    site.recovered(other)
    partition(site, other, cut=True)
    try:
        seen = site.holders_during(12)
        role = site.role(other)
    finally:
        partition(site, other, cut=False)
    assert seen == {holder}, seen
    assert role == "FAULT", role
    site.recovered(other)
    assert site.holders_during(6) == {holder}, "the VIP moved again: flapping"


# ---------------------------------------------------------------- the production engine


def test_upgrade_to_a_bundle_with_the_production_engine(site: Site, tmp_path: Path) -> None:
    """A bundle made with SAMBERT=1 and KAN-TTS carries torch, modelscope and kantts; the
    rolling upgrade to it with sambert enabled serves a Sambert voice through the VIP.  The
    model is a small one with random weights (tests/kantts_model.py): the real weights are
    site-supplied."""
    if not KANTTS.is_file() or importlib.util.find_spec("kantts") is None:
        pytest.skip(f"needs {KANTTS} and kantts in this venv (make install-sambert)")
    from tests.kantts_model import build_model_dir

    model = build_model_dir(tmp_path / "model", {"zhitian_emo": "F7"})
    archive = tmp_path / "sambert-model.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(model), "."], check=True)
    started = time.monotonic()
    bundle = build_bundle(tmp_path, N2, lock_file(tmp_path), SAMBERT="1", KANTTS=str(KANTTS))
    print(f"bundle with the production engine: {time.monotonic() - started:.0f} s, "
          f"{bundle.stat().st_size >> 20} MB")  # fmt: skip
    settings = tmp_path / "sambert.json"
    settings.write_text(json.dumps({
        "sambertd_sambert_install": True,
        "sambertd_model_archive": str(archive),
        "sambertd_sambert_model_dir": "/opt/sambertd/models/sambert",
        "sambertd_sambert_voices": ["zhitian_emo"],
        "sambertd_sambert_device": "cpu",
        "sambertd_engine_engines": ["sambert", "baker"],
    }))  # fmt: skip
    started = time.monotonic()
    site.play("upgrade.yml", bundle, "-e", f"@{settings}")
    print(f"upgrade.yml to the production engine: {time.monotonic() - started:.0f} s")
    assert {site.installed(n) for n in ("tts-a", "tts-b")} == {N2}
    for name in ("tts-a", "tts-b"):
        probe = site.fleet[name].ssh(
            "/opt/sambertd/venv/bin/python -c 'import torch, modelscope, kantts; "
            "print(torch.__version__)'"
        )
        assert probe.stdout.strip(), probe
    body = json.dumps({"text": "请到三号窗口办理。", "voice": "zhitian_emo"})
    proc = site.fleet.controller(
        ["curl", "-s", "-m", "60", "-o", "/dev/null", "-D", "-",
         "-w", "%{http_code} %{size_download}", "-H", f"Authorization: Bearer {token()}",
         "-H", "Content-Type: application/json",
         "--data", body, f"http://{site.vip}:{PORT}/v1/tts"], timeout=90,
    )  # fmt: skip
    status, size = proc.stdout.split()[-2:]
    assert status == "200" and int(size) > 1000, proc.stdout
    assert re.search(r"(?im)^x-voice:\s*zhitian_emo\s*$", proc.stdout), proc.stdout
    assert not re.search(r"(?im)^x-degraded:", proc.stdout), proc.stdout
