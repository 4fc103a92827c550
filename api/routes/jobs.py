"""The job API: submit (`POST /stt/jobs`), get (with long-poll), list, cancel or delete."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.params import Parameter
from sqlalchemy import delete as sql_delete

from api import operations as doc
from api.auth import Caller
from api.cancel import cancel_job
from api.job_reads import respond
from api.jobs import JobService
from api.respond import job_response, transcribe
from api.routes.cartesia import Encoding, SampleRate
from api.schemas import JobList, JobResponse, typed
from api.service import drop_audio
from api.state import AppState
from core.audio import raw_format
from core.echo import quoted
from core.errors import InvalidRequest, NotFound
from core.models import Job, JobStatus, is_id

MAX_PAGE = 100


@post(
    "/stt/jobs",
    status_code=202,
    summary="Submit a transcription job",
    responses={202: doc.ok(JobResponse, "The job"), **doc.errors(True, doc.SUBMIT_ERRORS)},
    operation_class=doc.form_operation(doc.JOB_FORM),
    security=doc.SECURITY,
)
async def submit_job(
    request: Request[Any, Any, Any],
    stt: AppState,
    tenant: str,
    encoding: Encoding = None,
    sample_rate: SampleRate = None,
) -> Response[Any]:
    """The `/stt` form plus optional `webhook_url`; header `Idempotency-Key` optional.
    Answers 202 with the job and its `Location`."""
    raw = raw_format(encoding, sample_rate)
    return await transcribe(request, stt, tenant, raw, always_async=True)


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


Wait = Annotated[
    str | None,
    Parameter(
        description="long-poll this many seconds for a change of status", schema_extra=doc.WAIT
    ),
]


@get(
    "/stt/jobs/{job_id:str}",
    summary="A job: status, progress, result",
    responses={
        200: doc.ok(JobResponse, "The job"),
        304: doc.ok(None, "Not modified: the job is as the `If-None-Match` ETag saw it"),
        **doc.errors(True, (400, 401, 404, 429, 503)),
    },
    security=doc.SECURITY,
    operation_class=doc.DocumentedOperation,
)
async def get_job(
    request: Request[Any, Any, Any], stt: AppState, caller: Caller, job_id: str, wait: Wait = None
) -> Response[bytes]:
    """`?wait=N` long-polls up to N seconds for a change of status; `ETag`/`If-None-Match`
    answer 304 when the job is as the caller last saw it (see api.job_reads). Polls of one's
    own job count against the per-job poll limit, not the key's."""
    seconds = _wait_param(wait, stt.settings.limits.max_wait_s)
    if not is_id(job_id):  # never a query: a NUL byte or a 60 KB id is a plain 404
        raise NotFound(f"no job {quoted(job_id)}")
    job = await stt.reads.one(caller.tenant, job_id)
    await stt.limiter.check_poll(caller.identity, job_id if job is not None else None)
    if job is not None and seconds > 0 and not job.ended:
        await stt.waiter.wait(job_id, seconds, changed_from=job.status)
        job = await stt.reads.one(caller.tenant, job_id)
    if job is None:
        raise NotFound(f"no job {quoted(job_id)}")
    return respond(job, request.headers.get("if-none-match"))


def _limit(raw: str | None) -> int:
    try:
        limit = int(raw or 20)
    except ValueError as exc:
        raise InvalidRequest("limit must be an integer", param="limit") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", param="limit")
    return limit


def _status(raw: str | None) -> str | None:
    if raw and raw not in JobStatus.__members__:
        raise InvalidRequest(
            f"status must be one of {', '.join(JobStatus.__members__)}", param="status"
        )
    return raw or None


@get(
    "/stt/jobs",
    summary="The caller's jobs, newest first",
    responses=doc.errors(True, (400, 401, 429, 503)),
    security=doc.SECURITY,
    operation_class=doc.DocumentedOperation,
)
async def list_jobs(
    stt: AppState,
    tenant: str,
    status_filter: Annotated[
        str | None, Parameter(query="status", description="filter", schema_extra=doc.STATUS)
    ] = None,
    limit: Annotated[str | None, Parameter(description="page size", schema_extra=doc.LIMIT)] = None,
    cursor: Annotated[
        str | None,
        Parameter(description="next_cursor of the previous page", schema_extra=doc.CURSOR),
    ] = None,
) -> JobList:
    """`?status=` filters; `?limit=` (1-100, default 20); `?cursor=` from `next_cursor`."""
    page = await stt.reads.page(tenant, _status(status_filter), cursor, _limit(limit))
    return typed(page, JobList)


@delete(
    "/stt/jobs/{job_id:str}",
    status_code=200,
    summary="Cancel a job, or delete a finished one",
    responses={
        200: doc.ok(JobResponse, "Cancelled"),
        204: doc.ok(None, "A finished job's audio and transcript deleted"),
        **doc.errors(True, (400, 401, 404, 429, 503)),
    },
    security=doc.SECURITY,
    operation_class=doc.DocumentedOperation,
)
async def delete_job(stt: AppState, tenant: str, jobs: JobService, job_id: str) -> Response[Any]:
    """A queued or running job is cancelled (a running worker stops within seconds) and
    the job is returned; a finished job's audio and transcript are deleted (204)."""
    state = stt
    job = await jobs.own(tenant, job_id)
    if not JobStatus(job.status).ended:
        await cancel_job(state, job)
        return Response(job_response(await jobs.own(tenant, job_id)), status_code=200)
    async with state.sessions() as session, session.begin():
        await session.execute(sql_delete(Job).where(Job.id == job_id, Job.tenant == tenant))
    await state.waiter.publish(job_id)  # every API process forgets its cached view
    if job.audio_key:
        await drop_audio(state, job.audio_key)
    return Response(None, status_code=204)
