"""Fuzzing the real daemon over HTTP: schema-driven (schemathesis) and hand-written hostile
requests on raw sockets.

The daemon sits behind a VIP that anything on the call-centre network can reach, so a request
that turns into a 500, a traceback or a wedged connection is an availability problem, not a
cosmetic one.  The schema fuzz checks the daemon against its own ``/openapi.json`` (documented
status codes and content types, the JSON error shape, never a 5xx); the raw requests cover what
a schema cannot express: broken framing, bytes that are not UTF-8, JSON that is legal but
pathological.  The last test checks that the daemon is still ready and logged no traceback.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.daemon import DaemonProcess

# Short texts keep each synthesis well under a second on two CPU cores; the queue is deep
# enough that schemathesis' sequential requests never see 429 (which would hide real answers).
MAX_CHARS = 12
MAX_BODY = 65536
TEXT = "你好"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(
        tmp_path_factory.mktemp("fuzz"),
        server_max_request_chars=str(MAX_CHARS),
        server_queue_size="256",
        server_max_body_bytes=str(MAX_BODY),
        server_request_timeout_s="60",
        jobs_max_chars=str(MAX_CHARS),
        jobs_max_body_bytes=str(MAX_BODY),
    )
    d.wait_ready()
    yield d
    assert d.stop() == 0, d.log()


@pytest.fixture(scope="module")
def api_schema(daemon: DaemonProcess) -> schemathesis.BaseSchema:
    """The schema exactly as clients get it, so the served document itself is under test."""
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{daemon.port}/openapi.json")


def _assert_error_body(content_type: str, body: bytes) -> None:
    """Every refusal is ``{"error": {"code": str, "message": str}}`` as JSON, so IVR
    integrators can branch on ``code`` without parsing prose."""
    assert content_type.split(";")[0].strip() == "application/json", content_type
    payload = json.loads(body)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), dict), payload
    assert isinstance(payload["error"].get("code"), str), payload
    assert isinstance(payload["error"].get("message"), str), payload


@schemathesis.check
def errors_are_json(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """The error shape, also for statuses the spec leaves undocumented (405, 404 on routes).
    /ready is exempt: its 503 is a health report that keepalived reads, not an error."""
    if response.status_code < 400 or case.path == "/ready":
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    _assert_error_body(content_type, response.content)
    return True


# Listed here rather than discovered because pytest collects before the daemon runs; the
# test below fails when the served schema gains or loses an operation, so none goes unfuzzed.
OPERATIONS = [
    ("POST", "/v1/tts"),
    ("GET", "/v1/tts"),
    ("POST", "/v1/audio/speech"),
    ("GET", "/v1/voices"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("DELETE", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/audio"),
    ("GET", "/v1/jobs/{id}/subtitles"),
]
WITH_INPUT = {
    ("POST", "/v1/tts"),
    ("GET", "/v1/tts"),
    ("POST", "/v1/audio/speech"),
    ("POST", "/v1/jobs"),
}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    errors_are_json,
]


def test_fuzzed_operations_match_schema(api_schema: schemathesis.BaseSchema) -> None:
    served = {
        (op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())
    }
    assert served == set(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS]
    + [(m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if (m, p) in WITH_INPUT],
    ids=lambda v: v.value if isinstance(v, GenerationMode) else v,
)
def test_openapi_conformance(
    daemon: DaemonProcess,
    api_schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    """Every documented operation with valid (positive) and, where it takes input, invalid
    (negative) requests: no 5xx, only documented statuses and content types, and the JSON
    error body on every refusal.  (schemathesis' own pytest loader, ``from_fixture``, does not
    work with pytest 9, hence the explicit strategy.)"""
    operation = api_schema[path][method]
    base_url = f"http://127.0.0.1:{daemon.port}"

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60)

    exercise()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("extra", [{}, {"timestamps": True}, {"subtitles": "srt"}])
def test_every_answer_shape_is_documented(
    daemon: DaemonProcess, stream: bool, extra: dict[str, Any]
) -> None:
    """Each combination of streaming and timing answers with a content type that the served
    schema lists for both /v1/tts operations.  The fuzz above finds a missing one only when it
    happens to draw the combination (a timed stream, NDJSON, slipped through that way)."""
    schema = json.loads(daemon.get("/openapi.json")[2])
    body = {"text": TEXT, "stream": stream, **extra}
    query = "&".join(f"{k}={str(v).lower()}" for k, v in body.items() if k != "text")
    answers = {
        "post": daemon.post("/v1/tts", body),
        "get": daemon.get(f"/v1/tts?text=%E4%BD%A0%E5%A5%BD&{query}"),
    }
    for method, (status, headers, _) in answers.items():
        assert status == 200, (method, body)
        documented = schema["paths"]["/v1/tts"][method]["responses"]["200"]["content"]
        assert headers["content-type"].split(";")[0] in documented, (method, body)


# -- hand-written hostile requests -----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(port: int, data: bytes, *, half_close: bool = False) -> Reply | None:
    """Send raw bytes and read one response; ``None`` when the daemon closed the connection
    without answering.  Raw sockets because http.client refuses to send most of these."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may answer and close before reading everything
        buf = b""
        try:
            while b"\r\n\r\n" not in buf and (chunk := sock.recv(65536)):
                buf += chunk
            if not buf:
                return None
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            while len(body) < length and (chunk := sock.recv(65536)):
                body += chunk
        except ConnectionResetError:
            if not buf:
                return None
            raise
    return Reply(int(lines[0].split()[1]), headers, body)


def http_request(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    content_type: str | None = "application/json",
) -> bytes:
    """A well-framed HTTP/1.1 request (unless the caller overrides the framing headers)."""
    hdrs = {"Host": "127.0.0.1", "Connection": "close"}
    if content_type is not None and body:
        hdrs["Content-Type"] = content_type
    if body or method in ("POST", "PUT", "PATCH"):
        hdrs["Content-Length"] = str(len(body))
    hdrs.update(headers or {})
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return head.encode("latin-1") + b"\r\n" + body


def chunked(payload: bytes, size: int = 16384) -> bytes:
    """A chunked transfer-encoded body: no Content-Length for the daemon to check up front."""
    parts = [
        b"%x\r\n" % len(payload[i : i + size]) + payload[i : i + size] + b"\r\n"
        for i in range(0, len(payload), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def tts_body(**fields: Any) -> bytes:
    return json.dumps({"text": TEXT, **fields}).encode()


DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
HUGE_INT = b"1" + b"0" * 400  # an integer literal: parses to int, far beyond float range
TOO_MANY_DIGITS = b"1" * 5000  # over Python's int_max_str_digits (4300)

# Requests that reach the application: each must be refused with ``status`` and a JSON error.
APP_LEVEL: dict[str, tuple[bytes, int]] = {
    "content-length-over-limit": (
        b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        b'{"text": "',
        413,
    ),
    "chunked-body-over-limit": (
        b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b'{"text": "' + b"a" * (2 * MAX_BODY) + b'"}'),
        413,
    ),
    "invalid-utf8": (http_request("POST", "/v1/tts", b'{"text": "\xff\xfe\xc3"}'), 400),
    "invalid-utf8-openai": (
        http_request("POST", "/v1/audio/speech", b'{"input": "\xed\xa0\x80"}'),
        400,
    ),
    "not-json": (http_request("POST", "/v1/tts", b"text=hello"), 400),
    "empty-json-body": (
        http_request("POST", "/v1/tts", headers={"Content-Type": "application/json"}),
        400,
    ),
    "wrong-content-type": (
        http_request("POST", "/v1/tts", tts_body(), content_type="text/plain"),
        415,
    ),
    "json-array-body": (http_request("POST", "/v1/tts", b'["text"]'), 422),
    "deeply-nested-array": (http_request("POST", "/v1/tts", DEEP_ARRAY), 400),
    "deeply-nested-object": (http_request("POST", "/v1/tts", DEEP_OBJECT), 400),
    "deeply-nested-openai": (http_request("POST", "/v1/audio/speech", DEEP_ARRAY), 400),
    "float-1e400": (http_request("POST", "/v1/tts", tts_body()[:-1] + b', "speed": 1e400}'), 422),
    "int-10e400-speed": (
        http_request("POST", "/v1/tts", tts_body()[:-1] + b', "speed": ' + HUGE_INT + b"}"),
        422,
    ),
    "int-10e400-volume": (
        http_request("POST", "/v1/tts", tts_body()[:-1] + b', "volume": -' + HUGE_INT + b"}"),
        422,
    ),
    "int-10e400-openai-speed": (
        http_request("POST", "/v1/audio/speech", b'{"input": "a", "speed": ' + HUGE_INT + b"}"),
        422,
    ),
    "int-5000-digits": (
        http_request("POST", "/v1/tts", b'{"text": "a", "sample_rate": ' + TOO_MANY_DIGITS + b"}"),
        422,
    ),
    "nan-literal": (http_request("POST", "/v1/tts", tts_body()[:-1] + b', "speed": NaN}'), 422),
    "infinity-literal": (
        http_request("POST", "/v1/tts", tts_body()[:-1] + b', "pitch": -Infinity}'),
        422,
    ),
    "nan-as-text": (http_request("POST", "/v1/tts", b'{"text": NaN}'), 422),
    "duplicate-keys-last-invalid": (
        http_request("POST", "/v1/tts", b'{"text": "a", "speed": 1.0, "speed": 9}'),
        422,
    ),
    "duplicate-text-last-not-string": (
        http_request("POST", "/v1/tts", b'{"text": "a", "text": 5}'),
        422,
    ),
    "lone-surrogate-field-name": (
        http_request("POST", "/v1/tts", b'{"text": "a", "\\ud800": 1}'),
        422,
    ),
    "lone-surrogate-format": (
        http_request("POST", "/v1/tts", b'{"text": "a", "format": "\\udfff"}'),
        422,
    ),
    "query-percent-nul": (http_request("GET", "/v1/tts?text=%00"), 422),
    "query-percent-nul-key": (http_request("GET", "/v1/tts?text=a&%00=1"), 422),
    "query-invalid-utf8-escapes": (http_request("GET", "/v1/tts?text=%ff%fe"), 422),
    "query-truncated-utf8-escape": (http_request("GET", "/v1/tts?text=%E4%BD"), 422),
    "query-superscript-digit-rate": (
        http_request("GET", "/v1/tts?text=a&sample_rate=%C2%B2"),
        422,
    ),
    "query-5000-digit-rate": (
        http_request("GET", "/v1/tts?text=a&sample_rate=" + "1" * 5000),
        422,
    ),
    "put-tts": (http_request("PUT", "/v1/tts", tts_body()), 405),
    "patch-openai": (http_request("PATCH", "/v1/audio/speech", b"{}"), 405),
    "get-openai": (http_request("GET", "/v1/audio/speech"), 405),
    "delete-voices": (http_request("DELETE", "/v1/voices"), 405),
    "post-health": (http_request("POST", "/health", b"{}"), 405),
    "options-tts": (http_request("OPTIONS", "/v1/tts"), 405),
    "unknown-path": (http_request("GET", "/v1/../../etc/passwd"), 404),
    "unknown-path-bad-escape": (http_request("GET", "/v1/%ff%zz"), 404),
}


@pytest.mark.parametrize(("raw", "status"), list(APP_LEVEL.values()), ids=list(APP_LEVEL))
def test_hostile_request_is_refused_with_json(
    daemon: DaemonProcess, raw: bytes, status: int
) -> None:
    """Each gets its precise 4xx and the documented error body, never a 5xx."""
    reply = exchange(daemon.port, raw)
    assert reply is not None, "connection closed without a response"
    assert reply.status == status, (reply.status, reply.body[:300])
    _assert_error_body(reply.headers.get("content-type", ""), reply.body)


def test_head_is_refused_without_body(daemon: DaemonProcess) -> None:
    """HEAD is not routed for /v1/tts; the 405 carries the JSON content type but no body."""
    reply = exchange(daemon.port, http_request("HEAD", "/v1/tts?text=a"))
    assert reply is not None
    assert reply.status == 405
    assert reply.headers["content-type"].startswith("application/json")
    assert "GET" in reply.headers.get("allow", "")


def test_malformed_percent_escape_is_read_literally(daemon: DaemonProcess) -> None:
    """``%zz`` is not an escape; like browsers, the URL parser keeps it as the literal text
    "%zz", which is readable, so success is right here.  Whatever the answer, never a 5xx."""
    reply = exchange(daemon.port, http_request("GET", "/v1/tts?text=%zz1%"))
    assert reply is not None
    assert reply.status < 500, reply.body[:300]
    if reply.status >= 400:
        _assert_error_body(reply.headers.get("content-type", ""), reply.body)


# Requests the HTTP parser rejects before the application exists for them: aiohttp answers
# 400 text/plain and closes (or just closes).  Anything but a 4xx or a close is a failure.
PROTOCOL_LEVEL: dict[str, bytes] = {
    "garbage-request-line": b"GARBAGE\r\n\r\n",
    "unknown-method": b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-http-version": b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    "raw-nul-in-target": b"GET /v1/tts?text=\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "raw-space-in-target": b"GET /v1/tts?text=a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-over-limit": http_request("GET", "/health", headers={"X-Request-Id": "a" * 65536}),
    "content-length-overflow": (
        b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999999999999999999999\r\n\r\n{}"
    ),
    "content-length-negative": (
        b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: -1\r\n\r\n{}"
    ),
    "conflicting-content-lengths": (
        b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nContent-Length: 20\r\n\r\n{}"
    ),
}


@pytest.mark.parametrize("raw", list(PROTOCOL_LEVEL.values()), ids=list(PROTOCOL_LEVEL))
def test_malformed_http_is_refused_or_closed(daemon: DaemonProcess, raw: bytes) -> None:
    reply = exchange(daemon.port, raw)
    assert reply is None or 400 <= reply.status < 500, (reply.status, reply.body[:300])


def test_truncated_body(daemon: DaemonProcess) -> None:
    """The client promises 100 bytes, sends 9 and stops sending: the daemon must give up on
    the request (close, or a 4xx JSON error), not hang or answer 5xx."""
    raw = http_request("POST", "/v1/tts", b'{"text": "', {"Content-Length": "100"})
    reply = exchange(daemon.port, raw, half_close=True)
    if reply is not None:
        assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
        _assert_error_body(reply.headers.get("content-type", ""), reply.body)


def test_daemon_survived(daemon: DaemonProcess) -> None:
    """After everything above (run last, by file order): still ready, and nothing the clients
    sent produced a traceback in the journal, where operators would page on it."""
    status, _, body = daemon.get("/ready")
    assert status == 200, body
    log = daemon.log_path.read_text(errors="replace")
    if "Traceback" in log:
        # One line per distinct exception, so the failure names what to fix.
        raised = sorted(
            set(
                re.findall(r"(?:\\x0a|\n)([\w.]+(?:Error|Exception|Message)\b.*?)(?=\\x0a|\n)", log)
            )
        )
        pytest.fail("tracebacks in the daemon log:\n" + "\n".join(r[:200] for r in raised))
