"""`systemctl stop` (SIGTERM) on the VIP holder, for real: daemon + keepalived on nodes A and
B (network namespaces, tests/test_ha.py's Pair), clients on the VIP from a third namespace.

A drains while it has long requests in flight through the VIP (two long plain texts and a
long stream) and a short-text load that retries once, 3 s after a failure.  The VIP must stay
on A until the in-flight requests are done — moving it earlier lets B's kernel reset their
connections — and then go to B, so every in-flight request completes with 200 and its full
audio, and no client that retries once sees a failure."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns import Lab, unavailable
from tests.test_ha import PORT, Pair, client_token

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))

CLAUSES = (
    "本市将于下月起全面推行企业开办一网通办，",
    "申请人可通过政务服务网提交材料，",
    "窗口工作人员将在三个工作日内完成审核，",
    "如有疑问请拨打一二三四五政务服务热线。",
)
LONG_TEXTS = {  # ~370 characters each: seconds of synthesis, minutes on a slow runner
    "plain-1": "第一则通知。" + "".join(CLAUSES) * 5,
    "plain-2": "第二则通知。" + "".join(CLAUSES) * 5,
    "stream": "第三则通知。" + "".join(CLAUSES) * 5,
}

# Both clients: a 60 s timeout (a client that sends long texts waits that long anyway, and a
# request parked by a draining node waits for the drain), one retry 3 s after a failure.
CLIENT = textwrap.dedent("""
    import hashlib, http.client, json, sys, threading, time
    mode, vip, port, token, out, stop_file = sys.argv[1:7]
    port = int(port)
    TIMEOUT, RETRY_AFTER = 60.0, 3.0
    lock = threading.Lock()
    results = []

    def once(body, first_chunk=None):
        conn = http.client.HTTPConnection(vip, port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/v1/tts", body=json.dumps(body).encode(), headers={
                "Content-Type": "application/json", "Authorization": "Bearer " + token})
            r = conn.getresponse()
            data = b""
            if first_chunk is not None and r.status == 200:
                data = r.read1(65536)
                open(first_chunk, "w").close()
            data += r.read()  # a stream cut short raises IncompleteRead
            return r.status, r.getheader("X-Node"), data
        finally:
            conn.close()

    def call(body, first_chunk=None):
        started, attempts, status, node, data, error = time.time(), 0, None, None, b"", None
        for attempts in (1, 2):
            try:
                status, node, data = once(body, first_chunk)
                error = None
                if status == 200:
                    break
            except Exception as exc:  # reset, timeout, incomplete body
                status, error = None, repr(exc)
            if attempts == 1:
                time.sleep(RETRY_AFTER)
        return {"start": started, "end": time.time(), "attempts": attempts, "status": status,
                "node": node, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "error": error}

    def long_one(name, text):
        stream = name == "stream"
        r = call({"text": text, "stream": stream}, out + ".first" if stream else None)
        with lock:
            results.append({"name": name, **r})

    def short_worker(w):
        i = 0
        while i < 5000:
            try:
                open(stop_file).close()
                return
            except OSError:
                pass
            r = call({"text": "第%d号窗口请准备。" % (i % 8)})
            with lock:
                results.append({"name": "short-%d" % w, **r})
            i += 1
            time.sleep(0.02)

    if mode == "long":
        jobs = [(long_one, (n, t)) for n, t in json.loads(sys.stdin.read()).items()]
    else:
        jobs = [(short_worker, (w,)) for w in range(2)]
    threads = [threading.Thread(target=f, args=a) for f, a in jobs]
    for t in threads: t.start()
    for t in threads: t.join()
    with open(out, "w") as f:
        json.dump(results, f)
""")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with Lab({"a": 11, "b": 12, "c": 20}) as lab:
        p = Pair(lab, tmp_path)
        try:
            yield p
        finally:
            p.stop()


def ready_json(pair: Pair, node: str) -> dict[str, Any]:
    out = pair.lab.exec(
        node, "curl", "-sS", "-m", "2", f"http://127.0.0.1:{PORT}/ready", check=False
    ).stdout
    try:
        body = json.loads(out)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def served(pair: Pair, node: str) -> float:
    """Synthesis requests ``node`` answered with 200 (its /metrics)."""
    out = pair.lab.exec(
        node, "curl", "-sS", "-m", "2", f"http://127.0.0.1:{PORT}/metrics", check=False
    ).stdout
    line = 'sambertd_requests_total{route="/v1/tts",status="200"} '
    return sum(float(x[len(line) :]) for x in out.splitlines() if x.startswith(line))


def start(pair: Pair, tmp_path: Path, mode: str, stdin: str = "") -> tuple[Any, Path]:
    script = tmp_path / "drain_client.py"
    script.write_text(CLIENT)
    out = tmp_path / f"{mode}.json"
    command = [
        "ip",
        "netns",
        "exec",
        pair.lab.ns("c"),
        sys.executable,
        str(script),
        mode,
        pair.vip,
        str(PORT),
        client_token(),
        str(out),
        str(tmp_path / "stop"),
    ]
    with (tmp_path / f"{mode}.log").open("wb") as log:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=log)
    assert proc.stdin is not None
    proc.stdin.write(stdin.encode())
    proc.stdin.close()
    return proc, out


def direct(pair: Pair, node: str, body: dict[str, Any], out: Path) -> str:
    """The same request straight to ``node``'s own address: the same input gives the same
    bytes, so this is what complete audio looks like."""
    pair.lab.exec(
        "c",
        "curl",
        "-fsS",
        "-m",
        "120",
        "-o",
        str(out),
        "-H",
        f"Authorization: Bearer {client_token()}",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps(body),
        f"http://{pair.lab.ip(node)}:{PORT}/v1/tts",
    )
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_sigterm_on_the_vip_holder_lets_in_flight_requests_finish(
    pair: Pair, tmp_path: Path
) -> None:
    lab = pair.lab
    # 3 workers: the two long plain texts hold two; the stream and the short load share one.
    # The drain must outlast the long requests even on a slow runner.
    pair.settings = {"SAMBERTD_SERVER_WORKERS": "3", "SAMBERTD_SERVER_DRAIN_TIMEOUT_S": "90"}
    pair.start_daemon("a")
    pair.start_daemon("b")
    pair.start_keepalived("a", 250)
    pair.start_keepalived("b", 240)
    lab.wait(lambda: pair.holder() == "a", 15)
    lab.wait(lambda: pair.role("a") == "MASTER" and pair.role("b") == "BACKUP", 10)

    long_client, long_out = start(pair, tmp_path, "long", json.dumps(LONG_TEXTS))
    short_client: subprocess.Popen[bytes] | None = None
    try:
        # All three long requests are inside A's synthesis handler, the stream has sent
        # its first chunk; only then the short load, until A has short requests too.
        lab.wait(
            lambda: (
                ready_json(pair, "a").get("requests") == 3
                and (tmp_path / "long.json.first").exists()
            ),
            60,
            0.1,
        )
        short_client, short_out = start(pair, tmp_path, "short")
        lab.wait(lambda: ready_json(pair, "a").get("requests", 0) >= 4, 30, 0.05)
        assert long_client.poll() is None, "the long requests ended before the drain"

        sigterm = time.time()
        pair.daemons["a"].send_signal(signal.SIGTERM)
        # Watch the VIP: the last look that still saw it on A, the first that saw it on B.
        last_on_a = sigterm
        deadline = time.monotonic() + 120
        while (holder := pair.holder()) != "b":
            assert holder in ("a", None), f"the VIP is on {holder}"  # None: between nodes
            assert time.monotonic() < deadline, "the VIP did not move to B"
            if holder == "a":
                last_on_a = time.time()
            time.sleep(0.05)
        first_on_b = time.time()
        long_client.wait(180)
        lab.wait(lambda: pair.role("b") == "MASTER", 15)
        # The short load goes on against B for a while: its retries land there.
        lab.wait(lambda: served(pair, "b") >= 5, 60, 0.2)
    finally:
        (tmp_path / "stop").write_text("stop")
        if short_client is not None:
            short_client.wait(120)
        long_client.wait(120)

    longs = {r["name"]: r for r in json.loads(long_out.read_text())}
    shorts = json.loads(short_out.read_text())
    # 1. Every request in flight at the SIGTERM completed on A, first time, in full.
    assert set(longs) == set(LONG_TEXTS)
    for name, r in longs.items():
        assert (r["status"], r["node"], r["attempts"], r["error"]) == (200, "a", 1, None), r
        body = {"text": LONG_TEXTS[name], "stream": name == "stream"}
        assert r["sha256"] == direct(pair, "b", body, tmp_path / f"{name}.ref"), name
    assert pair.daemons["a"].wait(60) == 0  # the drain ended well
    # 2. The VIP stayed on A until they were done, then moved to B.
    done = max(r["end"] for r in longs.values())
    assert first_on_b >= done
    assert pair.holder() == "b"
    # 3. Clients that retry once saw no failure; B served the retries.
    failed = [r for r in shorts if r["status"] != 200]
    retried = [r for r in shorts if r["attempts"] == 2]
    assert not failed, failed[:5]
    assert {r["node"] for r in shorts} == {"a", "b"}
    log = (tmp_path / "daemon-a.log").read_text()
    sizes = ", ".join(f"{n} {r['bytes']} B" for n, r in sorted(longs.items()))
    print(
        f"\ndrain: long requests done {done - sigterm:.2f} s after SIGTERM; VIP on A until "
        f"{last_on_a - sigterm:.2f}-{first_on_b - sigterm:.2f} s "
        f"({first_on_b - done:.2f} s after the last in-flight request); "
        f"{len(shorts)} short requests, {len(retried)} needed the retry, {len(failed)} failed; "
        f"long: {sizes}; "
        + next((line for line in log.splitlines() if "drained;" in line), "no drained line")
    )
