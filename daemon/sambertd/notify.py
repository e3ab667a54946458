"""systemd notification protocol (sd_notify) for Type=notify units, via ``sdnotify``.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the daemon runs the same in a
terminal, in tests and under systemd.  The watchdog interval comes from ``$WATCHDOG_USEC``,
which systemd sets from the unit's WatchdogSec= (and only for our own PID).
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)


class Notifier:
    """READY/RELOADING/STOPPING/STATUS/WATCHDOG messages to systemd."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._notifier = None
        if self.enabled:
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 1e6 / 2 if usec.isdigit() and mine else None
        self._last_status = ""

    def _send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self, status: str) -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """Send STATUS= only when it changed: systemctl status shows the latest line."""
        if status != self._last_status:
            self._last_status = status
            self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")
