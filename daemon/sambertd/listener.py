"""The listening sockets and their TLS context, which a reload may swap without a restart.

Why our own sockets instead of aiohttp's ``TCPSite``: an ``SSLContext`` cannot be rebuilt in
place (a removed client CA stays trusted, client-certificate checking cannot be switched off),
and re-binding the port would refuse connections for a moment.  So we bind once and serve each
socket through an aiohttp ``SockSite`` on a *duplicate* of its descriptor.  A reload starts a
new site on a fresh duplicate with the new context, then stops the old one: the kernel's
listening socket — and every connection waiting in its backlog — never goes away, and in-flight
connections finish on the context they began with.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from pathlib import Path

from aiohttp import web

from sambertd.config import TlsConfig

log = logging.getLogger(__name__)
BACKLOG = 512
PROBE_SOCKET = "probe.sock"


def probe_path() -> Path | None:
    """The local probe socket, ``$RUNTIME_DIRECTORY/probe.sock`` (systemd sets the variable
    from ``RuntimeDirectory=sambertd``: /run/sambertd/probe.sock); None without it.

    Why a Unix socket and not a client certificate for the probes: with
    ``tls.client_ca_file`` set, the TCP port refuses every handshake without a certificate,
    keepalived's track script included, and both nodes would go FAULT.  A probe
    certificate is one more secret to issue, deploy and renew on every node, and the day it
    expires both nodes fail their checks at once: an outage caused by the health check.
    The socket needs no secret; the file system says who may connect (mode 0600: the
    daemon's user and root, which keepalived's scripts and Ansible run as).  It serves
    /ready and /health only, from the same event loop as the API, so a frozen daemon
    fails it just the same."""
    directory = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(directory) / PROBE_SOCKET if directory else None


def tls_context(config: TlsConfig) -> ssl.SSLContext | None:
    """TLS 1.2+ with forward-secret AEAD ciphers only; client certificates when a CA is set.
    Always a new context, read from the files now (rotation = replace files + reload)."""
    if not config.enabled:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(config.cert_file, config.key_file)
    if config.client_ca_file:
        context.load_verify_locations(config.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to, as asyncio would make them
    (SO_REUSEADDR, IPv6 sockets v6-only).  Errors name the address, e.g. "address already
    in use"."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"error while attempting to bind on address {address!r}: "
                    f"{(exc.strerror or str(exc)).lower()}",
                ) from None
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """The bound sockets of one daemon and the sites currently serving them."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self._sockets = sockets
        self._sites: list[web.SockSite] = []
        self.runner: web.AppRunner | None = None

    async def serve(self, tls: ssl.SSLContext | None) -> None:
        """Serve every socket with ``tls`` (None: plain HTTP) from now on; connections
        already accepted keep the context they were accepted with."""
        assert self.runner is not None, "set the AppRunner first"
        fresh = [
            web.SockSite(self.runner, sock.dup(), ssl_context=tls, backlog=BACKLOG)
            for sock in self._sockets
        ]
        for site in fresh:
            await site.start()
        old, self._sites = self._sites, fresh
        for site in old:
            await site.stop()

    async def close(self) -> None:
        """Stop accepting (the runner closes the connections)."""
        for site in self._sites:
            await site.stop()
        self._sites = []
        for sock in self._sockets:
            sock.close()
