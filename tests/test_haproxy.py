"""Scale-out for real: three TTS nodes (A, B, C: network namespaces on one bridge) behind
HAProxy on the keepalived pair (A and B; the VIP fronts whichever holds it), configured
from failover/haproxy.cfg.j2 and failover/keepalived.conf.j2 as Ansible renders them, and a
client load through the VIP from a fourth namespace (tests/vip_client.py).

One lab serves the whole module, in order: requests spread over all nodes (X-Node passes
through, the daemons see the client's address); a node's daemon killed under load, the
VIP holder's included, costs no request and no client retry (HAProxy retries elsewhere), and
the VIP does not move; a returning node gets traffic again; a node drained through the
runtime API, or draining itself (SIGTERM), gets no new requests while its in-flight ones
finish; the HAProxy holder failing (HAProxy killed, then the host's link cut) moves the VIP
and HAProxy to the peer, and a client that retries once sees no failure."""

from __future__ import annotations

import datetime
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Lab, unavailable
from tests.test_ha import CLIENT, Pair, client_token, no_flap, switchover

REPO = Path(__file__).resolve().parent.parent
FRONT_PORT = 8080  # what clients call on the VIP: HAProxy
NODE_PORT = 8081  # each daemon
STATS_PORT = 8404
NODES = ("a", "b", "c")
LONG_TEXT = "各位市民请注意，本市今日发布的政策公告内容如下，请仔细收听。" * 10  # seconds of work
# HAProxy's httplog: actconn/feconn/beconn/srv_conn/retries ("+" when redispatched).
RETRIES = re.compile(r" \d+/\d+/\d+/\d+/\+?[1-9]\d* \d+/\d+ ")
pytestmark = pytest.mark.skipif(
    unavailable() is not None or not Path("/usr/sbin/haproxy").exists(),
    reason=str(unavailable() or "haproxy is not installed"),
)


class Site:
    """The pair (daemon + HAProxy + keepalived on A and B) and a third node C."""

    def __init__(self, lab: Lab, work: Path) -> None:
        self.lab, self.work = lab, work
        self.pair = Pair(lab, work, port=NODE_PORT)
        self.vip = self.pair.vip
        proxies = ",".join(lab.ip(n) for n in ("a", "b"))
        self.pair.settings = {"SAMBERTD_AUTH_TRUSTED_PROXIES": proxies}
        self.haproxies: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, list[Path]] = {"a": [], "b": []}  # HAProxy's, one per start
        self.workers = 2  # auto on this machine; set from the nodes' /ready in start()

    def socket_path(self, node: str) -> Path:
        return self.pair.scripts / f"haproxy-{node}.sock"

    def start_haproxy(self, node: str) -> None:
        from jinja2 import Template

        servers = [
            {"name": n, "address": self.lab.ip(n), "port": NODE_PORT, "maxconn": 2 * self.workers}
            for n in NODES
        ]
        conf = Template((REPO / "failover" / "haproxy.cfg.j2").read_text()).render(
            haproxy_port=FRONT_PORT,
            haproxy_servers=servers,
            haproxy_stats_port=STATS_PORT,
            haproxy_socket=self.socket_path(node),
            haproxy_log="stdout",
        )
        path = self.pair.scripts / f"haproxy-{node}.cfg"
        path.write_text(conf)
        checked = subprocess.run(
            ["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        log = self.work / f"haproxy-{node}-{len(self.logs[node]) + 1}.log"
        self.logs[node].append(log)
        proc = self.haproxies[node] = self.lab.popen(
            node, ["haproxy", "-db", "-f", str(path)], log=log
        )
        self.lab.wait(lambda: proc.poll() is None and self.socket_path(node).exists(), 20)

    def start(self) -> None:
        for node in NODES:
            self.pair.start_daemon(node)
        ready = json.loads(
            self.lab.exec("a", "curl", "-fsS", f"http://127.0.0.1:{NODE_PORT}/ready").stdout
        )
        self.workers = int(ready["workers"])
        for node in ("a", "b"):
            self.start_haproxy(node)
        extra = {
            "haproxy_stats_port": STATS_PORT,
            "haproxy_check_script": self.pair.scripts / "check_haproxy.sh",
        }
        self.pair.start_keepalived("a", 250, **extra)
        self.pair.start_keepalived("b", 240, **extra)
        self.lab.wait(lambda: self.pair.holder() == "a", 20)
        self.lab.wait(lambda: self.all_up(), 30)

    # -- HAProxy's runtime API (the socket is a file: reachable from the host) -----------------
    def api(self, node: str, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path(node)))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self, node: str) -> dict[str, dict[str, str]]:
        """``show stat`` of the tts backend's servers: name → the CSV row as a dict."""
        lines = self.api(node, "show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {
            r["svname"]: r
            for r in rows
            if r.get("pxname") == "tts" and r["svname"] not in ("BACKEND", "FRONTEND")
        }

    def status(self, server: str, on: tuple[str, ...] = ("a", "b")) -> set[str]:
        return {self.servers(n)[server]["status"] for n in on if self.haproxies[n].poll() is None}

    def all_up(self, on: tuple[str, ...] = ("a", "b")) -> bool:
        return all(self.status(s, on) == {"UP"} for s in NODES)

    def busy(self, node: str) -> bool:
        """``node``'s daemon has a synthesis request in hand (its /ready says so)."""
        answer = self.lab.exec(node, "curl", "-sS", f"http://127.0.0.1:{NODE_PORT}/ready")
        return bool(json.loads(answer.stdout)["requests"])

    def streaming(self, node: str) -> bool:
        """``node``'s daemon is sending a stream (``sambertd_streams_active``)."""
        answer = self.lab.exec(node, "curl", "-sS", f"http://127.0.0.1:{NODE_PORT}/metrics")
        gauge = re.search(r"^sambertd_streams_active (\S+)$", answer.stdout, re.MULTILINE)
        return gauge is not None and float(gauge.group(1)) >= 1

    def retried(self, node: str) -> int:
        """Requests this node's current HAProxy sent again (its log's retries field)."""
        lines = self.logs[node][-1].read_text().splitlines()
        return sum(1 for line in lines if RETRIES.search(line))

    def set_state(self, server: str, state: str) -> None:
        for node in ("a", "b"):
            answer = self.api(node, f"set server tts/{server} state {state}")
            assert answer.strip() == "", answer

    # -- load ------------------------------------------------------------------------------------
    def load(self, name: str, workers: int = 3) -> Load:
        return Load(self, self.work / name, workers)

    def stop(self) -> None:
        for proc in self.haproxies.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.pair.stop()


class Load:
    """tests/vip_client.py in the client namespace, a new text per request (every request is
    synthesized), until ``stop()``; ``records`` are its rows (see that file)."""

    def __init__(self, site: Site, work: Path, workers: int) -> None:
        work.mkdir()
        self.results, self.stop_file = work / "results.json", work / "stop"
        command = [
            sys.executable,
            str(CLIENT),
            site.vip,
            str(FRONT_PORT),
            client_token(),
            str(self.results),
            str(self.stop_file),
            "120",
            str(workers),
            "fresh",
        ]
        self.proc = site.lab.popen("x", command, log=work / "client.log")
        self.records: list[list[object]] = []

    def stop(self) -> list[list[object]]:
        self.stop_file.write_text("stop")
        self.proc.wait(60)
        self.records = json.loads(self.results.read_text())
        return self.records

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def served(records: list[list[object]], node: str, after: float = 0.0) -> int:
    """Requests ``node`` answered with 200 that the client had started after ``after``."""
    return sum(1 for r in records if r[3] == 200 and r[4] == node and float(r[6]) > after)  # type: ignore[arg-type]


def failed(records: list[list[object]]) -> list[list[object]]:
    return [r for r in records if r[3] != 200]


def retried(records: list[list[object]]) -> list[list[object]]:
    return [r for r in records if r[2] != 1]


def audit_times(site: Site, node: str) -> list[float]:
    """When ``node`` answered each /v1/tts request with 200, from its audit log (the client
    writes its rows only at its end)."""
    stamps = []
    for path in (site.work / f"audit-{node}").glob("audit-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("route") == "/v1/tts" and record.get("status") == 200:
                stamps.append(datetime.datetime.fromisoformat(record["time"]).timestamp())
    return stamps


def wait_served(site: Site, node: str, after: float, count: int = 1, timeout: float = 60) -> None:
    """Until ``node`` has answered ``count`` requests after ``after`` (epoch seconds)."""
    site.lab.wait(lambda: sum(t > after for t in audit_times(site, node)) >= count, timeout, 0.2)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with Lab({"a": 11, "b": 12, "c": 13, "x": 20}) as lab:
        s = Site(lab, tmp_path_factory.mktemp("haproxy"))
        try:
            s.start()
            yield s
        finally:
            s.stop()


def test_requests_spread_over_all_nodes(site: Site) -> None:
    with site.load("spread") as load:
        for node in NODES:
            wait_served(site, node, 0, count=5)
        records = load.stop()
    counts = {n: served(records, n) for n in NODES}
    print(f"\nspread over the nodes: {counts}; {len(records)} requests")
    assert not failed(records) and not retried(records)
    assert all(counts[n] > 0 for n in NODES) and sum(counts.values()) == len(records), counts
    # Behind HAProxy the daemons see the client (X-Forwarded-For from a trusted proxy).
    path = next((site.work / "audit-c").glob("audit-*.jsonl"))
    record = next(
        r for r in map(json.loads, path.read_text().splitlines()) if r["route"] == "/v1/tts"
    )
    proxies = (site.lab.ip("a"), site.lab.ip("b"))
    assert record["source_ip"] == site.lab.ip("x") and record["peer"] in proxies, record
    # HAProxy's Prometheus metrics and stats: on loopback, and only there.
    metrics = site.lab.exec("a", "curl", "-fsS", f"http://127.0.0.1:{STATS_PORT}/metrics").stdout
    assert 'haproxy_server_status{proxy="tts",server="c",state="UP"} 1' in metrics
    outside = site.lab.exec(
        "x", "curl", "-sS", "-m", "2", f"http://{site.vip}:{STATS_PORT}/stats", check=False
    )
    assert outside.returncode != 0


def test_daemon_killed_under_load_costs_no_request(site: Site) -> None:
    """C's daemon, then the VIP holder's, killed (SIGKILL) under load: HAProxy sends their
    requests again to the other nodes, so no client needs its retry; the VIP stays (the
    holder's HAProxy still works), and each node gets traffic again when it is back."""
    lab, holder = site.lab, site.pair.holder()
    assert holder == "a"
    with site.load("killed") as load:
        for node in ("c", holder):
            wait_served(site, node, time.time(), count=2)
            lab.wait(lambda: site.busy(node), 30, 0.01)  # noqa: B023
            site.pair.daemons[node].kill()  # with a request in hand
            killed = time.time()
            lab.wait(lambda: site.status(node) == {"DOWN"}, 15)  # noqa: B023
            for other in NODES:
                if other != node:
                    wait_served(site, other, killed, count=3)
            site.pair.start_daemon(node)
            lab.wait(lambda: site.status(node) == {"UP"}, 30)  # noqa: B023
            wait_served(site, node, time.time(), count=2)  # it gets traffic again
        records = load.stop()
    print(f"\nkilled under load: {len(records)} requests, {len(retried(records))} retried")
    assert not failed(records), failed(records)[:5]
    assert not retried(records), retried(records)[:5]
    assert site.pair.holder() == holder  # a daemon's death moves no VIP
    # The requests the dead daemons had in hand were sent again, by HAProxy, not the client.
    assert site.retried(holder) >= 2


def in_window(
    records: list[list[object]], node: str, start: float, end: float
) -> list[list[object]]:
    """Rows ``node`` answered although the client started them inside [start, end)."""
    return [r for r in records if r[4] == node and start <= float(r[6]) < end]  # type: ignore[arg-type]


def test_draining_node_gets_no_new_requests(site: Site) -> None:
    """B put in drain through the runtime API (what upgrade.yml does), then C's daemon
    draining itself (SIGTERM, as systemctl stop): neither answers a request started after
    the drain began, C finishes what it had, and no client needs its retry."""
    lab = site.lab
    with site.load("drain") as load:
        wait_served(site, "b", time.time(), count=2)
        site.set_state("b", "drain")
        drained = time.time()
        assert site.status("b") == {"DRAIN"}
        for other in ("a", "c"):
            wait_served(site, other, drained, count=5)
        undrained = time.time()
        site.set_state("b", "ready")
        wait_served(site, "b", undrained, count=2)

        # A long text straight to C (seconds of synthesis), as a stream: the load never
        # streams, so C's active-stream gauge says this very request is in its hands (a
        # busy C alone did not: the SIGTERM once beat it there and it was parked).
        body = json.dumps({"text": LONG_TEXT, "stream": True})
        long = site.lab.popen(
            "x",
            [
                *("curl", "-fsS", "-o", "/dev/null", "-m", "120"),
                *("-H", f"Authorization: Bearer {client_token()}"),
                *("-H", "Content-Type: application/json", "-d", body),
                f"http://{lab.ip('c')}:{NODE_PORT}/v1/tts",
            ],
        )
        lab.wait(lambda: site.streaming("c"), 30, 0.01)
        site.pair.daemons["c"].send_signal(signal.SIGTERM)
        stopping = time.time()
        lab.wait(lambda: site.status("c") == {"DOWN"}, 15)
        assert long.wait(120) == 0  # the one in flight finished, with 200
        assert site.pair.daemons["c"].wait(60) == 0  # then the drain ended, the daemon exited
        for other in ("a", "b"):
            wait_served(site, other, stopping, count=3)
        restarted = time.time()
        site.pair.start_daemon("c")
        lab.wait(lambda: site.status("c") == {"UP"}, 30)
        wait_served(site, "c", restarted, count=2)
        records = load.stop()
    print(f"\ndrains: {len(records)} requests, {len(retried(records))} retried")
    assert not in_window(records, "b", drained, undrained)
    assert not in_window(records, "c", stopping, restarted)
    assert any(stopping < t < restarted for t in audit_times(site, "c"))  # (the long text)
    assert not failed(records), failed(records)[:5]
    assert not retried(records), retried(records)[:5]


def test_stream_cut_mid_way_is_not_retried(site: Site, tmp_path: Path) -> None:
    """A streamed answer whose node dies after the first bytes: HAProxy must not send the
    request again (the client would get a second audio spliced onto the first), so the
    client sees the stream end early, without its last chunk: an error it can act on."""
    lab = site.lab
    text = LONG_TEXT
    headers, body = tmp_path / "headers", tmp_path / "body"
    request = json.dumps({"text": text, "stream": True})
    curl = lab.popen(
        "x",
        [
            *("curl", "-sS", "-N", "-m", "120", "-D", str(headers), "-o", str(body)),
            *("-H", f"Authorization: Bearer {client_token()}"),
            *("-H", "Content-Type: application/json", "-d", request),
            f"http://{site.vip}:{FRONT_PORT}/v1/tts",
        ],
    )

    def node() -> str:
        found = re.search(r"(?im)^x-node: (\w+)", headers.read_text()) if headers.exists() else None
        return found.group(1) if found else ""

    lab.wait(lambda: node() != "" and body.exists() and body.stat().st_size > 0, 60)
    serving = node()
    site.pair.daemons[serving].kill()
    assert curl.wait(60) in (18, 56)  # partial file / failure receiving: the stream was cut
    assert " 200 OK" in headers.read_text().splitlines()[0]
    site.pair.start_daemon(serving)
    lab.wait(lambda: site.status(serving) == {"UP"}, 30)
    holder = site.pair.holder()
    assert holder is not None and holder != "both"
    lines = [line for line in site.logs[holder][-1].read_text().splitlines() if " tts/" in line]
    cut = [line for line in lines if f"tts/{serving} " in line and " SD" in line]
    assert len(cut) == 1 and not RETRIES.search(cut[0]), cut  # aborted by the server, not retried


def test_haproxy_holder_failing_moves_vip_and_haproxy(site: Site) -> None:
    """The VIP holder's HAProxy killed, then the new holder's link cut (the host gone): each
    time the VIP moves to the peer's HAProxy within the VRRP bounds, the returning node stays
    BACKUP, and a client that retries once sees no failure."""
    lab, pair = site.lab, site.pair
    assert pair.holder() == "a"
    times: dict[str, tuple[float, float]] = {}
    with site.load("holder", workers=2) as load:
        wait_served(site, "b", time.time(), count=2)
        times["haproxy killed"] = switchover(pair, "b", site.haproxies["a"].kill)
        site.start_haproxy("a")
        lab.wait(lambda: pair.role("a") == "BACKUP", 15)
        no_flap(pair, "b", 4)
        times["link cut"] = switchover(pair, "a", lambda: lab.link("b", up=False))
        lab.wait(lambda: site.status("b", on=("a",)) == {"DOWN"}, 15)
        lab.link("b", up=True)
        lab.wait(lambda: pair.role("b") == "BACKUP", 15)
        no_flap(pair, "a", 4)
        lab.wait(lambda: site.all_up(), 30)
        wait_served(site, "b", time.time(), count=2)
        records = load.stop()
    spans = ", ".join(f"{k} {lo:.2f}-{hi:.2f} s" for k, (lo, hi) in times.items())
    print(
        f"\nHAProxy holder failures: {spans}; {len(records)} requests, "
        f"{len(retried(records))} needed the retry, {len(failed(records))} failed"
    )
    assert not failed(records), failed(records)[:5]
    assert times["haproxy killed"][0] <= 3.0, spans
    assert times["link cut"][0] <= 3.0 + 16 / 256, spans  # VRRPv2 master-down interval
