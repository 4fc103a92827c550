"""OpenAI-compatible transcriptions: `/audio/transcriptions` and `/v1/audio/transcriptions`."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import State

from api.respond import transcribe


@post(
    ["/audio/transcriptions", "/v1/audio/transcriptions"],
    status_code=200,
    summary="Transcribe audio (OpenAI-compatible)",
)
async def transcriptions(request: Request[Any, Any, State]) -> Response[Any]:
    """Multipart `file`, `model`, optional `language`, `prompt`, `temperature`,
    `response_format` and `timestamp_granularities[]`."""
    return await transcribe(request, None)
