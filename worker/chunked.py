"""Long jobs, shared by the worker pool: planned, fanned out as chunks, merged by the last.

1. The worker that claims a job whose audio is longer than `STT_CHUNK_THRESHOLD_S` streams
   the audio once (`plan_chunks`: bounded memory) to choose cut points in silences, detects
   the language once (so every chunk writes the same one), then, in one transaction, writes
   the `job_chunks` rows and hands the job to its chunks (`jobs.chunked`). It sends
   one `stt.transcribe_chunk` task per chunk, on the job's queue.
2. Any worker claims a chunk like a job (a row lock; a chunk that has succeeded, or runs
   elsewhere with a fresh heartbeat, is skipped), decodes only its window (`read_window`
   seeks), transcribes it, and stores its segments on the job's timeline (`place`).
3. The worker that stores the last chunk merges them in order (`merge`) and ends the job.
   Until then each stored chunk raises the job's progress and `text_so_far`.

A diarized job: the planner checks the known speakers' references before fanning out; each
chunk also embeds the speech it owns (`speaker_windows` in its stored result); the merge
clusters all of them at once, so a voice keeps one label from the first chunk to the last.

A chunk whose worker died is put back on the queue by the reconciler, like a job; a chunk
that fails for good fails the job. Cancelling the job stops running chunks at their next
segment and queued ones when they are claimed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from core.audio import Audio, decode, iter_decoded, read_window
from core.errors import FailureCode, InvalidSpeakerReference, UnsupportedMedia
from core.jobspec import ChunkPlan
from core.models import Job
from core.queues import parse_chunk_ref
from core.transcript import Transcript
from worker import lifecycle
from worker.chunk_merge import place, window_of
from worker.chunk_plan import Plan, PlanStopped, plan_chunks
from worker.context import WorkerContext
from worker.diarization import (
    WINDOWS_KEY,
    diarize_whole,
    embed_chunk,
    embeds,
    hints_for,
    label_merged,
)
from worker.engine import Cancelled, is_multilingual, transcribe_options
from worker.heartbeat import chunk_heartbeat, job_heartbeat
from worker.lifecycle import Claim

log = logging.getLogger("stt.chunks")


def run_long(ctx: WorkerContext, claim: Claim) -> bool:
    """Plan and fan out a claimed job whose audio is over the threshold; False otherwise."""
    with ctx.db()() as session:
        duration = session.execute(select(Job.duration).where(Job.id == claim.job_id)).scalar()
    if duration is None or duration <= ctx.settings.chunks.threshold_s:
        return False
    with job_heartbeat(ctx, claim.job_id, float(duration)) as beat:  # ours till fanned out
        if claim.options.diarize and not _references_usable(ctx, claim):
            return True
        plan = _plan(ctx, claim, float(duration), beat.stop_requested.is_set)
        if plan is None:
            return True
        language, probability = _language(ctx, claim, plan)
    _fan_out(ctx, claim, plan, language, probability)
    return True


def _references_usable(ctx: WorkerContext, claim: Claim) -> bool:
    """Check the known speakers' references before any chunk runs (else the job fails)."""
    try:
        hints_for(ctx.diarizer(), claim.options)
    except InvalidSpeakerReference as exc:
        lifecycle.fail(ctx, claim.job_id, FailureCode.invalid_speaker_reference, exc.message)
        return False
    return True


def _plan(
    ctx: WorkerContext, claim: Claim, duration: float, should_stop: Callable[[], bool]
) -> Plan | None:
    try:
        with ctx.storage.local_copy(claim.audio_key) as path:
            plan = plan_chunks(
                iter_decoded(path, claim.options.raw),
                duration,
                ctx.settings.chunks.target_s,
                find_speech=ctx.find_speech,
                should_stop=should_stop,
            )
    except PlanStopped:
        log.info("job %s stopped while planning: cancelled or taken over", claim.job_id)
        return None
    except UnsupportedMedia as exc:
        lifecycle.fail(ctx, claim.job_id, FailureCode(exc.code), exc.message)
        return None
    except FileNotFoundError:
        lifecycle.fail(ctx, claim.job_id, FailureCode.audio_missing, "the job's audio is gone")
        return None
    if not plan.spans:
        lifecycle.fail(ctx, claim.job_id, FailureCode.unsupported_audio, "the file has no audio")
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
    model, _ = ctx.model_for(claim.model_spec)
    if not is_multilingual(model) or plan.head.size == 0:
        return "en", 1.0
    language, probability, _ = model.detect_language(audio=plan.head, vad_filter=True)
    return str(language), float(probability)


def _fan_out(
    ctx: WorkerContext, claim: Claim, plan: Plan, language: str, probability: float
) -> None:
    cut = lifecycle.hand_to_chunks(
        ctx, claim, plan.spans, plan.duration, ChunkPlan(language, probability, len(plan.spans))
    )
    if cut is None:
        log.info("job %s was cancelled or taken over while planning", claim.job_id)
        return
    queue, count = cut
    for index in range(count):
        ctx.enqueue_chunk(claim.job_id, index, queue)
    lifecycle.announce(ctx, claim.job_id)


def _read_window(
    ctx: WorkerContext, claim: lifecycle.ChunkClaim, start: float, end: float
) -> Audio | None:
    """The chunk's window of the job's audio; None (the job failed) when it is unreadable."""
    job_id = claim.job.job_id
    try:
        with ctx.storage.local_copy(claim.job.audio_key) as path:
            return read_window(path, start, end, claim.job.options.raw)
    except UnsupportedMedia as exc:
        lifecycle.fail_chunked(ctx, job_id, FailureCode(exc.code), exc.message)
    except FileNotFoundError:
        lifecycle.fail_chunked(ctx, job_id, FailureCode.audio_missing, "the job's audio is gone")
    return None


def run_chunk(ctx: WorkerContext, ref: str) -> None:
    """Transcribe one chunk and store it; the last one to finish completes the job."""
    job_id, index = parse_chunk_ref(ref)
    claim = lifecycle.claim_chunk(ctx, job_id, index)
    if claim is None:
        return
    start, end = window_of(claim.span, claim.duration)
    try:
        # Beating from the claim on: reading the window and a first model load can take
        # longer than the stale window on a busy machine, and the chunk would be requeued.
        with chunk_heartbeat(ctx, job_id, index) as heartbeat:
            audio = _read_window(ctx, claim, start, end)
            if audio is None:
                return
            model, config = ctx.model_for(claim.job.model_spec)
            local = ctx.transcribe(
                model,
                audio,
                transcribe_options(claim.job.options, claim.job.language),
                config,
                on_progress=heartbeat.progress,
                should_stop=heartbeat.stop_requested.is_set,
            )
            extra = _speaker_windows(ctx, claim, audio, start)
    except Cancelled:
        log.info("chunk %s stopped: job cancelled or chunk taken over", ref)
        return
    placed = place(local, claim.span, start, claim.duration)
    if lifecycle.store_chunk(ctx, job_id, index, placed, extra):
        finalize = _diarize_merged(ctx, claim.job) if claim.job.options.diarize else None
        lifecycle.complete_if_done(ctx, job_id, finalize)


def _speaker_windows(
    ctx: WorkerContext, claim: lifecycle.ChunkClaim, audio: Audio, start: float
) -> dict[str, Any] | None:
    """The chunk's own speech windows, embedded, for the global clustering at the merge."""
    if not claim.job.options.diarize:
        return None
    diarizer = ctx.diarizer()
    if not embeds(diarizer):
        return None  # a backend that cannot split the work diarizes the whole file at the merge
    lo = 0.0 if claim.span.start_s <= 0 else claim.span.start_s
    hi = float("inf") if claim.span.end_s >= claim.duration else claim.span.end_s
    return {WINDOWS_KEY: embed_chunk(diarizer, audio, start, lo, hi)}


def _diarize_merged(ctx: WorkerContext, job: Claim) -> lifecycle.Finalize:
    """The merge's last stage: one clustering over every chunk's windows."""

    def finalize(merged: Transcript, results: list[dict[str, Any]]) -> Transcript:
        diarizer = ctx.diarizer()
        hints = hints_for(diarizer, job.options)
        if embeds(diarizer):
            windows = [r[WINDOWS_KEY] for r in results if r.get(WINDOWS_KEY)]
            return label_merged(diarizer, merged, windows, hints)
        with ctx.storage.local_copy(job.audio_key) as path:
            audio = decode(path, job.options.raw)
        return diarize_whole(diarizer, audio, merged, hints)

    return finalize


def release_chunk(ctx: WorkerContext, ref: str) -> None:
    """Hand a running chunk (named by its message, `<job id>:<index>`) back to the queue."""
    lifecycle.release_chunk(ctx, *parse_chunk_ref(ref))


def fail_chunk(ctx: WorkerContext, ref: str, code: FailureCode, message: str) -> None:
    """A chunk that fails for good fails its job."""
    lifecycle.fail_chunked(ctx, parse_chunk_ref(ref)[0], code, message)
