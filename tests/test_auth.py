"""Access control through the real daemon (JWT attacks, allowlists, proxies, rate limits, TLS)
and the pieces in-process.  Every refused request must leave nothing synthesized."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sambertd import auth
from tests.daemon import DaemonProcess
from tests.pki import https_status, make_pki

SECRET = b"0123456789abcdef0123456789abcdef-secret"
ISS, AUD = "sambertd", "sambertd"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "ivr-01",
        "scope": "tts:synthesize",
        "iss": ISS,
        "aud": AUD,
        "iat": now,
        "exp": now + 600,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("keys")
    (d / "secret").write_bytes(SECRET)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for name, key in (("rsa1", rsa_key), ("ec1", ec_key)):
        (d / f"{name}.pem").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (d / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return {"dir": d, "rsa": rsa_key, "ec": ec_key}


def hs(c: dict[str, Any], kid: str = "hs256", secret: bytes = SECRET) -> str:
    return jwt.encode(c, secret, algorithm="HS256", headers={"kid": kid})


def rs(keys: dict[str, Any], c: dict[str, Any], kid: str = "rsa1") -> str:
    return jwt.encode(c, keys["rsa"], algorithm="RS256", headers={"kid": kid})


def forged(header: dict[str, Any], c: dict[str, Any], key: bytes) -> str:
    """Hand-made HS256 token, for attacks a well-behaved library refuses to produce."""
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(c).encode())}"
    return f"{signing}.{b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any]
) -> Iterator[DaemonProcess]:
    d = DaemonProcess(
        tmp_path_factory.mktemp("auth"),
        auth_enabled="true",
        auth_hs256_secret_file=str(keys["dir"] / "secret"),
        auth_public_keys=f"rsa1={keys['dir'] / 'rsa1.pem'},ec1={keys['dir'] / 'ec1.pem'}",
        auth_rate_per_ip="0",
    )
    d.wait_ready()
    yield d
    d.stop()


def call(
    d: DaemonProcess, token: str | None, path: str = "/v1/tts", body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return d.post(path, body if body is not None else {"text": "您好。"}, headers=headers)


def attacks(keys: dict[str, Any]) -> list[tuple[str, str | None, int, str]]:
    public_pem = (keys["dir"] / "rsa1.pem").read_bytes()
    now = int(time.time())
    tampered = hs(claims()).split(".")
    tampered[1] = b64(json.dumps(claims(sub="admin", scope="tts:admin")).encode())
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return [
        ("no token", None, 401, "missing_token"),
        ("alg none", f"{none_header}.{b64(json.dumps(claims()).encode())}.", 401, "invalid_token"),
        (
            "HS256 signed with the RSA public key (confusion)",
            forged({"alg": "HS256", "kid": "rsa1"}, claims(), public_pem),
            401,
            "invalid_token",
        ),
        (
            "confusion without kid",
            forged({"alg": "HS256"}, claims(), public_pem),
            401,
            "invalid_token",
        ),
        ("expired", hs(claims(exp=now - 3600, iat=now - 7200)), 401, "token_expired"),
        ("not yet valid", hs(claims(nbf=now + 3600)), 401, "invalid_token"),
        ("issued in the future", hs(claims(iat=now + 3600, exp=now + 7200)), 401, "invalid_token"),
        ("wrong audience", hs(claims(aud="other")), 401, "invalid_token"),
        ("wrong issuer", hs(claims(iss="evil")), 401, "invalid_token"),
        ("missing sub", hs(claims(sub=None)), 401, "invalid_token"),
        ("missing exp", hs(claims(exp=None)), 401, "invalid_token"),
        ("unknown kid", hs(claims(), kid="nope"), 401, "invalid_token"),
        ("wrong secret", hs(claims(), secret=b"x" * 40), 401, "invalid_token"),
        ("tampered payload", ".".join(tampered), 401, "invalid_token"),
        ("RS256 token claiming the EC key", rs(keys, claims(), kid="ec1"), 401, "invalid_token"),
        ("missing scope", hs(claims(scope="tts:admin")), 403, "insufficient_scope"),
        ("garbage", "not.a.jwt", 401, "invalid_token"),
    ]


def test_every_jwt_attack_is_refused_and_nothing_is_synthesized(
    daemon: DaemonProcess, keys: dict[str, Any]
) -> None:
    for name, token, status, code in attacks(keys):
        got, headers, body = call(daemon, token)
        assert got == status, (name, body)
        assert json.loads(body)["error"]["code"] == code, name
        if status == 401:
            assert headers.get("www-authenticate") == "Bearer", name
    assert daemon.metric("sambertd_syntheses_total") == 0


def test_good_tokens_of_each_kind_are_accepted(daemon: DaemonProcess, keys: dict[str, Any]) -> None:
    ec_token = jwt.encode(claims(), keys["ec"], algorithm="ES256", headers={"kid": "ec1"})
    for token in (
        hs(claims()),
        rs(keys, claims()),
        ec_token,
        hs(claims(scope=None, scopes=["tts:synthesize"])),
    ):
        status, _, body = call(daemon, token)
        assert status == 200, body[:200]
    # Admin routes need the admin scope.
    assert call(daemon, hs(claims()), "/v1/admin/cache/purge", {})[0] == 403
    status, _, body = call(daemon, hs(claims(scope="tts:admin")), "/v1/admin/cache/purge", {})
    assert status == 200 and json.loads(body)["purged"] == 0
    # Health, readiness and metrics stay open for keepalived and Prometheus.
    assert daemon.get("/ready")[0] == 200


def test_token_issue_cli_makes_tokens_the_daemon_accepts(
    daemon: DaemonProcess, keys: dict[str, Any]
) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SAMBERTD_AUTH_HS256_SECRET_FILE": str(keys["dir"] / "secret")}
    out = subprocess.run(
        [sys.executable, "-m", "sambertd", "token", "issue", "--sub", "ivr-02", "--ttl", "1h"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert call(daemon, out.stdout.strip())[0] == 200
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sambertd",
            "token",
            "issue",
            "--sub",
            "ops",
            "--scope",
            "tts:admin",
            "--private-key",
            str(keys["dir"] / "rsa1.key"),
            "--kid",
            "rsa1",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert call(daemon, out.stdout.strip(), "/v1/admin/cache/purge", {})[0] == 200


# -- HS256 rotation ---------------------------------------------------------------------------

SECRET_A = b"a" * 16 + b"0123456789abcdef-rotation-2026a"
SECRET_B = b"b" * 16 + b"0123456789abcdef-rotation-2026b"


def test_hs256_secrets_each_verify_only_their_own_kid(tmp_path: Path) -> None:
    for name, secret in (("legacy", SECRET), ("a", SECRET_A), ("b", SECRET_B)):
        (tmp_path / name).write_bytes(secret + b"\n")
    keys = auth.load_keys(
        str(tmp_path / "legacy"), (), [f"2026a={tmp_path / 'a'}", f" 2026b = {tmp_path / 'b'}"]
    )
    assert {k: v.algorithm for k, v in keys.items()} == {
        "hs256": "HS256",
        "2026a": "HS256",
        "2026b": "HS256",
    }
    verifier = auth.Verifier(keys, ISS, AUD, 30)
    assert verifier.verify(hs(claims(sub="a"), kid="2026a", secret=SECRET_A)).subject == "a"
    assert verifier.verify(hs(claims(sub="b"), kid="2026b", secret=SECRET_B)).subject == "b"
    with pytest.raises(auth.AuthError, match="Signature verification failed"):
        verifier.verify(hs(claims(), kid="2026a", secret=SECRET_B))  # the kid picks the key
    no_kid = jwt.encode(claims(sub="old"), SECRET, algorithm="HS256")
    assert verifier.verify(no_kid).subject == "old"  # the legacy secret, as before rotation
    del keys["hs256"]
    without_legacy = auth.Verifier(keys, ISS, AUD, 30)
    with pytest.raises(auth.AuthError, match=r"no kid header but 2 HS256 keys.*2026a, 2026b"):
        without_legacy.verify(jwt.encode(claims(), SECRET_A, algorithm="HS256"))
    with pytest.raises(ValueError, match="configured twice"):
        auth.load_keys("", (), [f"k={tmp_path / 'a'}", f"k={tmp_path / 'b'}"])
    with pytest.raises(ValueError, match="configured twice"):
        auth.load_keys(str(tmp_path / "legacy"), (), [f"hs256={tmp_path / 'a'}"])
    with pytest.raises(ValueError, match="not kid=/path"):
        auth.load_keys("", (), [str(tmp_path / "a")])
    (tmp_path / "short").write_bytes(b"x" * 31)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        auth.load_keys("", (), [f"k={tmp_path / 'short'}"])


def test_hs256_secrets_are_checked_by_the_config(tmp_path: Path) -> None:
    from sambertd.config import ConfigError, load

    env = {"SAMBERTD_AUTH_ENABLED": "true", "SAMBERTD_SERVER_HOST": "0.0.0.0"}
    cfg = load(env={**env, "SAMBERTD_AUTH_HS256_SECRETS": "k1=/a,k2=/b"})
    assert cfg.auth.hs256_secrets == ("k1=/a", "k2=/b")
    with pytest.raises(ConfigError, match=r"key id.*k1 configured twice"):
        load(
            env={
                **env,
                "SAMBERTD_AUTH_HS256_SECRETS": "k1=/a",
                "SAMBERTD_AUTH_PUBLIC_KEYS": "k1=/p",
            }
        )
    with pytest.raises(ConfigError, match="hs256 configured twice"):
        load(
            env={
                **env,
                "SAMBERTD_AUTH_HS256_SECRETS": "hs256=/a",
                "SAMBERTD_AUTH_HS256_SECRET_FILE": "/s",
            }
        )
    with pytest.raises(ConfigError, match="hs256_secrets entry '/a' is not kid="):
        load(env={**env, "SAMBERTD_AUTH_HS256_SECRETS": "/a"})


def test_hs256_rotation_by_reload_without_dropping_requests(tmp_path: Path) -> None:
    """The runbook through the real daemon: legacy secret → add 2026a → 2026a and 2026b
    without the legacy one, each step a SIGHUP, with requests running through the last."""
    import signal
    import threading

    from tests.test_reload import write_config

    for name, secret in (("legacy", SECRET), ("a", SECRET_A), ("b", SECRET_B)):
        (tmp_path / f"{name}.secret").write_bytes(secret)
    config = tmp_path / "sambertd.toml"
    audit = {"directory": str(tmp_path / "audit")}

    def configure(**auth_settings: Any) -> None:
        unlimited = {"rate_per_ip": 0.0, "rate_per_subject": 0.0}
        write_config(
            config, {"audit": audit, "auth": {"enabled": True, **unlimited, **auth_settings}}
        )

    legacy_file = str(tmp_path / "legacy.secret")
    secret_a, secret_b = f"2026a={tmp_path / 'a.secret'}", f"2026b={tmp_path / 'b.secret'}"
    token_a = hs(claims(sub="a"), kid="2026a", secret=SECRET_A)
    token_b = hs(claims(sub="b"), kid="2026b", secret=SECRET_B)
    no_kid = jwt.encode(claims(sub="old"), SECRET, algorithm="HS256")

    def error(token: str) -> tuple[int, str]:
        status, _, body = call(d, token)
        return status, json.loads(body)["error"]["message"] if status != 200 else ""

    configure(hs256_secret_file=legacy_file)
    d = DaemonProcess(tmp_path, config=config)
    try:
        d.wait_ready()
        assert call(d, no_kid)[0] == 200 and call(d, hs(claims()))[0] == 200
        assert error(token_a) == (401, "unknown key id '2026a'")

        configure(hs256_secret_file=legacy_file, hs256_secrets=[secret_a])  # 1. add the new kid
        d.signal(signal.SIGHUP)
        d.wait_until(lambda: call(d, token_a)[0] == 200)
        assert call(d, no_kid)[0] == 200  # old tokens keep working meanwhile
        assert call(d, hs(claims()))[0] == 200

        # 2. tokens are issued with the new kid: `sambertd token issue --kid`
        issued = issue_cli(config, "--kid", "2026a")
        assert issued.returncode == 0, issued.stderr
        assert jwt.get_unverified_header(issued.stdout.strip())["kid"] == "2026a"
        assert call(d, issued.stdout.strip())[0] == 200
        several = issue_cli(config)
        assert several.returncode == 1 and "pick one with --kid" in several.stderr

        # 3. the old kid removed (and the next one added) while requests keep coming
        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                statuses.append(call(d, token_a)[0])

        worker = threading.Thread(target=load)
        worker.start()
        try:
            d.wait_until(lambda: len(statuses) >= 3)
            configure(hs256_secrets=[secret_a, secret_b])
            d.signal(signal.SIGHUP)
            d.wait_until(lambda: call(d, token_b)[0] == 200)
            seen = len(statuses)
            d.wait_until(lambda: len(statuses) >= seen + 3)
        finally:
            stop.set()
            worker.join(60)
        assert statuses and set(statuses) == {200}, statuses
        assert error(hs(claims())) == (401, "unknown key id 'hs256'")
        status, message = error(no_kid)
        assert status == 401 and "no kid header but 2 HS256 keys" in message
        assert call(d, token_a)[0] == 200
        assert d.metric('sambertd_reloads_total{result="ok"}') == 2
    finally:
        assert d.stop() == 0


def issue_cli(config: Path, *args: str) -> Any:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMBERTD_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sambertd",
            "-c",
            str(config),
            "token",
            "issue",
            "--sub",
            "x",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- networks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("127.0.0.1", None, [], "127.0.0.1"),
        ("127.0.0.1", "10.1.2.3", [], "127.0.0.1"),  # untrusted peer: header ignored
        ("127.0.0.1", "10.1.2.3", ["127.0.0.1/32"], "10.1.2.3"),
        ("127.0.0.1", "6.6.6.6, 10.1.2.3", ["127.0.0.1/32"], "10.1.2.3"),  # spoofed left entry
        ("127.0.0.1", "10.1.2.3, 10.9.0.1", ["127.0.0.1/32", "10.9.0.0/16"], "10.1.2.3"),
        ("127.0.0.1", "garbage", ["127.0.0.1/32"], "127.0.0.1"),
        ("::1", "2001:db8::5", ["::1/128"], "2001:db8::5"),
        ("::ffff:127.0.0.1", "10.1.2.3", ["127.0.0.0/8"], "10.1.2.3"),  # v4-mapped peer
    ],
)
def test_client_ip(peer: str, xff: str | None, trusted: list[str], expected: str) -> None:
    assert auth.client_ip(peer, xff, auth.networks(trusted)) == expected


@pytest.mark.parametrize(
    ("ip", "nets", "ok"),
    [
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("11.1.2.3", ["10.0.0.0/8"], False),
        ("2001:db8::5", ["2001:db8::/32"], True),
        ("2001:db9::5", ["2001:db8::/32", "10.0.0.0/8"], False),
        ("anything", [], True),
        ("not-an-ip", ["10.0.0.0/8"], False),
    ],
)
def test_allowlist(ip: str, nets: list[str], ok: bool) -> None:
    assert auth.allowed(ip, auth.networks(nets)) is ok


def test_allowlist_and_proxies_through_the_daemon(tmp_path: Path) -> None:
    closed = DaemonProcess(tmp_path, auth_allow="10.0.0.0/8")
    try:  # even /metrics is refused to a peer outside the allowlist: wait for that 403
        closed.wait_until(lambda: closed.get("/metrics")[0] == 403)
        # The node's own probes (keepalived's track script) pass from loopback.
        assert closed.get("/ready")[0] == 200 and closed.get("/health")[0] == 200
        status, _, body = closed.post(
            "/v1/tts", {"text": "您好。"}, headers={"X-Forwarded-For": "10.1.2.3"}
        )
        assert status == 403 and json.loads(body)["error"]["code"] == "forbidden_ip"
    finally:
        closed.stop()
    proxied = DaemonProcess(
        tmp_path,
        auth_allow="10.0.0.0/8,127.0.0.1/32",
        auth_trusted_proxies="127.0.0.1/32",
        auth_subject_networks="ivr-01=10.1.2.0/24",
    )
    proxied.wait_ready()
    try:
        assert (
            proxied.post("/v1/tts", {"text": "您好。"}, headers={"X-Forwarded-For": "10.1.2.3"})[0]
            == 200
        )
        status, _, body = proxied.post(
            "/v1/tts", {"text": "您好。"}, headers={"X-Forwarded-For": "11.0.0.1"}
        )
        assert status == 403 and json.loads(body)["error"]["code"] == "forbidden_ip"
    finally:
        proxied.stop()


def test_subject_bound_to_networks(keys: dict[str, Any], tmp_path: Path) -> None:
    d = DaemonProcess(
        tmp_path,
        auth_enabled="true",
        auth_hs256_secret_file=str(keys["dir"] / "secret"),
        auth_subject_networks="ivr-01=10.1.2.0/24",
        auth_trusted_proxies="127.0.0.1/32",
    )
    d.wait_ready()
    try:
        inside = {"Authorization": f"Bearer {hs(claims())}", "X-Forwarded-For": "10.1.2.9"}
        outside = {"Authorization": f"Bearer {hs(claims())}", "X-Forwarded-For": "10.7.7.7"}
        assert d.post("/v1/tts", {"text": "您好。"}, headers=inside)[0] == 200
        status, _, body = d.post("/v1/tts", {"text": "您好。"}, headers=outside)
        assert status == 403 and json.loads(body)["error"]["code"] == "forbidden_network"
        other = {"Authorization": f"Bearer {hs(claims(sub='web'))}", "X-Forwarded-For": "10.7.7.7"}
        assert d.post("/v1/tts", {"text": "您好。"}, headers=other)[0] == 200  # not bound
    finally:
        d.stop()


def test_rate_limits_per_subject_and_ip(keys: dict[str, Any], tmp_path: Path) -> None:
    # One token back every 100 s: nothing refills while the test runs, however slowly (at
    # 0.5/s, four calls had to fit in two seconds for the last one to be refused).
    d = DaemonProcess(
        tmp_path,
        auth_enabled="true",
        auth_hs256_secret_file=str(keys["dir"] / "secret"),
        auth_rate_per_subject="0.01",
        auth_burst_per_subject="2",
        auth_rate_per_ip="0",
    )
    d.wait_ready()
    try:
        token = hs(claims())
        statuses = [call(d, token)[0] for _ in range(2)]
        assert statuses == [200, 200]  # the burst
        status, headers, body = call(d, token)
        assert status == 429 and json.loads(body)["error"]["code"] == "rate_limited"
        assert int(headers["retry-after"]) >= 1
        assert call(d, hs(claims(sub="other")))[0] == 200  # a different subject is not limited
    finally:
        d.stop()
    ip_limited = DaemonProcess(tmp_path, auth_rate_per_ip="0.01", auth_burst_per_ip="1")
    ip_limited.wait_ready()
    try:
        assert ip_limited.post("/v1/tts", {"text": "您好。"})[0] == 200
        assert ip_limited.post("/v1/tts", {"text": "您好。"})[0] == 429
        assert ip_limited.get("/ready")[0] == 200  # health is never rate limited
    finally:
        ip_limited.stop()


def test_auth_off_is_refused_on_a_public_bind() -> None:
    from sambertd.config import ConfigError, load

    with pytest.raises(ConfigError, match="only on a loopback bind"):
        load(env={"SAMBERTD_SERVER_HOST": "0.0.0.0"})
    assert load(env={"SAMBERTD_SERVER_HOST": "::1"}).auth.enabled is False


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sambertd-test")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    daemon = DaemonProcess(
        d, tls_enabled="true", tls_cert_file=str(d / "cert.pem"), tls_key_file=str(d / "key.pem")
    )
    daemon.cert = d / "cert.pem"  # type: ignore[attr-defined]
    daemon.wait_until(lambda: handshake(daemon, ssl.TLSVersion.TLSv1_2) is not None)
    yield daemon
    daemon.stop()


def handshake(d: DaemonProcess, version: ssl.TLSVersion) -> str | None:
    """A real TLS handshake pinned to one protocol version; the negotiated version or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client *offer* old versions
    with warnings.catch_warnings():  # TLSv1/1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    try:
        with (
            socket.create_connection(("127.0.0.1", d.port), timeout=30) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return tls.version() if tls.recv(64).startswith(b"HTTP/1.1 200") else None
    except TimeoutError:
        raise  # no answer (a busy machine) is not a refusal; wait_until tries again
    except (ssl.SSLError, OSError):
        return None


def openssl_can_speak(version: ssl.TLSVersion, cert: Path, key: Path) -> bool:
    """Control for the refusal tests: can this OpenSSL do ``version`` at all, against a
    server that allows it?  If not, a refused handshake would prove nothing about us."""
    import threading

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server_ctx.minimum_version = server_ctx.maximum_version = version
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    probe = DaemonProcess.__new__(DaemonProcess)
    probe.port = listener.getsockname()[1]
    try:
        return handshake(probe, version) is not None
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        (ssl.TLSVersion.TLSv1, False),
        (ssl.TLSVersion.TLSv1_1, False),
        (ssl.TLSVersion.TLSv1_2, True),
        (ssl.TLSVersion.TLSv1_3, True),
    ],
)
def test_tls_versions(tls_daemon: DaemonProcess, version: ssl.TLSVersion, accepted: bool) -> None:
    if not accepted:
        cert = tls_daemon.cert  # type: ignore[attr-defined]
        if not openssl_can_speak(version, cert, cert.with_name("key.pem")):
            pytest.skip(f"this OpenSSL cannot negotiate {version.name} at all")
    got = handshake(tls_daemon, version)
    assert (got is not None) is accepted, got
    if accepted:
        assert (
            got == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        )


def test_plain_http_to_the_tls_port_is_not_served(tls_daemon: DaemonProcess) -> None:
    import http.client

    try:
        status = tls_daemon.get("/health")[0]
    except (OSError, http.client.HTTPException):
        return  # the connection was dropped: plain HTTP is not served
    assert status != 200


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize(
    ("allow", "status"), [("::1/128", 200), ("2001:db8::/32", 403), ("10.0.0.0/8,::/0", 200)]
)
def test_ipv6_allowlist_through_the_daemon(tmp_path: Path, allow: str, status: int) -> None:
    d = DaemonProcess(tmp_path, server_host="::1", auth_allow=allow)
    try:
        d.wait_until(lambda: d.get("/health")[0] > 0)
        assert d.get("/metrics")[0] == status  # /health, /ready: loopback always passes
    finally:
        d.stop()


def test_client_certificates_are_required_when_a_ca_is_set(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    d = DaemonProcess(
        tmp_path,
        tls_enabled="true",
        tls_cert_file=str(pki.server[0]),
        tls_key_file=str(pki.server[1]),
        tls_client_ca_file=str(pki.ca),
    )
    try:
        d.wait_until(lambda: https_status(d.port, pki, True) is not None)
        assert https_status(d.port, pki, True) == 200
        assert https_status(d.port, pki, False) is None  # no client certificate: refused
    finally:
        d.stop()
