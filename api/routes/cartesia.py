"""Cartesia's batch STT: `POST /stt` (multipart; raw PCM via `encoding` and `sample_rate`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, post
from litestar.params import Parameter

from api import operations as doc
from api.respond import transcribe
from api.state import AppState
from core.audio import raw_format

Encoding = Annotated[
    str | None,
    Parameter(description="raw PCM encoding (no container)", schema_extra=doc.RAW_ENCODING),
]
SampleRate = Annotated[
    str | None,
    Parameter(
        description="raw PCM sample rate, required with encoding", schema_extra=doc.SAMPLE_RATE
    ),
]


@post(
    "/stt",
    status_code=200,
    summary="Transcribe audio (Cartesia batch STT)",
    responses=doc.transcription_responses(cartesia=True),
    operation_class=doc.form_operation(doc.TRANSCRIPTION_FORM),
    security=doc.SECURITY,
)
async def stt(
    request: Request[Any, Any, Any],
    stt: AppState,
    tenant: str,
    encoding: Encoding = None,
    sample_rate: SampleRate = None,
) -> Response[Any]:
    """Multipart `file`, `model`, optional `language` and `timestamp_granularities[]`."""
    return await transcribe(request, stt, tenant, raw_format(encoding, sample_rate))
