"""Turning HTTP input into a :class:`~sambertd.synth.Request`, or a precise client error.

Everything a client can get wrong is caught here, before any queueing or synthesis: wrong
content type (415), malformed JSON (400), wrong field types or values (422), text too long
(413).  Messages name the field, so an IVR integrator can fix the call without our logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sambertd import audio
from sambertd.engines import Prosody
from sambertd.types import Request

TTS_FIELDS = (
    "text",
    "voice",
    "emotion",
    "format",
    "sample_rate",
    "speed",
    "pitch",
    "volume",
    "stream",
    "text_type",
    "timestamps",
    "subtitles",
)
TEXT_TYPES = ("text", "ssml")
SUBTITLES = ("srt", "vtt")
# Every format streams (audio.Encoder): WAV-family headers go out open-ended, other
# containers as libsndfile appends them.
STREAM_FORMATS = tuple(audio.FORMATS)
# What OpenAI's response_format takes; aac is refused (libsndfile has no AAC encoder).
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
# OpenAI's voice names; they map to our default voice so OpenAI clients work unchanged.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class TtsCall:
    request: Request
    stream: bool
    timestamps: bool = False  # answer JSON: audio plus when each character is spoken
    subtitles: str | None = None  # "srt" or "vtt", in that JSON answer
    sse: bool = False  # a stream as OpenAI's Server-Sent Events (stream_format "sse")

    @property
    def timed(self) -> bool:
        return self.timestamps or self.subtitles is not None


def _invalid(name: str, why: str) -> ApiError:
    return ApiError(422, "invalid_parameter", f"{name}: {why}")


def _string(raw: Mapping[str, Any], name: str, default: str, max_len: int = 64) -> str:
    value = raw.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _invalid(name, "must be a string")
    if len(value) > max_len:
        raise _invalid(name, f"longer than {max_len} characters")
    return value


def _number(
    raw: Mapping[str, Any], name: str, default: float, lo: float, hi: float, from_query: bool
) -> float:
    value = raw.get(name, default)
    if value is None:
        return default
    if from_query and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _invalid(name, "must be a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(name, "must be a number")
    if isinstance(value, int) and abs(value) > 1_000_000:  # float() of a 400-digit int fails
        raise _invalid(name, f"must be between {lo} and {hi}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _invalid(name, f"must be between {lo} and {hi}")
    return float(value)


def _integer(raw: Mapping[str, Any], name: str, from_query: bool) -> int | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if (
        from_query
        and isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= 6
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "must be an integer")
    if value not in audio.SAMPLE_RATES:
        raise _invalid(name, f"must be one of {', '.join(map(str, audio.SAMPLE_RATES))}")
    return value


def _flag(raw: Mapping[str, Any], name: str, from_query: bool) -> bool:
    value = raw.get(name, False)
    if from_query and isinstance(value, str):
        lowered = value.lower()
        if lowered in ("1", "true", "yes"):
            return True
        if lowered in ("", "0", "false", "no"):
            return False
    if not isinstance(value, bool):
        raise _invalid(name, "must be true or false")
    return value


def text_field(raw: Mapping[str, Any], name: str, max_chars: int) -> str:
    """The text itself: required, a string, within the configured length (else 413)."""
    if name not in raw:
        raise ApiError(422, "missing_parameter", f"{name}: required")
    value = raw[name]
    if not isinstance(value, str):
        raise _invalid(name, "must be a string")
    if len(value) > max_chars:
        raise ApiError(
            413, "text_too_long", f"{name} has {len(value)} characters; the limit is {max_chars}"
        )
    return value


def tts_call(
    raw: Any, *, max_chars: int, default_format: str, default_rate: int, from_query: bool = False
) -> TtsCall:
    """Validate a ``/v1/tts`` body (JSON object) or query string."""
    if not isinstance(raw, Mapping):
        raise ApiError(422, "invalid_body", "the JSON body must be an object")
    unknown = sorted(set(raw) - set(TTS_FIELDS))
    if unknown:
        raise ApiError(422, "unknown_parameter", f"unknown field(s): {', '.join(unknown)}")
    fmt = _string(raw, "format", default_format)
    if fmt not in audio.FORMATS:
        raise _invalid("format", f"must be one of {', '.join(audio.FORMATS)}")
    stream = _flag(raw, "stream", from_query)
    request = Request(
        text=text_field(raw, "text", max_chars),
        voice=_string(raw, "voice", ""),
        emotion=_string(raw, "emotion", "neutral"),
        prosody=Prosody(
            speed=_number(raw, "speed", 1.0, 0.5, 2.0, from_query),
            pitch=_number(raw, "pitch", 1.0, 0.5, 2.0, from_query),
            volume=_number(raw, "volume", 1.0, 0.0, 2.0, from_query),
        ),
        format=fmt,
        sample_rate=_integer(raw, "sample_rate", from_query) or (default_rate or None),
        ssml=_text_type(raw),
    )
    subtitles = _string(raw, "subtitles", "") or None
    if subtitles is not None and subtitles not in SUBTITLES:
        raise _invalid("subtitles", f"must be one of {', '.join(SUBTITLES)}")
    return TtsCall(request, stream, _flag(raw, "timestamps", from_query), subtitles)


def _text_type(raw: Mapping[str, Any]) -> bool | None:
    """``text_type``: "ssml" or "text"; absent, text starting with ``<speak`` is SSML."""
    value = _string(raw, "text_type", "")
    if value and value not in TEXT_TYPES:
        raise _invalid("text_type", f"must be one of {', '.join(TEXT_TYPES)}")
    return None if not value else value == "ssml"


def openai_call(raw: Any, *, max_chars: int) -> TtsCall:
    """Validate an OpenAI ``/v1/audio/speech`` body and map it onto our request.

    ``model`` is accepted and ignored (the voice picks the engine); OpenAI voice names map to
    our default voice, a voice object ``{"id": ...}`` names one of ours; ``speed`` 0.25–4.0
    is clamped to what our engines do (0.5–2.0); ``pcm`` is 24 kHz 16-bit like OpenAI's.
    Always a stream, as OpenAI answers: raw audio, or with ``stream_format: "sse"`` events.
    Unknown extra fields (``instructions``) are ignored, as OpenAI does for models without.
    """
    if not isinstance(raw, Mapping):
        raise ApiError(422, "invalid_body", "the JSON body must be an object")
    _string(raw, "model", "tts-1")
    voice_object = raw.get("voice")
    if isinstance(voice_object, Mapping):
        voice = _string(voice_object, "id", "")
    else:
        voice = _string(raw, "voice", "")
    fmt = _string(raw, "response_format", "mp3")
    served = [f for f in OPENAI_FORMATS if f in audio.FORMATS]
    if fmt not in served:
        why = "no AAC encoder here" if fmt == "aac" else f"unknown format {fmt[:16]!r}"
        raise _invalid("response_format", f"{why}; supported: {', '.join(served)}")
    stream_format = _string(raw, "stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise _invalid("stream_format", "must be audio or sse")
    speed = _number(raw, "speed", 1.0, 0.25, 4.0, from_query=False)
    request = Request(
        text=text_field(raw, "input", max_chars),
        voice="" if voice in OPENAI_VOICES else voice,
        prosody=Prosody(speed=min(2.0, max(0.5, speed))),
        format=fmt,
        sample_rate=24000 if fmt == "pcm" else None,
    )
    return TtsCall(request, stream=True, sse=stream_format == "sse")
