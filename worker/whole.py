"""A job transcribed whole by one worker: decode → engine → lifecycle.finish."""

from __future__ import annotations

import logging

from core.audio import decode
from core.errors import FailureCode, InvalidSpeakerReference, UnsupportedMedia
from core.notify import TextUpdate, segments_channel
from worker import lifecycle
from worker.context import WorkerContext
from worker.diarization import TRANSCRIBE_SHARE, diarize_whole, hints_for
from worker.diarize.types import Hints
from worker.engine import Cancelled, transcribe_options
from worker.heartbeat import job_heartbeat
from worker.lifecycle import Claim

log = logging.getLogger("stt.worker")


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


def run_whole(ctx: WorkerContext, claim: Claim) -> None:
    """Transcribe a claimed job in one piece (then diarize it, if asked) and store it."""
    job_id = claim.job_id
    try:
        # An object store's audio is streamed to this machine's scratch dir for the decode.
        with ctx.storage.local_copy(claim.audio_key) as path:
            audio = decode(path, claim.options.raw)
    except UnsupportedMedia as exc:
        lifecycle.fail(ctx, job_id, FailureCode(exc.code), exc.message)
        return
    except FileNotFoundError:
        lifecycle.fail(ctx, job_id, FailureCode.audio_missing, "the job's audio is gone")
        return
    diarize = claim.options.diarize
    duration = len(audio) / 16000
    share = TRANSCRIBE_SHARE if diarize else 1.0
    try:
        with job_heartbeat(ctx, job_id, duration) as beat:
            # A first model load can outlast the stale window: the heartbeat covers it.
            hints = _hints(ctx, claim) if diarize else None
            if diarize and hints is None:
                return
            model, config = ctx.model_for(claim.model_spec)
            publish = TextPublisher(ctx, job_id) if claim.options.stream else None

            def progress(seconds_done: float, text: str) -> None:
                beat.progress(seconds_done * share, text)
                if publish is not None:
                    publish(seconds_done, text)

            transcript = ctx.transcribe(
                model,
                audio,
                transcribe_options(claim.options, claim.language),
                config,
                on_progress=progress,
                should_stop=beat.stop_requested.is_set,
            )
            if hints is not None:
                beat.progress(duration * share, transcript.text)
                transcript = diarize_whole(ctx.diarizer(), audio, transcript, hints)
    except Cancelled:
        log.info("job %s stopped: cancelled or taken over", job_id)
        return
    lifecycle.finish(ctx, job_id, transcript)


def _hints(ctx: WorkerContext, claim: Claim) -> Hints | None:
    """The job's diarization hints; None (the job failed) for an unusable reference."""
    try:
        return hints_for(ctx.diarizer(), claim.options)
    except InvalidSpeakerReference as exc:
        lifecycle.fail(ctx, claim.job_id, FailureCode.invalid_speaker_reference, exc.message)
        return None
