"""The transcription flow both families share: answer now, or accept a job (202)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import anyio
from litestar import Request, Response
from litestar.response import Stream

from api import render, streaming
from api.forms import Form
from api.hangup import wait_or_hang_up
from api.schemas import (
    DiarizedTranscription,
    JobResponse,
    TranscriptResponse,
    VerboseTranscription,
    typed,
)
from api.service import (
    Received,
    SubmitOptions,
    TranscriptionSpec,
    drop_audio,
    receive_upload,
    submit,
    wait_for_transcript,
)
from api.state import AppState
from core.audio import RawFormat
from core.errors import InvalidRequest
from core.jobview import job_json
from core.models import Job
from core.queues import BATCH_QUEUE, INTERACTIVE_QUEUE
from core.transcript import Transcript
from core.webhooks import check_target

TEXT = "text/plain"
VTT = "text/vtt"
"""Litestar adds `; charset=utf-8` to every `text/` type: named here, it came twice."""
REQUEST_ID = "X-Request-Id"
JOB_ID = "X-Job-Id"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A client's X-Request-Id that is kept (what `api.observe` accepts)."""


def id_headers(request: Request[Any, Any, Any] | None, job_id: str) -> dict[str, str]:
    """A transcription's ids: `X-Job-Id` always; `X-Request-Id` the client's own when it
    sent a valid one, else the job id (as before)."""
    sent = request.headers.get("x-request-id", "") if request is not None else ""
    return {JOB_ID: job_id, REQUEST_ID: sent if _CLIENT_ID.fullmatch(sent) else job_id}


MAX_IDEMPOTENCY_KEY = 200
CLIENT_CLOSED = 499
"""The status logged for a caller that hung up before its answer (nginx's convention)."""


def render_transcript(
    t: Transcript,
    job_id: str,
    spec: TranscriptionSpec,
    layout: render.SubtitleLayout | None = None,
    request: Request[Any, Any, Any] | None = None,
) -> Response[Any]:
    """The body for `spec.response_format`; `X-Job-Id` names the job, and so does
    `X-Request-Id` unless the client sent its own (see :func:`id_headers`)."""
    fmt = spec.response_format
    headers = id_headers(request, job_id)
    if fmt == "text":
        return Response(render.plain_text(t), media_type=TEXT, headers=headers)
    if fmt == render.DIARIZED:
        return Response(typed(render.diarized_json(t), DiarizedTranscription), headers=headers)
    if fmt == "srt":
        return Response(render.srt(t, layout), media_type=TEXT, headers=headers)
    if fmt == "vtt":
        return Response(render.vtt(t, layout), media_type=VTT, headers=headers)
    if fmt == "verbose_json":
        segments = "segment" in spec.granularities or not spec.granularities
        body = render.verbose_json(t, words=spec.words, segments=segments, task=spec.task)
        return Response(typed(body, VerboseTranscription), headers=headers)
    body = render.transcript_json(t, job_id, words=spec.words, with_usage=spec.task == "transcribe")
    return Response(typed(body, TranscriptResponse), headers=headers)


def wants_async(request: Request[Any, Any, Any]) -> bool:
    """RFC 7240: `Prefer: respond-async` (among other preferences, any case)."""
    prefer = ",".join(request.headers.getall("prefer", []))
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in prefer.split(","))


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
            param="Idempotency-Key",
        )
    return key


async def webhook_of(form: Form, state: AppState) -> str | None:
    url = form.get("webhook_url")
    if not url:
        return None
    if not state.settings.webhooks.secret:
        raise InvalidRequest(
            "webhooks are not enabled on this server (it has no STT_WEBHOOK_SECRET)",
            param="webhook_url",
        )
    if len(url) > 2000:
        raise InvalidRequest("webhook_url is too long", param="webhook_url")
    await anyio.to_thread.run_sync(check_target, url, state.settings.webhooks.allow)
    return url


def job_response(job: Job, *, include_result: bool = True) -> JobResponse:
    return typed(job_json(job, include_result=include_result), JobResponse)


def accepted(job: Job) -> Response[JobResponse]:
    location = f"/stt/jobs/{job.id}"
    return Response(
        job_response(job),
        status_code=202,
        headers={"Location": location, "Preference-Applied": "respond-async"},
    )


async def stream_transcript(
    state: AppState, tenant: str, received: Received, request: Request[Any, Any, Any] | None = None
) -> Stream:
    """Queue the job and answer with its text as server-sent events (`stream=true`)."""
    job_id = received.upload.job_id
    feed = await streaming.SegmentFeed.open(
        state.settings.broker.redis_url, job_id
    )  # before queueing
    try:
        await submit(state, tenant, received, SubmitOptions(INTERACTIVE_QUEUE))
    except BaseException:
        if feed is not None:
            await feed.close()
        raise
    return Stream(
        streaming.transcript_events(state, job_id, feed, diarized=received.spec.diarize),
        media_type=streaming.MEDIA_TYPE,
        headers={**streaming.HEADERS, **id_headers(request, job_id)},
    )


async def transcribe(
    request: Request[Any, Any, Any],
    state: AppState,
    tenant: str,
    raw: RawFormat | None,
    *,
    always_async: bool = False,
    task: str = "transcribe",
) -> Response[Any]:
    """Take the upload of an authenticated caller; then wait for the transcript (interactive
    queue), stream it (`stream=true`), or, for jobs and `Prefer: respond-async`, answer 202
    with the job (batch queue). `stream=true` wins over the preference (RFC 7240 lets it be
    ignored)."""
    is_async = always_async or wants_async(request)
    key = idempotency_key(request)
    received = await receive_upload(request, state, raw, task)
    spec = received.spec
    if spec.stream and not always_async:
        return await stream_transcript(state, tenant, received, request)
    if spec.stream:  # the job API answers with the job; nobody listens for its text
        options = {k: v for k, v in spec.options.items() if k != "stream"}
        received = replace(received, spec=replace(spec, stream=False, options=options))
    if not is_async:
        # A retry of a request still running waits on that job (an Idempotency-Key wins).
        sync = SubmitOptions(INTERACTIVE_QUEUE, idempotency_key=key, attach=True)
        job, _ = await submit(state, tenant, received, sync)
        transcript = await wait_or_hang_up(
            state.hangups, job, request.receive, wait_for_transcript(state, job.id)
        )
        if transcript is None:  # nobody is listening any more
            return Response(None, status_code=CLIENT_CLOSED, headers={REQUEST_ID: job.id})
        layout = render.SubtitleLayout.of(state.settings)
        return render_transcript(transcript, job.id, received.spec, layout, request)
    try:
        webhook = await webhook_of(received.form, state)
    except BaseException:
        await drop_audio(state, received.upload.key)
        raise
    batch = SubmitOptions(BATCH_QUEUE, idempotency_key=key, webhook_url=webhook)
    job, _ = await submit(state, tenant, received, batch)
    return accepted(job)
