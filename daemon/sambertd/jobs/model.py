"""What a job is: one long text to synthesize in the background, owned by a token subject.

A job's record is small and changes as it runs (state, progress, who runs it); its text is
stored once beside it, and its audio goes to the result store (``store.py``) one sentence
at a time.  Records are JSON, so Redis (``board.py``) can check a job's state in a script.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sambertd.engines.base import Prosody
from sambertd.types import Request

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = frozenset({DONE, FAILED, CANCELLED})


ID = re.compile(r"[A-Za-z0-9_-]{22}")  # what new_id makes


def new_id() -> str:
    """128 random bits, URL-safe: ids cannot be guessed (other subjects get 404 anyway)."""
    return secrets.token_urlsafe(16)


@dataclass
class Job:
    """One job's record.  ``done`` units are in the store; ``samples`` is their length at the
    voice's rate, where the next unit's timing starts."""

    id: str
    subject: str
    voice: str = ""
    emotion: str = "neutral"
    speed: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    format: str = "wav"
    sample_rate: int | None = None
    ssml: bool | None = None
    subtitles: str | None = None
    chars: int = 0
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    done: int = 0
    total: int = 0
    samples: int = 0
    resolved: str = ""  # the voice that renders it (the default voice's id when none was named)
    key: str = ""  # the route's cache key: what decides the audio (a resume checks it)
    node: str = ""  # the node running it, or that finished it
    runs: int = 0  # how many times a node started (or resumed) it
    audio_s: float = 0.0
    size: int = 0
    content_type: str = ""
    rate: int = 0  # the audio's sample rate
    error: dict[str, str] | None = None
    request_id: str = ""

    def request(self, text: str) -> Request:
        return Request(
            text=text,
            voice=self.voice,
            emotion=self.emotion,
            prosody=Prosody(self.speed, self.pitch, self.volume),
            format=self.format,
            sample_rate=self.sample_rate,
            ssml=self.ssml,
        )

    @property
    def finished_state(self) -> bool:
        return self.state in FINISHED

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def loads(cls, data: str | bytes) -> Job:
        raw: dict[str, Any] = json.loads(data)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def view(self) -> dict[str, Any]:
        """What GET /v1/jobs/{id} answers."""
        base = f"/v1/jobs/{self.id}"
        body: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "progress": {
                "done": self.done,
                "total": self.total,
                "percent": round(100 * self.done / self.total, 1) if self.total else 0.0,
            },
            "chars": self.chars,
            "voice": self.resolved or self.voice or None,
            "format": self.format,
            "created": _iso(self.created),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "node": self.node or None,
            "runs": self.runs,
            "links": {"self": base},
        }
        if self.state == DONE:
            body.update(
                duration_ms=round(self.audio_s * 1000), size=self.size, sample_rate=self.rate
            )
            body["links"]["audio"] = f"{base}/audio"
            if self.subtitles:
                body["links"]["subtitles"] = f"{base}/subtitles"
        if self.error:
            body["error"] = self.error
        return body


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def audio_key(job_id: str) -> str:
    return f"jobs/{job_id}/audio"


def subtitles_key(job_id: str) -> str:
    return f"jobs/{job_id}/subtitles"


def segment_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/seg/{index:07d}"


def prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"
