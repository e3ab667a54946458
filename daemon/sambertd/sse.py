"""OpenAI's Server-Sent Events for speech (``stream_format: "sse"`` on /v1/audio/speech).

OpenAI frames a speech stream as ``speech.audio.delta`` events, each with a piece of the
encoded file in base64 (``audio``), then one ``speech.audio.done`` with a ``usage`` object.
The pieces joined are the same file as the raw stream's, so the same encoder serves both.
Each event carries its name in ``event:`` and again as ``type`` in the JSON, so clients that
read either find it.  We have no tokens: ``usage`` counts the input's characters as its
input tokens and reports no output tokens.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

CONTENT_TYPE = "text/event-stream"
# Set by the OpenAI route for the stream to frame its chunks (service._stream reads it).
SSE = web.RequestKey("sse", bool)
# A whole file (a cache hit) leaves in deltas of this many bytes, like a stream's pieces.
WHOLE_PIECE = 32768


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps({"type": name, **payload}, separators=(",", ":"))
    return f"event: {name}\ndata: {data}\n\n".encode()


def delta(chunk: bytes) -> bytes:
    """One ``speech.audio.delta`` event carrying ``chunk``."""
    return _event("speech.audio.delta", {"audio": base64.b64encode(chunk).decode("ascii")})


def done(characters: int) -> bytes:
    """The final ``speech.audio.done`` event."""
    usage = {"input_tokens": characters, "output_tokens": 0, "total_tokens": characters}
    return _event("speech.audio.done", {"usage": usage})


def whole(response: web.Response, characters: int) -> web.Response:
    """A finished answer (a cache hit) as events: its body in deltas, then done; its own
    headers (X-Cache, X-Voice, ...) stay."""
    body = response.body
    audio = bytes(body) if isinstance(body, bytes | bytearray | memoryview) else b""
    events = [delta(audio[i : i + WHOLE_PIECE]) for i in range(0, len(audio), WHOLE_PIECE)]
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-type", "content-length")
    }
    return web.Response(
        body=b"".join([*events, done(characters)]),
        status=response.status,
        headers={**headers, "Content-Type": CONTENT_TYPE},
    )
