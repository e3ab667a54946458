"""Reload through the real daemon: under a full queue, when it fails, and that it applies the
whole configuration — pool, cache, body limit, audit directory, lexicon, node name, TLS and
client certificates — or none of it.  systemd's side is read from a real NOTIFY_SOCKET."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.daemon import DaemonProcess
from tests.pki import https_status, make_pki

UNITS = "请到三号窗口办理。" * 16  # 16 units with max_sentence_chars = 12


class NotifySocket:
    """The datagram socket systemd listens on for READY=1, RELOADING=1, STATUS=…"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def wait_for(self, *sequence: str, timeout: float = 60) -> None:
        """Wait until the messages seen so far contain ``sequence`` in that order."""
        deadline = time.monotonic() + timeout
        while not _in_order(self.messages, sequence):
            assert time.monotonic() < deadline, f"never saw {sequence}: {self.messages}"
            with contextlib.suppress(TimeoutError):
                self.messages += self.sock.recv(4096).decode().split("\n")

    def close(self) -> None:
        self.sock.close()


def _in_order(messages: list[str], sequence: tuple[str, ...]) -> bool:
    it = iter(messages)
    return all(any(m == wanted for m in it) for wanted in sequence)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def padded(size: int) -> bytes:
    """A valid JSON request of ``size`` bytes (JSON allows whitespace)."""
    body = json.dumps({"text": "您好。"}, ensure_ascii=False).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_reload_with_the_queue_full_ends_ready_and_is_audited(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    d = DaemonProcess(
        tmp_path,
        env={"NOTIFY_SOCKET": str(notify.path)},
        server_workers="1",
        server_queue_size="1",
        frontend_max_sentence_chars="12",
    )
    try:
        d.wait_ready()
        notify.wait_for("READY=1")
        results: list[int] = []
        load = [
            threading.Thread(
                target=lambda i=i: results.append(
                    d.post("/v1/tts", {"text": f"第{i}位。{UNITS}"})[0]
                )
            )
            for i in range(2)
        ]
        for t in load:
            t.start()
        d.wait_until(
            lambda: d.metric("sambertd_in_flight") == 1 and d.metric("sambertd_queue_depth") == 1
        )
        assert d.post("/v1/tts", {"text": "第三位。"})[0] == 429  # the queue is full
        d.signal(signal.SIGHUP)
        notify.wait_for("READY=1", "RELOADING=1", "READY=1")
        status, headers, body = d.post("/v1/admin/reload", {})
        assert status == 200 and json.loads(body)["status"] == "reloaded", body
        record = d.audit_for(headers["x-request-id"])
        assert (record["route"], record["status"]) == ("/v1/admin/reload", 200)
        for t in load:
            t.join(120)
        assert results == [200, 200]
    finally:
        returncode = d.stop()
        notify.close()
    assert returncode == 0
    assert "stopped after serving" in d.log() and "Traceback" not in d.log()


def test_a_failed_reload_keeps_the_running_configuration(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    config = tmp_path / "sambertd.toml"
    write_config(config, {"audit": {"directory": str(tmp_path / "audit")}})
    d = DaemonProcess(tmp_path, config=config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        d.wait_ready()
        config.write_text("[server\nbroken = ", encoding="utf-8")
        status, headers, body = d.post("/v1/admin/reload", {})
        error = json.loads(body)["error"]
        assert status == 500 and error["code"] == "reload_failed", body
        assert "not valid TOML" in error["message"]
        notify.wait_for("RELOADING=1", "READY=1")
        d.audit_dir = tmp_path / "audit"
        assert d.audit_for(headers["x-request-id"])["error"] == "reload_failed"
        assert d.post("/v1/tts", {"text": "您好。"})[0] == 200
        assert d.metric('sambertd_reloads_total{result="failed"}') == 1
    finally:
        d.stop()
        notify.close()


def test_reload_applies_the_whole_configuration(tmp_path: Path) -> None:
    config, lexicon = tmp_path / "sambertd.toml", tmp_path / "lexicon.txt"
    lexicon.write_text("", encoding="utf-8")

    def settings(tag: str, workers: int, body: int) -> dict[str, dict[str, Any]]:
        return {
            "server": {
                "workers": workers,
                "queue_size": workers + 1,
                "max_body_bytes": body,
                "node_name": f"node-{tag}",
            },
            "cache": {"namespace": f"ns-{tag}"},
            "audit": {"directory": str(tmp_path / f"audit-{tag}")},
            "frontend": {"lexicon": str(lexicon)},
        }

    write_config(config, settings("a", 1, 2048))
    d = DaemonProcess(tmp_path, config=config)
    try:
        d.wait_ready()
        assert json.loads(d.get("/ready")[2])["workers"] == 1
        assert d.request("POST", "/v1/tts", raw=padded(3000))[0] == 413
        town = {"text": "请到长沙办理。"}
        before = d.post("/v1/tts", town)
        assert before[1]["x-cache"] == "miss" and before[1]["x-node"] == "node-a"
        assert d.post("/v1/tts", town)[1]["x-cache"] == "l1"

        write_config(config, settings("b", 2, 8192))
        lexicon.write_text("长沙 zhang3 sha1\n", encoding="utf-8")  # a site's correction
        status, _, body = d.post("/v1/admin/reload", {})
        assert status == 200, body

        ready = json.loads(d.get("/ready")[2])
        assert (ready["workers"], ready["queue_size"]) == (2, 3)
        assert d.request("POST", "/v1/tts", raw=padded(3000))[0] == 200
        after = d.post("/v1/tts", town)
        assert after[1]["x-cache"] == "miss" and after[1]["x-node"] == "node-b"
        assert after[2] != before[2]  # the lexicon's reading, not the cached audio
        assert d.post("/v1/tts", town)[1]["x-cache"] == "l1"
    finally:
        assert d.stop() == 0
    for tag in ("a", "b"):  # each directory holds an intact chain
        verify = subprocess.run(
            [sys.executable, "-m", "sambertd", "audit", "verify", str(tmp_path / f"audit-{tag}")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "b" in {p.name[-1] for p in tmp_path.glob("audit-*") if any(p.iterdir())}


def test_reload_switches_tls_and_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    config = tmp_path / "sambertd.toml"
    audit = {"directory": str(tmp_path / "audit")}
    tls = {"enabled": True, "cert_file": str(pki.server[0]), "key_file": str(pki.server[1])}
    write_config(config, {"audit": audit})
    d = DaemonProcess(tmp_path, config=config)

    def reload(sections: dict[str, dict[str, Any]]) -> None:
        write_config(config, {"audit": audit, **sections})
        d.signal(signal.SIGHUP)

    try:
        d.wait_ready()
        reload({"tls": tls})  # plain HTTP → TLS
        d.wait_until(lambda: https_status(d.port, pki, with_client_cert=False) == 200)
        reload({"tls": {**tls, "client_ca_file": str(pki.ca)}})  # certificates required
        d.wait_until(lambda: https_status(d.port, pki, with_client_cert=False) is None)
        assert https_status(d.port, pki, with_client_cert=True) == 200
        reload({"tls": tls})  # the client CA removed: no certificate needed again
        d.wait_until(lambda: https_status(d.port, pki, with_client_cert=False) == 200)
        reload({})  # TLS off again
        d.wait_until(lambda: d.get("/health")[0] == 200)
        assert d.metric('sambertd_reloads_total{result="ok"}') == 4
    finally:
        assert d.stop() == 0
