"""Scale-out for real (issue #15): ``site.yml`` and ``upgrade.yml`` with haproxy_enabled over
SSH onto booted Debian 12 hosts (tests/hosts.py): the pair tts-a and tts-b (sambertd, Redis,
Sentinel, keepalived, and HAProxy in front of every TTS node), tts-c (group tts_nodes:
sambertd only) and witness1 (Sentinel).  Clients call the VIP on 8080 (HAProxy); the daemons
listen on 8081.  tests/test_haproxy.py proves HAProxy and keepalived themselves in namespaces;
this file proves the roles and playbooks that deploy and roll them.

One module-scoped fleet serves the tests in file order: the rollout onto fresh hosts and its
idempotence; the rolling upgrade to N+1 under a client load, each node drained through
HAProxy's runtime API first; a broken upgrade that stops on its first node and leaves it
drained, and the run that puts it back.  The bundles are built side by side in the
background while the hosts boot.  About 8 minutes on 2 cores.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hosts import Fleet, unavailable
from tests.rollout import BIN, FLEET, N1, PORT, Load, N, Site, build_bundle, lock_file, summary
from tests.test_haproxy import in_window

HOSTS = {**FLEET, "tts-c": ("c", 14)}
PAIR = ("tts-a", "tts-b")
NODES = (*PAIR, "tts-c")
NODE_PORT = 8081  # each daemon; the clients' PORT (8080) is HAProxy's
STATS_PORT = 8404
_why = unavailable() or (None if (BIN / "ansible-playbook").exists() else "ansible-core missing")
pytestmark = pytest.mark.skipif(_why is not None, reason=str(_why))


class Bundles:
    """The bundles N and N+1 (tests/rollout.py), built side by side in the background
    (mostly downloads: two take as long as one); ``bundles[version]`` waits for one."""

    def __init__(self, work: Path, pool: ThreadPoolExecutor) -> None:
        lock = lock_file(work)
        self.futures: dict[str, Future[Path]] = {
            version: pool.submit(build_bundle, work, version, lock) for version in (N, N1)
        }

    def __getitem__(self, version: str) -> Path:
        return self.futures[version].result(timeout=1500)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundles]:
    with ThreadPoolExecutor(2) as pool:
        yield Bundles(tmp_path_factory.mktemp("bundles"), pool)


@pytest.fixture(scope="module")
def site(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("scaleout")
    fleet = Fleet(work, HOSTS)
    try:
        fleet.up()
        site = Site(fleet, work)
        # inventory.scaleout.example.yml's settings, without TLS.
        site.write_inventory(
            haproxy_enabled=True,
            haproxy_port=PORT,
            haproxy_stats_port=STATS_PORT,
            sambertd_server_port=NODE_PORT,
            sambertd_auth_trusted_proxies=[f"{site.ip(n)}/32" for n in PAIR],
        )
        yield site
    finally:
        fleet.down()


def servers(site: Site, haproxy: str) -> dict[str, str]:
    """The tts backend's servers on ``haproxy``'s HAProxy, name → status (its stats CSV on
    loopback, read in the host's network namespace); {} when it does not answer."""
    url = f"http://127.0.0.1:{STATS_PORT}/stats;csv"
    lines = site.lab.exec(HOSTS[haproxy][0], "curl", "-sS", "-m", "2", url, check=False)
    rows = [line.split(",") for line in lines.stdout.splitlines() if line.startswith("tts,")]
    return {r[1]: r[17] for r in rows if len(r) > 17 and r[1] not in ("BACKEND", "FRONTEND")}


def nodes_via_vip(site: Site, count: int) -> list[str]:
    """X-Node of ``count`` GET /ready through the VIP (HAProxy), one after another."""
    url = f"http://{site.vip}:{PORT}/ready"
    proc = site.fleet.controller(["curl", "-s", "-m", "5", "-D", "-", *[url] * count], timeout=60)
    return re.findall(r"(?im)^x-node:\s*(\S+)", proc.stdout)


class Watch:
    """Polls ``haproxy``'s server states and the VIP holder four times a second until
    :meth:`stop`: rows of (before, after, {server: status}) and the holders seen."""

    def __init__(self, site: Site, haproxy: str) -> None:
        self.site, self.haproxy = site, haproxy
        self.rows: list[tuple[float, float, dict[str, str]]] = []
        self.holders: set[str | None] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.time()
            states = servers(self.site, self.haproxy)
            if states:
                self.rows.append((before, time.time(), states))
            self.holders.add(self.site.holder())
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def out_of_rotation(self, name: str) -> list[tuple[float, float]]:
        """Each time ``name`` was not UP: from just after the first poll that saw it so to
        just before the last one that did (it was out of rotation all that time)."""
        windows: list[tuple[float, float]] = []
        start: float | None = None
        last = 0.0
        for before, after, states in self.rows:
            up = states.get(name, "").startswith("UP")
            if not up and start is None:
                start = after
            if not up:
                last = before
            if up and start is not None:
                windows.append((start, last))
                start = None
        if start is not None:
            windows.append((start, last))
        return windows


# ---------------------------------------------------------------- rollout


def test_site_with_haproxy_serves_every_node_through_the_vip(site: Site, bundles: Bundles) -> None:
    started = time.monotonic()
    _, out, recap = site.play("site.yml", bundles[N])
    print(f"site.yml (scale-out) onto fresh hosts: {time.monotonic() - started:.0f} s")
    assert set(recap) == set(HOSTS), recap
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    units = {
        n: ("sambertd", "keepalived", "haproxy") if n in PAIR else ("sambertd",) for n in NODES
    }
    inactive = {
        f"{n} {u}": site.fleet[n].ssh(f"journalctl -u {u} -n 30 --no-pager", check=False).stdout
        for n in NODES
        for u in units[n]
        if site.fleet[n].unit(u) != "active"
    }
    assert not inactive, inactive
    assert {n: site.installed(n) for n in NODES} == dict.fromkeys(NODES, N)
    for name in NODES:
        ready = site.fleet.controller(
            ["curl", "-fsS", "-m", "5", f"http://{site.ip(name)}:{NODE_PORT}/ready"], timeout=10
        )
        assert ready.returncode == 0, (name, ready.stdout, ready.stderr)
    assert site.fleet["tts-c"].unit("haproxy") != "active"
    assert site.fleet["tts-c"].unit("keepalived") != "active"
    site.wait(lambda: site.holder() in PAIR, 30, "one pair node holds the VIP")
    for haproxy in PAIR:
        site.wait(
            lambda h=haproxy: servers(site, h) == dict.fromkeys(NODES, "UP"),
            30,
            f"{haproxy}'s HAProxy sees every node UP",
        )
    seen: set[str] = set()

    def every_node_answers() -> bool:
        seen.update(nodes_via_vip(site, 6))
        return seen >= set(NODES)

    site.wait(every_node_answers, 30, f"every node answers through the VIP (so far {seen})")
    assert seen == set(NODES), seen
    metrics = site.fleet[site.holder() or "tts-a"].ssh(f"curl -fsS 127.0.0.1:{STATS_PORT}/metrics")
    assert re.search(r'(?m)^haproxy_backend_active_servers\{proxy="tts"\} 3$', metrics.stdout), (
        metrics.stdout[:2000]
    )
    # The stats port is loopback only.
    outside = site.fleet.controller(
        ["curl", "-s", "-m", "2", f"http://{site.vip}:{STATS_PORT}/metrics"], timeout=10
    )
    assert outside.returncode != 0, outside.stdout[:300]

    started = time.monotonic()
    _, out, recap = site.play("site.yml", bundles[N])
    print(f"site.yml (scale-out) again: {time.monotonic() - started:.0f} s")
    assert {h: r["changed"] for h, r in recap.items()} == dict.fromkeys(HOSTS, 0), (
        recap,
        re.findall(r"(?m)^changed: .*$", out),
    )


# ---------------------------------------------------------------- rolling upgrade


def test_upgrade_behind_haproxy_under_load_is_invisible_to_clients(
    site: Site, bundles: Bundles
) -> None:
    holder = site.holder()
    assert holder in PAIR
    standby = next(n for n in PAIR if n != holder)
    site.recovered(standby)
    pids = {n: site.fleet[n].unit("haproxy", "MainPID") for n in PAIR}
    watch = Watch(site, holder)
    load = Load(site, "upgrade", workers=3, fresh=True)
    try:
        site.wait(lambda: len(nodes_via_vip(site, 1)) == 1, 30, "the VIP answers")
        started = time.monotonic()
        site.play("upgrade.yml", bundles[N1])
        took = time.monotonic() - started
    finally:
        records = load.stop()
        watch.stop()
    failed, retried, served = summary(records)
    windows = {n: watch.out_of_rotation(n) for n in NODES}
    order = sorted(NODES, key=lambda n: windows[n][0][0] if windows[n] else 0.0)
    drained = {n: [round(end - start, 1) for start, end in windows[n]] for n in NODES}
    inside = {
        n: sum(1 for start, end in windows[n] for r in records if start <= float(r[6]) < end)  # type: ignore[arg-type]
        for n in NODES
    }
    print(f"\nupgrade.yml behind HAProxy to N+1: {took:.0f} s; {len(records)} requests, "
          f"{retried} needed the client's retry, {len(failed)} failed; served by {served}; "
          f"out of rotation (s) {drained} with {inside} requests started meanwhile; "
          f"VIP holders {watch.holders}")  # fmt: skip
    assert {n: site.installed(n) for n in NODES} == dict.fromkeys(NODES, N1)
    assert not failed, failed[:5]
    assert retried == 0, [r for r in records if r[2] != 1][:5]
    assert served == set(NODES), served
    assert all(inside.values()), inside  # the clients kept sending while each was drained
    assert watch.holders == {holder}, watch.holders
    # HAProxy was not restarted (a restart would reset every client connection).
    assert {n: site.fleet[n].unit("haproxy", "MainPID") for n in PAIR} == pids
    # One node at a time: the extra nodes, the standby, the VIP holder; each drained once.
    assert all(len(windows[n]) == 1 for n in NODES), windows
    assert order == ["tts-c", standby, holder], order
    for first, then in itertools.pairwise(order):
        assert windows[first][0][1] < windows[then][0][0], windows
    for name in NODES:
        (start, end), *_ = windows[name]
        assert not in_window(records, name, start, end - 0.5), in_window(records, name, start, end)
    for haproxy in PAIR:
        assert servers(site, haproxy) == dict.fromkeys(NODES, "UP")
    # HAProxy's access log is in the journal under its own name.
    logged = site.fleet[holder].ssh("journalctl -t haproxy -o cat --no-pager | grep -c /v1/tts")
    assert int(logged.stdout) >= len(records), logged.stdout


# ---------------------------------------------------------------- a broken upgrade


def test_broken_upgrade_stops_on_the_first_node_and_leaves_it_drained(
    site: Site, bundles: Bundles
) -> None:
    holder = site.holder()
    assert holder in PAIR
    pid = site.fleet["tts-c"].unit("sambertd", "MainPID")
    rc, out, _ = site.play(
        "upgrade.yml", bundles[N1], "-e", "sambertd_server_queue_size=-5", check=False
    )
    assert rc != 0
    assert "queue_size" in out, out[-3000:]
    assert "LEFT DRAINED" in out and "set server tts/tts-c state ready" in out, out[-3000:]
    for haproxy in PAIR:
        states = servers(site, haproxy)
        assert states["tts-c"].startswith("DRAIN") and states["tts-a"] == states["tts-b"] == "UP"
    assert site.fleet["tts-c"].unit("sambertd", "MainPID") == pid  # never restarted
    config = site.fleet["tts-c"].ssh("grep '^queue_size' /etc/sambertd/sambertd.toml").stdout
    assert "-5" not in config
    assert site.holder() == holder
    assert set(nodes_via_vip(site, 6)) == set(PAIR)
    # Run again with a good configuration: every node is rolled and tts-c is back.
    site.play("upgrade.yml", bundles[N1])
    for haproxy in PAIR:
        assert servers(site, haproxy) == dict.fromkeys(NODES, "UP")
    assert {n: site.installed(n) for n in NODES} == dict.fromkeys(NODES, N1)
    assert site.holder() == holder
