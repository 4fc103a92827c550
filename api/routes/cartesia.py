"""Cartesia's batch STT: `POST /stt` (multipart; raw PCM via `encoding` and `sample_rate`)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import State

from api.respond import transcribe
from api.service import query_raw_format


@post("/stt", status_code=200, summary="Transcribe audio (Cartesia batch STT)")
async def stt(request: Request[Any, Any, State]) -> Response[Any]:
    """Multipart `file`, `model`, optional `language` and `timestamp_granularities[]`."""
    return await transcribe(request, query_raw_format(request))
