"""The OpenAPI 3.1 description served at /openapi.json (limits filled in from config)."""

from __future__ import annotations

from typing import Any

from sambertd import __version__, audio
from sambertd.config import Config
from sambertd.validation import OPENAI_FORMATS


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _audio(description: str) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "description": description,
        "headers": {
            "X-Audio-Duration": {
                "schema": {"type": "string"},
                "description": "seconds (not on streams)",
            },
            "X-Request-Id": {"schema": {"type": "string"}},
        },
        "content": {f.content_type: binary for f in audio.FORMATS.values()},
    }


def _timed(response: dict[str, Any]) -> dict[str, Any]:
    """/v1/tts answers JSON (audio in base64) when timestamps or subtitles are asked for,
    and NDJSON (one line per piece of audio, then a closing line) when it also streams."""
    timed = {
        "type": "object",
        "required": ["audio", "format", "sample_rate", "duration_ms"],
        "properties": {
            "audio": {"type": "string", "contentEncoding": "base64"},
            "format": {"type": "string"},
            "sample_rate": {"type": "integer"},
            "duration_ms": {"type": "integer"},
            "timestamps": {"type": "object"},
            "subtitles": {"type": "string"},
        },
    }
    line = {  # a timed stream: one JSON object per line, the audio's bytes in pieces
        "type": "object",
        "properties": {
            "audio": {"type": "string", "contentEncoding": "base64"},
            "timestamps": {"type": "object"},
            "done": {"type": "boolean", "description": "only on the closing line"},
            "format": {"type": "string"},
            "sample_rate": {"type": "integer"},
            "duration_ms": {"type": "integer"},
            "subtitles": {"type": "string"},
        },
    }
    content = {
        **response["content"],
        "application/json": {"schema": timed},
        "application/x-ndjson": {"schema": line},
    }
    return {**response, "content": content}


ERRORS = {
    "400": _error("malformed JSON, or invalid/unsupported SSML (invalid_ssml, unsupported_ssml)"),
    "401": _error("missing or invalid bearer token"),
    "403": _error("address not allowed, or the token lacks the scope"),
    "404": _error("unknown voice"),
    "413": _error("body or text too large"),
    "415": _error("body is not application/json"),
    "422": _error("invalid parameter, or one the voice does not support"),
    "429": _error("queue full; retry after Retry-After seconds"),
    "500": _error("internal error; the body names the request id"),
    "503": _error("not ready, draining, engine unavailable, or no worker free in time"),
    "504": _error("synthesis did not finish within server.request_timeout_s"),
}


def spec(config: Config) -> dict[str, Any]:
    max_chars = config.server.max_request_chars
    # Only the synthesis routes take a token (scope tts:synthesize); health, readiness,
    # metrics and voices stay open for keepalived, Prometheus and integrators.
    secured: dict[str, Any] = {"security": [{"bearer": []}]} if config.auth.enabled else {}
    tts_props: dict[str, Any] = {
        "text": {
            "type": "string",
            "minLength": 1,
            "maxLength": max_chars,
            "description": "Chinese text (digits, dates, units are read aloud) or SSML",
        },
        "text_type": {
            "type": "string",
            "enum": ["text", "ssml"],
            "description": "absent: SSML when the text starts with <speak",
        },
        "timestamps": {
            "type": "boolean",
            "default": False,
            "description": "answer JSON: base64 audio plus each sentence's and character's "
            "start_ms/end_ms and begin/end offsets in the client's text",
        },
        "subtitles": {
            "type": "string",
            "enum": ["srt", "vtt"],
            "description": "answer JSON with a subtitles string (cues cut at clauses, <= 20 "
            "characters)",
        },
        "voice": {"type": "string", "maxLength": 64, "description": "see GET /v1/voices"},
        "emotion": {"type": "string", "maxLength": 64, "default": "neutral"},
        "format": {"type": "string", "enum": list(audio.FORMATS), "default": "wav"},
        "sample_rate": {"type": "integer", "enum": list(audio.SAMPLE_RATES)},
        "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0, "default": 1.0},
        "pitch": {"type": "number", "minimum": 0.5, "maximum": 2.0, "default": 1.0},
        "volume": {"type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0},
        "stream": {
            "type": "boolean",
            "default": False,
            "description": "chunked, sent sentence by sentence as they are synthesized (any "
            "format; WAV sizes read 0xFFFFFFFF, a FLAC's length is 'unknown', an MP3 starts "
            "with a silent frame). A stream that fails after its 200 header ends without the "
            "final chunk: an incomplete body, which HTTP clients report as an error",
        },
    }
    tts_schema = {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": tts_props,
    }
    query = [
        {"name": k, "in": "query", "required": k == "text", "schema": {**v, "type": v["type"]}}
        for k, v in tts_props.items()
    ]
    openai_schema = {
        "type": "object",
        "required": ["input"],
        "properties": {
            "model": {"type": "string", "maxLength": 64},
            "input": {"type": "string", "minLength": 1, "maxLength": max_chars},
            "voice": {
                "description": "OpenAI's voice names read as our default voice",
                "oneOf": [
                    {"type": "string", "maxLength": 64},
                    {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string", "maxLength": 64}},
                    },
                ],
            },
            "response_format": {
                "type": "string",
                "enum": [f for f in OPENAI_FORMATS if f in audio.FORMATS],
                "default": "mp3",
                "description": "as OpenAI's, but aac (no AAC encoder here: 422); pcm is "
                "16-bit mono at 24 kHz, opus is Ogg Opus at the voice's rate",
            },
            "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
            "stream_format": {
                "type": "string",
                "enum": ["audio", "sse"],
                "default": "audio",
                "description": "audio: the file's bytes, chunked as sentences are ready; "
                "sse: speech.audio.delta events (base64 audio), then speech.audio.done "
                "(usage counts the input's characters)",
            },
        },
    }
    openai_ok = _audio("audio, always streamed (chunked) unless served from the cache")
    sse_event = {  # OpenAPI 3.1: a text/event-stream schema describes one event
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["speech.audio.delta", "speech.audio.done"]},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": '{"type": <the event>, "audio": <base64>} or {"type": ..., '
                '"usage": {"input_tokens", "output_tokens", "total_tokens"}}',
            },
        },
    }
    openai_ok["content"]["text/event-stream"] = {"schema": sse_event}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sambertd",
            "version": __version__,
            "description": "Chinese text-to-speech",
        },
        "paths": {
            "/v1/tts": {
                "post": {
                    "summary": "Synthesize speech",
                    "operationId": "tts",
                    **secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": tts_schema}},
                    },
                    "responses": {"200": _timed(_audio("audio")), **ERRORS},
                },
                "get": {
                    "summary": "Synthesize speech (query string, for IVR URL fetches)",
                    "operationId": "ttsGet",
                    **secured,
                    "parameters": query,
                    "responses": {"200": _timed(_audio("audio")), **ERRORS},
                },
            },
            "/v1/audio/speech": {
                "post": {
                    "summary": "OpenAI-compatible speech",
                    "operationId": "openaiSpeech",
                    **secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": openai_schema}},
                    },
                    "responses": {"200": openai_ok, **ERRORS},
                }
            },
            "/v1/voices": {
                "get": {
                    "summary": "Voices",
                    "operationId": "voices",
                    "responses": {"200": {"description": "voices"}},
                }
            },
            "/health": {
                "get": {
                    "summary": "Process alive",
                    "operationId": "health",
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/ready": {
                "get": {
                    "summary": "Ready to serve (keepalived tracks this)",
                    "operationId": "ready",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {"200": {"description": "text format"}},
                }
            },
            **_jobs_paths(config, tts_props, secured),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "request_id": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
    }


JOB_ERRORS = {
    **ERRORS,
    "404": _error("no such job for this subject, jobs turned off, or unknown voice"),
    "409": _error("the job has not finished (job_not_done): retry after Retry-After"),
    "429": _error("rate limited, or the subject's unfinished jobs are at jobs.max_active"),
}


def _jobs_paths(
    config: Config, tts_props: dict[str, Any], secured: dict[str, Any]
) -> dict[str, Any]:
    """POST /v1/jobs takes /v1/tts's body (without stream and timestamps) up to
    ``jobs.max_chars``; the job's record, audio (with ranges) and subtitles by id."""
    props = {k: v for k, v in tts_props.items() if k not in ("stream", "timestamps")}
    props["text"] = {**props["text"], "maxLength": config.jobs.max_chars}
    props["subtitles"] = {**props["subtitles"], "description": "also make srt or vtt"}
    body = {"type": "object", "required": ["text"], "additionalProperties": False}
    record = {"description": "the job's record", "content": {"application/json": {}}}
    job_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    ranged = {"Range": {"description": "one bytes= range (206, or 416 past the end)"}}
    audio_ok = _audio("the finished audio")
    subtitles_ok = {
        "description": "the subtitles",
        "content": {"application/x-subrip": {}, "text/vtt": {}},
    }
    return {
        "/v1/jobs": {
            "post": {
                "summary": "Submit a long text as a background job",
                "operationId": "jobSubmit",
                **secured,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {**body, "properties": props}}},
                },
                "responses": {"202": record, **JOB_ERRORS},
            }
        },
        "/v1/jobs/{id}": {
            "get": {
                "summary": "A job's state and progress",
                "operationId": "jobStatus",
                **secured,
                "parameters": job_id,
                "responses": {"200": record, **JOB_ERRORS},
            },
            "delete": {
                "summary": "Cancel an unfinished job (200), delete a finished one (204)",
                "operationId": "jobDelete",
                **secured,
                "parameters": job_id,
                "responses": {"200": record, "204": {"description": "deleted"}, **JOB_ERRORS},
            },
        },
        "/v1/jobs/{id}/audio": {
            "get": {
                "summary": "A finished job's audio " + str(ranged["Range"]["description"]),
                "operationId": "jobAudio",
                **secured,
                "parameters": job_id,
                "responses": {
                    "200": audio_ok,
                    "206": audio_ok,
                    "416": _error("range past the end"),
                    **JOB_ERRORS,
                },
            }
        },
        "/v1/jobs/{id}/subtitles": {
            "get": {
                "summary": "A finished job's subtitles (when it asked for them)",
                "operationId": "jobSubtitles",
                **secured,
                "parameters": job_id,
                "responses": {
                    "200": subtitles_ok,
                    "206": subtitles_ok,
                    "416": _error("range past the end"),
                    **JOB_ERRORS,
                },
            }
        },
    }
