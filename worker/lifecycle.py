"""The only writer of a job's and a chunk's status: claim, beat, finish, fail, release, end.

A job:   queued → running (claim) → succeeded (finish) | failed (fail) | queued (release,
         requeue) — or cut into chunks (hand_to_chunks), after which its chunks carry it.
A chunk: queued → running (claim_chunk) → succeeded (store_chunk) | queued (release_chunk,
         requeue); the last stored chunk merges them and ends the job (complete_if_done).
Every end goes through `ended`: the audio dropped (unless kept), the job announced, its
webhook sent — the steps the API's cancel takes too (`core.job_end.after_end`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session

from core import local_events
from core.errors import FailureCode
from core.job_end import after_end, end_statement, failure
from core.jobspec import ChunkPlan, JobOptions
from core.models import ChunkStatus, Job, JobChunk, JobStatus, utcnow
from core.notify import JOB_EVENTS_CHANNEL
from core.queues import enqueue_webhook
from core.storage import discard
from core.transcript import Transcript
from worker.chunk_merge import joiner, merge
from worker.chunk_plan import Span
from worker.context import WorkerContext

log = logging.getLogger("stt.worker")


@dataclass(frozen=True)
class Claim:
    """A job this process now runs, with what the API asked for it."""

    job_id: str
    model_spec: str
    language: str | None
    options: JobOptions
    audio_key: str


@dataclass(frozen=True)
class ChunkClaim:
    job: Claim
    """The job, with the language its chunks are transcribed in."""
    index: int
    span: Span
    duration: float


# --- jobs ---------------------------------------------------------------------------------


def _mine(ctx: WorkerContext, job_id: str) -> ColumnElement[bool]:
    return (
        (Job.id == job_id)
        & (Job.status == JobStatus.running.value)
        & (Job.worker == ctx.worker_name)
    )


def _chunked(job_id: str) -> ColumnElement[bool]:
    return (Job.id == job_id) & (Job.status == JobStatus.running.value) & Job.chunked.is_(True)


def is_chunked(ctx: WorkerContext, job_id: str) -> bool:
    """Whether the job has been cut into chunks (its own message then has nothing to do)."""
    with ctx.db()() as session:
        return bool(session.execute(select(Job.chunked).where(Job.id == job_id)).scalar())


def claim_job(ctx: WorkerContext, job_id: str) -> Claim | None:
    """Mark the job running for this process, or None when there is nothing to do."""
    outcome, claim = _claim(ctx, job_id)
    if outcome == "running":
        announce(ctx, job_id)
    elif outcome == "failed":
        ended(ctx, job_id)
    return claim


def _fail_row(job: Job, code: FailureCode, message: str) -> None:
    for name, value in failure(code, message).items():
        setattr(job, name, value)


def _claim(ctx: WorkerContext, job_id: str) -> tuple[str | None, Claim | None]:
    now = utcnow()
    stale = timedelta(seconds=ctx.settings.workers.stale_after_s)
    with ctx.db()() as session, session.begin():
        job = session.execute(
            select(Job).where(Job.id == job_id).with_for_update()
        ).scalar_one_or_none()
        if job is None:
            log.warning("job %s not found; dropping its message", job_id)
            return None, None
        if JobStatus(job.status).ended:
            log.info("job %s already %s; nothing to do", job_id, job.status)
            return None, None
        if (
            job.status == JobStatus.running.value
            and job.worker != ctx.worker_name
            and job.heartbeat_at is not None
            and now - job.heartbeat_at < stale
        ):
            log.info("job %s is running on %s; duplicate message dropped", job_id, job.worker)
            return None, None
        if job.audio_key is None:
            _fail_row(job, FailureCode.audio_missing, "the job's audio is gone")
            return "failed", None
        job.attempts += 1
        if job.attempts > ctx.settings.workers.max_attempts:
            _fail_row(
                job,
                FailureCode.too_many_attempts,
                f"gave up after {ctx.settings.workers.max_attempts} attempts"
                " (workers lost or errors)",
            )
            return "failed", None
        job.status = JobStatus.running.value
        job.worker = ctx.worker_name
        # Each attempt starts afresh: its own start time, and no progress from a lost one.
        job.started_at = now
        job.progress, job.text_so_far = 0.0, None
        job.heartbeat_at = now
        return "running", Claim(
            job.id, job.model_spec, job.language, JobOptions.from_dict(job.options), job.audio_key
        )


def beat_job(ctx: WorkerContext, job_id: str, progress: tuple[float, str] | None) -> bool:
    """Beat the job's heartbeat (and save its progress and text); False once it is not ours."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"], values["text_so_far"] = progress
    with ctx.db()() as session, session.begin():
        owned = session.execute(update(Job).where(_mine(ctx, job_id)).values(**values)).rowcount  # type: ignore[attr-defined]
    return bool(owned)


def _end(
    ctx: WorkerContext, where: ColumnElement[bool], job_id: str, values: dict[str, Any]
) -> bool:
    with ctx.db()() as session, session.begin():
        changed = bool(session.execute(end_statement(where, values)).rowcount)  # type: ignore[attr-defined]
    if changed:
        ended(ctx, job_id)
    return changed


def finish(ctx: WorkerContext, job_id: str, transcript: Transcript) -> bool:
    """Store the transcript if this process still owns the running job; then announce it."""
    return _end(
        ctx,
        _mine(ctx, job_id),
        job_id,
        {
            "status": JobStatus.succeeded.value,
            "progress": 1.0,
            "duration": transcript.duration,
            "result": transcript.to_dict(),
            "text_so_far": None,
            "language": transcript.language,
            "completed_at": utcnow(),
        },
    )


def fail(ctx: WorkerContext, job_id: str, code: FailureCode, message: str) -> bool:
    """Fail the running job this process owns, with its reason."""
    return _end(ctx, _mine(ctx, job_id), job_id, failure(code, message))


def fail_chunked(ctx: WorkerContext, job_id: str, code: FailureCode, message: str) -> bool:
    """Fail a chunked job that is still running (one of its chunks cannot be transcribed)."""
    return _end(ctx, _chunked(job_id), job_id, failure(code, message))


def release(ctx: WorkerContext, job_id: str) -> None:
    """Hand a running job back to the queue (before a retry), keeping its attempt count."""
    with ctx.db()() as session, session.begin():
        session.execute(
            update(Job).where(_mine(ctx, job_id)).values(status=JobStatus.queued.value, worker=None)
        )


def requeue_stale_job(session: Session, job_id: str, stale_before: datetime, now: datetime) -> None:
    """The reconciler's: a running job whose worker stopped beating goes back to the queue."""
    session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.running.value,
            Job.heartbeat_at < stale_before,
        )
        .values(
            status=JobStatus.queued.value,
            worker=None,
            enqueued_at=now,
            progress=0.0,
            text_so_far=None,
            started_at=None,
        )
    )


def ended(ctx: WorkerContext, job_id: str) -> None:
    """After a job's end is stored: drop its audio, announce it, send its webhook."""
    with ctx.db()() as session:
        row = session.execute(
            select(Job.audio_key, Job.webhook_url).where(Job.id == job_id)
        ).one_or_none()
    if row is None:
        return
    end = after_end(row.audio_key, row.webhook_url, keep_audio=ctx.settings.retention.audio_s > 0)
    if end.drop_audio:
        discard(ctx.storage, end.drop_audio)  # never keeps the end from being announced
    announce(ctx, job_id)
    if end.send_webhook:
        enqueue_webhook(ctx.app, job_id)


def announce(ctx: WorkerContext, job_id: str) -> None:
    """Tell waiters the job changed: over Redis pub/sub, else to this machine's API
    processes (core.local_events); either way they also poll the database."""
    client = ctx.redis_client()
    if client is None:
        local_events.announce(ctx.settings.storage.events_dir, job_id)
        return
    try:
        client.publish(JOB_EVENTS_CHANNEL, job_id)
    except Exception:  # the database holds the truth; waiters fall back to polling it
        log.warning("could not announce job %s over Redis", job_id, exc_info=True)


# --- chunks -------------------------------------------------------------------------------


def hand_to_chunks(
    ctx: WorkerContext, claim: Claim, spans: Sequence[Span], duration: float, plan: ChunkPlan
) -> tuple[str, int] | None:
    """Write the chunks' rows and hand the job to them, if this process still owns it.
    Returns (queue, how many chunks to send), or None when the job was cancelled or taken
    over meanwhile; a job already cut (a redelivered message) sends none again."""
    now = utcnow()
    with ctx.db()() as session, session.begin():
        job = session.execute(
            select(Job).where(Job.id == claim.job_id).with_for_update()
        ).scalar_one_or_none()
        if job is None or job.status != JobStatus.running.value or job.worker != ctx.worker_name:
            return None
        exists = session.execute(
            select(JobChunk.index).where(JobChunk.job_id == job.id).limit(1)
        ).first()
        if exists is None:
            for index, span in enumerate(spans):
                session.add(
                    JobChunk(
                        job_id=job.id,
                        index=index,
                        start_s=span.start_s,
                        end_s=span.end_s,
                        status=ChunkStatus.queued.value,
                        attempts=0,
                        done_s=0.0,
                        enqueued_at=now,
                    )
                )
        job.chunked = True
        job.worker = None
        job.heartbeat_at = now
        job.duration = duration
        job.options = JobOptions.from_dict(job.options).with_chunk_plan(plan).to_dict()
        return job.queue, (len(spans) if exists is None else 0)


def _chunk_mine(ctx: WorkerContext, job_id: str, index: int) -> ColumnElement[bool]:
    return (
        (JobChunk.job_id == job_id)
        & (JobChunk.index == index)
        & (JobChunk.status == ChunkStatus.running.value)
        & (JobChunk.worker == ctx.worker_name)
    )


def claim_chunk(ctx: WorkerContext, job_id: str, index: int) -> ChunkClaim | None:
    """Mark the chunk running for this process, or None when there is nothing to do."""
    now = utcnow()
    stale = timedelta(seconds=ctx.settings.workers.stale_after_s)
    gave_up = False
    with ctx.db()() as session, session.begin():
        job = session.execute(
            select(Job).where(Job.id == job_id).with_for_update()
        ).scalar_one_or_none()
        if job is None or JobStatus(job.status).ended or not job.chunked:
            log.info("chunk %s:%d: its job is gone, ended or not chunked; dropped", job_id, index)
            return None
        chunk = session.execute(
            select(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.index == index)
            .with_for_update()
        ).scalar_one_or_none()
        if chunk is None or chunk.status == ChunkStatus.succeeded.value:
            log.info("chunk %s:%d already done; duplicate message dropped", job_id, index)
            return None
        if (
            chunk.status == ChunkStatus.running.value
            and chunk.worker != ctx.worker_name
            and chunk.heartbeat_at is not None
            and now - chunk.heartbeat_at < stale
        ):
            log.info("chunk %s:%d runs on %s; duplicate dropped", job_id, index, chunk.worker)
            return None
        chunk.attempts += 1
        if chunk.attempts > ctx.settings.workers.max_attempts:
            _fail_row(
                job,
                FailureCode.too_many_attempts,
                f"chunk {index} gave up after {ctx.settings.workers.max_attempts} attempts "
                "(workers lost or errors)",
            )
            gave_up = True
        else:
            chunk.status = ChunkStatus.running.value
            chunk.worker = ctx.worker_name
            chunk.heartbeat_at = now
            chunk.done_s = 0.0
            options = JobOptions.from_dict(job.options)
            language = options.chunked.language if options.chunked else None
            claim = ChunkClaim(
                job=Claim(
                    job.id,
                    job.model_spec,
                    language or job.language,
                    options,
                    str(job.audio_key),
                ),
                index=index,
                span=Span(chunk.start_s, chunk.end_s),
                duration=float(job.duration or chunk.end_s),
            )
    if gave_up:
        ended(ctx, job_id)
        return None
    return claim


def beat_chunk(ctx: WorkerContext, job_id: str, index: int, seconds: float | None) -> bool:
    """Beat the chunk's and the job's heartbeat and raise the job's progress (finished
    chunks plus this one's part); False once the job ended or the chunk was taken over."""
    now = utcnow()
    with ctx.db()() as session, session.begin():
        # The job's row first, then the chunk's: the order every writer takes them in.
        job_running = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running.value)
            .values(heartbeat_at=now)
        ).rowcount  # type: ignore[attr-defined]
        values: dict[str, Any] = {"heartbeat_at": now}
        if seconds is not None:
            values["done_s"] = seconds
        owned = session.execute(
            update(JobChunk).where(_chunk_mine(ctx, job_id, index)).values(**values)
        ).rowcount  # type: ignore[attr-defined]
        if not (job_running and owned):
            return False
        if seconds is not None:
            _raise_progress(session, job_id)
    return True


def _raise_progress(session: Session, job_id: str) -> None:
    done_s = session.execute(
        select(
            func.sum(
                case(
                    (
                        JobChunk.status == ChunkStatus.succeeded.value,
                        JobChunk.end_s - JobChunk.start_s,
                    ),
                    else_=JobChunk.done_s,
                )
            )
        ).where(JobChunk.job_id == job_id)
    ).scalar()
    total = session.execute(select(Job.duration).where(Job.id == job_id)).scalar()
    if done_s is not None and total:
        share = min(float(done_s) / float(total), 0.99)
        session.execute(
            update(Job).where(Job.id == job_id, Job.progress < share).values(progress=share)
        )


def store_chunk(
    ctx: WorkerContext,
    job_id: str,
    index: int,
    placed: Transcript,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Store the chunk's transcript (and `extra` keys beside it in the row's result, such as
    its speaker windows) if this process still runs it (so it is stored once)."""
    now = utcnow()
    with ctx.db()() as session, session.begin():
        result = session.execute(
            update(JobChunk)
            .where(_chunk_mine(ctx, job_id, index))
            .values(
                status=ChunkStatus.succeeded.value,
                result={**placed.to_dict(), **(extra or {})},
                done_s=placed.duration,
                completed_at=now,
                heartbeat_at=now,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def release_chunk(ctx: WorkerContext, job_id: str, index: int) -> None:
    """Hand a running chunk back to the queue (before a retry), keeping its attempts."""
    with ctx.db()() as session, session.begin():
        session.execute(
            update(JobChunk)
            .where(_chunk_mine(ctx, job_id, index))
            .values(status=ChunkStatus.queued.value, worker=None, enqueued_at=utcnow())
        )


def requeue_stale_chunk(
    session: Session, job_id: str, index: int, stale_before: datetime, now: datetime
) -> bool:
    """The reconciler's: a running chunk whose worker stopped beating goes back to the queue."""
    changed = session.execute(
        update(JobChunk)
        .where(
            JobChunk.job_id == job_id,
            JobChunk.index == index,
            JobChunk.status == ChunkStatus.running.value,
            JobChunk.heartbeat_at < stale_before,
        )
        .values(status=ChunkStatus.queued.value, worker=None, enqueued_at=now)
    ).rowcount  # type: ignore[attr-defined]
    return bool(changed)


Finalize = Callable[[Transcript, list[dict[str, Any]]], Transcript]
"""A last stage on the merged transcript, given every chunk's stored result (diarization)."""


def complete_if_done(ctx: WorkerContext, job_id: str, finalize: Finalize | None = None) -> bool:
    """After a chunk is stored: merge (and `finalize`) and end the job when every chunk has
    succeeded, else raise its progress and text so far. Serialised on the job's row, so one
    merge runs."""
    with ctx.db()() as session, session.begin():
        job = session.execute(
            select(Job).where(Job.id == job_id).with_for_update()
        ).scalar_one_or_none()
        if job is None or job.status != JobStatus.running.value or not job.chunked:
            return False
        chunks = session.execute(
            select(JobChunk.index, JobChunk.status, JobChunk.start_s, JobChunk.end_s)
            .where(JobChunk.job_id == job_id)
            .order_by(JobChunk.index)
        ).all()
        done = [c.status == ChunkStatus.succeeded.value for c in chunks]
        duration = float(job.duration or (chunks[-1].end_s if chunks else 0.0))
        plan = JobOptions.from_dict(job.options).chunked
        if not all(done):
            leading = done.index(False)
            finished = sum(c.end_s - c.start_s for c, ok in zip(chunks, done, strict=True) if ok)
            texts = session.execute(
                select(JobChunk.result)
                .where(JobChunk.job_id == job_id, JobChunk.index < leading)
                .order_by(JobChunk.index)
            ).scalars()
            glue = joiner(plan.language if plan else "")
            job.progress = max(job.progress or 0.0, min(finished / max(duration, 1e-6), 0.99))
            job.text_so_far = glue.join(r["text"] for r in texts if r and r["text"]) or None
            job.heartbeat_at = utcnow()
            return False
        results = [
            r
            for r in session.execute(
                select(JobChunk.result).where(JobChunk.job_id == job_id).order_by(JobChunk.index)
            ).scalars()
            if r is not None
        ]
        parts = [Transcript.from_dict(r) for r in results]
        language = (plan.language if plan else "") or (parts[0].language if parts else "en")
        probability = plan.language_probability if plan else 1.0
        merged: Transcript | None = merge(parts, language, probability, duration)
        if finalize is not None and merged is not None:
            try:
                merged = finalize(merged, results)
            except Exception:  # never half-labelled, never stuck running: the job fails
                log.exception("job %s: the merge's last stage failed", job_id)
                _fail_row(job, FailureCode.transcription_failed, "speaker diarization failed")
                merged = None
        if merged is not None:
            job.status = JobStatus.succeeded.value
            job.progress = 1.0
            job.duration = merged.duration
            job.result = merged.to_dict()
            job.text_so_far = None
            job.language = merged.language
            job.completed_at = utcnow()
        session.execute(update(JobChunk).where(JobChunk.job_id == job_id).values(result=None))
    log.info("job %s: %d chunks merged", job_id, len(chunks))
    ended(ctx, job_id)
    return True
