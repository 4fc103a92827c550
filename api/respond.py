"""The synchronous transcription flow both families share, and the response it renders."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.datastructures import State

from api import render
from api.auth import authenticate
from api.service import (
    TranscriptionSpec,
    receive_upload,
    submit,
    wait_for_transcript,
)
from api.state import AppState
from core.audio import RawFormat
from core.queues import INTERACTIVE_QUEUE
from core.transcript import Transcript

TEXT = "text/plain; charset=utf-8"


def render_transcript(t: Transcript, job_id: str, spec: TranscriptionSpec) -> Response[Any]:
    fmt = spec.response_format
    if fmt == "text":
        return Response(t.text + "\n", media_type=TEXT)
    if fmt == "srt":
        return Response(render.srt(t), media_type=TEXT)
    if fmt == "vtt":
        return Response(render.vtt(t), media_type=TEXT)
    if fmt == "verbose_json":
        segments = "segment" in spec.granularities or not spec.granularities
        return Response(render.verbose_json(t, words=spec.words, segments=segments))
    return Response(render.transcript_json(t, job_id, words=spec.words))


async def transcribe_now(request: Request[Any, Any, State], raw: RawFormat | None) -> Response[Any]:
    """Authenticate, take the upload, queue it on the interactive queue and wait."""
    state = AppState.of(request.app.state)
    tenant = await authenticate(request, state.settings, state.sessions)
    job_id, form, spec, duration = await receive_upload(request, state, raw)
    await submit(state, tenant, job_id, form, spec, duration, INTERACTIVE_QUEUE)
    transcript = await wait_for_transcript(state, job_id)
    return render_transcript(transcript, job_id, spec)
