"""A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1 and a client
certificate, written as PEM files; and an HTTPS probe that says what a client gets."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: tuple[Path, Path]  # certificate, key
    client: tuple[Path, Path]


def _cert(name: str, key: Any, issuer: x509.Name, signer: Any, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    pem = serialization.Encoding.PEM
    raw = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sambertd-test-ca")])
    ca = _cert("sambertd-test-ca", ca_key, ca_name, ca_key, ca=True)
    files = {}
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        (directory / f"{who}.pem").write_bytes(
            _cert(who, key, ca_name, ca_key, ca=False).public_bytes(pem)
        )
        (directory / f"{who}.key").write_bytes(key.private_bytes(pem, *raw))
        files[who] = (directory / f"{who}.pem", directory / f"{who}.key")
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    return Pki(directory / "ca.pem", files["server"], files["client"])


def https_status(port: int, pki: Pki, with_client_cert: bool) -> int | None:
    """The status of ``GET /health`` over TLS, or None when the handshake is refused."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if with_client_cert:
        ctx.load_cert_chain(*map(str, pki.client))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as s,
            ctx.wrap_socket(s, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = tls.recv(64)
            return int(head.split()[1]) if head.startswith(b"HTTP/1.1") else None
    except TimeoutError:
        raise  # no answer (a busy machine) is not a refusal; wait_until tries again
    except (ssl.SSLError, OSError):
        return None
