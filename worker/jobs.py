"""Running one job: claim the row, decode, transcribe, store, announce. Plain functions."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from core.audio import RawFormat, decode
from core.errors import UnsupportedMedia
from core.logs import job_id_var
from core.models import Job, JobStatus, utcnow
from core.notify import JOB_EVENTS_CHANNEL, TextUpdate, segments_channel
from core.queues import enqueue_webhook
from core.storage import discard
from worker.context import WorkerContext
from worker.engine import Cancelled, TranscribeOptions, load_model, transcribe

log = logging.getLogger("stt.worker")


@dataclass(frozen=True)
class Claim:
    job_id: str
    model_spec: str
    language: str | None
    options: dict[str, Any]
    audio_key: str


def claim_job(ctx: WorkerContext, job_id: str) -> Claim | None:
    """Mark the job running for this process, or None when there is nothing to do."""
    outcome, claim = _claim(ctx, job_id)
    if outcome in ("running", "failed"):
        (announce if outcome == "running" else ended)(ctx, job_id)
    return claim


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
            job.status == JobStatus.running
            and job.worker != ctx.worker_name
            and job.heartbeat_at is not None
            and now - job.heartbeat_at < stale
        ):
            log.info("job %s is running on %s; duplicate message dropped", job_id, job.worker)
            return None, None
        if job.audio_key is None:
            _fail(job, "audio_missing", "the job's audio is gone")
            return "failed", None
        job.attempts += 1
        if job.attempts > ctx.settings.workers.max_attempts:
            _fail(
                job,
                "too_many_attempts",
                f"gave up after {ctx.settings.workers.max_attempts} attempts"
                " (workers lost or errors)",
            )
            return "failed", None
        job.status = JobStatus.running.value
        job.worker = ctx.worker_name
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        return "running", Claim(
            job.id, job.model_spec, job.language, dict(job.options or {}), job.audio_key
        )


def _fail(job: Job, code: str, message: str) -> None:
    job.status = JobStatus.failed.value
    job.error_code = code
    job.error_message = message[:2000]
    job.completed_at = utcnow()


def _mine(job_id: str, ctx: WorkerContext) -> Any:
    return (
        (Job.id == job_id)
        & (Job.status == JobStatus.running.value)
        & (Job.worker == ctx.worker_name)
    )


def finish(ctx: WorkerContext, job_id: str, values: dict[str, Any]) -> bool:
    """Store the outcome if this process still owns the running job; then announce it."""
    with ctx.db()() as session, session.begin():
        result = session.execute(
            update(Job).where(_mine(job_id, ctx)).values(completed_at=utcnow(), **values)
        )
        owned = bool(result.rowcount)  # type: ignore[attr-defined]
    if owned:
        ended(ctx, job_id)
    return owned


def ended(ctx: WorkerContext, job_id: str) -> None:
    """After a job's end is stored: drop its audio, announce it, send its webhook."""
    with ctx.db()() as session:
        row = session.execute(
            select(Job.audio_key, Job.webhook_url).where(Job.id == job_id)
        ).one_or_none()
    if row is None:
        return
    if row.audio_key and ctx.settings.retention.audio_s <= 0:
        discard(ctx.storage, row.audio_key)  # never keeps the end from being announced
    announce(ctx, job_id)
    if row.webhook_url:
        enqueue_webhook(ctx.app, job_id)


def release(ctx: WorkerContext, job_id: str) -> None:
    """Hand a running job back to the queue (before a retry), keeping its attempt count."""
    with ctx.db()() as session, session.begin():
        session.execute(
            update(Job).where(_mine(job_id, ctx)).values(status=JobStatus.queued.value, worker=None)
        )


def announce(ctx: WorkerContext, job_id: str) -> None:
    client = ctx.redis_client()
    if client is None:
        return
    try:
        client.publish(JOB_EVENTS_CHANNEL, job_id)
    except Exception:  # the database holds the truth; waiters fall back to polling it
        log.warning("could not announce job %s over Redis", job_id, exc_info=True)


class Heartbeat:
    """Beats the job's heartbeat, saves progress, and notices cancellation, on a thread."""

    def __init__(self, ctx: WorkerContext, job_id: str, duration: float) -> None:
        self.ctx, self.job_id, self.duration = ctx, job_id, max(duration, 1e-6)
        self.stop_requested = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._pending: tuple[float, str] | None = None
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def progress(self, seconds_done: float, text: str) -> None:
        with self._lock:
            self._pending = (min(seconds_done / self.duration, 0.99), text)

    def _run(self) -> None:
        interval = self.ctx.settings.workers.heartbeat_s
        while not self._done.wait(min(interval, 1.0)):
            try:
                self._beat()
            except Exception:
                log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)

    def _beat(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if pending is not None:
            values["progress"], values["text_so_far"] = pending
        with self.ctx.db()() as session, session.begin():
            owned = session.execute(
                update(Job).where(_mine(self.job_id, self.ctx)).values(**values)
            ).rowcount  # type: ignore[attr-defined]
        if not owned:  # cancelled by its owner, or taken over after we were thought dead
            self.stop_requested.set()


class TextPublisher:
    """For a streaming job: publishes the text as each segment adds to it (Redis pub/sub),
    so the API can send it on at once. Without Redis, the API reads `text_so_far`."""

    def __init__(self, ctx: WorkerContext, job_id: str) -> None:
        self.client = ctx.redis_client()
        self.channel = segments_channel(job_id)
        self.sent = ""

    def __call__(self, seconds_done: float, text: str) -> None:
        if self.client is None or text == self.sent:
            return
        offset = len(self.sent) if text.startswith(self.sent) else 0
        try:
            self.client.publish(self.channel, TextUpdate(offset, text[offset:]).encode())
        except Exception:  # the stream falls back to the database; the job goes on
            log.warning("could not publish text for %s; stopped publishing", self.channel)
            self.client = None
        self.sent = text


def transcribe_options(claim: Claim) -> TranscribeOptions:
    opts = claim.options
    temperature = opts.get("temperature")
    return TranscribeOptions(
        language=claim.language,
        word_timestamps=bool(opts.get("word_timestamps", False)),
        task=str(opts.get("task", "transcribe")),
        initial_prompt=opts.get("prompt") or None,
        temperature=(float(temperature),)
        if temperature not in (None, 0, 0.0)
        else TranscribeOptions().temperature,
    )


def raw_of(options: dict[str, Any]) -> RawFormat | None:
    raw = options.get("raw")
    return RawFormat(raw["encoding"], int(raw["sample_rate"])) if raw else None


def run_job(ctx: WorkerContext, job_id: str) -> None:
    """Do one job end to end. Raises for transient trouble, so the task can retry."""
    token = job_id_var.set(job_id)
    try:
        _run_job(ctx, job_id)
    finally:
        job_id_var.reset(token)


def _run_job(ctx: WorkerContext, job_id: str) -> None:
    from worker import chunked  # long audio is shared out as chunks; that module builds on this

    if chunked.fanned_out(ctx, job_id):
        return  # already cut into chunks: their own tasks carry it on
    claim = claim_job(ctx, job_id)
    if claim is None:
        return
    if chunked.run_long(ctx, claim):
        return
    try:
        # An object store's audio is streamed to this machine's scratch dir for the decode.
        with ctx.storage.local_copy(claim.audio_key) as path:
            audio = decode(path, raw_of(claim.options))
    except UnsupportedMedia as exc:
        finish(
            ctx,
            job_id,
            {
                "status": JobStatus.failed.value,
                "error_code": exc.code,
                "error_message": exc.message,
            },
        )
        return
    except FileNotFoundError:
        finish(
            ctx,
            job_id,
            {
                "status": JobStatus.failed.value,
                "error_code": "audio_missing",
                "error_message": "the job's audio is gone",
            },
        )
        return
    config = ctx.engine_config_for(claim.model_spec)
    model = load_model(claim.model_spec, config, ctx.settings.storage.model_cache_dir)
    duration = len(audio) / 16000
    try:
        with Heartbeat(ctx, job_id, duration) as beat:
            publish = TextPublisher(ctx, job_id) if claim.options.get("stream") else None

            def progress(seconds_done: float, text: str) -> None:
                beat.progress(seconds_done, text)
                if publish is not None:
                    publish(seconds_done, text)

            transcript = transcribe(
                model,
                audio,
                transcribe_options(claim),
                config,
                on_progress=progress,
                should_stop=beat.stop_requested.is_set,
            )
    except Cancelled:
        log.info("job %s stopped: cancelled or taken over", job_id)
        return
    finish(
        ctx,
        job_id,
        {
            "status": JobStatus.succeeded.value,
            "progress": 1.0,
            "duration": transcript.duration,
            "result": transcript.to_dict(),
            "text_so_far": None,
            "language": transcript.language,
        },
    )
