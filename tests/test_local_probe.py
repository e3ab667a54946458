"""The node's own health probes against a locked-down daemon, for real: the daemon and
keepalived in namespace A, an outsider in namespace B.

With an `auth.allow` list that leaves out 127.0.0.1, or with client certificates required
(`tls.client_ca_file`), keepalived's track script (failover/check_sambertd.sh) must still
pass, so A becomes VRRP master instead of FAULT; and the outsider must still be refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Lab, unavailable
from tests.pki import make_pki
from tests.test_ha import PORT, Pair, client_token

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with Lab({"a": 11, "b": 12}) as lab:
        p = Pair(lab, tmp_path)
        try:
            yield p
        finally:
            p.stop()


def start_daemon(pair: Pair, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    """The daemon in A with auth on and ``settings``; ready when its log says so (the
    usual readiness probe is what is under test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMBERTD_")}
    env.update(
        {
            "SAMBERTD_SERVER_HOST": "0.0.0.0",
            "SAMBERTD_SERVER_PORT": str(PORT),
            "SAMBERTD_SERVER_NODE_NAME": "a",
            "SAMBERTD_SERVER_ROLE_FILE": str(pair.role_file("a")),
            "SAMBERTD_AUTH_ENABLED": "true",
            "SAMBERTD_AUTH_HS256_SECRET_FILE": str(pair.work / "secret"),
            "SAMBERTD_AUDIT_DIRECTORY": str(pair.work / "audit-a"),
            **settings,
        }
    )
    log = pair.work / "daemon-a.log"
    proc = pair.daemons["a"] = pair.lab.popen(
        "a", [sys.executable, "-m", "sambertd", "serve"], env, log
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited {proc.returncode}: {log.read_text()}")
        return " ready in " in log.read_text()

    pair.lab.wait(ready, 120, 0.2)
    return proc


def check(pair: Pair, *args: str) -> int:
    """keepalived's track script, run in A as keepalived runs it."""
    script = str(pair.scripts / "check_sambertd.sh")
    return pair.lab.exec("a", script, str(PORT), *args, check=False).returncode


def curl(pair: Pair, node: str, url: str, *options: str) -> tuple[int, str]:
    """(curl's exit status, the HTTP status it printed: "000" when there was no answer)."""
    out = pair.lab.exec(
        node,
        "curl",
        "-sS",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        *options,
        url,
        check=False,
    )
    return out.returncode, out.stdout.strip()


def becomes_master(pair: Pair, **template: object) -> None:
    """keepalived in A (its peer B runs none): master within VRRP's master-down interval,
    unless the track script fails."""
    pair.start_keepalived("a", 250, **template)
    pair.lab.wait(lambda: pair.role("a") == "MASTER" and pair.holder() == "a", 20, 0.1)


def test_allowlist_without_loopback_still_lets_the_node_probe_itself(pair: Pair) -> None:
    start_daemon(pair, {"SAMBERTD_AUTH_ALLOW": "192.0.2.0/24"})  # neither 127.0.0.1 nor B
    assert check(pair) == 0
    becomes_master(pair)
    a = f"http://{pair.lab.ip('a')}:{PORT}"
    local = f"http://127.0.0.1:{PORT}"
    token = ["-H", f"Authorization: Bearer {client_token()}"]
    # The probes from loopback pass ...
    assert curl(pair, "a", f"{local}/ready")[1] == "200"
    assert curl(pair, "a", f"{local}/health")[1] == "200"
    # ... nothing else from loopback, and nothing from B, however it presents itself.
    assert curl(pair, "a", f"{local}/metrics")[1] == "403"
    assert curl(pair, "a", f"{local}/v1/tts?text=%E4%BD%A0%E5%A5%BD", *token)[1] == "403"
    assert curl(pair, "b", f"{a}/ready")[1] == "403"
    assert curl(pair, "b", f"{a}/health")[1] == "403"
    assert curl(pair, "b", f"{a}/ready", "-H", "X-Forwarded-For: 127.0.0.1")[1] == "403"


def test_client_certificates_required_still_let_the_node_probe_itself(
    pair: Pair, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    run_dir = tmp_path / "run-a"  # systemd's RuntimeDirectory=sambertd: /run/sambertd
    run_dir.mkdir()
    socket = run_dir / "probe.sock"
    proc = start_daemon(
        pair,
        {
            "RUNTIME_DIRECTORY": str(run_dir),
            "SAMBERTD_TLS_ENABLED": "true",
            "SAMBERTD_TLS_CERT_FILE": str(pki.server[0]),
            "SAMBERTD_TLS_KEY_FILE": str(pki.server[1]),
            "SAMBERTD_TLS_CLIENT_CA_FILE": str(pki.ca),
        },
    )
    assert socket.is_socket() and socket.stat().st_mode & 0o777 == 0o600
    assert check(pair, "https", str(socket)) == 0
    becomes_master(pair, sambertd_scheme="https", sambertd_probe_socket=socket)
    cert = ["--cert", str(pki.client[0]), "--key", str(pki.client[1])]
    # Without a certificate the TLS port refuses the handshake, from B and from loopback.
    for node, host in (("b", pair.lab.ip("a")), ("a", "127.0.0.1")):
        status, code = curl(pair, node, f"https://{host}:{PORT}/ready", "-k")
        assert status != 0 and code == "000", (node, status, code)
    assert curl(pair, "b", f"https://{pair.lab.ip('a')}:{PORT}/ready", "-k", *cert)[1] == "200"
    # The probe socket serves the two probes and nothing else.
    via = ["--unix-socket", str(socket)]
    assert curl(pair, "a", "http://localhost/health", *via)[1] == "200"
    assert curl(pair, "a", "http://localhost/v1/voices", *via)[1] == "404"
    assert curl(pair, "a", "http://localhost/metrics", *via)[1] == "404"
    assert curl(pair, "a", "http://localhost/v1/tts", "-d", "{}", *via)[1] in ("404", "405")
    # A stopped daemon removes it, and the script fails (the VIP would move).
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert not socket.exists()
    assert check(pair, "https", str(socket)) != 0
