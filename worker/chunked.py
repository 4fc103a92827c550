"""Long jobs, shared by the worker pool: planned, fanned out as chunks, merged by the last.

1. The worker that claims a job whose audio is longer than `STT_CHUNK_THRESHOLD_S` streams
   the audio once (`plan_chunks`: bounded memory) to choose cut points in silences, detects
   the language once (so every chunk writes the same one), then, in one transaction, writes
   the `job_chunks` rows and hands the job to its chunks (`jobs.worker = CHUNKED`). It sends
   one `stt.transcribe_chunk` task per chunk, on the job's queue.
2. Any worker claims a chunk like a job (a row lock; a chunk that has succeeded, or runs
   elsewhere with a fresh heartbeat, is skipped), decodes only its window (`read_window`
   seeks), transcribes it, and stores its segments on the job's timeline (`place`).
3. The worker that stores the last chunk merges them in order (`merge`) and ends the job.
   Until then each stored chunk raises the job's progress and `text_so_far`.

A chunk whose worker died is put back on the queue by the reconciler, like a job; a chunk
that fails for good fails the job. Cancelling the job stops running chunks at their next
segment and queued ones when they are claimed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select, update

from core.audio import iter_decoded, read_window
from core.errors import UnsupportedMedia
from core.models import ChunkStatus, Job, JobChunk, JobStatus, utcnow
from core.queues import enqueue_chunk, parse_chunk_ref
from core.transcript import Transcript
from worker.chunk_merge import joiner, merge, place, window_of
from worker.chunk_plan import Plan, PlanStopped, Span, plan_chunks
from worker.context import WorkerContext
from worker.engine import Cancelled, is_multilingual, load_model, transcribe
from worker.jobs import Claim, Heartbeat, announce, ended, finish, raw_of, transcribe_options

log = logging.getLogger("stt.chunks")

CHUNKED = "(chunks)"
"""`jobs.worker` of a job that its chunks carry on: no single worker owns it."""


@contextmanager
def audio_file(ctx: WorkerContext, key: str) -> Iterator[Path]:
    """The job's audio as a local file (an object store's is streamed to scratch first)."""
    with ctx.storage.local_copy(key) as path:
        yield path


def fanned_out(ctx: WorkerContext, job_id: str) -> bool:
    """Whether the job has been cut into chunks (its own message then has nothing to do)."""
    with ctx.db()() as session:
        worker = session.execute(select(Job.worker).where(Job.id == job_id)).scalar()
    return worker == CHUNKED


def run_long(ctx: WorkerContext, claim: Claim) -> bool:
    """Plan and fan out a claimed job whose audio is over the threshold; False otherwise."""
    with ctx.db()() as session:
        duration = session.execute(select(Job.duration).where(Job.id == claim.job_id)).scalar()
    if duration is None or duration <= ctx.settings.chunks.threshold_s:
        return False
    with Heartbeat(ctx, claim.job_id, float(duration)) as beat:  # the job is ours till fanned out
        plan = _plan(ctx, claim, float(duration), beat.stop_requested.is_set)
        if plan is None:
            return True
        language, probability = _language(ctx, claim, plan)
    _fan_out(ctx, claim, plan, language, probability)
    return True


def _failed(code: str, message: str) -> dict[str, Any]:
    return {"status": JobStatus.failed.value, "error_code": code, "error_message": message}


def _plan(
    ctx: WorkerContext, claim: Claim, duration: float, should_stop: Callable[[], bool]
) -> Plan | None:
    try:
        with audio_file(ctx, claim.audio_key) as path:
            plan = plan_chunks(
                iter_decoded(path, raw_of(claim.options)),
                duration,
                ctx.settings.chunks.target_s,
                should_stop=should_stop,
            )
    except PlanStopped:
        log.info("job %s stopped while planning: cancelled or taken over", claim.job_id)
        return None
    except UnsupportedMedia as exc:
        finish(ctx, claim.job_id, _failed(exc.code, exc.message))
        return None
    except FileNotFoundError:
        finish(ctx, claim.job_id, _failed("audio_missing", "the job's audio is gone"))
        return None
    if not plan.spans:
        finish(ctx, claim.job_id, _failed("unsupported_audio", "the file has no audio"))
        return None
    log.info(
        "job %s: %.1f s cut into %d chunks (%d cuts outside a silence)",
        claim.job_id,
        plan.duration,
        len(plan.spans),
        plan.forced,
    )
    return plan


def _language(ctx: WorkerContext, claim: Claim, plan: Plan) -> tuple[str, float]:
    """The language every chunk is transcribed in: as asked, else detected once from the
    start of the audio (as faster-whisper does for a whole file)."""
    if claim.language:
        return claim.language, 1.0
    config = ctx.engine_config_for(claim.model_spec)
    model = load_model(claim.model_spec, config, ctx.settings.storage.model_cache_dir)
    if not is_multilingual(model) or plan.head.size == 0:
        return "en", 1.0
    language, probability, _ = model.detect_language(audio=plan.head, vad_filter=True)
    return str(language), float(probability)


def _fan_out(
    ctx: WorkerContext, claim: Claim, plan: Plan, language: str, probability: float
) -> None:
    now = utcnow()
    with ctx.db()() as session, session.begin():
        job = session.execute(
            select(Job).where(Job.id == claim.job_id).with_for_update()
        ).scalar_one_or_none()
        if job is None or job.status != JobStatus.running.value or job.worker != ctx.worker_name:
            log.info("job %s was cancelled or taken over while planning", claim.job_id)
            return
        exists = session.execute(
            select(JobChunk.index).where(JobChunk.job_id == job.id).limit(1)
        ).first()
        if exists is None:
            for index, span in enumerate(plan.spans):
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
        job.worker = CHUNKED
        job.heartbeat_at = now
        job.duration = plan.duration
        job.options = {
            **(job.options or {}),
            "chunked": {
                "language": language,
                "language_probability": probability,
                "chunks": len(plan.spans),
            },
        }
        queue = job.queue
        count = len(plan.spans) if exists is None else 0
    for index in range(count):
        enqueue_chunk(ctx.app, claim.job_id, index, queue)
    announce(ctx, claim.job_id)


@dataclass(frozen=True)
class ChunkClaim:
    job: Claim
    """The job's options, with the language the chunks are transcribed in."""
    index: int
    span: Span
    duration: float


def claim_chunk(ctx: WorkerContext, job_id: str, index: int) -> ChunkClaim | None:
    """Mark the chunk running for this process, or None when there is nothing to do."""
    now = utcnow()
    stale = timedelta(seconds=ctx.settings.workers.stale_after_s)
    gave_up = False
    with ctx.db()() as session, session.begin():
        job = session.execute(
            select(Job).where(Job.id == job_id).with_for_update()
        ).scalar_one_or_none()
        if job is None or JobStatus(job.status).ended or job.worker != CHUNKED:
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
            job.status = JobStatus.failed.value
            job.error_code = "too_many_attempts"
            job.error_message = (
                f"chunk {index} gave up after {ctx.settings.workers.max_attempts} attempts "
                "(workers lost or errors)"
            )
            job.completed_at = now
            gave_up = True
        else:
            chunk.status = ChunkStatus.running.value
            chunk.worker = ctx.worker_name
            chunk.heartbeat_at = now
            chunk.done_s = 0.0
            info = (job.options or {}).get("chunked") or {}
            claim = ChunkClaim(
                job=Claim(
                    job.id,
                    job.model_spec,
                    info.get("language") or job.language,
                    dict(job.options or {}),
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


def run_chunk(ctx: WorkerContext, ref: str) -> None:
    """Transcribe one chunk and store it; the last one to finish completes the job."""
    job_id, index = parse_chunk_ref(ref)
    claim = claim_chunk(ctx, job_id, index)
    if claim is None:
        return
    start, end = window_of(claim.span, claim.duration)
    try:
        with audio_file(ctx, claim.job.audio_key) as path:
            audio = read_window(path, start, end, raw_of(claim.job.options))
    except UnsupportedMedia as exc:
        fail_job(ctx, job_id, exc.code, exc.message)
        return
    except FileNotFoundError:
        fail_job(ctx, job_id, "audio_missing", "the job's audio is gone")
        return
    config = ctx.engine_config_for(claim.job.model_spec)
    model = load_model(claim.job.model_spec, config, ctx.settings.storage.model_cache_dir)
    try:
        with ChunkHeartbeat(ctx, job_id, index) as beat:
            local = transcribe(
                model,
                audio,
                transcribe_options(claim.job),
                config,
                on_progress=beat.progress,
                should_stop=beat.stop_requested.is_set,
            )
    except Cancelled:
        log.info("chunk %s stopped: job cancelled or chunk taken over", ref)
        return
    placed = place(local, claim.span, start, claim.duration)
    if store_chunk(ctx, job_id, index, placed):
        complete_if_done(ctx, job_id)


def _mine(job_id: str, index: int, ctx: WorkerContext) -> Any:
    return (
        (JobChunk.job_id == job_id)
        & (JobChunk.index == index)
        & (JobChunk.status == ChunkStatus.running.value)
        & (JobChunk.worker == ctx.worker_name)
    )


def store_chunk(ctx: WorkerContext, job_id: str, index: int, placed: Transcript) -> bool:
    """Store the chunk's transcript if this process still runs it (so it is stored once)."""
    now = utcnow()
    with ctx.db()() as session, session.begin():
        result = session.execute(
            update(JobChunk)
            .where(_mine(job_id, index, ctx))
            .values(
                status=ChunkStatus.succeeded.value,
                result=placed.to_dict(),
                done_s=placed.duration,
                completed_at=now,
                heartbeat_at=now,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def release_chunk(ctx: WorkerContext, ref: str) -> None:
    """Hand a running chunk back to the queue (before a retry), keeping its attempts."""
    job_id, index = parse_chunk_ref(ref)
    with ctx.db()() as session, session.begin():
        session.execute(
            update(JobChunk)
            .where(_mine(job_id, index, ctx))
            .values(status=ChunkStatus.queued.value, worker=None, enqueued_at=utcnow())
        )


def fail_job(ctx: WorkerContext, job_id: str, code: str, message: str) -> None:
    """Fail a chunked job that is still running (one chunk cannot be transcribed)."""
    with ctx.db()() as session, session.begin():
        changed = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.running.value,
                Job.worker == CHUNKED,
            )
            .values(
                status=JobStatus.failed.value,
                error_code=code,
                error_message=message[:2000],
                completed_at=utcnow(),
            )
        ).rowcount  # type: ignore[attr-defined]
    if changed:
        ended(ctx, job_id)


def complete_if_done(ctx: WorkerContext, job_id: str) -> bool:
    """After a chunk is stored: merge and end the job when every chunk has succeeded, else
    raise its progress and text so far. Serialised on the job's row, so one merge runs."""
    with ctx.db()() as session, session.begin():
        job = session.execute(
            select(Job).where(Job.id == job_id).with_for_update()
        ).scalar_one_or_none()
        if job is None or job.status != JobStatus.running.value or job.worker != CHUNKED:
            return False
        chunks = session.execute(
            select(JobChunk.index, JobChunk.status, JobChunk.start_s, JobChunk.end_s)
            .where(JobChunk.job_id == job_id)
            .order_by(JobChunk.index)
        ).all()
        done = [c.status == ChunkStatus.succeeded.value for c in chunks]
        duration = float(job.duration or (chunks[-1].end_s if chunks else 0.0))
        if not all(done):
            leading = done.index(False)
            finished = sum(c.end_s - c.start_s for c, ok in zip(chunks, done, strict=True) if ok)
            texts = session.execute(
                select(JobChunk.result)
                .where(JobChunk.job_id == job_id, JobChunk.index < leading)
                .order_by(JobChunk.index)
            ).scalars()
            info = (job.options or {}).get("chunked") or {}
            glue = joiner(str(info.get("language") or ""))
            job.progress = max(job.progress or 0.0, min(finished / max(duration, 1e-6), 0.99))
            job.text_so_far = glue.join(r["text"] for r in texts if r and r["text"]) or None
            job.heartbeat_at = utcnow()
            return False
        results = session.execute(
            select(JobChunk.result).where(JobChunk.job_id == job_id).order_by(JobChunk.index)
        ).scalars()
        parts = [Transcript.from_dict(r) for r in results if r is not None]
        info = (job.options or {}).get("chunked") or {}
        language = str(info.get("language") or (parts[0].language if parts else "en"))
        merged = merge(parts, language, float(info.get("language_probability", 1.0)), duration)
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


class ChunkHeartbeat:
    """Beats the chunk's and the job's heartbeat, saves the job's progress (finished chunks
    plus this one's part), and notices cancellation or a takeover, on a thread."""

    def __init__(self, ctx: WorkerContext, job_id: str, index: int) -> None:
        self.ctx, self.job_id, self.index = ctx, job_id, index
        self.stop_requested = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._seconds: float | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{job_id}:{index}", daemon=True
        )

    def __enter__(self) -> ChunkHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def progress(self, seconds_done: float, _text: str) -> None:
        with self._lock:
            self._seconds = seconds_done

    def _run(self) -> None:
        interval = self.ctx.settings.workers.heartbeat_s
        while not self._done.wait(min(interval, 1.0)):
            try:
                self._beat()
            except Exception:
                log.warning("heartbeat for chunk %s:%d failed", self.job_id, self.index)

    def _beat(self) -> None:
        with self._lock:
            seconds, self._seconds = self._seconds, None
        now = utcnow()
        with self.ctx.db()() as session, session.begin():
            # The job's row first, then the chunk's: the order every writer takes them in.
            job_running = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.status == JobStatus.running.value)
                .values(heartbeat_at=now)
            ).rowcount  # type: ignore[attr-defined]
            values: dict[str, Any] = {"heartbeat_at": now}
            if seconds is not None:
                values["done_s"] = seconds
            owned = session.execute(
                update(JobChunk).where(_mine(self.job_id, self.index, self.ctx)).values(**values)
            ).rowcount  # type: ignore[attr-defined]
            if not (job_running and owned):
                self.stop_requested.set()
                return
            if seconds is not None:
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
                    ).where(JobChunk.job_id == self.job_id)
                ).scalar()
                total = session.execute(select(Job.duration).where(Job.id == self.job_id)).scalar()
                if done_s is not None and total:
                    share = min(float(done_s) / float(total), 0.99)
                    session.execute(
                        update(Job)
                        .where(Job.id == self.job_id, Job.progress < share)
                        .values(progress=share)
                    )
