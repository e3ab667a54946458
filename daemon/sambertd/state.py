"""What the request path may know about the daemon around it: the current runtime, whether it
is ready or draining, and what to count.  The life cycle (``server.py``) owns and changes this
state; routes and the request orchestration (``service.py``) only read it, so neither needs the
other's module.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from sambertd.metrics import Metrics
from sambertd.runtime import Runtime

ROLES = ("MASTER", "BACKUP", "FAULT", "STOP")


@functools.cache
def _hostname() -> str:
    """Read once, as at start before: X-Node is stamped on every response."""
    return socket.gethostname()


# What a request carries along the path (set by the middleware unless noted).
REQUEST_ID = web.RequestKey("request_id", str)
RUNTIME = web.RequestKey("runtime", Runtime)  # pinned for the request's whole life
CLIENT_IP = web.RequestKey("client_ip", str)  # after the trusted-proxy rules
SUBJECT = web.RequestKey("subject", str)  # the token's subject, once authenticated
AUDIT = web.RequestKey[dict[str, Any]]("audit")  # what the audit record adds (service.py)
STREAM = web.RequestKey("stream", web.StreamResponse)  # a stream once its header is sent


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    message: str
    restart_needed: bool = False


@dataclass
class State:
    """One daemon process's shared state."""

    runtime: Runtime
    metrics: Metrics
    retiring: list[Runtime] = field(default_factory=list)  # replaced, still finishing work
    draining: bool = False
    drain_deadline: float = 0.0  # time.monotonic() past which the drain stops waiting
    # Set when the drain is over (in-flight work done, or its deadline passed): requests
    # parked meanwhile get their 503 and /ready stops asking keepalived to keep the VIP.
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    parked: int = 0  # requests that reached this node while it drains, waiting for `drained`
    active: int = 0  # HTTP requests inside a synthesis handler (streams included)
    streams: int = 0  # of which streams
    served: int = 0
    reload: Callable[[], Awaitable[ReloadOutcome]] | None = None  # set by the life cycle

    @property
    def node(self) -> str:
        """Sent as X-Node on every response, so clients and tests see who served."""
        return self.runtime.config.server.node_name or _hostname()

    def runtimes(self) -> list[Runtime]:
        return [self.runtime, *self.retiring]

    def hung(self) -> bool:
        """A worker of any live runtime has made no progress for ``hang_timeout_s``."""
        threshold = self.runtime.config.server.hang_timeout_s
        return any(r.pool.stuck(threshold) for r in self.runtimes())

    def readiness(self) -> tuple[bool, str]:
        """What /ready (and so keepalived) sees: not draining, workers not wedged, and the
        preferred engine serving (nothing is served before the engines are warm).
        "degraded" (still 200) means a lower rung of the ladder or a CPU fallback is
        serving; with ``engine.degrade`` off a failed preferred engine makes this 503, so
        keepalived moves the VIP to the peer."""
        if self.draining:
            return False, "draining"
        if self.hung():
            return False, "worker hung"
        health = self.runtime.synthesizer.health()
        if all(v == "ok" for v in health.values()):
            return True, "ready"
        first = next(iter(health.values()))
        if not self.runtime.config.engine.degrade and not first.startswith(("ok", "degraded")):
            return False, "engine unavailable"
        return True, "degraded"

    def holds_vip(self) -> bool:
        """Whether keepalived should keep the VIP here although /ready is 503: this node is
        the VRRP master (or runs without keepalived), it drains, and requests that came
        through the VIP are still in flight.  Moving the VIP now would reset their TCP
        connections (the peer's kernel knows none of them), so the track script
        (failover/check_sambertd.sh) keeps it until they are done, at most until
        ``drain_deadline``.  New requests meanwhile are parked (see ``park``)."""
        return (
            self.draining
            and not self.drained.is_set()
            and time.monotonic() < self.drain_deadline
            and self.role() in ("MASTER", "standalone")
        )

    async def park(self) -> None:
        """Hold a request that reached a draining node until the drain is over; the caller
        then answers 503.  Answering at once would send a client that retries a few
        seconds later straight back here, where the VIP stays while long requests finish;
        answered at the drain's end, its retry reaches the peer, which by then holds the
        VIP.  The wait is bounded by the drain (``server.drain_timeout_s``)."""
        self.parked += 1
        try:
            await self.drained.wait()
        finally:
            self.parked -= 1

    def role(self) -> str:
        """The keepalived role (MASTER/BACKUP/FAULT) from failover/notify.sh, else
        "standalone".  Read on demand: a tiny file in /run, no watcher thread needed."""
        try:
            path = Path(self.runtime.config.server.role_file)
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return "standalone"
        return text if text in ROLES else "standalone"

    def status_line(self) -> str:
        pool = self.runtime.pool
        return (
            f"{self.readiness()[1]}; {self.role()}; in-flight {pool.in_flight}, "
            f"queue {pool.depth}, served {self.served}"
        )
