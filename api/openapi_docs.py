"""What Litestar cannot see in handlers that stream their own bodies: the multipart forms,
the query parameters read by hand, the errors of each path family, and the security schemes.
`document()` adds them to the generated OpenAPI schema once, at start-up."""

from __future__ import annotations

from typing import Any

from api.render import GRANULARITIES, RESPONSE_FORMATS
from core.audio import RAW_ENCODINGS

_STR = {"type": "string"}
_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": _STR,
                "type": _STR,
                "param": {"type": ["string", "null"]},
                "code": _STR,
            },
        }
    },
}
_CARTESIA_ERROR = {
    "type": "object",
    "required": ["error_code", "title", "message", "request_id"],
    "properties": {"error_code": _STR, "title": _STR, "message": _STR, "request_id": _STR},
}
_WORD = {
    "type": "object",
    "properties": {"word": _STR, "start": {"type": "number"}, "end": {"type": "number"}},
}
TRANSCRIPT = {
    "type": "object",
    "required": ["type", "request_id", "text", "language", "duration"],
    "properties": {
        "type": {"type": "string", "enum": ["transcript"]},
        "request_id": _STR,
        "text": _STR,
        "language": _STR,
        "duration": {"type": "number"},
        "words": {"type": "array", "items": _WORD},
    },
}
JOB = {
    "type": "object",
    "properties": {
        "id": _STR,
        "status": {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
        },
        "model": _STR,
        "language": {"type": ["string", "null"]},
        "created_at": _STR,
        "started_at": {"type": ["string", "null"]},
        "completed_at": {"type": ["string", "null"]},
        "duration": {"type": ["number", "null"]},
        "progress": {"type": "number"},
        "text_so_far": {"type": ["string", "null"]},
        "error": {"type": ["object", "null"]},
        "result": {"oneOf": [TRANSCRIPT, {"type": "null"}]},
    },
}

_FORM_FIELDS: dict[str, Any] = {
    "file": {
        "type": "string",
        "format": "binary",
        "description": "audio: flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, opus, wav, webm",
    },
    "model": {"type": "string", "description": "ink-whisper, ink-whisper-2025-06-04, whisper-1"},
    "language": {"type": "string", "description": "ISO-639-1; detected when absent"},
    "timestamp_granularities[]": {
        "type": "array",
        "items": {"type": "string", "enum": list(GRANULARITIES)},
    },
    "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
    "prompt": {"type": "string"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
    "stream": {
        "type": "boolean",
        "description": "Server-Sent Events: transcript.text.delta "
        "per segment, then transcript.text.done",
    },
}
_TRANSLATION_FIELDS = {
    k: v
    for k, v in _FORM_FIELDS.items()
    if k not in ("language", "timestamp_granularities[]", "stream")
}
_JOB_FIELDS = {**_FORM_FIELDS, "webhook_url": {"type": "string", "format": "uri"}}


def _form(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file", "model"], "properties": fields}
            }
        },
    }


def _errors(cartesia: bool, statuses: tuple[int, ...]) -> dict[str, Any]:
    schema = _CARTESIA_ERROR if cartesia else _OPENAI_ERROR
    text = {
        400: "Invalid field",
        401: "Missing or wrong key",
        404: "No such job",
        409: "Idempotency-Key reused with another request",
        413: "Too large or too long",
        415: "Audio that cannot be decoded",
        429: "Rate or backlog limit (Retry-After)",
        503: "Database or broker unavailable (Retry-After)",
    }
    return {
        str(code): {"description": text[code], "content": {"application/json": {"schema": schema}}}
        for code in statuses
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_RAW = [
    _query(
        "encoding",
        {"type": "string", "enum": list(RAW_ENCODINGS)},
        "raw PCM encoding (no container)",
    ),
    _query(
        "sample_rate",
        {"type": "integer", "minimum": 1000, "maximum": 384000},
        "raw PCM sample rate, required with encoding",
    ),
]
_SUBMIT = (400, 401, 409, 413, 415, 429, 503)
_SYNC_OK = {
    "200": {
        "description": "The transcript",
        "content": {"application/json": {"schema": TRANSCRIPT}, "text/plain": {"schema": _STR}},
    },
    "202": {
        "description": "A job (with `Prefer: respond-async`)",
        "content": {"application/json": {"schema": JOB}},
    },
}

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/stt", "post"): {
        "requestBody": _form(_FORM_FIELDS),
        "parameters": _RAW,
        "responses": {**_SYNC_OK, **_errors(True, _SUBMIT)},
    },
    ("/audio/transcriptions", "post"): {
        "requestBody": _form(_FORM_FIELDS),
        "responses": {**_SYNC_OK, **_errors(False, _SUBMIT)},
    },
    ("/v1/audio/transcriptions", "post"): {
        "requestBody": _form(_FORM_FIELDS),
        "responses": {**_SYNC_OK, **_errors(False, _SUBMIT)},
    },
    ("/audio/translations", "post"): {
        "requestBody": _form(_TRANSLATION_FIELDS),
        "responses": {**_SYNC_OK, **_errors(False, _SUBMIT)},
    },
    ("/v1/audio/translations", "post"): {
        "requestBody": _form(_TRANSLATION_FIELDS),
        "responses": {**_SYNC_OK, **_errors(False, _SUBMIT)},
    },
    ("/stt/jobs", "post"): {
        "requestBody": _form(_JOB_FIELDS),
        "parameters": _RAW,
        "responses": {
            "202": {"description": "The job", "content": {"application/json": {"schema": JOB}}},
            **_errors(True, _SUBMIT),
        },
    },
    ("/stt/jobs", "get"): {
        "parameters": [
            _query(
                "status",
                {
                    "type": "string",
                    "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
                },
                "filter",
            ),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size"),
            _query("cursor", _STR, "next_cursor of the previous page"),
        ],
        "responses": {
            "200": {"description": "A page of jobs, newest first"},
            **_errors(True, (400, 401, 429, 503)),
        },
    },
    ("/stt/jobs/{job_id}", "get"): {
        "parameters": [
            _query(
                "wait",
                {"type": "number", "minimum": 0, "maximum": 60},
                "long-poll this many seconds for a change of status",
            )
        ],
        "responses": {
            "200": {"description": "The job", "content": {"application/json": {"schema": JOB}}},
            "304": {"description": "Unchanged since the `ETag` sent in `If-None-Match`"},
            **_errors(True, (400, 401, 404, 429, 503)),
        },
    },
    ("/stt/jobs/{job_id}", "delete"): {
        "responses": {
            "200": {"description": "Cancelled", "content": {"application/json": {"schema": JOB}}},
            "204": {"description": "A finished job's audio and transcript deleted"},
            **_errors(True, (401, 404, 429, 503)),
        },
    },
}

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
PUBLIC = {"/health/live", "/health/ready", "/metrics"}


def document(schema: dict[str, Any]) -> None:
    """Add bodies, parameters, errors and security to the generated schema, in place."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            if not isinstance(operation, dict):
                continue
            extra = OPERATIONS.get((path, method))
            if extra:
                operation["parameters"] = [
                    *[
                        p
                        for p in operation.get("parameters", [])
                        if p.get("name") not in {q["name"] for q in extra.get("parameters", [])}
                    ],
                    *extra.get("parameters", []),
                ]
                if "requestBody" in extra:
                    operation["requestBody"] = extra["requestBody"]
                operation["responses"] = {**operation.get("responses", {}), **extra["responses"]}
            if path not in PUBLIC:
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
