"""Start and stop a real ``sambertd serve`` process on a free loopback port (test helper)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaemonProcess:
    """One daemon process; settings come in as ``SAMBERTD_*`` variables, like a drop-in."""

    def __init__(
        self,
        tmp: Path,
        *,
        env: dict[str, str] | None = None,
        module: str = "sambertd",
        config: Path | None = None,
        **settings: str,
    ) -> None:
        """``settings`` become ``SAMBERTD_<NAME>`` variables; ``env`` is added as it is;
        ``module`` is what ``python -m`` runs (``tests.standin_daemon`` for the stand-in
        Sambert backend).  With a ``config`` file only the address comes from variables
        (variables win over the file, and a reload must be able to change the rest)."""
        self.port = free_port()
        extra = env
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SAMBERTD_", "NOTIFY_SOCKET", "WATCHDOG_"))
        }
        env.update({"SAMBERTD_SERVER_PORT": str(self.port), "SAMBERTD_SERVER_HOST": "127.0.0.1"})
        self.audit_dir = tmp / f"audit-{self.port}"
        if config is not None:
            env["SAMBERTD_CONFIG"] = str(config)
        else:
            env.update(
                {
                    "SAMBERTD_AUDIT_DIRECTORY": str(self.audit_dir),
                    "SAMBERTD_JOBS_DIRECTORY": str(tmp / f"jobs-{self.port}"),
                    # Load tests must not trip the production rate limits; the rate-limit
                    # tests set their own.
                    "SAMBERTD_AUTH_RATE_PER_IP": "0",
                    "SAMBERTD_AUTH_RATE_PER_SUBJECT": "0",
                }
            )
        env.update({f"SAMBERTD_{k.upper()}": v for k, v in settings.items()})
        env.update(extra or {})
        self.host = env["SAMBERTD_SERVER_HOST"]
        self.log_path = tmp / f"daemon-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "serve"],
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> float:
        """Warm-up is seconds here and can be ten times that on a slow or busy runner."""
        return self.wait_until(lambda: self.get("/ready")[0] == 200, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60) -> float:
        """Seconds until ``predicate()`` held; a refused connection means "not yet", a
        daemon that exits or never gets there fails with its log."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()}")
            try:
                if predicate():
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"condition not met after {timeout} s: {self.log()}")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        timeout: float = 120,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = (
                raw
                if raw is not None
                else (None if body is None else json.dumps(body, ensure_ascii=False).encode())
            )
            hdrs = {"Content-Type": "application/json"} if data is not None else {}
            hdrs.update(headers or {})
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        # Generous: a busy daemon on a slow runner may take seconds to answer /metrics.
        return self.request("GET", path, timeout=30)

    def post(self, path: str, body: Any, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", path, body, **kw)

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` (all label sets)."""
        text = self.get("/metrics")[2].decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def audit_records(self) -> list[dict[str, Any]]:
        """Every audit record written so far, oldest first."""
        out = []
        for path in sorted(self.audit_dir.glob("audit-*.jsonl")):
            out += [json.loads(line) for line in path.read_text().splitlines() if line]
        return out

    def audit_for(self, request_id: str, timeout: float = 10) -> dict[str, Any]:
        """The audit record of one request (written before its response completes, but a
        cut stream's client may read its end first)."""
        found: list[dict[str, Any]] = []

        def written() -> bool:
            found[:] = [r for r in self.audit_records() if r.get("request_id") == request_id]
            return bool(found)

        self.wait_until(written, timeout)
        return found[0]

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def standin_daemon(tmp: Path, env: dict[str, str], **settings: str) -> DaemonProcess:
    """The real daemon with the Sambert STAND-IN backend (``tests/standin_daemon.py``) as its
    preferred engine over a synthetic model directory, baker below it; ``env`` configures
    the stand-in (STANDIN_GPUS, STANDIN_FAULT, STANDIN_SLOW)."""
    from tests.modeldir import make_model_dir

    return DaemonProcess(
        tmp,
        module="tests.standin_daemon",
        env={**env, "CACHE_DIRECTORY": str(tmp / "cache")},
        engine_engines="sambert,baker",
        engine_default_voice="zhitian_emo",
        sambert_model_dir=str(make_model_dir(tmp / "model")),
        **settings,
    )
