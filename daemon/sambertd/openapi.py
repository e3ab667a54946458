"""The OpenAPI 3.1 description served at /openapi.json (limits filled in from config)."""

from __future__ import annotations

from typing import Any

from sambertd import __version__, audio
from sambertd.config import Config


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
        "content": {t: binary for t in ("audio/wav", "audio/mpeg", "audio/pcm")},
    }


ERRORS = {
    "400": _error("malformed JSON"),
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
            "description": "Chinese text; digits, dates, units are read aloud",
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
            "description": "chunked, one chunk per sentence (wav or pcm only). A stream "
            "that fails after its 200 header ends without the final chunk: an incomplete "
            "body, which HTTP clients report as an error",
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
            "voice": {"type": "string", "maxLength": 64},
            "response_format": {"type": "string", "enum": ["mp3", "wav", "pcm"]},
            "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
        },
    }
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
                    "responses": {"200": _audio("audio"), **ERRORS},
                },
                "get": {
                    "summary": "Synthesize speech (query string, for IVR URL fetches)",
                    "operationId": "ttsGet",
                    **secured,
                    "parameters": query,
                    "responses": {"200": _audio("audio"), **ERRORS},
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
                    "responses": {"200": _audio("audio"), **ERRORS},
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
