"""Logging set-up: one line per event, journald-friendly.

Under systemd (``$JOURNAL_STREAM`` set) lines carry the sd-daemon ``<N>`` priority prefix and no
timestamp (journald adds its own); in a terminal they get a timestamp instead.  Control
characters in messages are escaped, so text from a client can never forge a second log line.
"""

from __future__ import annotations

import logging
import os
import re
import sys

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """Make ``text`` safe for a one-line log record (``\\n`` → ``\\x0a`` and so on)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class OneLineFormatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        fmt = (
            "%(name)s: %(message)s"
            if journal
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = escape(super().format(record))
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


class ClientErrorFilter(logging.Filter):
    """aiohttp logs every request its HTTP parser rejects (a client's fault) at ERROR with a
    traceback.  Keep it as one warning line: bad input is not a server error."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args, record.exc_info = (
                "rejected malformed HTTP request: %s",
                (str(exc).splitlines()[0] if str(exc) else type(exc).__name__,),
                None,
            )
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(ClientErrorFilter())
