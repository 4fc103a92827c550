"""Finds jobs whose work was lost and puts them back on their queue.

Two kinds of loss: a job `running` whose heartbeat went stale (its worker died, even by
`kill -9`), and a job `queued` whose message is no longer in the broker (Redis restarted or
was flushed). The chunks of a long job (`worker/chunked.py`) are looked after the same way,
each on its own: a job cut into chunks has no worker of its own to go stale.

The sweep runs on a timer thread in every worker's main process, guarded by a short Redis
lock so that one sweep runs at a time: nothing extra to deploy, and wherever work can be
done, lost work is found.

Every few minutes the sweep also removes stored audio that no queued or running job needs:
an upload whose API process died before its job row was written, a delete that failed
while storage was down, an object-store upload that was begun and never completed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import islice
from pathlib import Path

from celery import Celery
from sqlalchemy import ColumnElement, delete, or_, select, update

from core.liveness import sweep_interval_s
from core.models import ChunkStatus, Job, JobChunk, JobStatus, WorkerSeen, utcnow
from core.queues import ALL_QUEUES, chunk_ref
from core.settings import Settings
from core.storage import discard, is_audio_key
from worker.context import WorkerContext
from worker.lifecycle import requeue_stale_chunk, requeue_stale_job

log = logging.getLogger("stt.reconciler")
LOCK_KEY = "stt:reconciler-lock"
STORAGE_LOCK_KEY = "stt:storage-sweep-lock"
STORAGE_SWEEP_EVERY_S = 600.0
ORPHAN_GRACE_S = 3600.0
"""Stored audio younger than this is left alone: its upload may still be being probed."""


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _broker_ids(ctx: WorkerContext) -> str | None:
    """Everything the broker holds (queued and unacked messages) as one searchable text."""
    client = ctx.redis_client()
    if ctx.settings.broker.embedded:
        folder: Path = ctx.settings.storage.broker_dir
        return "".join(p.read_text(errors="replace") for p in folder.glob("*.msg") if p.is_file())
    if client is None or not ctx.settings.broker.url.startswith("redis"):
        return None  # another broker: only stale running jobs are handled
    parts: list[str] = []
    for queue in ALL_QUEUES:
        for key in client.scan_iter(match=f"{queue}*"):
            if client.type(key) == b"list":
                parts.extend(_text(m) for m in client.lrange(key, 0, -1))
    parts.extend(_text(value) for value in client.hvals("unacked"))
    return "\n".join(parts)


def reconcile(ctx: WorkerContext, app: Celery) -> int:
    """One sweep; returns how many jobs were put back."""
    now = utcnow()
    settings = ctx.settings
    stale_before = now - timedelta(seconds=settings.workers.stale_after_s)
    grace_before = now - timedelta(seconds=settings.workers.stale_after_s)
    requeue: list[tuple[str, str]] = []
    with ctx.db()() as session, session.begin():
        stale = session.execute(
            select(Job.id, Job.queue).where(
                Job.status == JobStatus.running.value,
                Job.heartbeat_at < stale_before,
                Job.chunked.is_(False),
            )
        ).all()
        for job_id, queue in stale:
            requeue_stale_job(session, job_id, stale_before, now)
            requeue.append((job_id, queue))
            log.warning("job %s: worker stopped beating; requeued", job_id)
    held = _broker_ids(ctx)
    if held is not None:
        with ctx.db()() as session, session.begin():
            queued = session.execute(
                select(Job.id, Job.queue).where(
                    Job.status == JobStatus.queued.value, Job.enqueued_at < grace_before
                )
            ).all()
            for job_id, queue in queued:
                if job_id not in held and (job_id, queue) not in requeue:
                    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=now))
                    requeue.append((job_id, queue))
                    log.warning("job %s: message lost from the broker; requeued", job_id)
    for job_id, queue in requeue:
        ctx.enqueue_job(job_id, queue)
    return len(requeue) + _reconcile_chunks(ctx, app, held)


def _reconcile_chunks(ctx: WorkerContext, app: Celery, held: str | None) -> int:
    """Chunks of running jobs whose worker stopped beating, or whose message was lost."""
    now = utcnow()
    before = now - timedelta(seconds=ctx.settings.workers.stale_after_s)
    requeue: list[tuple[str, int, str]] = []
    with ctx.db()() as session, session.begin():
        stale = session.execute(
            select(JobChunk.job_id, JobChunk.index, Job.queue)
            .join(Job, Job.id == JobChunk.job_id)
            .where(
                Job.status == JobStatus.running.value,
                JobChunk.status == ChunkStatus.running.value,
                JobChunk.heartbeat_at < before,
            )
        ).all()
        for job_id, index, queue in stale:
            if requeue_stale_chunk(session, job_id, index, before, now):
                requeue.append((job_id, index, queue))
                log.warning("chunk %s:%d: worker stopped beating; requeued", job_id, index)
        if held is not None:
            queued = session.execute(
                select(JobChunk.job_id, JobChunk.index, Job.queue)
                .join(Job, Job.id == JobChunk.job_id)
                .where(
                    Job.status == JobStatus.running.value,
                    JobChunk.status == ChunkStatus.queued.value,
                    JobChunk.enqueued_at < before,
                )
            ).all()
            for job_id, index, queue in queued:
                # A message names its chunk as `'<job id>:<index>'` (the task's argsrepr).
                if f"{chunk_ref(job_id, index)}'" in held or (job_id, index, queue) in requeue:
                    continue
                session.execute(
                    update(JobChunk)
                    .where(JobChunk.job_id == job_id, JobChunk.index == index)
                    .values(enqueued_at=now)
                )
                requeue.append((job_id, index, queue))
                log.warning("chunk %s:%d: message lost from the broker; requeued", job_id, index)
    for job_id, index, queue in requeue:
        ctx.enqueue_chunk(job_id, index, queue)
    return len(requeue)


def mark_seen(ctx: WorkerContext) -> None:
    """Tell readiness checks this worker is alive (one row per worker process)."""
    now = utcnow()
    with ctx.db()() as session, session.begin():
        row = session.get(WorkerSeen, ctx.worker_name)
        if row is None:
            session.add(WorkerSeen(name=ctx.worker_name, seen_at=now))
        else:
            row.seen_at = now
        session.execute(delete(WorkerSeen).where(WorkerSeen.seen_at < now - timedelta(days=1)))


def purge(ctx: WorkerContext) -> int:
    """Retention: drop ended jobs (transcripts) past STT_TRANSCRIPT_RETENTION_S, and kept
    audio past STT_AUDIO_RETENTION_S. Returns how many jobs were removed."""
    settings = ctx.settings
    now = utcnow()
    ended = (JobStatus.succeeded.value, JobStatus.failed.value, JobStatus.cancelled.value)
    with ctx.db()() as session, session.begin():
        old = session.execute(
            select(Job.id, Job.audio_key).where(
                Job.status.in_(ended),
                Job.completed_at < now - timedelta(seconds=settings.retention.transcript_s),
            )
        ).all()
        if old:
            session.execute(delete(Job).where(Job.id.in_([job_id for job_id, _ in old])))
        stale_audio = session.execute(
            select(Job.id, Job.audio_key).where(
                Job.status.in_(ended),
                Job.audio_key.is_not(None),
                Job.completed_at < now - timedelta(seconds=settings.retention.audio_s),
            )
        ).all()
        if stale_audio:
            session.execute(
                update(Job)
                .where(Job.id.in_([job_id for job_id, _ in stale_audio]))
                .values(audio_key=None)
            )
    for _, key in [*old, *stale_audio]:
        if key:
            discard(ctx.storage, key)
    if old:
        log.info("retention: removed %d ended jobs", len(old))
    return len(old)


def _batched(items: Iterable[str], size: int) -> Iterator[tuple[str, ...]]:
    it = iter(items)
    while batch := tuple(islice(it, size)):
        yield batch


def sweep_storage(ctx: WorkerContext, grace_s: float = ORPHAN_GRACE_S) -> int:
    """Delete stored audio older than `grace_s` that no job needs (a queued or running job,
    or an ended one while STT_AUDIO_RETENTION_S keeps its audio), and abandoned partial
    writes; returns how many were removed."""
    before = time.time() - grace_s
    storage = ctx.storage
    removed = storage.sweep_incomplete(before)
    candidates = (key for key in storage.keys_older_than(before) if is_audio_key(key))
    pending = (JobStatus.queued.value, JobStatus.running.value)
    needed: ColumnElement[bool] = Job.status.in_(pending)
    if ctx.settings.retention.audio_s > 0:
        kept_since = utcnow() - timedelta(seconds=ctx.settings.retention.audio_s)
        needed = or_(needed, Job.completed_at >= kept_since)
    for batch in _batched(candidates, 500):
        with ctx.db()() as session:
            live = set(
                session.execute(
                    select(Job.audio_key).where(Job.audio_key.in_(batch), needed)
                ).scalars()
            )
        for key in batch:
            if key not in live:
                storage.delete(key)
                removed += 1
                log.info("removed stored audio %s: no job needs it", key)
    return removed


def _sweep_once(ctx: WorkerContext, app: Celery, interval: float, last: list[float]) -> None:
    mark_seen(ctx)
    client = ctx.redis_client()
    if client is not None and not client.set(
        LOCK_KEY, ctx.worker_name, nx=True, ex=max(int(interval), 1)
    ):
        return
    reconcile(ctx, app)
    purge(ctx)
    # Storage is swept far less often: once per STORAGE_SWEEP_EVERY_S across all workers.
    if client is not None:
        due = bool(
            client.set(STORAGE_LOCK_KEY, ctx.worker_name, nx=True, ex=int(STORAGE_SWEEP_EVERY_S))
        )
    else:
        due = time.monotonic() - last[0] >= STORAGE_SWEEP_EVERY_S
    if due:
        last[0] = time.monotonic()
        try:
            sweep_storage(ctx)
        except Exception:
            log.warning("storage sweep failed; will try again", exc_info=True)


def sweep_interval(settings: Settings) -> float:
    """How often a worker sweeps: a third of the staleness (at least 2 s), so a job whose
    heartbeat stopped is put back at most about 4/3 of STT_STALE_AFTER_S later."""
    return sweep_interval_s(settings.workers.stale_after_s)


def start_reconciler(ctx: WorkerContext, app: Celery, interval: float) -> threading.Event:
    """Sweep now and every `interval` seconds on a daemon thread; set the event to stop."""
    stop = threading.Event()
    last = [-STORAGE_SWEEP_EVERY_S]

    def loop() -> None:
        while True:
            try:
                _sweep_once(ctx, app, interval, last)
            except Exception:
                log.warning("reconciler sweep failed; will try again", exc_info=True)
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="stt-reconciler", daemon=True).start()
    return stop
