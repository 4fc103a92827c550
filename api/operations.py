"""OpenAPI for what handlers do by hand: the streamed multipart forms, the error responses of
each path family, the non-JSON media types, and the security schemes.

Response bodies come from the Structs in `api.schemas` (component schemas); this module only
says which Struct answers which status, through Litestar's public `ResponseSpec` and
`operation_class` hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from api import schemas
from api.render import GRANULARITIES, RESPONSE_FORMATS
from core.audio import RAW_ENCODINGS

TEXT = "text/plain"
VTT = "text/vtt"
SSE = "text/event-stream"

SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
COMPONENTS = Components(
    security_schemes={
        "bearer": SecurityScheme(type="http", scheme="bearer"),
        "apiKey": SecurityScheme(type="apiKey", security_scheme_in="header", name="X-API-Key"),
    }
)

# --- multipart forms ----------------------------------------------------------------------

_STR = Schema(type=OpenAPIType.STRING)
_FORM_FIELDS: dict[str, Schema] = {
    "file": Schema(
        type=OpenAPIType.STRING,
        format="binary",  # type: ignore[arg-type]
        description="audio: flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, opus, wav, webm",
    ),
    "model": Schema(
        type=OpenAPIType.STRING, description="ink-whisper, ink-whisper-2025-06-04, whisper-1"
    ),
    "language": Schema(type=OpenAPIType.STRING, description="ISO-639-1; detected when absent"),
    "timestamp_granularities[]": Schema(
        type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING, enum=list(GRANULARITIES))
    ),
    "response_format": Schema(type=OpenAPIType.STRING, enum=list(RESPONSE_FORMATS)),
    "prompt": _STR,
    "temperature": Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=1),
    "stream": Schema(
        type=OpenAPIType.BOOLEAN,
        description="Server-Sent Events: transcript.text.delta per segment, "
        "then transcript.text.done",
    ),
}
_DIARIZATION_FIELDS: dict[str, Schema] = {
    "diarize": Schema(
        type=OpenAPIType.BOOLEAN,
        description="who spoke when: `speaker` on each word and `speakers` turns "
        "(implied by model gpt-4o-transcribe-diarize)",
    ),
    "min_speakers": Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=32),
    "max_speakers": Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=32),
    "known_speaker_names[]": Schema(
        type=OpenAPIType.ARRAY, items=_STR, max_items=4, description="names of known speakers"
    ),
    "known_speaker_references[]": Schema(
        type=OpenAPIType.ARRAY,
        items=_STR,
        max_items=4,
        description="data URLs (`data:audio/wav;base64,…`) of 2-10 s of each known speaker",
    ),
    "chunking_strategy": Schema(
        type=OpenAPIType.STRING, description='`auto` or a `{"type": "server_vad", …}` object'
    ),
}
_FORM_FIELDS = {**_FORM_FIELDS, **_DIARIZATION_FIELDS}
TRANSCRIPTION_FORM = _FORM_FIELDS
TRANSLATION_FORM = {
    k: v
    for k, v in _FORM_FIELDS.items()
    if k not in ("language", "timestamp_granularities[]", "stream", *_DIARIZATION_FIELDS)
}
JOB_FORM = {
    **_FORM_FIELDS,
    "webhook_url": Schema(type=OpenAPIType.STRING, format="uri"),  # type: ignore[arg-type]
}


def _form_body(fields: dict[str, Schema]) -> RequestBody:
    properties: dict[str, Schema | Reference] = dict(fields)
    schema = Schema(type=OpenAPIType.OBJECT, required=["file", "model"], properties=properties)
    return RequestBody(
        required=True, content={"multipart/form-data": OpenAPIMediaType(schema=schema)}
    )


def _with_text_formats(response: Any, media_types: tuple[str, ...]) -> None:
    if isinstance(response, OpenAPIResponse) and response.content is not None:
        for media_type in media_types:
            response.content[media_type] = OpenAPIMediaType(schema=_STR)


def _from_json_schema(schema: dict[str, Any], defs: dict[str, Any]) -> Schema:
    if "$ref" in schema:
        return _from_json_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    properties: dict[str, Schema | Reference] = {
        name: _from_json_schema(value, defs) for name, value in schema.get("properties", {}).items()
    }
    return Schema(
        type=OpenAPIType(schema["type"]) if "type" in schema else None,
        title=schema.get("title"),
        description=schema.get("description"),
        properties=properties or None,
        required=schema.get("required"),
        one_of=[_from_json_schema(s, defs) for s in schema["anyOf"]] if "anyOf" in schema else None,
    )


def inline_schema(struct: type[msgspec.Struct]) -> Schema:
    """The Struct's schema written out in full (msgspec's JSON Schema of it)."""
    full = msgspec.json.schema(struct)
    return _from_json_schema(full, full.get("$defs", {}))


_INLINED = {
    struct.__name__: inline_schema(struct)
    for struct in (schemas.CartesiaError, schemas.OpenAIError)
}
"""Error bodies are written out at each response rather than referenced, so that a reader
of one operation (or a client generator) sees the family's error fields right there."""


def _inlined(schema: Schema | Reference | None) -> Schema | None:
    # Until the document is complete a reference names the Struct by its module path too
    # (`…/api_schemas_OpenAIError`); Litestar shortens the names at the end.
    if not isinstance(schema, Reference):
        return None
    name = schema.ref.rsplit("/", 1)[-1]
    return next((s for n, s in _INLINED.items() if name == n or name.endswith(f"_{n}")), None)


@dataclass
class DocumentedOperation(Operation):
    """The `operation_class` of every handler: the errors' schemas written out in place."""

    def __post_init__(self) -> None:
        for response in (self.responses or {}).values():
            if isinstance(response, OpenAPIResponse) and response.content:
                for media in response.content.values():
                    inlined = _inlined(media.schema)
                    if inlined is not None:
                        media.schema = inlined


def form_operation(
    fields: dict[str, Schema], text_formats: tuple[str, ...] = ()
) -> type[Operation]:
    """An `operation_class` for a handler that streams a multipart form itself: it adds the
    form as the request body, and the non-JSON formats to the 200 response."""

    @dataclass
    class FormOperation(DocumentedOperation):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.request_body = _form_body(fields)
            if text_formats and self.responses:
                _with_text_formats(self.responses.get("200"), text_formats)

    return FormOperation


@dataclass
class DownloadOperation(DocumentedOperation):
    """A transcript download: JSON, or the text formats (text and srt are text/plain)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.responses:
            _with_text_formats(self.responses.get("200"), (TEXT, VTT))


TRANSCRIPTION_FORMATS = (TEXT, VTT, SSE)
"""text and srt are text/plain; vtt is text/vtt; `stream=true` is server-sent events."""

# --- query parameters read by hand ----------------------------------------------------------

# Handlers take these as optional strings and parse them themselves (so a bad value gets
# the same 400 as before); `schema_extra` documents the value they accept instead.


def _query(**schema: Any) -> dict[str, Any]:
    return {"oneOf": None, **schema}  # replaces the generated `string | null`


RAW_ENCODING = _query(type="string", enum=list(RAW_ENCODINGS))
SAMPLE_RATE = _query(type="integer", minimum=1000, maximum=384000)
WAIT = _query(type="number", minimum=0, maximum=60)
STATUS = _query(type="string", enum=["queued", "running", "succeeded", "failed", "cancelled"])
LIMIT = _query(type="integer", minimum=1, maximum=100)
CURSOR = _query(type="string")

# --- responses ------------------------------------------------------------------------------

_ERROR_TEXT = {
    400: "Invalid field",
    401: "Missing or wrong key",
    404: "No such job or model",
    409: "Idempotency-Key reused with another request; or the job has not succeeded",
    413: "Too large or too long",
    415: "Audio that cannot be decoded",
    429: "Rate or backlog limit (Retry-After)",
    503: "Database or broker unavailable (Retry-After)",
}
SUBMIT_ERRORS = (400, 401, 409, 413, 415, 429, 503)


def errors(cartesia: bool, statuses: tuple[int, ...]) -> dict[int, ResponseSpec]:
    """The error responses of a path family, in its shape."""
    body = schemas.CartesiaError if cartesia else schemas.OpenAIError
    return {
        status: ResponseSpec(body, description=_ERROR_TEXT[status], generate_examples=False)
        for status in statuses
    }


def ok(body: Any, description: str) -> ResponseSpec:
    return ResponseSpec(body, description=description, generate_examples=False)


def transcription_responses(cartesia: bool) -> dict[int, ResponseSpec]:
    """200 with the transcript (or text formats), 202 with a job (`Prefer: respond-async`)."""
    transcript: Any = (
        schemas.TranscriptResponse
        if cartesia
        else schemas.TranscriptResponse | schemas.VerboseTranscription
    )
    return {
        200: ok(transcript, "The transcript"),
        202: ok(schemas.JobResponse, "A job (with `Prefer: respond-async`)"),
        **errors(cartesia, SUBMIT_ERRORS),
    }
