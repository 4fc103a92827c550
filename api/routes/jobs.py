"""The job API: submit (`POST /stt/jobs`), get (with long-poll), list, cancel or delete."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from sqlalchemy import delete as sql_delete
from sqlalchemy import select, update

from api.auth import authenticate, authenticate_caller
from api.job_reads import respond
from api.respond import transcribe
from api.service import drop_audio, query_raw_format
from api.state import AppState
from core.errors import InvalidRequest, NotFound
from core.jobview import job_json
from core.models import Job, JobStatus, utcnow
from core.queues import enqueue_webhook

MAX_PAGE = 100


@post("/stt/jobs", status_code=202, summary="Submit a transcription job")
async def submit_job(request: Request[Any, Any, State]) -> Response[Any]:
    """The `/stt` form plus optional `webhook_url`; header `Idempotency-Key` optional.
    Answers 202 with the job and its `Location`."""
    return await transcribe(request, query_raw_format(request), always_async=True)


async def _own_job(state: AppState, tenant: str, job_id: str) -> Job:
    async with state.sessions() as session:
        job = (
            await session.execute(select(Job).where(Job.id == job_id, Job.tenant == tenant))
        ).scalar_one_or_none()
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


def _wait_param(raw: str | None, limit: float) -> float:
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidRequest("wait must be a number of seconds", param="wait") from exc
    if not 0 <= value <= limit:
        raise InvalidRequest(f"wait must be between 0 and {limit:.0f} seconds", param="wait")
    return value


@get("/stt/jobs/{job_id:str}", summary="A job: status, progress, result")
async def get_job(request: Request[Any, Any, State], job_id: str) -> Response[bytes]:
    """`?wait=N` long-polls up to N seconds for a change of status; `ETag`/`If-None-Match`
    answer 304 when the job is as the caller last saw it (see api.job_reads)."""
    state = AppState.of(request.app.state)
    caller = await authenticate_caller(request, state.settings, state.sessions)
    wait = _wait_param(request.query_params.get("wait"), state.settings.max_wait_s)
    job = await state.reads.one(caller.tenant, job_id)
    await state.limiter.check_poll(caller.identity, job_id if job is not None else None)
    if job is not None and wait > 0 and not job.ended:
        await state.waiter.wait(job_id, wait, changed_from=job.status)
        job = await state.reads.one(caller.tenant, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return respond(job, request.headers.get("if-none-match"))


@get("/stt/jobs", summary="The caller's jobs, newest first")
async def list_jobs(request: Request[Any, Any, State]) -> dict[str, Any]:
    """`?status=` filters; `?limit=` (1-100, default 20); `?cursor=` from `next_cursor`."""
    state = AppState.of(request.app.state)
    tenant = await authenticate(request, state.settings, state.sessions)
    params = request.query_params
    try:
        limit = int(params.get("limit") or 20)
    except ValueError as exc:
        raise InvalidRequest("limit must be an integer", param="limit") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", param="limit")
    status = params.get("status")
    if status and status not in JobStatus.__members__:
        raise InvalidRequest(
            f"status must be one of {', '.join(JobStatus.__members__)}", param="status"
        )
    return await state.reads.page(tenant, status, params.get("cursor"), limit)


@delete("/stt/jobs/{job_id:str}", status_code=200, summary="Cancel a job, or delete a finished one")
async def delete_job(request: Request[Any, Any, State], job_id: str) -> Response[Any]:
    """A queued or running job is cancelled (a running worker stops within seconds) and
    the job is returned; a finished job's audio and transcript are deleted (204)."""
    state = AppState.of(request.app.state)
    tenant = await authenticate(request, state.settings, state.sessions)
    job = await _own_job(state, tenant, job_id)
    if not JobStatus(job.status).ended:
        async with state.sessions() as session, session.begin():
            result = await session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status.in_((JobStatus.queued.value, JobStatus.running.value)),
                )
                .values(
                    status=JobStatus.cancelled.value,
                    completed_at=utcnow(),
                    error_code="cancelled",
                    error_message="cancelled by its owner",
                )
            )
            changed = bool(result.rowcount)  # type: ignore[attr-defined]
        job = await _own_job(state, tenant, job_id)
        if changed:
            if job.audio_key:
                await drop_audio(state, job.audio_key)
            await state.waiter.publish(job_id)
            if job.webhook_url:
                await anyio.to_thread.run_sync(enqueue_webhook, state.celery, job_id)
        return Response(job_json(job), status_code=200)
    async with state.sessions() as session, session.begin():
        await session.execute(sql_delete(Job).where(Job.id == job_id, Job.tenant == tenant))
    await state.waiter.publish(job_id)  # every API process forgets its cached view
    if job.audio_key:
        await drop_audio(state, job.audio_key)
    return Response(None, status_code=204)
