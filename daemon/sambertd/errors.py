"""How every exception on the request path becomes an HTTP answer: one table, in one place.

Each known error maps to a status, a stable ``code`` a client can branch on, a message that
says what to do, and headers (``Retry-After`` where retrying can help).  Anything not in the
table is a bug: it becomes 500 ``internal_error`` naming the request id, and its traceback goes
to the journal — never aiohttp's plain-text 500.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from aiohttp import web

from sambertd.audio import AudioFormatError
from sambertd.auth import AuthError
from sambertd.engines import EngineError, UnknownVoiceError, UnsupportedInput
from sambertd.frontend import FrontendError, SsmlError
from sambertd.frontend.errors import TEXT_TOO_LONG
from sambertd.metrics import Metrics
from sambertd.pool import JobTimeout, QueueFull
from sambertd.service import SlowClient
from sambertd.state import REQUEST_ID
from sambertd.synth import EngineUnavailable
from sambertd.validation import ApiError

log = logging.getLogger("sambertd")
CLIENT_CLOSED = 499  # nginx's code for "the client went away first"; never sent


@dataclass(frozen=True)
class Failure:
    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def error_response(failure: Failure, request_id: str | None = None) -> web.Response:
    """``{"error": {"code", "message", "request_id"}}``.  A message may echo client input
    with lone surrogates: they leave as JSON ``\\udXXX`` escapes instead of failing."""
    error = {"code": failure.code, "message": failure.message}
    if request_id:
        error["request_id"] = request_id
    body = json.dumps({"error": error}, ensure_ascii=False)
    return web.Response(
        status=failure.status,
        body=body.encode("utf-8", "backslashreplace"),
        content_type="application/json",
        charset="utf-8",
        headers=failure.headers,
    )


def failure_for(exc: Exception, request: web.Request, metrics: Metrics) -> Failure:
    """The answer for ``exc`` raised while serving ``request``."""
    known = _known(exc, metrics)
    if known is not None:
        return known
    transport = request.transport
    if isinstance(exc, ConnectionError) and (transport is None or transport.is_closing()):
        return Failure(CLIENT_CLOSED, "client_closed", "the client closed the connection")
    rid = request.get(REQUEST_ID)
    log.error("request %s failed: %s: %s", rid, type(exc).__name__, exc, exc_info=exc)
    return Failure(
        500, "internal_error", f"internal error (request id {rid}); the operators can look it up"
    )


def _known(exc: Exception, metrics: Metrics) -> Failure | None:
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return Failure(exc.status, exc.code, exc.message, headers)
    if isinstance(exc, ApiError):
        return Failure(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, web.HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        allow = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return Failure(exc.status, codes.get(exc.status, "http_error"), exc.reason, allow)
    if isinstance(exc, QueueFull):
        metrics.rejected.labels("queue_full").inc()
        return Failure(
            429, "busy", "all workers are busy and the queue is full", {"Retry-After": "1"}
        )
    if isinstance(exc, JobTimeout):
        metrics.rejected.labels("timeout").inc()
        if exc.queued:
            return Failure(503, "timeout", "no worker became free in time", {"Retry-After": "1"})
        return Failure(
            504,
            "timeout",
            "synthesis did not finish within server.request_timeout_s; long texts: stream "
            'them ("stream": true, each sentence gets its own deadline) or split them',
        )
    if isinstance(exc, SlowClient):
        return Failure(408, "client_too_slow", str(exc))
    if isinstance(exc, SsmlError):  # malformed or unsupported markup: the body is wrong
        return Failure(400, exc.code, str(exc))
    if isinstance(exc, FrontendError):
        return Failure(413 if exc.code == TEXT_TOO_LONG else 422, exc.code, str(exc))
    if isinstance(exc, UnknownVoiceError):
        if "emotion" in str(exc):
            return Failure(422, "unknown_emotion", str(exc))
        return Failure(404, "unknown_voice", str(exc))
    if isinstance(exc, UnsupportedInput):
        return Failure(422, "unsupported_parameter", str(exc))
    if isinstance(exc, AudioFormatError):
        return Failure(422, "invalid_parameter", str(exc))
    if isinstance(exc, EngineUnavailable):
        return Failure(503, "engine_unavailable", str(exc), {"Retry-After": "5"})
    if isinstance(exc, EngineError):
        log.error("engine error: %s", exc)
        metrics.engine_errors.labels("engine").inc()
        return Failure(
            503, "engine_error", "the speech engine failed; try again", {"Retry-After": "1"}
        )
    return None
